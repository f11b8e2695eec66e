import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFieldTable } from '../../src/core/trace/field-table';
import { FirehoseHeaders, readFirehoseHeaders } from '../../src/core/trace/firehose-headers';
import { firehoseStep, parseFirehoseMessage, readFirehoseFrames } from '../../src/core/trace/firehose';
import { amqpWire, ownedHead, withWire } from '../../src/core/trace/message-view';
import { TraceStore } from '../../src/core/trace/trace-store';
import type { TraceMessage } from '../../src/shared/trace';

// amqplib's own codec and connection (not exported by its package): what the tracer's frame reader must agree with.
const require = createRequire(import.meta.url);
const amqplibLib = join(dirname(require.resolve('amqplib')), 'lib');
const defs = require(join(amqplibLib, 'defs.js')) as { decode: (id: number, buf: Buffer) => Record<string, unknown> };
const codec = require(join(amqplibLib, 'codec.js')) as {
  encodeTable: (buf: Buffer, table: Record<string, unknown>, offset: number) => number;
  decodeFields: (slice: Buffer) => Record<string, unknown>;
};
const { Connection } = require(join(amqplibLib, 'connection.js')) as { Connection: new (stream: NodeJS.ReadWriteStream) => object };

/** Content header frames' payloads of real firehose messages (an RPC through the MQTT plugin), as each RabbitMQ sent them. */
const captured = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'firehose-header-frames.json'), 'utf8')) as Record<string, string[]>;

/** A content header payload: basic class, weight 0, body size, then the properties with only `headers` set. */
function headerPayload(headers: Record<string, unknown>, bodySize = 10): Buffer {
  const table = Buffer.alloc(64 * 1024);
  const length = codec.encodeTable(table, headers, 0);
  const payload = Buffer.alloc(14 + length);
  payload.writeUInt16BE(60, 0);
  payload.writeUInt32BE(0, 4);
  payload.writeUInt32BE(bodySize, 8);
  payload.writeUInt16BE(0x2000, 12);
  table.copy(payload, 14, 0, length);
  return payload;
}

const amqplibEvent = (routingKey: string, payload: Buffer) =>
  parseFirehoseMessage({ fields: { routingKey } as never, properties: defs.decode(60, payload.subarray(12)) as never, content: Buffer.from('{}') });
const readerEvent = (routingKey: string, payload: Buffer) =>
  parseFirehoseMessage({ fields: { routingKey } as never, properties: { headers: readFirehoseHeaders(payload)!.headers } as never, content: Buffer.from('{}') });

