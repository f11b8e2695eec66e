import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { LoadProgress } from '../../src/shared/contract';
import type { TraceStep } from '../../src/shared/trace';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { uniqueName } from '../support/names';
import { topicToRoutingKey } from '../../src/shared/topic-map';
import { amqpChannelForFile, declareRequestQueue } from '../support/rpc-queues';

const broker = inject('broker');
const amqp = amqpChannelForFile(broker.urls.amqp);
let session: Session;
const progressListeners = new Set<(progress: LoadProgress) => void>();

beforeAll(async () => {
  session = new Session({
    mode: 'browser',
    profiles: new ProfileStore(memorySecretBox()),
    emit: (name, payload) => {
      if (name === 'load.progress.changed') for (const listener of progressListeners) listener(payload as LoadProgress);
    },
  });
  await session.open({ name: 'test', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: 'amq.direct' });
});

afterAll(async () => {
  await session.dispose();
});

describe('a load run when the connection is closed under it', () => {
  it('ends at once as cancelled, with every request accounted for, instead of timing out one by one', async () => {
    const firstTick = new Promise<void>((resolve) => progressListeners.add(() => resolve()));
    const run = session.handlers['load.run.start']({
      // nobody consumes this queue: the calls wait until something ends them
      topic: uniqueName('nobody'),
      qos: 1,
      strategy: 'shared',
      payloadText: '"load"',
      timeoutMs: 25_000,
      count: 500,
      concurrency: 8,
      // Every request in full: a cancelled request the sample held is let go (the user's doing, not the bridge's).
      traceEvery: 1,
    });
    await firstTick;
    const closedAt = performance.now();
    await session.handlers['connection.close']({});
    const summary = await run;
    expect(performance.now() - closedAt).toBeLessThan(5000);
    expect(summary).toMatchObject({ cancelled: true, completed: 0, failed: 8, errors: { cancelled: 8 }, notSent: 492 });
    // Each failed request got a verdict from its own steps (no broker was asked per request): cancelled.
    const verdicts = session.store
      .rpcIds()
      .flatMap((rpcId) => session.store.steps(rpcId))
      .flatMap((step) => (step.kind === 'rpc.diagnosed' ? [step.detail.verdict.code] : []));
    expect(verdicts).toEqual(Array.from({ length: 8 }, () => 'cancelled'));
  }, 60_000);
});

