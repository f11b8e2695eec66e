import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { previewSize, TRACE_BODY_PREVIEW_BYTES, wireOf, type TraceStepDraft } from '../../src/shared/trace';
import { amqpMessage, bodyPreview, mqttMessage, traceValue } from '../../src/core/trace/message-view';
import { TraceStore } from '../../src/core/trace/trace-store';
import { firehoseStep, parseFirehoseMessage } from '../../src/core/trace/firehose';
import { bodyView, hexDump } from '../../src/renderer/src/components/trace/body-view';

const delivered = (rpcId: string, body: Buffer): TraceStepDraft => ({
  rpcId,
  at: 1,
  source: 'broker',
  kind: 'broker.delivered',
  detail: { queue: 'rpc_queue', routingKeys: ['rpc_queue'], redelivered: false, leg: 'request', wire: amqpMessage({ headers: {} }, body) },
});

describe('body previews in the trace', () => {
  it('keeps a small JSON body whole, and the inspector shows it pretty', () => {
    const body = bodyPreview(Buffer.from('{"id":"a","params":{"n":1}}'));
    expect(body).toEqual({ bytes: 27, encoding: 'json', preview: '{"id":"a","params":{"n":1}}', shown: 27 });
    expect(bodyView(body)).toMatchObject({ as: 'json', text: '{\n  "id": "a",\n  "params": {\n    "n": 1\n  }\n}', note: '27 bytes.' });
  });

  it('keeps only the first 4 KiB of a big body, with its full size, and never cuts a character in two', () => {
    // 'é' is two bytes: a cut at 4096 would fall inside one.
    const text = `"${'é'.repeat(10_000)}"`;
    const body = bodyPreview(Buffer.from(text));
    expect(body.bytes).toBe(Buffer.byteLength(text));
    expect(body.shown).toBeLessThanOrEqual(TRACE_BODY_PREVIEW_BYTES);
    expect(body.shown).toBeGreaterThan(TRACE_BODY_PREVIEW_BYTES - 4);
    expect(Buffer.byteLength(body.preview)).toBe(body.shown);
    expect(body.encoding).toBe('text');
    expect(bodyView(body).note).toBe(`20,002 bytes, first ${body.shown.toLocaleString('en-US')} bytes kept (the trace keeps at most 4 KiB of a body).`);
  });

  it('a cut JSON body is shown as the text it is, not parsed', () => {
    const json = JSON.stringify({ data: 'x'.repeat(10_000) });
    const body = bodyPreview(Buffer.from(json));
    expect(body).toMatchObject({ encoding: 'json', shown: TRACE_BODY_PREVIEW_BYTES, bytes: json.length });
    expect(bodyView(body)).toMatchObject({ as: 'text', text: json.slice(0, TRACE_BODY_PREVIEW_BYTES) });
  });

  it('binary bodies (not UTF-8, or control bytes) are kept as base64 and shown as hex', () => {
    const bytes = Buffer.from([0xff, 0x00, 0x41, 0x42, 0x0a]);
    const body = bodyPreview(bytes);
    expect(body).toEqual({ bytes: 5, encoding: 'binary', preview: bytes.toString('base64'), shown: 5 });
    expect(bodyView(body)).toMatchObject({ as: 'hex', text: hexDump(bytes) });
    expect(hexDump(bytes)).toBe(`000000  ${'ff 00 41 42 0a'.padEnd(47)}  ..AB.`);
    expect(bodyPreview(Buffer.from('a\u0000b')).encoding).toBe('binary');
  });

  it('text that says it is JSON but is not is shown as text, with a note', () => {
    expect(bodyView(bodyPreview(Buffer.from('{not json')))).toMatchObject({ as: 'text', text: '{not json', note: '9 bytes. Not valid JSON: shown as text.' });
  });

  it('header values are short and JSON-safe: bytes as text, tables as JSON, long values cut', () => {
    expect(traceValue(Buffer.from('reply.a'))).toBe('reply.a');
    expect(traceValue(Buffer.from([0xff, 0xfe]))).toBe('base64://4=');
    expect(traceValue({ a: 1 })).toBe('{"a":1}');
    expect(traceValue(undefined)).toBeNull();
    expect(String(traceValue('x'.repeat(2000)))).toMatch(/… \(2000 characters\)$/);
  });

  it('an AMQP message keeps its properties and headers apart; an MQTT one its flags and MQTT 5 properties', () => {
    const amqp = amqpMessage(
      { correlation_id: 'c1', delivery_mode: 2, headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false, 'x-reply-to-topic': Buffer.from('reply.a') } },
      Buffer.from('{}'),
    );
    expect(amqp).toEqual({
      protocol: 'amqp',
      properties: { correlation_id: 'c1', delivery_mode: 2 },
      headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false, 'x-reply-to-topic': 'reply.a' },
      body: { bytes: 2, encoding: 'json', preview: '{}', shown: 2 },
    });
    const mqtt = mqttMessage({ qos: 1, retain: false, properties: { responseTopic: 'reply/a', correlationData: Buffer.from('a'), userProperties: { tenant: 'x' } } }, Buffer.from('hi'));
    expect(mqtt).toMatchObject({ protocol: 'mqtt', properties: { qos: 1, retain: false, responseTopic: 'reply/a', correlationData: 'a' }, headers: { tenant: 'x' } });
  });

  it('a firehose step carries the traced message: its own properties and headers, and its body', () => {
    const store = new TraceStore();
    const event = parseFirehoseMessage({
      fields: { routingKey: 'publish.amq.topic' } as never,
      properties: {
        headers: {
          routing_keys: ['rpc_queue'],
          routed_queues: ['rpc_queue'],
          properties: { correlation_id: 'a', headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false } },
        },
      } as never,
      content: Buffer.from('{"id":"a","reply_to":"reply/a","params":{}}'),
    });
    const draft = event ? firehoseStep(event, store) : undefined;
    const wire = draft ? wireOf(draft) : undefined;
    expect(wire).toMatchObject({ protocol: 'amqp', properties: { correlation_id: 'a' }, headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false } });
    expect(wire?.body).toMatchObject({ encoding: 'json', bytes: 43, shown: 43 });
  });
});

