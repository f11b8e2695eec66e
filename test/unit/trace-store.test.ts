import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { TraceStep, TraceStepDraft } from '../../src/shared/trace';
import { formatTimeline } from '../../src/shared/describe';
import { TraceStore } from '../../src/core/trace/trace-store';
import { firehoseStep, parseFirehoseMessage } from '../../src/core/trace/firehose';
import { mqttWire, WIRE_SOURCE, type PendingDraft } from '../../src/core/trace/message-view';

const composed = (rpcId: string, at = 1000): TraceStepDraft => ({
  rpcId,
  at,
  source: 'client',
  kind: 'composed',
  detail: { topic: 'rpc_queue', qos: 1, replyTopic: `reply/${rpcId}`, replyStrategy: 'per-request', bytes: 10 },
});

describe('TraceStore', () => {
  it('keeps at most maxRpcs RPCs, dropping the oldest and counting what it dropped', () => {
    const store = new TraceStore({ maxRpcs: 3 });
    for (const id of ['a', 'b', 'c', 'd', 'e']) store.add(composed(id));
    expect(store.rpcIds()).toEqual(['c', 'd', 'e']);
    expect(store.droppedRpcs).toBe(2);
  });

  it('caps the steps of one RPC', () => {
    const store = new TraceStore({ maxStepsPerRpc: 2 });
    for (let index = 0; index < 5; index += 1) store.add(composed('a', index));
    expect(store.steps('a')).toHaveLength(2);
    expect(store.droppedSteps).toBe(3);
  });

  it('hands out steps with increasing seq, immutable by type', () => {
    const store = new TraceStore();
    const first = store.add(composed('a'));
    const second = store.add(composed('b'));
    const renumber = (step: TraceStep): void => {
      // @ts-expect-error a step is never changed once numbered (checked by the type check, not at run time)
      step.seq = 0;
    };
    expect(renumber).toBeTypeOf('function');
    expect((second?.seq ?? 0) > (first?.seq ?? 0)).toBe(true);
  });

  it('orders steps by flow phase, so a late broker event still sits where it happened', () => {
    const store = new TraceStore();
    store.add(composed('a'));
    store.add({ rpcId: 'a', at: 1003, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/a', replyTopic: 'reply/a', topicMismatch: false, bytes: 4 } });
    store.add({ rpcId: 'a', at: 1004, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request' } });
    expect(store.steps('a').map((step) => step.kind)).toEqual(['composed', 'broker.published', 'mqtt.reply.received']);
    expect(formatTimeline(store.steps('a'))).toContain('routed to rpc_queue');
  });

  it("the terminal's timeline marks a step stamped before the one above it and says why, as the inspector does", () => {
    const store = new TraceStore();
    store.add(composed('t'));
    store.add({ rpcId: 't', at: 1015, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } });
    store.add({ rpcId: 't', at: 1012, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request' } });
    const lines = formatTimeline(store.steps('t')).split('\n');
    expect(lines.map((line) => line.slice(0, 10))).toEqual(['    +0 ms ', '   +15 ms ', '   +12 ms^', '^ broker.p']);
    expect(lines[3]).toBe(
      '^ broker.published: Stamped 3 ms before the step above: the broker routed the request before its PUBACK reached the client, which stamps the ack on arrival. The list follows the path, not the clocks.',
    );
    // In order: no mark, no note.
    expect(formatTimeline(store.steps('t').slice(0, 2))).not.toContain('^');
  });

  it('exports a versioned trace and imports it back with the same steps', () => {
    const store = new TraceStore();
    store.add(composed('a'));
    store.add({ rpcId: 'a', at: 1001, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: 'at amqp://bob:secret@host:5672' } });
    const exported = JSON.parse(JSON.stringify(store.export()));
    expect(exported).toMatchObject({ format: 'bridgescope-trace', version: 4 });
    expect(JSON.stringify(exported)).not.toContain('secret');
    const imported = TraceStore.import(exported);
    expect(imported.steps('a').map((step) => step.kind)).toEqual(['composed', 'rpc.failed']);
    expect(imported.summary('a').state).toBe('failed');
  });

  it('exports and imports who published and consumed each message, and a second reply the client ignored', () => {
    const store = new TraceStore();
    store.add(composed('b'));
    const party = { connection: '127.0.0.1:54538 -> 127.0.0.1:1883', channel: 3, user: 'guest' };
    store.add({ rpcId: 'b', at: 1001, source: 'broker', kind: 'broker.delivered', detail: { queue: 'q', routingKeys: ['q'], redelivered: false, leg: 'request', consumer: party } });
    store.add({ rpcId: 'b', at: 1002, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['reply.b'], routedQueues: ['s'], leg: 'reply', publisher: party } });
    store.add({ rpcId: 'b', at: 1003, source: 'client', kind: 'mqtt.reply.ignored', detail: { topic: 'reply/b', bytes: 12, reason: 'second-reply' } });
    const imported = TraceStore.import(JSON.parse(JSON.stringify(store.export())));
    expect(imported.steps('b').map((step) => step.detail)).toEqual(store.steps('b').map((step) => step.detail));
    // a file of the version before (no publishers, no ignored replies) still imports
    const older = { ...JSON.parse(JSON.stringify(store.export())), version: 3 };
    older.steps = older.steps.filter((step: { kind: string }) => step.kind !== 'mqtt.reply.ignored');
    expect(TraceStore.import(older).steps('b')).toHaveLength(3);
  });

  it('refuses a file that is not a trace, in one sentence', () => {
    expect(() => TraceStore.import({ format: 'something-else' })).toThrow(/not a BridgeScope trace/);
    expect(() => TraceStore.import({ format: 'bridgescope-trace', version: 1, exportedAt: 'x', dropped: { rpcs: 0, steps: 0 }, steps: [{ kind: 'nope' }] })).toThrow(
      /not a BridgeScope trace/,
    );
  });
});

describe("an RPC's routing keys the firehose compares its messages with", () => {
  const published = (rpcId: string, predictedRoutingKey: string): TraceStepDraft => ({
    rpcId,
    at: 1001,
    source: 'client',
    kind: 'mqtt.published',
    detail: { topic: 'rpc_queue', qosAsked: 1, predictedRoutingKey },
  });
  const replied = (rpcId: string, routingKey: string): TraceStepDraft => ({
    rpcId,
    at: 1002,
    source: 'server',
    kind: 'reply.published',
    detail: { worker: 'w1', exchange: 'amq.direct', routingKey, replyTopic: 'reply/a', mandatory: true },
  });

  for (const listened of [false, true]) {
    it(`are those of the first step of each kind, as findDetail reads them (steps ${listened ? 'built at once' : 'on the tape'})`, () => {
      const store = new TraceStore();
      if (listened) store.on('added', () => undefined);
      // record (what the firehose and attached writers use) keeps an unread step on the tape when nobody listens
      const keep = (draft: TraceStepDraft): void => void store.record(draft);
      // a second reply (a spoof, or a second worker) and a second publish come later: the first of each kind counts
      keep(replied('a', 'reply.a'));
      keep(composed('a'));
      keep(published('a', 'rpc_queue'));
      keep(published('a', 'rpc.queue'));
      keep(replied('a', 'reply.forged'));
      keep(published('b', 'rpc_queue'));
      expect(store.keysOf('a')).toMatchObject({ replyKey: 'reply.a', predictedKey: 'rpc_queue', repliedKey: 'reply.a' });
      expect(store.keysOf('a')?.replyKey).toBe(store.replyKeyOf(store.findDetail('a', 'composed')!.replyTopic));
      expect(store.keysOf('a')?.predictedKey).toBe(store.findDetail('a', 'mqtt.published')?.predictedRoutingKey);
      expect(store.keysOf('a')?.repliedKey).toBe(store.findDetail('a', 'reply.published')?.routingKey);
      expect(store.keysOf('b')).toMatchObject({ replyKey: undefined, predictedKey: 'rpc_queue', repliedKey: undefined });
      expect(store.keysOf('c')).toBeUndefined();
    });
  }

  it('go with their RPC when it is evicted, and come again with it (the reply key still finds the RPC id)', () => {
    const store = new TraceStore({ maxRpcs: 1 });
    store.record(composed('a'));
    store.record(composed('b'));
    expect(store.keysOf('a')).toBeUndefined();
    expect(store.rpcForReplyKey('reply.a')).toBe('a');
    store.record(published('a', 'rpc_queue'));
    expect(store.keysOf('a')).toMatchObject({ replyKey: undefined, predictedKey: 'rpc_queue' });
    expect(store.keysOf('a')?.replyKey).toBe(store.findDetail('a', 'composed')?.replyTopic);
  });
});

describe('steps handed over by an attached client or server', () => {
  const source = () => {
    const emitter = new EventEmitter<{ step: [TraceStepDraft] }>();
    return { emitter, emit: (draft: TraceStepDraft) => emitter.emit('step', draft) };
  };

  it('are there for any read at once, numbered in the order they were emitted, a direct add between them included', () => {
    const store = new TraceStore();
    const { emitter, emit } = source();
    store.attach(emitter);
    emit(composed('a', 1));
    store.add(composed('b', 2));
    emit(composed('c', 3));
    expect(store.size).toBe(3);
    expect(store.allSteps().map((step) => [step.rpcId, step.seq])).toEqual([
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
    expect(store.findDetail('c', 'composed')?.replyTopic).toBe('reply/c');
    expect(store.rpcForReplyKey('reply.c')).toBe('c');
  });

  it('are stored by the next turn even when nothing reads, and announced then', async () => {
    const store = new TraceStore();
    const { emitter, emit } = source();
    store.attach(emitter);
    const announced: string[] = [];
    store.on('added', (step) => announced.push(step.rpcId));
    emit(composed('a'));
    emit(composed('b'));
    expect(announced).toEqual([]);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(announced).toEqual(['a', 'b']);
  });

  it('are all stored when an "added" listener throws on one of them, and counted by clear', () => {
    const store = new TraceStore();
    const { emitter, emit } = source();
    store.attach(emitter);
    store.on('added', (step) => {
      if (step.rpcId === 'a') throw new Error('a listener bug');
    });
    emit(composed('a'));
    emit(composed('b'));
    expect(store.rpcIds()).toEqual(['a', 'b']);
    emit(composed('c'));
    expect(store.clear()).toBe(3);
    expect(store.size).toBe(0);
  });

  it('let a firehose request note its reply key after the composed step emitted before it', () => {
    const store = new TraceStore();
    const { emitter, emit } = source();
    store.attach(emitter);
    emit({ rpcId: 'first', at: 1, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic: 'reply/shared', replyStrategy: 'shared', bytes: 10 } });
    store.noteReplyKey('reply.shared', 'second');
    expect(store.rpcForReplyKey('reply.shared')).toBe('second');
  });
});

describe('firehose events', () => {
  const message = (routingKey: string, headers: Record<string, unknown>, body: string) => ({
    fields: { routingKey, deliveryTag: 1, redelivered: false, exchange: 'amq.rabbitmq.trace', consumerTag: 'c' },
    properties: { headers } as never,
    content: Buffer.from(body),
  });

  /** A firehose message made into its step and stored, as the tracer does. */
  const kept = (store: TraceStore, amqpMessage: ReturnType<typeof message>) => {
    const event = parseFirehoseMessage(amqpMessage);
    const draft = event ? firehoseStep(event, store) : undefined;
    if (draft) store.add(draft);
    return draft;
  };

  it('reads publish and deliver events with their headers', () => {
    const publish = parseFirehoseMessage(message('publish.amq.direct', { routing_keys: ['rpc_queue'], routed_queues: [] }, '{}'));
    expect(publish).toMatchObject({ type: 'publish', name: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: [] });
    const deliver = parseFirehoseMessage(message('deliver.mqtt-subscription-dqos1', { routing_keys: ['reply.x'], redelivered: 1 }, 'done'));
    expect(deliver).toMatchObject({ type: 'deliver', name: 'mqtt-subscription-dqos1', redelivered: true });
  });

  it('joins a plain-text reply to its RPC by the reply routing key', () => {
    const store = new TraceStore();
    store.add(composed('r1'));
    const event = parseFirehoseMessage(message('publish.amq.direct', { routing_keys: ['reply.r1'], routed_queues: ['q'] }, 'done'));
    const step = event ? firehoseStep(event, store) : undefined;
    expect(step).toMatchObject({ rpcId: 'r1', kind: 'broker.published', detail: { leg: 'reply' } });
  });

  it("keeps the reply topic an RPC not sent here names, so its trace reads it (not '?'), and its reply joins it", () => {
    const store = new TraceStore();
    const event = parseFirehoseMessage(message('publish.amq.direct', { routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'] }, '{"id":"dev-1","reply_to":"reply/dev-1","params":{}}'));
    const step = event ? firehoseStep(event, store) : undefined;
    expect(step).toMatchObject({ rpcId: 'dev-1', kind: 'broker.published', detail: { leg: 'request', replyTopic: 'reply/dev-1' } });
    if (step) store.add(step);
    const reply = parseFirehoseMessage(message('publish.amq.direct', { routing_keys: ['reply.dev-1'], routed_queues: ['mqtt-subscription-devqos1'] }, 'ok'));
    const replyStep = reply ? firehoseStep(reply, store) : undefined;
    expect(replyStep).toMatchObject({ rpcId: 'dev-1', detail: { leg: 'reply' } });
    expect(replyStep?.detail).not.toHaveProperty('replyTopic');
    if (replyStep) store.add(replyStep);
    expect(store.summary('dev-1')).toMatchObject({ replyTopic: 'reply/dev-1', brokerRequestKeys: ['rpc_queue'], brokerReplyKeys: ['reply.dev-1'] });
    // An export keeps it: a trace read elsewhere says the same.
    expect(TraceStore.import(JSON.parse(JSON.stringify(store.export()))).summary('dev-1').replyTopic).toBe('reply/dev-1');
  });

  it('keeps apart the RPCs of devices that count their ids from 1: another device\'s, and a device\'s next after a reboot', () => {
    const store = new TraceStore();
    const copy = (key: string, headers: Record<string, unknown>, body: string): string | undefined => kept(store, message(key, headers, body))?.rpcId;
    const request = (device: string) => `{"id":1,"reply_to":"reply/${device}","params":{}}`;
    const routed = { routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'] };
    const delivered = { routing_keys: ['rpc_queue'], redelivered: 0 };
    expect(copy('publish.amq.direct', routed, request('a'))).toBe('1');
    // Device B's first request, in flight beside A's: its publish, its delivery, and its reply (which echoes the id).
    expect(copy('publish.amq.direct', routed, request('b'))).toBe('1 (reply/b)');
    expect(copy('deliver.rpc_queue', delivered, request('a'))).toBe('1');
    expect(copy('deliver.rpc_queue', delivered, request('b'))).toBe('1 (reply/b)');
    expect(copy('publish.amq.direct', { routing_keys: ['reply.b'], routed_queues: ['mqtt-subscription-bqos1'] }, '{"id":1,"result":"b"}')).toBe('1 (reply/b)');
    expect(copy('publish.amq.direct', { routing_keys: ['reply.a'], routed_queues: ['mqtt-subscription-aqos1'] }, '{"id":1,"result":"a"}')).toBe('1');
    // A reply on a key nobody's request named is the id's first RPC's, on a wrong key (its warning says so).
    expect(copy('publish.amq.direct', { routing_keys: ['reply.zzz'], routed_queues: [] }, '{"id":1,"result":"?"}')).toBe('1');
    // Device A rebooted and counts from 1 again, on the same reply topic: its answered RPC "1" is closed, this is the next.
    expect(copy('publish.amq.direct', routed, request('a'))).toBe('1 #2');
    expect(copy('deliver.rpc_queue', delivered, request('a'))).toBe('1 #2');
    expect(copy('publish.amq.direct', { routing_keys: ['reply.a'], routed_queues: ['mqtt-subscription-aqos1'] }, '{"id":1,"result":"a2"}')).toBe('1 #2');
    // A retry of a request not answered yet is the same RPC.
    expect(copy('publish.amq.direct', routed, request('a'))).toBe('1 #3');
    expect(copy('publish.amq.direct', routed, request('a'))).toBe('1 #3');
    expect(store.steps('1').map((step) => step.kind)).toEqual(['broker.published', 'broker.delivered', 'broker.published', 'broker.published']);
    expect(store.summary('1 (reply/b)')).toMatchObject({ replyTopic: 'reply/b', brokerReplyKeys: ['reply.b'] });
    expect(store.summary('1 #2')).toMatchObject({ replyTopic: 'reply/a', brokerReplyKeys: ['reply.a'] });
    // The app's own RPCs are never split: their ids are its own (a copy of its request after its reply is still it).
    store.add(composed('own-1'));
    const own = '{"id":"own-1","reply_to":"reply/own-1"}';
    expect(copy('publish.amq.direct', { routing_keys: ['reply.own-1'], routed_queues: ['q'] }, '{"id":"own-1"}')).toBe('own-1');
    expect(copy('publish.amq.direct', routed, own)).toBe('own-1');
  });

  it('gives a device\'s next RPC a name of its own when the first under its id went from the store (its later one still there)', () => {
    const store = new TraceStore({ maxRpcs: 3 });
    const copy = (key: string, headers: Record<string, unknown>, body: string): string | undefined => kept(store, message(key, headers, body))?.rpcId;
    const request = '{"id":7,"reply_to":"reply/a"}';
    const routed = { routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'] };
    const replied = { routing_keys: ['reply.a'], routed_queues: ['mqtt-subscription-aqos1'] };
    expect(copy('publish.amq.direct', routed, request)).toBe('7');
    expect(copy('publish.amq.direct', replied, '{"id":7}')).toBe('7');
    expect(copy('publish.amq.direct', routed, request)).toBe('7 #2');
    expect(copy('publish.amq.direct', replied, '{"id":7}')).toBe('7 #2');
    // Two other RPCs push "7" out of the store (3 kept): "7 #2" is still there.
    store.add(composed('x1'));
    store.add(composed('x2'));
    expect(store.rpcIds()).toEqual(['7 #2', 'x1', 'x2']);
    // The device's next request is "7 #3" (the names under an id outlive their RPCs), and its copies join it.
    expect(copy('publish.amq.direct', routed, request)).toBe('7 #3');
    expect(copy('deliver.rpc_queue', { routing_keys: ['rpc_queue'], redelivered: 0 }, request)).toBe('7 #3');
    expect(copy('publish.amq.direct', replied, '{"id":7}')).toBe('7 #3');
    expect(copy('publish.amq.direct', routed, request)).toBe('7 #4');
    // "7 #3" and "7 #4" in the store, "7 #2" gone: an open "7 #4" keeps its copies when the RPCs before it go.
    store.add(composed('x3'));
    store.add(composed('x4'));
    expect(store.rpcIds()).toEqual(['7 #4', 'x3', 'x4']);
    expect(copy('deliver.rpc_queue', { routing_keys: ['rpc_queue'], redelivered: 0 }, request)).toBe('7 #4');
    expect(copy('publish.amq.direct', replied, '{"id":7}')).toBe('7 #4');
  });

  it('reads the publish and the delivery of a message of no RPC it holds, on a key no request named for replies, as one leg: a request', () => {
    const store = new TraceStore();
    const seen = (key: string, headers: Record<string, unknown>, body: string) => {
      const draft = kept(store, message(key, headers, body));
      return draft?.detail && 'leg' in draft.detail ? draft.detail.leg : undefined;
    };
    expect(seen('publish.amq.direct', { routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'] }, '{"id":99}')).toBe('request');
    expect(seen('deliver.rpc_queue', { routing_keys: ['rpc_queue'], redelivered: 0 }, '{"id":99}')).toBe('request');
    // A reply on a key a request named is still a reply, with or without its RPC's id.
    seen('publish.amq.direct', { routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'] }, '{"id":"r","reply_to":"reply/r"}');
    expect(seen('publish.amq.direct', { routing_keys: ['reply.r'], routed_queues: ['q'] }, '{"id":"other"}')).toBe('reply');
  });

  it('gives a late reply to the request before a reboot, not to the answered one after it; a stray reply first merges no devices', () => {
    const store = new TraceStore();
    const copy = (key: string, headers: Record<string, unknown>, body: string): string | undefined => kept(store, message(key, headers, body))?.rpcId;
    const routed = { routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'] };
    const reply = (device: string) => ({ routing_keys: [`reply.${device}`], routed_queues: [`mqtt-subscription-${device}qos1`] });
    const request = (device: string) => `{"id":6,"reply_to":"reply/${device}"}`;
    expect(copy('publish.amq.direct', routed, request('r2'))).toBe('6');
    // Its worker is slow: the verdict at the timeout closes it; the device reboots and sends id 6 again, answered at once.
    store.add({ rpcId: '6', at: 6000, source: 'broker', kind: 'rpc.diagnosed', detail: { verdict: { code: 'server-slow', hop: 'server', message: 'm', evidence: [] } } });
    expect(copy('publish.amq.direct', routed, request('r2'))).toBe('6 #2');
    expect(copy('publish.amq.direct', reply('r2'), '{"id":6,"worker":"fast"}')).toBe('6 #2');
    // The slow worker's reply to the first comes 7 s late: the first's, the one with no reply yet.
    expect(copy('publish.amq.direct', reply('r2'), '{"id":6,"worker":"slow"}')).toBe('6');
    expect(store.summary('6 #2')).toMatchObject({ brokerReplyKeys: ['reply.r2'] });
    expect(store.steps('6 #2').filter((step) => step.kind === 'broker.published')).toHaveLength(2);

    // A reply seen before any request with its id (tracing began mid-flight): devices A and B that use the id next stay apart.
    expect(copy('publish.amq.direct', reply('a'), '{"id":9}')).toBe('9');
    expect(copy('publish.amq.direct', routed, request('a').replace('6', '9'))).toBe('9');
    expect(copy('publish.amq.direct', routed, request('b').replace('6', '9'))).toBe('9 (reply/b)');
    expect(copy('publish.amq.direct', reply('b'), '{"id":9}')).toBe('9 (reply/b)');
  });

  it("settles an RPC not sent here by its verdict: a watched reply's round trip is the reply's publish, an unanswered one has none", () => {
    const store = new TraceStore();
    const request = (rpcId: string, at: number): TraceStepDraft => ({ rpcId, at, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request', replyTopic: 'reply/w' } });
    const diagnosed = (rpcId: string, at: number, code: 'replied' | 'server-slow'): TraceStepDraft => ({ rpcId, at, source: 'broker', kind: 'rpc.diagnosed', detail: { verdict: { code, hop: code === 'replied' ? 'mqtt-deliver' : 'server', message: 'm', evidence: [] } } });
    store.add(request('w1', 1000));
    store.add({ rpcId: 'w1', at: 1040, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['reply.w'], routedQueues: ['mqtt-subscription-dqos1'], leg: 'reply' } });
    store.add(diagnosed('w1', 1040, 'replied'));
    expect(store.summary('w1')).toMatchObject({ state: 'replied', durationMs: 40 });
    store.add(request('w2', 2000));
    store.add(diagnosed('w2', 2000, 'server-slow'));
    expect(store.summary('w2').state).toBe('failed');
    expect(store.summary('w2').durationMs).toBeUndefined();
    // Seen by the firehose and not judged (not a watch's): still pending, as before.
    store.add(request('w3', 3000));
    expect(store.summary('w3').state).toBe('pending');
  });

  it('says when steps of the request came after its verdict (a worker back after the late-reply watch ended), and not for a reply', () => {
    const store = new TraceStore();
    const verdict = (rpcId: string, at: number, code: 'no-consumer' | 'late-reply' | 'replied', hop: 'queue' | 'server' | 'mqtt-deliver'): TraceStepDraft => ({ rpcId, at, source: 'client', kind: 'rpc.diagnosed', detail: { verdict: { code, hop, message: 'm', evidence: [] } } });
    const received = (rpcId: string, at: number): TraceStepDraft => ({ rpcId, at, source: 'server', kind: 'worker.received', detail: { worker: 'worker-1', consumerTag: 'c1', queue: 'rpc_queue', routingKey: 'rpc_queue', redelivered: false } });
    const replied = (rpcId: string, at: number): TraceStepDraft => ({ rpcId, at, source: 'server', kind: 'reply.published', detail: { worker: 'worker-1', exchange: 'amq.direct', routingKey: `reply.${rpcId}`, replyTopic: `reply/${rpcId}`, mandatory: true } });
    const failed = (rpcId: string, at: number): TraceStepDraft => ({ rpcId, at, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: 'No reply within 1000 ms.' } });
    store.add(composed('a', 1000));
    store.add(failed('a', 2000));
    store.add(verdict('a', 2010, 'no-consumer', 'queue'));
    expect(store.summary('a').warnings.join(' ')).not.toContain('decided');
    store.add(received('a', 76_000));
    store.add(replied('a', 76_001));
    // Listed by the flow's order (the verdict last), the steps after it are told by the order they came in.
    expect(store.steps('a').at(-1)?.kind).toBe('rpc.diagnosed');
    expect(store.summary('a').warnings).toContain('The verdict above was decided 74 s before a worker replied (the steps after it): it does not count them, so read them for what happened next.');
    // Decided again after them (the watch's revision): nothing to say.
    store.add(verdict('a', 76_002, 'late-reply', 'server'));
    expect(store.summary('a').warnings.join(' ')).not.toContain('decided');
    // Its round trip runs to the late reply, not to the timeout listed after it.
    expect(store.summary('a').durationMs).toBe(75_001);
    // Its reply returned by the broker: the call's subscription went with it, which is why (no "was it subscribed?").
    store.add({ rpcId: 'a', at: 76_003, source: 'server', kind: 'reply.confirmed', detail: { worker: 'worker-1', outcome: 'returned', returnReason: 'NO_ROUTE' } });
    expect(store.summary('a').warnings).toContain('The broker dropped the reply as unroutable: nothing is bound for "reply.a" (it came after the client had given up, and the reply subscription was gone by then).');
    // A reply that reached the client: a later delivery of its request (a redelivery) changes nothing of it.
    store.add(composed('b', 1000));
    store.add(verdict('b', 1050, 'replied', 'mqtt-deliver'));
    store.add(received('b', 1060));
    expect(store.summary('b').warnings.join(' ')).not.toContain('decided');
  });

  it("an RPC not sent here: a reply on another topic (a '.' in a level) is replied all the same; a reply on a wrong key to a wildcard subscriber is no '.' case", () => {
    const store = new TraceStore();
    const request = (rpcId: string, replyTopic: string): TraceStepDraft => ({ rpcId, at: 1000, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request', replyTopic } });
    const delivered = (rpcId: string, key: string): TraceStepDraft => ({ rpcId, at: 1040, source: 'broker', kind: 'broker.delivered', detail: { queue: 'mqtt-subscription-devqos1', routingKeys: [key], redelivered: false, leg: 'reply' } });
    const diagnosed = (rpcId: string, code: 'reply-on-other-topic' | 'reply-unroutable'): TraceStepDraft => ({ rpcId, at: 1041, source: 'broker', kind: 'rpc.diagnosed', detail: { verdict: { code, hop: 'mqtt-deliver', message: 'm', evidence: [] } } });
    store.add(request('dot', 'reply/v1.2/dev'));
    store.add(delivered('dot', 'reply.v1.2.dev'));
    store.add(diagnosed('dot', 'reply-on-other-topic'));
    expect(store.summary('dot')).toMatchObject({ state: 'replied', durationMs: 40, topicMismatch: true, arrivedOn: 'reply/v1/2/dev' });
    store.add(request('wrong', 'reply/dev'));
    store.add(delivered('wrong', 'other.dev'));
    expect(store.summary('wrong').topicMismatch).toBe(false);
  });

  // Headers as RabbitMQ 3.10.8 sent them (docs/RABBITMQ.md): the connection name, the channel and the user.
  const who = (connection: string, channel: number) => ({ connection: Buffer.from(connection), channel, user: Buffer.from('guest') });

  it('keeps who published a message and who it was delivered to (connection, channel, user)', () => {
    const store = new TraceStore();
    store.add(composed('r2'));
    const published = parseFirehoseMessage(message('publish.amq.direct', { routing_keys: ['reply.r2'], routed_queues: ['q'], ...who('127.0.0.1:54538 -> 127.0.0.1:1883', 3) }, '{"id":"r2"}'));
    expect(published ? firehoseStep(published, store) : undefined).toMatchObject({
      kind: 'broker.published',
      detail: { leg: 'reply', publisher: { connection: '127.0.0.1:54538 -> 127.0.0.1:1883', channel: 3, user: 'guest' } },
    });
    const delivered = parseFirehoseMessage(message('deliver.rpc_queue', { routing_keys: ['rpc_queue'], redelivered: 0, ...who('127.0.0.1:59314 -> 127.0.0.1:5672', 1) }, '{"id":"r2","reply_to":"reply/r2"}'));
    expect(delivered ? firehoseStep(delivered, store) : undefined).toMatchObject({
      kind: 'broker.delivered',
      detail: { leg: 'request', consumer: { connection: '127.0.0.1:59314 -> 127.0.0.1:5672', channel: 1, user: 'guest' } },
    });
  });

  it('does not say the reply was dropped when one reply was routed and a second one (after the reply topic went) was not', () => {
    const store = new TraceStore();
    store.add(composed('r4'));
    const reply = (routedQueues: string[]): TraceStepDraft => ({
      rpcId: 'r4', at: 1001, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['reply.r4'], routedQueues, leg: 'reply' },
    });
    store.add(reply(['mqtt-subscription-dqos1']));
    store.add(reply([]));
    expect(store.summary('r4').warnings.join(' ')).not.toMatch(/dropped the reply/);
    expect(store.summary('r4').replyRoutedQueues).toEqual(['mqtt-subscription-dqos1']);
  });

  it('calls the request delivered to an MQTT subscriber of the request topic a request, and a forged reply with a reply_to a reply', () => {
    const store = new TraceStore();
    store.add(composed('r3'));
    const copy = parseFirehoseMessage(message('deliver.mqtt-subscription-evilqos1', { routing_keys: ['rpc_queue'], redelivered: 0 }, '{"id":"r3","reply_to":"reply/r3"}'));
    expect(copy ? firehoseStep(copy, store) : undefined).toMatchObject({ kind: 'broker.delivered', detail: { leg: 'request', queue: 'mqtt-subscription-evilqos1' } });
    const forged = parseFirehoseMessage(message('publish.amq.direct', { routing_keys: ['reply.r3'], routed_queues: ['q'] }, '{"id":"r3","reply_to":"elsewhere/x","result":"INJECTED"}'));
    expect(forged ? firehoseStep(forged, store) : undefined).toMatchObject({ kind: 'broker.published', detail: { leg: 'reply' } });
    expect(store.rpcForReplyKey('elsewhere.x')).toBeUndefined();
  });

  it("calls a reply delivered to a queue that is not an MQTT subscription (a watcher's tap) a reply, by the reply key its request named", () => {
    // Someone else's RPC (the trace command): no composed step, only what the firehose saw.
    const store = new TraceStore();
    const step = (key: string, headers: Record<string, unknown>, body: string) => {
      const event = parseFirehoseMessage(message(key, headers, body));
      const draft = event ? firehoseStep(event, store) : undefined;
      if (draft) store.add(draft);
      return draft && [draft.kind, 'leg' in draft.detail ? draft.detail.leg : undefined, 'queue' in draft.detail ? draft.detail.queue : undefined];
    };
    expect(step('deliver.amq.gen-tap', { routing_keys: ['rpc_queue'], redelivered: 0 }, '{"id":"f1","reply_to":"reply/f1"}')).toEqual(['broker.delivered', 'request', 'amq.gen-tap']);
    expect(step('deliver.rpc_queue', { routing_keys: ['rpc_queue'], redelivered: 0 }, '{"id":"f1","reply_to":"reply/f1"}')).toEqual(['broker.delivered', 'request', 'rpc_queue']);
    // A second device request naming the same reply topic: the first one's reply is still a reply.
    step('deliver.rpc_queue', { routing_keys: ['rpc_queue'], redelivered: 0 }, '{"id":"f2","reply_to":"reply/f1"}');
    expect(step('deliver.amq.gen-tap', { routing_keys: ['reply.f1'], redelivered: 0 }, '{"id":"f1","result":1}')).toEqual(['broker.delivered', 'reply', 'amq.gen-tap']);
    expect(step('deliver.mqtt-subscription-devqos1', { routing_keys: ['reply.f1'], redelivered: 0 }, '{"id":"f1","result":1}')).toEqual(['broker.delivered', 'reply', 'mqtt-subscription-devqos1']);
  });

  it('joins the copies of requests sent as given (no id in the body) to their RPCs by key, size and bytes, one copy each, oldest first', () => {
    const store = new TraceStore();
    const sentAsGiven = (rpcId: string, body: string): PendingDraft => ({
      rpcId,
      at: 1000,
      source: 'client',
      kind: 'composed',
      detail: { topic: 'devices/rpc', qos: 1, replyTopic: `reply/${rpcId}`, replyStrategy: 'per-request', bytes: Buffer.byteLength(body), asGiven: 'without-reply-topic' },
      [WIRE_SOURCE]: mqttWire({ qos: 1, retain: false }, Buffer.from(body)),
    });
    // Two calls send the same text at once: each copy of the broker's goes to one of them, in the order they were sent.
    store.add(sentAsGiven('a', 'hello'));
    store.add(sentAsGiven('b', 'hello'));
    const seen = (key: string, headers: Record<string, unknown>, body: string) => {
      const event = parseFirehoseMessage(message(key, headers, body));
      const step = event ? firehoseStep(event, store) : undefined;
      if (step) store.add(step);
      return step && [step.rpcId, step.kind, 'leg' in step.detail ? step.detail.leg : undefined];
    };
    const published = { routing_keys: ['devices.rpc'], routed_queues: ['amq.gen-tap', 'rpc_queue', 'mqtt-subscription-devqos1'] };
    expect(seen('publish.amq.topic', published, 'hello')).toEqual(['a', 'broker.published', 'request']);
    expect(seen('publish.amq.topic', published, 'hello')).toEqual(['b', 'broker.published', 'request']);
    // Someone else's identical request after both were seen is nobody's; so is another body or another key.
    expect(seen('publish.amq.topic', published, 'hello')).toBeUndefined();
    expect(seen('publish.amq.topic', published, 'hellO')).toBeUndefined();
    expect(seen('publish.amq.topic', { routing_keys: ['devices.other'], routed_queues: [] }, 'hello')).toBeUndefined();
    // One request, three queues (a watcher's tap, the server's, a device subscribed to the request topic): each copy is its.
    const delivered = { routing_keys: ['devices.rpc'], redelivered: 0 };
    for (const queue of ['amq.gen-tap', 'rpc_queue', 'mqtt-subscription-devqos1']) {
      expect(seen(`deliver.${queue}`, delivered, 'hello')).toEqual(['a', 'broker.delivered', 'request']);
    }
    expect(seen('deliver.rpc_queue', delivered, 'hello')).toEqual(['b', 'broker.delivered', 'request']);
    // A third delivery from the server's queue is no one's; a redelivery (rejected with requeue) is the oldest delivered there.
    expect(seen('deliver.rpc_queue', delivered, 'hello')).toBeUndefined();
    expect(seen('deliver.rpc_queue', { ...delivered, redelivered: 1 }, 'hello')).toEqual(['a', 'broker.delivered', 'request']);
    // A queue the publish was not routed to never takes it.
    expect(seen('deliver.elsewhere', delivered, 'hello')).toBeUndefined();
    expect(store.steps('b').map((step) => step.kind)).toEqual(['composed', 'broker.published', 'broker.delivered']);
    expect(store.steps('a').filter((step) => step.kind === 'broker.delivered')).toHaveLength(4);
  });

  it('never gives a retry the copies of an earlier send of the same body: routed nowhere, or gone from the store', () => {
    const store = new TraceStore({ maxRpcs: 2 });
    const send = (rpcId: string): void =>
      void store.add({
        rpcId, at: 1000, source: 'client', kind: 'composed',
        detail: { topic: 'rpc_queue', qos: 1, replyTopic: `reply/${rpcId}`, replyStrategy: 'per-request', bytes: 5, asGiven: 'without-reply-topic' },
        [WIRE_SOURCE]: mqttWire({ qos: 1, retain: false }, Buffer.from('hello')),
      } as PendingDraft);
    const copy = (key: string, headers: Record<string, unknown>) => {
      const event = parseFirehoseMessage(message(key, headers, 'hello'));
      return event ? firehoseStep(event, store)?.rpcId : undefined;
    };
    send('first');
    // Nothing was bound yet: routed nowhere.
    expect(copy('publish.amq.direct', { routing_keys: ['rpc_queue'], routed_queues: [] })).toBe('first');
    send('retry');
    expect(copy('publish.amq.direct', { routing_keys: ['rpc_queue'], routed_queues: ['rpc_queue'] })).toBe('retry');
    expect(copy('deliver.rpc_queue', { routing_keys: ['rpc_queue'], redelivered: 0 })).toBe('retry');
    // Two more RPCs push "first" and "retry" out of the store (maxRpcs 2): a later identical copy is nobody's.
    store.add(composed('x1'));
    store.add(composed('x2'));
    expect(copy('deliver.rpc_queue', { routing_keys: ['rpc_queue'], redelivered: 1 })).toBeUndefined();
  });

  it("takes the routing key the client predicted for a body sent as given (the broker's own topic rules)", () => {
    const store = new TraceStore();
    const sent: PendingDraft = {
      rpcId: 's1',
      at: 1000,
      source: 'client',
      kind: 'composed',
      detail: { topic: 'spBv1.0/g/DCMD/e', qos: 1, replyTopic: 'reply/s1', replyStrategy: 'per-request', bytes: 2, asGiven: 'with-response-topic' },
      [WIRE_SOURCE]: mqttWire({ qos: 1, retain: false }, Buffer.from('on')),
    };
    store.add(sent);
    store.add({ rpcId: 's1', at: 1001, source: 'client', kind: 'mqtt.published', detail: { topic: 'spBv1.0/g/DCMD/e', qosAsked: 1, predictedRoutingKey: 'spBv1___0.g.DCMD.e' } });
    const event = parseFirehoseMessage(message('publish.amq.topic', { routing_keys: ['spBv1___0.g.DCMD.e'], routed_queues: ['q'] }, 'on'));
    expect(event ? firehoseStep(event, store) : undefined).toMatchObject({ rpcId: 's1', detail: { leg: 'request', matchesPrediction: true } });
  });

  it("says why a reply reached no device: another key than the reply topic's, or only a watch's tap bound for it", () => {
    const store = new TraceStore();
    const brokerReply = (rpcId: string, key: string, routedQueues: string[]): TraceStepDraft => ({ rpcId, at: 1050, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: [key], routedQueues, leg: 'reply' } });
    store.add(composed('w'));
    store.add(brokerReply('w', 'replies.w', []));
    // The server replied with a key of its own: not "was the reply topic subscribed?" (it was).
    expect(store.summary('w').warnings).toContain('The broker dropped the reply as unroutable: nothing is bound for "replies.w" (the reply topic "reply/w" is bound as "reply.w": the server replied with another key).');
    store.add(composed('t'));
    store.add(brokerReply('t', 'reply.t', ['bridgescope.watch-tap.6d82768d']));
    expect(store.summary('t').warnings).toContain('No device got the reply: only a BridgeScope watch\'s tap is bound for "reply.t" (was the reply topic subscribed?).');
  });
});
