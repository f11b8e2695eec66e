import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { WatchBatch, WatchView } from '../../src/shared/contract';
import { WATCH_BATCH_VERDICTS } from '../../src/shared/contract';
import type { TraceStepDraft } from '../../src/shared/trace';
import type { Verdict } from '../../src/shared/diagnosis';
import type { Connection } from '../../src/core/session/connection';
import { tracedAbout, WatchController, type WatcherLike, type WatchControllerOptions } from '../../src/core/session/watch';
import { TraceStore } from '../../src/core/trace/trace-store';
import { repliedVerdict, type WatcherOptions, type WatcherEvents } from '../../src/core/watch/watcher';
import { profile } from './session-fakes';

/** A watcher that says what the test tells it to, and records how it was made and stopped. */
class FakeWatcher extends EventEmitter<WatcherEvents> {
  releases = [];
  stopped = 0;
  constructor(readonly options: WatcherOptions) {
    super();
  }
  async start(): Promise<string> {
    return 'amq.gen-fake';
  }
  async stop(): Promise<void> {
    this.stopped += 1;
  }
  stats() {
    return [{ topic: 'rpc_queue', requests: 1, replies: 1, unanswered: 0, late: 0, rate: 1, workers: {} }];
  }
}

const verdict: Verdict = { code: 'server-slow', hop: 'server', message: 'No reply.', evidence: [] };

function controller(more: Partial<WatchControllerOptions> = {}) {
  const batches: WatchBatch[] = [];
  const views: WatchView[] = [];
  const steps: TraceStepDraft[] = [];
  let made: FakeWatcher | undefined;
  const watch = new WatchController({
    connection: () => ({ profile, inspector: { currentUrl: '' } }) as unknown as Connection,
    emitView: (view) => views.push(view),
    emitBatch: (batch) => batches.push(batch),
    addStep: (draft) => steps.push(draft),
    flushMs: 60_000,
    createWatcher: (options) => (made = new FakeWatcher(options)) as unknown as WatcherLike,
    ...more,
  });
  return { watch, batches, views, steps, watcher: () => made as FakeWatcher };
}