describe('what the trace keeps of a load run', () => {
  const sampled = async (traceEvery?: number) => {
    const queue = uniqueName('load');
    await session.open({ name: 'test', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: 'amq.direct' });
    await session.handlers['server.start']({ exchange: 'amq.direct', queue, workers: 2, prefetch: 20, handler: 'echo' });
    session.store.clear();
    const summary = await session.handlers['load.run.start']({ topic: queue, qos: 1, strategy: 'shared', payloadText: '"load"', timeoutMs: 10_000, count: 300, concurrency: 10, ...(traceEvery ? { traceEvery } : {}) });
    await session.handlers['server.stop']({});
    return { summary, rpcs: session.store.rpcIds().map((rpcId) => session.store.steps(rpcId)) };
  };

  it('traces 1 in 10 in full by default, with the server\'s steps and the messages, and no step of a request it let go', async () => {
    const { summary, rpcs } = await sampled();
    expect(summary).toMatchObject({ completed: 300, failed: 0, traceSample: { every: 10, inFull: 30 } });
    // A latency rare for the run (a pause on this machine) is kept too, without its messages.
    expect(rpcs.length).toBe(summary.traceSample?.kept);
    const full = rpcs.filter((steps) => steps.some((step) => step.kind === 'composed' && step.detail.wire !== undefined));
    expect(full.length).toBe(30);
    for (const steps of full) {
      expect(steps.map((step) => step.kind)).toEqual(['composed', 'mqtt.published', 'mqtt.acknowledged', 'worker.received', 'handler.finished', 'reply.published', 'reply.confirmed', 'mqtt.reply.received']);
    }
    // Each says why it was kept, on its composed step: chosen (1 in 10), or held and kept for being slow.
    const marks = rpcs.map((steps) => session.store.summary(steps[0]?.rpcId as string).loadRun);
    expect(marks.filter((mark) => mark?.kept === 'chosen')).toHaveLength(30);
    expect(marks.every((mark) => mark?.every === 10 && (mark.kept === 'chosen' || mark.kept === 'slow'))).toBe(true);
    // The server confirms a reply a moment after the device gets it: no request let go comes back as a confirm alone.
    for (const steps of rpcs) expect(steps[0]?.kind).toBe('composed');
    expect(session.store.sampledOut).toBe(300 - rpcs.length);
  }, 60_000);

  it('traces every request in full from the moment the firehose is switched on mid-run, and none it let go comes back as another team\'s', async () => {
    const queue = uniqueName('load');
    await session.open({ name: 'test', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: 'amq.direct' });
    await session.handlers['server.start']({ exchange: 'amq.direct', queue, workers: 2, prefetch: 20, handler: 'echo' });
    session.store.clear();
    let switched: Promise<unknown> | undefined;
    const listener = (progress: LoadProgress): void => {
      if (switched === undefined && progress.completed >= 200) switched = session.handlers['trace.tracing.set']({ on: true });
    };
    progressListeners.add(listener);
    try {
      const summary = await session.handlers['load.run.start']({ topic: queue, qos: 1, strategy: 'shared', payloadText: '"load"', timeoutMs: 10_000, count: 1500, concurrency: 10 });
      await switched;
      expect(summary.completed).toBe(1500);
      // Some let go before the switch; after it, every one in full.
      expect(summary.traceSample?.inFull).toBeGreaterThan(150);
      expect(summary.traceSample?.kept).toBeLessThan(1500);
    } finally {
      progressListeners.delete(listener);
      await session.handlers['trace.tracing.set']({ on: false });
      await session.handlers['server.stop']({});
    }
    // Every RPC of this run the trace holds was composed by its client: a firehose step of a request let go never starts
    // an RPC of its own. (The firehose sees the whole vhost: RPCs of other tests on this node are not this run's.)
    const rpcs = session.store.rpcIds().map((rpcId) => session.store.steps(rpcId));
    const replyKeys = new Set(rpcs.flatMap((steps) => steps.flatMap((step) => (step.kind === 'composed' ? [topicToRoutingKey(step.detail.replyTopic)] : []))));
    const ofThisRun = (step: TraceStep): boolean =>
      step.kind === 'composed' ||
      (step.kind === 'broker.published' && (step.detail.routingKeys[0] === queue || replyKeys.has(step.detail.routingKeys[0] ?? ''))) ||
      (step.kind === 'broker.delivered' && (step.detail.queue === queue || replyKeys.has(step.detail.routingKeys[0] ?? '')));
    const orphans = rpcs.filter((steps) => steps.some(ofThisRun) && !steps.some((step) => step.kind === 'composed'));
    expect(orphans.map((steps) => steps.map((step) => `${step.rpcId} ${step.kind}`))).toEqual([]);
    expect(rpcs.some((steps) => steps.some((step) => step.source === 'broker'))).toBe(true);
  }, 90_000);

  it("gives each failed request the broker's verdict, not a guess from its steps", async () => {
    await session.open({ name: 'test', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: 'amq.direct' });
    session.store.clear();
    const verdicts: string[] = [];
    const allJudged = new Promise<void>((resolve) => {
      const listener = (step: TraceStep): void => {
        if (step.kind !== 'rpc.diagnosed') return;
        verdicts.push(step.detail.verdict.code);
        if (verdicts.length === 20) {
          session.store.off('added', listener);
          resolve();
        }
      };
      session.store.on('added', listener);
    });
    // Nothing is bound for this key: every request is dropped by the broker and times out.
    const summary = await session.handlers['load.run.start']({ topic: uniqueName('nobody_bound'), qos: 1, strategy: 'shared', payloadText: '"load"', timeoutMs: 1000, count: 20, concurrency: 5 });
    expect(summary).toMatchObject({ completed: 0, failed: 20, errors: { timeout: 20 } });
    await allJudged;
    expect(new Set(verdicts)).toEqual(new Set(['request-unroutable']));
    // Every one kept: failures are, in full or not (2 chosen, the 18 others for failing).
    expect(summary.traceSample?.kept).toBe(20);
    const marks = session.store.rpcIds().map((rpcId) => session.store.summary(rpcId).loadRun?.kept);
    expect(marks.filter((kept) => kept === 'failed')).toHaveLength(18);
    expect(marks.filter((kept) => kept === 'chosen')).toHaveLength(2);
  }, 60_000);

  it('decides a failed request again when the workers come back, take it and reply late (to a topic nobody listens on any more)', async () => {
    await session.open({ name: 'test', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: 'amq.direct' });
    // The queue is declared and bound, and no worker consumes it yet: the requests wait in it.
    const queue = await declareRequestQueue(amqp.channel(), amqp.closers);
    session.store.clear();
    const codes = new Map<string, string[]>();
    let settled: () => void = () => undefined;
    const allDropped = new Promise<void>((resolve) => (settled = resolve));
    let confirmed = 0;
    const returnedSaid = new Set<string>();
    let judged: () => void = () => undefined;
    const allJudged = new Promise<void>((resolve) => (judged = resolve));
    const listener = (step: TraceStep): void => {
      if (step.kind === 'reply.confirmed') confirmed += 1;
      if (step.kind === 'rpc.diagnosed') codes.set(step.rpcId, [...(codes.get(step.rpcId) ?? []), step.detail.verdict.code]);
      if (codes.size === 5) judged();
      if (step.kind === 'rpc.diagnosed' && step.detail.verdict.evidence.some((line) => line.includes('the broker returned the reply'))) returnedSaid.add(step.rpcId);
      if (confirmed === 5 && returnedSaid.size === 5) settled();
    };
    session.store.on('added', listener);
    try {
      // Per-request reply topics: each is unsubscribed when its call gives up.
      const summary = await session.handlers['load.run.start']({ topic: queue, qos: 1, strategy: 'per-request', payloadText: '"load"', timeoutMs: 1000, count: 5, concurrency: 5 });
      expect(summary).toMatchObject({ completed: 0, failed: 5, errors: { timeout: 5 } });
      // The workers come back once the failures were judged (the broker was asked while nobody consumed).
      await allJudged;
      await session.handlers['server.start']({ exchange: 'amq.direct', queue, workers: 1, prefetch: 20, handler: 'echo' });
      await allDropped;
    } finally {
      session.store.off('added', listener);
      await session.handlers['server.stop']({});
    }
    // First nobody consumed the request; then its reply was published late (and returned: its per-request reply topic
    // was unsubscribed when the call gave up), said with the server's confirm in the evidence, where the watch ends.
    for (const seen of codes.values()) expect(seen.join(' ')).toMatch(/^no-consumer( late-reply)+$/);
    // Said as the workers' lateness, not as a slow handler (raising the timeout would not help).
    const last = session.store.rpcIds().map((rpcId) => session.store.summary(rpcId).verdict?.message ?? '');
    for (const message of last) expect(message).toMatch(/^A worker took the request on ".+" and answered after \d+ ms, but when the timeout of 1000 ms ended none consumed it yet/);
    const confirms = session.store.rpcIds().flatMap((rpcId) => session.store.steps(rpcId).filter((step) => step.kind === 'reply.confirmed'));
    expect(confirms.map((step) => step.kind === 'reply.confirmed' && step.detail.outcome)).toEqual(new Array(5).fill('returned'));
  }, 60_000);

  it('keeps every request in full when asked to trace 1 in 1', async () => {
    const { summary, rpcs } = await sampled(1);
    expect(summary.traceSample).toEqual({ every: 1, inFull: 300, kept: 300 });
    expect(rpcs.length).toBe(300);
  }, 60_000);
});
