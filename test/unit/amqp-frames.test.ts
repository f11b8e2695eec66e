import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readFramesWithoutCopies } from '../../src/core/links/amqp-frames';
import { readFirehoseFrames } from '../../src/core/trace/firehose';
import { FirehoseHeaders } from '../../src/core/trace/firehose-headers';

// amqplib's own encoder and frame reading (not exported by its package): what the taken-over reading must agree with.
const require = createRequire(import.meta.url);
const amqplibLib = join(dirname(require.resolve('amqplib')), 'lib');
const defs = require(join(amqplibLib, 'defs.js')) as {
  encodeMethod: (id: number, channel: number, fields: Record<string, unknown>) => Buffer;
  encodeProperties: (id: number, channel: number, size: number, fields: Record<string, unknown>) => Buffer;
  BasicDeliver: number;
  BasicProperties: number;
};
const { Connection } = require(join(amqplibLib, 'connection.js')) as { Connection: { prototype: { recvFrame: () => unknown } } };

const captured = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'firehose-header-frames.json'), 'utf8')) as Record<string, string[]>;

function frame(type: number, channel: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(8 + payload.length);
  out[0] = type;
  out.writeUInt16BE(channel, 1);
  out.writeUInt32BE(payload.length, 3);
  payload.copy(out, 7);
  out[7 + payload.length] = 206;
  return out;
}

/** The bytes of `count` deliveries as the broker sends them (method, content header, body), with a heartbeat among them. */
function deliveries(count: number, headerPayloads: Buffer[] | undefined): Buffer {
  const frames: Buffer[] = [];
  for (let index = 0; index < count; index += 1) {
    const body = Buffer.from(JSON.stringify({ id: String(index), reply_to: `replies/${index}`, params: { n: index } }));
    frames.push(
      defs.encodeMethod(defs.BasicDeliver, 1, { consumerTag: 'ctag', deliveryTag: index + 1, redelivered: false, exchange: 'amq.rabbitmq.trace', routingKey: 'publish.amq.direct' }),
    );
    const captured = headerPayloads?.[index % headerPayloads.length];
    if (captured) {
      const payload = Buffer.from(captured);
      payload.writeUInt32BE(0, 4);
      payload.writeUInt32BE(body.length, 8);
      frames.push(frame(2, 1, payload));
    } else frames.push(defs.encodeProperties(defs.BasicProperties, 1, body.length, { contentType: 'application/json', headers: { n: index } }));
    frames.push(frame(3, 1, body));
    if (index === 1) frames.push(frame(8, 0, Buffer.alloc(0)));
  }
  return Buffer.concat(frames);
}

/** A connection as amqplib holds it, reading the given chunks in turn. */
function connection(chunks: Buffer[]) {
  return {
    rest: Buffer.alloc(0),
    maxFrameSize: 131072,
    recvSinceLastCheck: false,
    stream: { read: (): Buffer | null => chunks.shift() ?? null },
    recvFrame: Connection.prototype.recvFrame,
  };
}

function allFrames(conn: { recvFrame: () => unknown }): unknown[] {
  const frames: unknown[] = [];
  for (let next = conn.recvFrame(); next; next = conn.recvFrame()) frames.push(next);
  return frames;
}

/** The bytes cut at the given points (sorted, deduplicated) into reads. */
function cut(bytes: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((point) => point % bytes.length))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const point of [...at, bytes.length]) {
    if (point > from) chunks.push(Buffer.from(bytes.subarray(from, point)));
    from = point;
  }
  return chunks;
}

describe("an amqplib connection's frames gathered without copying every read", () => {
  it('gives the frames amqplib gives, however the socket cut the bytes into reads', () => {
    const bytes = deliveries(6, undefined);
    const expected = allFrames(connection([bytes]));
    expect(expected).toHaveLength(19);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 40 }), (points) => {
        const conn = connection(cut(bytes, points));
        expect(readFramesWithoutCopies(conn)).toBe(true);
        expect(allFrames(conn)).toEqual(expected);
        expect(conn.recvSinceLastCheck).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('uses a read as it is when no frame was left cut in two, and joins only what a cut frame lacks', () => {
    const bytes = deliveries(60, undefined);
    const reads = cut(bytes, [10]);
    /** whether `view` lies in the memory of `read` (two small buffers may share one pool of Node's) */
    const within = (view: Buffer, read: Buffer): boolean =>
      view.buffer === read.buffer && view.byteOffset >= read.byteOffset && view.byteOffset + view.length <= read.byteOffset + read.length;
    const conn = connection([...reads]);
    readFramesWithoutCopies(conn);
    const first = conn.recvFrame() as { fields: { deliveryTag: number } };
    expect(first.fields.deliveryTag).toBe(1);
    // the first frame was completed with the bytes it lacked; the second read waits, not joined to anything
    expect(conn.rest.length).toBe(0);
    conn.recvFrame();
    const body = conn.recvFrame() as { content: Buffer };
    // the next frames are used where they were read (amqplib would have copied the whole read)
    expect(body.content.toString()).toBe('{"id":"0","reply_to":"replies/0","params":{"n":0}}');
    expect(within(body.content, reads[1]!)).toBe(true);
  });

  it("the tracer's connection: firehose headers read into FirehoseHeaders, everything else as amqplib decodes it, in any cut", () => {
    const headers = [...captured['3.10.8']!, ...captured['4.3.6']!].map((base64) => Buffer.from(base64, 'base64'));
    const bytes = deliveries(8, headers);
    const expected = allFrames(connection([bytes])) as Array<{ fields?: { headers?: unknown } }>;
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 40 }), (points) => {
        const conn = connection(cut(bytes, points));
        expect(readFirehoseFrames(conn)).toBe(true);
        const frames = allFrames(conn) as Array<{ fields?: { headers?: unknown } }>;
        expect(frames).toHaveLength(expected.length);
        frames.forEach((got, index) => {
          if (got.fields?.headers instanceof FirehoseHeaders) {
            expect({ ...got, fields: undefined }).toEqual({ ...expected[index], fields: undefined });
            expect(got.fields.headers.routingKeys).toEqual((expected[index]!.fields!.headers as { routing_keys: string[] }).routing_keys);
          } else expect(got).toEqual(expected[index]);
        });
      }),
      { numRuns: 200 },
    );
  });

  it("leaves a frame over the connection's limit to amqplib, which refuses it: a method frame, or a header the caller reads", () => {
    const conn = connection([deliveries(1, undefined)]);
    conn.maxFrameSize = 16;
    readFramesWithoutCopies(conn);
    expect(() => conn.recvFrame()).toThrow(/exceeds maxFrameSize/);
    const header = frame(2, 1, Buffer.from(captured['3.10.8']![0]!, 'base64'));
    const withHeader = connection([header]);
    withHeader.maxFrameSize = 64;
    readFirehoseFrames(withHeader);
    expect(() => withHeader.recvFrame()).toThrow(/exceeds maxFrameSize/);
  });

  it('changes nothing on what is not an amqplib connection', () => {
    expect(readFramesWithoutCopies({ recvFrame: () => false })).toBe(false);
    expect(readFramesWithoutCopies(undefined)).toBe(false);
  });
});
