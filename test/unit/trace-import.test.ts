import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TraceMessage, TraceStepDraft } from '../../src/shared/trace';
import { describeStep, formatTimeline } from '../../src/shared/describe';
import { summarize } from '../../src/shared/trace-summary';
import { BridgeError } from '../../src/core/errors';
import { TraceStore } from '../../src/core/trace/trace-store';

const requestWire: TraceMessage = {
  protocol: 'amqp',
  properties: { content_type: null, delivery_mode: 2 },
  headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false },
  body: { bytes: 10, encoding: 'json', preview: '{"id":"r1"}', shown: 10 },
};

/** One step of every kind, as the client, the server and the broker emit them (with the messages they carry). */
const everyKind: TraceStepDraft[] = [
  {
    rpcId: 'r1',
    at: 1000,
    source: 'client',
    kind: 'composed',
    detail: {
      topic: 'rpc_queue',
      qos: 1,
      replyTopic: 'reply/r1',
      replyStrategy: 'per-request',
      bytes: 10,
      method: 'm',
      loadRun: { every: 10, kept: 'failed' },
      wire: { protocol: 'mqtt', properties: { qos: 1, retain: false }, headers: {}, body: { bytes: 10, encoding: 'json', preview: '{"id":"r1"}', shown: 10 } },
    },
  },
  { rpcId: 'r1', at: 1001, source: 'client', kind: 'mqtt.subscribed', detail: { topic: 'reply/r1', qosAsked: 1, qosGranted: 1 } },
  { rpcId: 'r1', at: 1002, source: 'client', kind: 'mqtt.published', detail: { topic: 'rpc_queue', qosAsked: 1, predictedRoutingKey: 'rpc_queue' } },
  { rpcId: 'r1', at: 1003, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 2, acknowledgedAs: 1, packet: 'puback' } },
  {
    rpcId: 'r1',
    at: 1004,
    source: 'broker',
    kind: 'broker.published',
    detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], predictedRoutingKey: 'rpc_queue', matchesPrediction: true, leg: 'request', wire: requestWire },
  },
  { rpcId: 'r1', at: 1005, source: 'broker', kind: 'broker.delivered', detail: { queue: 'rpc_queue', routingKeys: ['rpc_queue'], redelivered: false, leg: 'request', wire: requestWire } },
  { rpcId: 'r1', at: 1006, source: 'server', kind: 'worker.received', detail: { worker: 'w1', consumerTag: 'c1', queue: 'rpc_queue', routingKey: 'rpc_queue', redelivered: false } },
  { rpcId: 'r1', at: 1007, source: 'server', kind: 'handler.finished', detail: { worker: 'w1', durationMs: 1.5, outcome: 'error', errorCode: 'E' } },
  { rpcId: 'r1', at: 1008, source: 'server', kind: 'reply.published', detail: { worker: 'w1', exchange: 'amq.direct', routingKey: 'reply.r1', replyTopic: 'reply/r1', mandatory: true } },
  { rpcId: 'r1', at: 1009, source: 'server', kind: 'reply.confirmed', detail: { worker: 'w1', outcome: 'returned', returnReason: 'NO_ROUTE' } },
  {
    rpcId: 'r1',
    at: 1010,
    source: 'client',
    kind: 'mqtt.reply.received',
    detail: {
      topic: 'reply/r1',
      replyTopic: 'reply/r1',
      topicMismatch: false,
      bytes: 4,
      wire: { protocol: 'mqtt', properties: { qos: 1, retain: false, dup: false }, headers: {}, body: { bytes: 4, encoding: 'binary', preview: 'AAECAw==', shown: 4, dropped: false } },
    },
  },
  { rpcId: 'r2', at: 1011, source: 'server', kind: 'request.rejected', detail: { worker: 'w2', reason: 'not JSON', bytes: 3 } },
  { rpcId: 'r2', at: 1012, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: 'no reply' } },
  {
    rpcId: 'r2',
    at: 1013,
    source: 'client',
    kind: 'rpc.diagnosed',
    detail: { verdict: { code: 'request-rejected', hop: 'server', message: 'The server on queue "rpc_queue" rejected the request (not JSON).', evidence: ['server: rejected the request: not JSON'] } },
  },
];