describe('the session watch controller', () => {
  it('watches on the profile\'s exchange and vhost with the settings asked', async () => {
    const { watch, watcher } = controller();
    const view = await watch.start({ mode: 'tap', timeoutMs: 700, requestKeys: ['rpc_queue', ' rpc_queue', 'b'] });
    expect(view).toMatchObject({ state: 'running', through: 'amq.gen-fake', exchange: 'amq.direct' });
    expect(watcher().options).toMatchObject({ mode: 'tap', exchange: 'amq.direct', vhost: '/', timeoutMs: 700, requestKeys: ['rpc_queue', 'b'] });
    await watch.stop();
  });

  it('sends one batch for any number of lines: pairs counted, a sample of replies, verdicts capped with the rest counted', async () => {
    const { watch, batches, watcher } = controller();
    await watch.start({ mode: 'tap', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    const ref = { pattern: 'seed' as const, topic: 'rpc_queue', replyKey: 'reply.x', sentAt: 1 };
    for (let n = 0; n < 10_000; n += 1) watcher().emit('line', { ...ref, id: `ok-${n}`, type: 'pair', rttMs: 3 });
    for (let n = 0; n < WATCH_BATCH_VERDICTS + 20; n += 1) watcher().emit('line', { ...ref, id: `none-${n}`, type: 'verdict', verdict });
    watcher().emit('line', { type: 'dropped', what: 'pending', count: 1, reason: 'more than 10000 requests waited' });
    await watch.stop();
    const [batch] = batches;
    expect(batches).toHaveLength(1);
    expect(batch?.pairs).toBe(10_000);
    expect(batch?.replied.map((rpc) => rpc.id)).toEqual(['ok-9995', 'ok-9996', 'ok-9997', 'ok-9998', 'ok-9999']);
    expect(batch?.verdicts).toHaveLength(WATCH_BATCH_VERDICTS);
    expect(batch?.dropped).toEqual({ pending: 1, timedOut: 0, topic: 0, ui: 20, last: 'more than 10000 requests waited' });
    // Only the latest closed RPCs are kept for Open in Trace: the first pair is forgotten, with a sentence.
    expect(() => watch.open('w1')).toThrow(/no longer kept/);
  });

  it('lists a pair whose reply the device gets on another topic (a "." inside a level) with the verdicts, counted as a pair too', async () => {
    const { watch, batches, watcher } = controller();
    await watch.start({ mode: 'tap', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    watcher().emit('line', { pattern: 'seed', topic: 'rpc_queue', replyKey: 'reply.v1.2.dev', replyTopic: 'reply/v1.2/dev', sentAt: 1, id: 'dot', type: 'pair', rttMs: 3 });
    watcher().emit('line', { pattern: 'seed', topic: 'rpc_queue', replyKey: 'reply.dev', replyTopic: 'reply/dev', sentAt: 1, id: 'plain', type: 'pair', rttMs: 3 });
    await watch.stop();
    const [batch] = batches;
    expect(batch?.pairs).toBe(2);
    expect(batch?.replied.map((rpc) => rpc.id)).toEqual(['plain']);
    // An AMQP requester reading its dotted key from a queue of its own: no MQTT topic, nothing to call out.
    expect(repliedVerdict({ pattern: 'seed', topic: 'rpc_queue', id: 'amqp', replyKey: 'replies.v1.2', replyTopic: 'replies.v1.2', sentAt: 1, rttMs: 3, replyRoutedQueues: ['their-replies'] }, 'firehose').code).toBe('replied');
    expect(batch?.verdicts.map((rpc) => [rpc.id, rpc.verdict?.code, rpc.verdict?.message])).toEqual([
      ['dot', 'reply-on-other-topic', 'The reply to "reply/v1.2/dev" arrives on "reply/v1/2/dev": RabbitMQ turns a "." inside a topic level into a level separator, so use a reply topic without "." (e.g. "reply/v1_2/dev").'],
    ]);
  });

  it('opens a watched RPC as trace steps once, with its verdict and what the watch does not see', async () => {
    const { watch, batches, watcher, steps } = controller();
    await watch.start({ mode: 'tap', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    watcher().emit('line', { pattern: 'seed', topic: 'rpc_queue', replyKey: 'reply.x', sentAt: 1000, id: 'late-1', type: 'verdict', verdict, rttMs: 900, worker: 'w' });
    await watch.stop();
    const key = batches[0]?.verdicts[0]?.key as string;
    const { rpcId } = watch.open(key);
    expect(watch.open(key).rpcId).toBe(rpcId);
    expect(steps.map((step) => [step.kind, step.at])).toEqual([
      ['broker.published', 1000],
      ['broker.published', 1900],
      ['rpc.diagnosed', 1900],
    ]);
    const diagnosed = steps[2] as Extract<TraceStepDraft, { kind: 'rpc.diagnosed' }>;
    expect(diagnosed.detail.verdict.code).toBe('server-slow');
    expect(diagnosed.detail.verdict.evidence.at(-1)).toMatch(/not observed/);
  });

  it('opens a watched RPC the trace already holds (the firehose\'s, with its device and warnings) as that RPC, not as a second copy with less in it', async () => {
    const store = new TraceStore();
    store.add({ rpcId: 'devT-0', at: 5000, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request' } });
    const { watch, batches, watcher, steps } = controller({ traced: (ref) => tracedAbout(store, ref) });
    await watch.start({ mode: 'firehose', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    watcher().emit('line', { pattern: 'seed', topic: 'rpc_queue', replyKey: 'reply.x', sentAt: 5012, id: 'devT-0', type: 'verdict', verdict, rttMs: 900 });
    // The same id much later: a device that counts its ids from 1 again sent another request, which the trace does not hold.
    watcher().emit('line', { pattern: 'seed', topic: 'rpc_queue', replyKey: 'reply.y', sentAt: 95_000, id: 'devT-0', type: 'verdict', verdict });
    await watch.stop();
    const [first, later] = batches[0]?.verdicts ?? [];
    expect(watch.open(first?.key as string)).toEqual({ rpcId: 'devT-0' });
    expect(steps).toEqual([]);
    expect(watch.open(later?.key as string).rpcId).toBe('watch-seed-devT-0-95000 (reply.y)');
    expect(steps.length).toBeGreaterThan(0);
  });

  it('never opens another device\'s RPC that shares the id: the trace\'s must be on the same request key (or be its MQTT 5 twin by reply topic)', () => {
    const store = new TraceStore();
    const published = (rpcId: string, key: string, replyTopic: string, at = 5000): TraceStepDraft => ({ rpcId, at, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: [key], routedQueues: ['q'], leg: 'request', replyTopic } });
    store.add(published('1', 'plant.a.rpc', 'reply/dev-a'));
    store.add(published('1 (reply/dev-b)', 'plant.b.rpc', 'reply/dev-b'));
    // Device B's request "1" on its own key, at the same moment: B's RPC, never device A's RPC "1".
    expect(tracedAbout(store, { id: '1', topic: 'plant.b.rpc', sentAt: 5010 })).toBe('1 (reply/dev-b)');
    expect(tracedAbout(store, { id: '1', topic: 'plant.b.rpc', sentAt: 5010, replyTopic: 'reply/dev-b' })).toBe('1 (reply/dev-b)');
    expect(tracedAbout(store, { id: '1', topic: 'plant.a.rpc', sentAt: 5010 })).toBe('1');
    // A third device on A's key with its own reply topic: neither.
    expect(tracedAbout(store, { id: '1', topic: 'plant.a.rpc', sentAt: 5010, replyTopic: 'reply/dev-c' })).toBeUndefined();
    // Device A counted from 1 again a minute later: its next RPC "1", which the trace names "1 #2".
    store.add(published('1 #2', 'plant.a.rpc', 'reply/dev-a', 65_000));
    expect(tracedAbout(store, { id: '1', topic: 'plant.a.rpc', sentAt: 65_003, replyTopic: 'reply/dev-a' })).toBe('1 #2');
    // The app's own send: its MQTT topic maps to the watched key.
    store.add({ rpcId: 'own-1', at: 7000, source: 'client', kind: 'composed', detail: { topic: 'plant/c/rpc', qos: 1, replyTopic: 'reply/own', replyStrategy: 'per-request', bytes: 10 } });
    expect(tracedAbout(store, { id: 'own-1', topic: 'plant.c.rpc', sentAt: 7004 })).toBe('own-1');
  });

  it('opens a tap-mode RPC with placeholders, never read as "only a tap took it"', async () => {
    const { watch, batches, watcher, steps } = controller();
    await watch.start({ mode: 'tap', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    watcher().emit('line', { pattern: 'seed', topic: 'rpc_queue', replyKey: 'reply.ok', sentAt: 1000, id: 'ok-1', type: 'pair', rttMs: 5, worker: 'w' });
    (watch as unknown as { flush: () => void }).flush();
    watch.open(batches[0]?.replied[0]?.key as string);
    await watch.stop();
    const store = new TraceStore();
    for (const step of steps) store.add(step);
    expect(store.summary(steps[0]?.rpcId as string).warnings).toEqual([]);
    expect(steps.filter((step) => step.kind === 'broker.published').map((step) => (step.kind === 'broker.published' ? step.detail.routedQueues[0] : ''))).toEqual([
      "(the watch's own tap amq.gen-fake; which other queues it reached is not known)",
      "(the watch's own tap amq.gen-fake; which other queues it reached is not known)",
    ]);
  });

  it('opens a late reply the firehose saw routed with the queues it reached (the Trace read "subscription not seen")', async () => {
    const { watch, batches, watcher, steps } = controller();
    await watch.start({ mode: 'firehose', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    watcher().emit('line', {
      pattern: 'seed',
      topic: 'rpc_queue',
      replyKey: 'reply.x',
      sentAt: 1000,
      id: 'late-2',
      type: 'verdict',
      verdict,
      rttMs: 900,
      routedQueues: ['rpc_queue'],
      replyRoutedQueues: ['mqtt-subscription-devqos1'],
    });
    await watch.stop();
    watch.open(batches[0]?.verdicts[0]?.key as string);
    const published = steps.filter((step): step is Extract<TraceStepDraft, { kind: 'broker.published' }> => step.kind === 'broker.published');
    expect(published.map((step) => [step.detail.leg, step.detail.routedQueues])).toEqual([
      ['request', ['rpc_queue']],
      ['reply', ['mqtt-subscription-devqos1']],
    ]);
  });

  it('stamps the verdict on an unanswered request when it was given, not at the request (the trace read +0 ms)', async () => {
    const { watch, batches, watcher, steps } = controller();
    await watch.start({ mode: 'tap', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    const before = Date.now();
    watcher().emit('line', { pattern: 'seed', topic: 'rpc_queue', replyKey: 'reply.x', sentAt: before - 700, id: 'none-1', type: 'verdict', verdict });
    await watch.stop();
    watch.open(batches[0]?.verdicts[0]?.key as string);
    const diagnosed = steps.find((step) => step.kind === 'rpc.diagnosed');
    expect(diagnosed?.at).toBeGreaterThanOrEqual(before);
    expect(batches[0]?.verdicts[0]?.decidedAt).toBe(diagnosed?.at);
  });

  it('opens a request whose reply went astray with that reply: on its key and dropped (the trace showed "?" beside a verdict naming it)', async () => {
    const { watch, batches, watcher, steps } = controller();
    await watch.start({ mode: 'firehose', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    const unroutable: Verdict = { code: 'reply-unroutable', hop: 'reply-exchange', message: 'dropped', evidence: [] };
    watcher().emit('line', {
      pattern: 'seed', topic: 'rpc_queue', replyKey: 'reply.x', replyTopic: 'reply/x', sentAt: 1000, id: 'w-1', type: 'verdict', verdict: unroutable,
      routedQueues: ['rpc_queue'], wrongReply: { routingKey: 'reply.wrong', at: 1030, dropped: true },
    });
    await watch.stop();
    watch.open(batches[0]?.verdicts[0]?.key as string);
    const published = steps.filter((step): step is Extract<TraceStepDraft, { kind: 'broker.published' }> => step.kind === 'broker.published');
    expect(published.map((step) => [step.detail.leg, step.at, step.detail.routingKeys, step.detail.routedQueues])).toEqual([
      ['request', 1000, ['rpc_queue'], ['rpc_queue']],
      ['reply', 1030, ['reply.wrong'], []],
    ]);
  });

  it('stops the watcher when the tap is lost, and says why', async () => {
    const { watch, views, watcher } = controller();
    await watch.start({ mode: 'tap', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    watcher().emit('lost', 'NOT_FOUND - no exchange');
    // A Stop while the lost tap is being cleaned up waits for that cleanup: the watcher is stopped once.
    await watch.stop();
    expect(watcher().stopped).toBe(1);
    expect(views.at(-1)).toMatchObject({ state: 'failed', message: expect.stringMatching(/the broker refused its tap queue \(NOT_FOUND - no exchange\)/) });
    expect(watch.active).toBe(false);
  });

  it('keeps watching through a broker restart, saying the tap reconnects and then what it could not see', async () => {
    const { watch, views, watcher } = controller();
    await watch.start({ mode: 'tap', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    watcher().emit('tapStatus', { state: 'reconnecting', since: 1000, attempt: 1, reason: 'CONNECTION_FORCED - broker forced connection closure' });
    expect(views.at(-1)).toMatchObject({ state: 'running', message: expect.stringMatching(/lost its AMQP connection \(CONNECTION_FORCED.*\); reconnecting \(attempt 1\)/) });
    watcher().emit('tapStatus', { state: 'on', queue: 'amq.gen-new', resumed: true, blindFrom: 1000, blindUntil: 4200 });
    expect(views.at(-1)).toMatchObject({ state: 'running', through: 'amq.gen-new', message: expect.stringMatching(/back on a new queue after about 3 s unseen/) });
    expect(watch.active).toBe(true);
    await watch.stop();
  });

  it('says when a firehose watch loses the broker and when it reads again (the trial: the panel said nothing through a restart)', async () => {
    const { watch, views, watcher } = controller();
    await watch.start({ mode: 'firehose', timeoutMs: 700, requestKeys: ['rpc_queue'] });
    watcher().emit('status', { state: 'reconnecting', since: Date.now() - 10_000, attempt: 1, reason: 'CONNECTION_FORCED - broker forced connection closure' });
    expect(views.at(-1)).toMatchObject({ state: 'running', message: expect.stringMatching(/^Paused: the firehose lost the broker \(CONNECTION_FORCED.*\); reconnecting \(attempt 1\)\. Requests published meanwhile are not seen\.$/) });
    watcher().emit('status', { state: 'on', since: Date.now(), turnedOnByUs: true, resumed: true });
    expect(views.at(-1)).toMatchObject({ state: 'running', message: expect.stringMatching(/^Resumed: the firehose reads again \(tracing switched on again: a broker restart resets it\) after about 10 s unseen; what was published in that gap was not seen\.$/) });
    expect(watch.active).toBe(true);
    // A firehose that gives up ends the watch, saying why (not "reconnecting" for good).
    watcher().emit('status', { state: 'unavailable', reason: 'Tracing stopped: lost the broker and could not reconnect.' });
    await watch.stop();
    expect(views.at(-1)).toMatchObject({ state: 'failed', message: 'The watch stopped: Tracing stopped: lost the broker and could not reconnect.' });
    expect(watch.active).toBe(false);
  });
});