describe('the body budget', () => {
  it('drops the oldest previews once the store holds more than its budget, keeping sizes and headers', () => {
    const store = new TraceStore({ maxBodyBytes: 10_000 });
    const body = Buffer.from('x'.repeat(3000));
    for (const id of ['a', 'b', 'c', 'd', 'e']) store.add(delivered(id, body));
    expect(store.bodies.used).toBeLessThanOrEqual(10_000);
    const kept = (id: string) => wireOf(store.steps(id)[0] as never)?.body;
    expect(kept('a')).toEqual({ bytes: 3000, encoding: 'text', preview: '', shown: 0, dropped: true });
    expect(kept('b')?.dropped).toBe(true);
    expect(kept('e')).toMatchObject({ shown: 3000 });
    expect(bodyView(kept('a') as never).note).toMatch(/^3,000 bytes \(text\); its preview was dropped to keep the trace within its memory budget/);
  });

  it('frees the budget of RPCs the store evicts, and all of it on clear', () => {
    const store = new TraceStore({ maxRpcs: 2 });
    for (const id of ['a', 'b', 'c']) store.add(delivered(id, Buffer.from('x'.repeat(100))));
    expect(store.bodies.used).toBe(200);
    store.clear();
    expect(store.bodies.used).toBe(0);
  });

  it('counts exactly the previews it holds, whatever mix of RPCs, sizes, evictions and drops', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 3000 })), { maxLength: 60 }), (adds) => {
        const store = new TraceStore({ maxRpcs: 4, maxBodyBytes: 8000 });
        for (const [rpc, size] of adds) store.add(delivered(`r${rpc}`, Buffer.alloc(size, 0x61)));
        const held = store.allSteps().reduce((sum, step) => sum + previewSize(step), 0);
        expect(store.bodies.used).toBe(held);
        expect(held).toBeLessThanOrEqual(8000);
      }),
    );
  });

  it('stays bounded under an endless stream of small bodies that never reach the budget (its queue once grew with every step)', () => {
    const store = new TraceStore({ maxRpcs: 100 });
    for (let index = 0; index < 20_000; index += 1) store.add(delivered(`r${index}`, Buffer.from('{"id":1}')));
    expect(store.size).toBe(100);
    expect(store.bodies.used).toBe(100 * 8);
    expect(store.bodies.queued).toBeLessThanOrEqual(2 * 100 + 1025);
  });

  it('keeps flow order on insert and finds a detail without sorting', () => {
    const store = new TraceStore();
    store.add({ rpcId: 'a', at: 3, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/a', replyTopic: 'reply/a', topicMismatch: false, bytes: 1 } });
    store.add({ rpcId: 'a', at: 1, source: 'client', kind: 'mqtt.published', detail: { topic: 'q', qosAsked: 1, predictedRoutingKey: 'q' } });
    store.add({ rpcId: 'a', at: 2, source: 'client', kind: 'composed', detail: { topic: 'q', qos: 1, replyTopic: 'reply/a', replyStrategy: 'per-request', bytes: 1 } });
    expect(store.steps('a').map((step) => step.kind)).toEqual(['composed', 'mqtt.published', 'mqtt.reply.received']);
    expect(store.findDetail('a', 'mqtt.published')?.predictedRoutingKey).toBe('q');
    expect(store.findDetail('a', 'reply.published')).toBeUndefined();
  });
});