/** Every RPC of a store as a reader sees it: its steps in flow order (without the store's own numbering) and its summary. */
function rpcsOf(store: TraceStore): Record<string, { steps: unknown[]; summary: unknown }> {
  return Object.fromEntries(
    store.rpcIds().map((rpcId) => [rpcId, { steps: store.steps(rpcId).map(({ seq: _seq, ...step }) => step), summary: store.summary(rpcId) }]),
  );
}

function validExport(): Record<string, unknown> {
  const store = new TraceStore();
  for (const draft of everyKind) store.add(draft);
  return JSON.parse(JSON.stringify(store.export())) as Record<string, unknown>;
}

type Json = unknown;
/** Every path into a JSON value (objects and arrays), the root excluded. */
function pathsOf(value: Json, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (Array.isArray(value)) return value.flatMap((item, index) => [[...prefix, index], ...pathsOf(item, [...prefix, index])]);
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => [[...prefix, key], ...pathsOf(item, [...prefix, key])]);
  }
  return [];
}

type Mutation = { pick: number; change: { drop: true } | { value: Json } };

function mutate(root: Record<string, unknown>, mutation: Mutation): void {
  const paths = pathsOf(root);
  const path = paths[mutation.pick % paths.length] as Array<string | number>;
  let parent: unknown = root;
  for (const key of path.slice(0, -1)) parent = (parent as Record<string | number, unknown>)[key];
  const last = path.at(-1) as string | number;
  if ('drop' in mutation.change) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete (parent as Record<string, unknown>)[last];
  } else {
    // A copy: fast-check may hand the same object to two mutations, and a file read from disk has no shared parts.
    (parent as Record<string | number, unknown>)[last] = JSON.parse(JSON.stringify(mutation.change.value)) as Json;
  }
}

/** Values of the wrong type a hand-edited or truncated export tends to carry. */
const wrongValue = fc.oneof(
  fc.constantFrom(null, '', 'x', 0, -1, 1.5, 3, 1e308, true, false, [], {}, ['x'], [1], { a: 1 }, 'composed', 'request', 'result', 'puback'),
  fc.jsonValue({ maxDepth: 2 }),
);
const mutation: fc.Arbitrary<Mutation> = fc.record({
  pick: fc.nat(),
  change: fc.oneof(fc.constant({ drop: true as const }), wrongValue.map((value) => ({ value }))),
});

/** Import, then render every RPC as the terminal and the inspector do; returns 'imported' or the refusal. */
function importAndRender(json: unknown): string {
  let store: TraceStore;
  try {
    store = TraceStore.import(json);
  } catch (err) {
    // Refused: it must be the one-sentence bad-input error, never an internal error.
    expect(err).toBeInstanceOf(BridgeError);
    expect((err as BridgeError).code).toBe('bad-input');
    expect((err as BridgeError).message).toMatch(/^This is not a BridgeScope trace/);
    return 'refused';
  }
  for (const rpcId of store.rpcIds()) {
    const steps = store.steps(rpcId);
    for (const step of steps) expect(typeof describeStep(step)).toBe('string');
    formatTimeline(steps);
    const summary = store.summary(rpcId);
    expect(summary).toEqual(summarize(rpcId, steps));
    expect(Array.isArray(summary.warnings)).toBe(true);
  }
  return 'imported';
}