describe("the tracer's own reading of firehose headers", () => {
  for (const [version, frames] of Object.entries(captured)) {
    it(`reads what amqplib decodes from RabbitMQ ${version}'s firehose messages, the traced message's properties left as bytes until read`, () => {
      expect(frames.length).toBeGreaterThan(0);
      for (const base64 of frames) {
        const payload = Buffer.from(base64, 'base64');
        const read = readFirehoseHeaders(payload);
        expect(read).toBeDefined();
        const theirs = amqplibEvent('publish.amq.direct', payload)!;
        const ours = readerEvent('publish.amq.direct', payload)!;
        expect(Buffer.isBuffer(ours.properties)).toBe(true);
        expect({ ...ours, properties: decodeFieldTable(ours.properties as Buffer) }).toEqual(theirs);
        // the body's size, as amqplib reads it
        expect(read!.size).toBe(Number(payload.readBigUInt64BE(4)));
        // names come back as one string each, message after message
        expect(readerEvent('publish.amq.direct', payload)!.node).toBe(ours.node);
      }
    });
  }

  it('builds the same wire for a step whichever read the headers', () => {
    const payload = Buffer.from(captured['3.10.8']![0]!, 'base64');
    const body = Buffer.from('{"id":"a","reply_to":"replies/a","params":{}}');
    const wireOf = (headers: unknown): TraceMessage | undefined => {
      const event = parseFirehoseMessage({ fields: { routingKey: 'publish.amq.direct' } as never, properties: { headers } as never, content: body });
      const draft = firehoseStep(event!, new TraceStore());
      return (withWire(draft!).detail as { wire?: TraceMessage }).wire;
    };
    const ours = wireOf(readFirehoseHeaders(payload)!.headers);
    expect(ours?.headers).toEqual({ 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false });
    expect(ours).toEqual(wireOf((defs.decode(60, payload.subarray(12)) as { headers: unknown }).headers));
  });

  it('decodes any field table as amqplib does', () => {
    const value = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.string(),
        fc.boolean(),
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        // (amqplib writes a whole number as an int64, and cannot past 2^63)
        fc.double({ noNaN: true, min: -1e15, max: 1e15 }),
        fc.constant(null),
        fc.uint8Array({ maxLength: 8 }).map((bytes) => Buffer.from(bytes)),
        fc.nat().map((n) => ({ '!': 'timestamp', value: n })),
        fc.tuple(fc.integer({ min: 0, max: 9 }), fc.nat()).map(([places, digits]) => ({ '!': 'decimal', value: { places, digits } })),
        fc.array(tie('value'), { maxLength: 4 }),
        tie('table'),
      ),
      // (a table with a key "!" is a typed value to amqplib's encoder)
      table: fc.dictionary(fc.string({ minLength: 1, maxLength: 40 }).filter((key) => key !== '!'), tie('value'), { maxKeys: 5 }),
    }));
    fc.assert(
      fc.property(value.table, (table) => {
        const buf = Buffer.alloc(256 * 1024);
        const length = codec.encodeTable(buf, table as Record<string, unknown>, 0);
        const bytes = buf.subarray(4, length);
        expect(decodeFieldTable(bytes)).toEqual(codec.decodeFields(bytes));
      }),
      { numRuns: 300 },
    );
  });

  it('leaves to amqplib what is not a firehose header: other properties, a table that runs past its frame, a type it does not know', () => {
    const good = headerPayload({ routing_keys: ['rpc_queue'], properties: { delivery_mode: 2 } });
    expect(readFirehoseHeaders(good)?.headers).toBeInstanceOf(FirehoseHeaders);
    const withContentType = Buffer.from(good);
    withContentType.writeUInt16BE(0xa000, 12);
    expect(readFirehoseHeaders(withContentType)).toBeUndefined();
    expect(readFirehoseHeaders(good.subarray(0, good.length - 3))).toBeUndefined();
    const badArrayLength = Buffer.from(good);
    // the array's length (after the key "routing_keys" and its tag) made to run past the frame
    badArrayLength.writeUInt32BE(0xffff, 18 + 1 + 'routing_keys'.length + 1);
    expect(readFirehoseHeaders(badArrayLength)).toBeUndefined();
    const unknownTag = headerPayload({ node: 'rabbit@a' });
    unknownTag[18 + 1 + 'node'.length] = 'Q'.charCodeAt(0);
    expect(readFirehoseHeaders(unknownTag)).toBeUndefined();
  });

  it('reads only the keys it knows by all their bytes, and skips any other of the same length', () => {
    const read = readFirehoseHeaders(headerPayload({ routing_kexs: ['forged'], routing_keys: ['rpc_queue'], nodf: 'x', node: 'rabbit@a', vhost: '/', exchange_name: 'amq.direct' }));
    expect(read?.headers).toMatchObject({ routingKeys: ['rpc_queue'], node: 'rabbit@a' });
  });

  it("keeps no view of the socket's buffer once a step is stored: the properties' bytes are copied, on the tape or with a kept draft", () => {
    const frame = Buffer.from(captured['3.10.8']![0]!, 'base64');
    const body = Buffer.from('{"id":"a","reply_to":"replies/a","params":{}}');
    const expected = decodeFieldTable(readFirehoseHeaders(Buffer.from(frame))!.headers.properties!);
    const store = new TraceStore();
    const event = parseFirehoseMessage({ fields: { routingKey: 'publish.amq.direct' } as never, properties: { headers: readFirehoseHeaders(frame)!.headers } as never, content: body });
    store.record(firehoseStep(event!, store)!);
    // the socket's buffer is reused for the next bytes that arrive
    frame.fill(0);
    const [step] = store.steps('a');
    expect((step!.detail as { wire?: TraceMessage }).wire?.headers).toEqual(expected.headers);
    const source = amqpWire(readFirehoseHeaders(Buffer.from(captured['3.10.8']![0]!, 'base64'))!.headers.properties, body);
    const view = source.protocol === 'amqp' ? (source.properties as Buffer) : Buffer.alloc(0);
    ownedHead(source);
    view.fill(0);
    expect(source.protocol === 'amqp' && decodeFieldTable(source.properties as Buffer)).toEqual(expected);
  });

  it("keeps no view of the socket's buffer for a properties table longer than the tape copies (a long header)", () => {
    const frame = headerPayload({ routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'], properties: { correlation_id: 'a', headers: { token: 'x'.repeat(9000) } } });
    const body = Buffer.from('{"id":"a","reply_to":"replies/a"}');
    const stored = (bytes: Buffer): TraceStore => {
      const store = new TraceStore();
      const event = parseFirehoseMessage({ fields: { routingKey: 'publish.amq.direct' } as never, properties: { headers: readFirehoseHeaders(bytes)!.headers } as never, content: body });
      store.record(firehoseStep(event!, store)!);
      return store;
    };
    const expected = stored(Buffer.from(frame)).steps('a')[0]!.detail as { wire?: TraceMessage };
    const store = stored(frame);
    frame.fill(0);
    const wire = (store.steps('a')[0]!.detail as { wire?: TraceMessage }).wire;
    expect(wire?.headers.token).toBeDefined();
    expect(wire).toEqual(expected.wire);
    expect(wire?.properties).toMatchObject({ correlation_id: 'a' });
  });

  it("a copy of the traced message's properties that cannot be decoded costs that step's properties only", () => {
    const payload = headerPayload({ routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'], properties: { correlation_id: 'a' }, node: 'rabbit@a' });
    // the nested table's first key made to claim more bytes than the table has
    const keyAt = payload.indexOf('correlation_id') - 1;
    payload[keyAt] = 200;
    const read = readFirehoseHeaders(payload);
    expect(read?.headers.routingKeys).toEqual(['rpc_queue']);
    const event = parseFirehoseMessage({ fields: { routingKey: 'publish.amq.direct' } as never, properties: { headers: read!.headers } as never, content: Buffer.from('{"id":"a","reply_to":"r/a"}') });
    const step = withWire(firehoseStep(event!, new TraceStore())!);
    const wire = (step.detail as { wire?: TraceMessage }).wire;
    expect(wire?.properties.unreadable).toMatch(/^RabbitMQ's copy of this message's properties could not be decoded \(.+\)\.$/);
    expect(wire?.body.bytes).toBe(27);
    expect(step.detail).toMatchObject({ exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], node: 'rabbit@a' });
  });

  it("takes over the header frames of amqplib's connection (the version this checkout locks), and only those", () => {
    const connection = new Connection(new PassThrough()) as { rest: Buffer; recvFrame: () => unknown };
    expect(readFirehoseFrames(connection)).toBe(true);
    const payload = Buffer.from(captured['4.3.6']![0]!, 'base64');
    const frame = (type: number, body: Buffer): Buffer => {
      const out = Buffer.alloc(8 + body.length);
      out[0] = type;
      out.writeUInt16BE(1, 1);
      out.writeUInt32BE(body.length, 3);
      body.copy(out, 7);
      out[7 + body.length] = 206;
      return out;
    };
    const content = Buffer.from('{}');
    connection.rest = Buffer.concat([frame(2, payload), frame(3, content)]);
    const header = connection.recvFrame() as { id: number; channel: number; size: number; fields: { headers: unknown } };
    expect(header).toMatchObject({ id: 60, channel: 1, size: Number(payload.readBigUInt64BE(4)) });
    expect(header.fields.headers).toBeInstanceOf(FirehoseHeaders);
    // the body frame is amqplib's, as always
    expect(connection.recvFrame()).toEqual({ channel: 1, content });
    expect(readFirehoseFrames({})).toBe(false);
  });
});
