import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { previewSize, TRACE_BODY_PREVIEW_BYTES, wireOf, type TraceStepDraft } from '../../src/shared/trace';
import { amqpMessage, amqpWire, bodyPreview, buildWire, mqttMessage, mqttWire, traceValue, WIRE_SOURCE, wireSourceOf, withWire, type MqttPublishFacts, type PendingDraft } from '../../src/core/trace/message-view';

/** A draft with its wire left to be built, as the writers hand them over. */
const pendingAmqp = (draft: TraceStepDraft, properties: Record<string, unknown>, body: Buffer): TraceStepDraft =>
  ({ ...draft, [WIRE_SOURCE]: amqpWire(properties, body) }) as PendingDraft;
const pendingMqtt = (draft: TraceStepDraft, facts: MqttPublishFacts, body: Buffer): TraceStepDraft =>
  ({ ...draft, [WIRE_SOURCE]: mqttWire(facts, body) }) as PendingDraft;
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
    const wire = draft ? wireOf(withWire(draft)) : undefined;
    expect(wire).toMatchObject({ protocol: 'amqp', properties: { correlation_id: 'a' }, headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false } });
    expect(wire?.body).toMatchObject({ encoding: 'json', bytes: 43, shown: 43 });
  });
});

/** A draft whose wire is left to be built (as the client, the server and the firehose hand them over). */
const pendingDelivered = (rpcId: string, body: Buffer): TraceStepDraft =>
  pendingAmqp({ rpcId, at: 1, source: 'broker', kind: 'broker.delivered', detail: { queue: 'rpc_queue', routingKeys: ['rpc_queue'], redelivered: false, leg: 'request' } }, { headers: {} }, body);

describe('wires built when read', () => {
  const bodies = fc.oneof(
    fc.string({ maxLength: 200 }).map((text) => Buffer.from(text)),
    fc.string({ minLength: 4000, maxLength: 5000 }).map((text) => Buffer.from(`{"a":"${text}"}`)),
    fc.uint8Array({ maxLength: 5000 }).map((bytes) => Buffer.from(bytes)),
  );

  it('a pending wire, once built, is exactly the wire built at once, for any body (text, cut UTF-8, binary, over 4 KiB)', () => {
    fc.assert(
      fc.property(bodies, (body) => {
        const properties = { contentType: 'application/json', deliveryMode: 2, headers: { 'x-mqtt-publish-qos': 1 } };
        const amqp = pendingAmqp(delivered('a', Buffer.alloc(0)), properties, body);
        expect(buildWire(wireSourceOf(amqp) as never)).toEqual(amqpMessage(properties, body));
        const facts = { qos: 1, retain: false, properties: { userProperties: { traceparent: '00-abc' }, correlationData: Buffer.from('id') } };
        const mqtt = pendingMqtt(delivered('a', Buffer.alloc(0)), facts, body);
        expect(buildWire(wireSourceOf(mqtt) as never)).toEqual(mqttMessage(facts, body));
      }),
    );
  });

  it("keeps a copy of at most 4 KiB of a body once stored, never the body (a socket's read buffer, a 1 MiB payload, a pool slab)", () => {
    const socketChunk = Buffer.alloc(64 * 1024, 0x61);
    const small = pendingDelivered('a', socketChunk.subarray(100, 200));
    // Handed over as a view (no copy on the writer's path), of at most 4 KiB.
    expect(wireSourceOf(small)?.head.byteLength).toBe(100);
    const big = Buffer.alloc(1024 * 1024, 0x62);
    const bigDraft = pendingAmqp(delivered('b', Buffer.alloc(0)), {}, big);
    expect(wireSourceOf(bigDraft)?.head.byteLength).toBe(TRACE_BODY_PREVIEW_BYTES);
    expect(wireSourceOf(bigDraft)?.bytes).toBe(1024 * 1024);
    // A step with more values than the store's tape holds in one piece is kept as its draft: with a copy of its head too.
    const crowded = pendingAmqp(
      { rpcId: 'c', at: 1, source: 'broker', kind: 'broker.delivered', detail: { queue: 'q', routingKeys: new Array<string>(20_000).fill('k'), redelivered: false, leg: 'request' } },
      {},
      socketChunk.subarray(300, 310),
    );
    const store = new TraceStore();
    for (const draft of [small, bigDraft, crowded]) store.record(draft);
    // The memory is used again once the store has the steps: what it kept is its own.
    socketChunk.fill(0x7a);
    big.fill(0x7a);
    expect(wireOf(store.steps('a')[0] as never)?.body).toMatchObject({ bytes: 100, shown: 100, preview: 'a'.repeat(100) });
    expect(wireOf(store.steps('b')[0] as never)?.body).toMatchObject({ bytes: 1024 * 1024, shown: TRACE_BODY_PREVIEW_BYTES, preview: 'b'.repeat(TRACE_BODY_PREVIEW_BYTES) });
    expect(wireOf(store.steps('c')[0] as never)?.body).toMatchObject({ bytes: 10, preview: 'a'.repeat(10) });
  });

  it('the store keeps the draft as handed over until read, then the same built step for every reader, without the source', () => {
    const store = new TraceStore();
    const body = Buffer.from('{"id":"a","reply_to":"reply/a"}');
    store.record(pendingDelivered('a', body));
    const [first] = store.steps('a');
    expect(wireOf(first as never)).toEqual(amqpMessage({ headers: {} }, body));
    expect(wireSourceOf(first as never)).toBeUndefined();
    expect(store.steps('a')[0]).toBe(first);
    expect(JSON.parse(JSON.stringify(store.export())).steps[0].detail.wire.body.preview).toBe(body.toString());
  });

  it('a listener of every step (serve --json) prints the wire; the draft handed to others is unchanged', () => {
    const draft = pendingDelivered('a', Buffer.from('hello'));
    const printed = JSON.parse(JSON.stringify(withWire(draft)));
    expect(printed.detail.wire).toMatchObject({ protocol: 'amqp', body: { encoding: 'text', preview: 'hello', bytes: 5 } });
    expect('wire' in draft.detail).toBe(false);
    expect(withWire(printed)).toBe(printed);
  });
});

describe('the body budget', () => {
  it.each([
    ['built at once', delivered],
    ['left to be built', pendingDelivered],
  ])('drops the oldest previews once the store holds more than its budget, keeping sizes and headers (wires %s)', (_how, make) => {
    const store = new TraceStore({ maxBodyBytes: 10_000 });
    const body = Buffer.from('x'.repeat(3000));
    for (const id of ['a', 'b', 'c', 'd', 'e']) store.record(make(id, body));
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
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 6000 }), fc.boolean(), fc.boolean()), { maxLength: 60 }), (adds) => {
        const store = new TraceStore({ maxRpcs: 4, maxBodyBytes: 8000 });
        for (const [rpc, size, pending, binary] of adds) {
          // Text and binary (base64 previews are longer than their bytes): the budget counts body bytes either way.
          const body = Buffer.alloc(size, binary ? 0x01 : 0x61);
          store.add(pending ? pendingDelivered(`r${rpc}`, body) : delivered(`r${rpc}`, body));
        }
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