describe('importing a trace', () => {
  it('imports and renders a valid export of every step kind', () => {
    expect(importAndRender(validExport())).toBe('imported');
    const store = TraceStore.import(validExport());
    expect(store.steps('r1')).toHaveLength(11);
    expect(store.summary('r2').state).toBe('rejected');
  });

  it('gives back the RPCs it exported, step for step, verdicts and summaries included', () => {
    const original = new TraceStore();
    for (const draft of everyKind) original.add(draft);
    const exported = JSON.parse(JSON.stringify(original.export())) as Record<string, unknown>;
    expect(exported.version).toBe(4);
    const imported = TraceStore.import(exported);
    expect(rpcsOf(imported)).toEqual(rpcsOf(original));
    expect(imported.summary('r2').verdict?.code).toBe('request-rejected');
  });

  it("keeps why a load run's request was kept, and says it in the step's line", () => {
    const original = new TraceStore();
    for (const draft of everyKind) original.add(draft);
    const imported = TraceStore.import(JSON.parse(JSON.stringify(original.export())));
    expect(imported.summary('r1').loadRun).toEqual({ every: 10, kept: 'failed' });
    expect(describeStep(imported.steps('r1')[0]!)).toBe(
      'request on "rpc_queue" (QoS 1, 10 bytes), reply to "reply/r1" (per-request); a load run\'s request, kept without its messages because it failed (the run traced 1 request in 10 in full)',
    );
  });

  it('still imports a version 1 file (before verdicts), with the same RPCs', () => {
    const original = new TraceStore();
    for (const draft of everyKind.filter((step) => step.kind !== 'rpc.diagnosed')) original.add(draft);
    const versionOne = { ...(JSON.parse(JSON.stringify(original.export())) as Record<string, unknown>), version: 1 };
    const imported = TraceStore.import(versionOne);
    expect(rpcsOf(imported)).toEqual(rpcsOf(original));
    expect(imported.summary('r2').verdict).toBeUndefined();
  });

  it('still imports a version 2 file (before bodies and headers), with the same RPCs and no messages', () => {
    const withoutWire = everyKind.map((draft) => {
      const { wire: _wire, ...detail } = draft.detail as { wire?: unknown };
      return { ...draft, detail } as TraceStepDraft;
    });
    const original = new TraceStore();
    for (const draft of withoutWire) original.add(draft);
    const versionTwo = { ...(JSON.parse(JSON.stringify(original.export())) as Record<string, unknown>), version: 2 };
    const imported = TraceStore.import(versionTwo);
    expect(rpcsOf(imported)).toEqual(rpcsOf(original));
    expect(imported.steps('r1').some((step) => 'wire' in step.detail)).toBe(false);
  });

  it('refuses a version it does not know, naming the ones it reads', () => {
    expect(() => TraceStore.import({ ...validExport(), version: 5 })).toThrow(expect.objectContaining({ code: 'bad-input', message: expect.stringMatching(/version 1, 2, 3 or 4/) }));
  });

  it('refuses a composed step without detail.replyTopic with a bad-input sentence instead of crashing', () => {
    const json = validExport();
    delete ((json.steps as Array<{ detail: Record<string, unknown> }>)[0] as { detail: Record<string, unknown> }).detail.replyTopic;
    expect(() => TraceStore.import(json)).toThrow(expect.objectContaining({ code: 'bad-input', message: expect.stringMatching(/steps\.0\.detail\.replyTopic/) }));
  });

  it('either imports and renders or refuses in one bad-input sentence, for exports with fields dropped or of the wrong type', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        const json = validExport();
        for (const change of mutations) mutate(json, change);
        importAndRender(json);
      }),
      { numRuns: 1500 },
    );
  }, 60_000);

  it('either imports and renders or refuses in one bad-input sentence, for steps of a real kind with arbitrary details', () => {
    const kinds = [...new Set(everyKind.map((draft) => draft.kind))];
    const step = fc.record({
      rpcId: fc.oneof(fc.string(), wrongValue),
      seq: fc.oneof(fc.integer(), wrongValue),
      at: fc.oneof(fc.integer(), wrongValue),
      source: fc.oneof(fc.constantFrom('client', 'server', 'broker'), wrongValue),
      kind: fc.constantFrom(...kinds),
      detail: fc.oneof(fc.dictionary(fc.constantFrom('topic', 'replyTopic', 'routingKeys', 'routedQueues', 'leg', 'qosAsked', 'packet', 'durationMs', 'outcome', 'worker'), wrongValue), wrongValue),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 5 }), (steps) => {
        importAndRender({ ...validExport(), steps });
      }),
      { numRuns: 1500 },
    );
  }, 60_000);

  it('refuses arbitrary JSON that is not a trace in one bad-input sentence', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (json) => {
        expect(importAndRender(json)).toBe('refused');
      }),
      { numRuns: 500 },
    );
  });
});
