import { describe, expect, it } from 'vitest';
import type { LoadArgs, LoadSummary } from '../../src/shared/contract';
import type { Verdict } from '../../src/shared/diagnosis';
import { BridgeError } from '../../src/core/errors';
import type { LoadOptions } from '../../src/core/rpc/load-engine';
import { LoadController, type LoadControllerOptions } from '../../src/core/session/load';
import type { RpcClient } from '../../src/core/rpc/client';
import { TraceStore } from '../../src/core/trace/trace-store';

const args: LoadArgs = { topic: 'load/rpc', qos: 1, strategy: 'shared', payloadText: '"x"', timeoutMs: 500, count: 3, concurrency: 1 };

const summary = (finishedAt: string): LoadSummary => ({
  count: 3,
  completed: 1,
  failed: 2,
  elapsedMs: 1,
  histogram: { boundsMs: [], counts: [] },
  series: [],
  cancelled: false,
  errors: { timeout: 2 },
  durationMs: 1,
  throughput: 3,
  p50: 1,
  p95: 1,
  p99: 1,
  finishedAt,
});

function setUp(engine: (options: LoadOptions) => Promise<LoadSummary>, firehose = false) {
  const store = new TraceStore();
  const added: Array<{ rpcId: string; verdict: Verdict }> = [];
  const load = new LoadController({
    client: () => ({}) as RpcClient,
    emitProgress: () => undefined,
    steps: (rpcId) => store.steps(rpcId),
    firehoseOn: () => firehose,
    addVerdict: (rpcId, verdict) => added.push({ rpcId, verdict }),
    run: (_client, options) => engine(options),
  });
  return { load, store, added };
}

/** A load controller's trace and step listener on `store`, with the firehose off. */
function watchedStore(store: TraceStore): Pick<LoadControllerOptions, 'client' | 'emitProgress' | 'steps' | 'firehoseOn' | 'onStep'> {
  return {
    client: () => ({}) as RpcClient,
    emitProgress: () => undefined,
    steps: (rpcId) => store.steps(rpcId),
    firehoseOn: () => false,
    onStep: (listener) => {
      store.on('added', listener);
      return () => void store.off('added', listener);
    },
  };
}

describe('the load controller', () => {
  it('tells a page that opens mid-run the run and its progress, then the last summary; and says when a run ends, by an error too', async () => {
    const finished: Array<{ summary?: LoadSummary; failed?: string }> = [];
    let release: () => void = () => undefined;
    const load = new LoadController({
      ...watchedStore(new TraceStore()),
      addVerdict: () => undefined,
      emitFinished: (payload) => finished.push(payload),
      run: async (_client, options) => {
        options.onProgress({ count: 3, completed: 1, failed: 0, elapsedMs: 5, histogram: { boundsMs: [], counts: [] }, series: [] });
        await new Promise<void>((resolve) => (release = resolve));
        if (options.count === 4) throw new BridgeError('not-connected', 'Connect to a broker first.');
        return summary('at-end');
      },
    });
    expect(load.last()).toEqual({ running: false });
    const run = load.start(args);
    expect(load.last()).toMatchObject({ running: true, progress: { completed: 1 } });
    expect(load.last().summary).toBeUndefined();
    release();
    await run;
    expect(load.last()).toEqual({ running: false, summary: summary('at-end') });
    expect(finished).toEqual([{ summary: summary('at-end') }]);
    // A run that ends by an error ends for every page too, with its sentence: a page that opens then is told that, not
    // shown the run before as if it were the last.
    const failing = load.start({ ...args, count: 4 });
    release();
    await expect(failing).rejects.toMatchObject({ code: 'not-connected' });
    expect(finished.at(-1)).toEqual({ failed: 'Connect to a broker first.' });
    expect(load.last()).toEqual({ running: false, failed: 'Connect to a broker first.' });
    // The next run that ends with a summary is the last again.
    const again = load.start(args);
    release();
    await again;
    expect(load.last()).toEqual({ running: false, summary: summary('at-end') });
  });

  it('refuses a run whose request or reply topic cannot be used (a NUL pasted from a device log) up front, in one sentence, sending nothing', async () => {
    let runs = 0;
    const { load } = setUp(async () => {
      runs += 1;
      return summary('never');
    });
    await expect(load.start({ ...args, topic: 'plant/\u0000/rpc', count: 100 })).rejects.toMatchObject({
      code: 'bad-input',
      message: 'The load run was not started: the request topic cannot be used: MQTT forbids the NUL character in topics.',
    });
    await expect(load.start({ ...args, replyTopic: 'reply/\u0000' })).rejects.toMatchObject({
      code: 'bad-input',
      message: 'The load run was not started: the reply topic cannot be used: MQTT forbids the NUL character in topics.',
    });
    expect(runs).toBe(0);
    // Nothing was left running: the next good run starts.
    await expect(load.start(args)).resolves.toMatchObject({ finishedAt: 'never' });
  });

  it('gives each failed request a verdict from its own steps, and none to the replied ones or to requests never composed', async () => {
    const { load, store, added } = setUp(async (options) => {
      for (const [rpcId, code] of [['ok-1', undefined], ['slow-1', 'timeout'], ['never-1', 'bad-input']] as const) {
        if (rpcId === 'never-1') {
          options.onFailed?.(rpcId, new BridgeError(code as 'bad-input', 'refused'));
          continue;
        }
        store.add({ rpcId, at: 1, source: 'client', kind: 'composed', detail: { topic: 'load/rpc', qos: 1, replyTopic: 'reply/x', replyStrategy: 'shared', bytes: 3 } });
        store.add({ rpcId, at: 2, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } });
        if (code) options.onFailed?.(rpcId, new BridgeError(code, `No reply to ${rpcId}.`));
      }
      return summary('t1');
    });
    await load.start(args);
    expect(added.map((entry) => entry.rpcId)).toEqual(['slow-1']);
    // Without broker facts nor firehose, the steps alone do not decide where it stopped: the verdict says so.
    expect(added[0]?.verdict).toMatchObject({ code: 'undetermined', hop: 'exchange' });
    expect(added[0]?.verdict.message).toContain('"load/rpc"');
  });

  it("asks the broker's facts once for a burst of failures, and each failed request's verdict reads them", async () => {
    let asked = 0;
    const store = new TraceStore();
    const added: Array<{ rpcId: string; verdict: Verdict }> = [];
    const judged = new Promise<void>((resolve) => {
      const load = new LoadController({
        client: () => ({}) as RpcClient,
        emitProgress: () => undefined,
        steps: (rpcId) => store.steps(rpcId),
        firehoseOn: () => false,
        addVerdict: (rpcId, verdict) => {
          added.push({ rpcId, verdict });
          if (added.length === 30) resolve();
        },
        brokerFacts: async () => {
          asked += 1;
          // The request's queue is bound and nobody consumes it.
          return { exchange: 'amq.direct', requestQueues: [{ name: 'load.rpc', consumers: 0, ready: 30, live: true }], closestKeys: [], elsewhere: [], unavailable: [] };
        },
        run: async (_client, options) => {
          for (let nth = 0; nth < 30; nth += 1) {
            store.add({ rpcId: `r${nth}`, at: 1, source: 'client', kind: 'composed', detail: { topic: 'load/rpc', qos: 1, replyTopic: 'reply/x', replyStrategy: 'shared', bytes: 3 } });
            options.onFailed?.(`r${nth}`, new BridgeError('timeout', 'No reply.'));
          }
          // Cancelled requests are the user's doing: their verdict asks nothing.
          store.add({ rpcId: 'c', at: 1, source: 'client', kind: 'composed', detail: { topic: 'load/rpc', qos: 1, replyTopic: 'reply/x', replyStrategy: 'shared', bytes: 3 } });
          options.onFailed?.('c', new BridgeError('cancelled', 'Cancelled.'));
          return summary('t1');
        },
      });
      void load.start(args);
    });
    await judged;
    expect(asked).toBe(1);
    expect(new Set(added.filter((entry) => entry.rpcId !== 'c').map((entry) => entry.verdict.code))).toEqual(new Set(['no-consumer']));
    expect(added.find((entry) => entry.rpcId === 'c')?.verdict.code).toBe('cancelled');
  });

  it('decides a failed request again when a worker back later takes it and replies (late), and stops watching at its confirm', async () => {
    const store = new TraceStore();
    const added: Array<{ rpcId: string; verdict: Verdict }> = [];
    let judged: () => void = () => undefined;
    const load = new LoadController({
      ...watchedStore(store),
      addVerdict: (rpcId, verdict) => {
        added.push({ rpcId, verdict });
        judged();
      },
      // The workers are away when the request fails: bound, nobody consuming.
      brokerFacts: async () => ({ exchange: 'amq.direct', requestQueues: [{ name: 'load.rpc', consumers: 0, ready: 1, live: true }], closestKeys: [], elsewhere: [], unavailable: [] }),
      run: async (_client, options) => {
        store.add({ rpcId: 'r', at: 1, source: 'client', kind: 'composed', detail: { topic: 'load/rpc', qos: 1, replyTopic: 'reply/x', replyStrategy: 'shared', bytes: 3 } });
        store.add({ rpcId: 'r', at: 2, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } });
        store.add({ rpcId: 'r', at: 502, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: 'No reply within 500 ms.' } });
        options.onFailed?.('r', new BridgeError('timeout', 'No reply within 500 ms.'));
        return summary('t1');
      },
    });
    const next = (): Promise<void> => new Promise((resolve) => (judged = resolve));
    let verdict = next();
    await load.start(args);
    await verdict;
    expect(added.map((entry) => entry.verdict.code)).toEqual(['no-consumer']);
    // 8 s later a worker is back, takes the request from the queue and replies: the verdict says the reply came late.
    verdict = next();
    store.add({ rpcId: 'r', at: 8000, source: 'server', kind: 'worker.received', detail: { worker: 'w1', consumerTag: 'c', queue: 'load.rpc', routingKey: 'load.rpc', redelivered: false } });
    store.add({ rpcId: 'r', at: 8001, source: 'server', kind: 'reply.published', detail: { worker: 'w1', exchange: 'amq.direct', routingKey: 'reply.x', replyTopic: 'reply/x', mandatory: true } });
    await verdict;
    expect(added.map((entry) => entry.verdict.code)).toEqual(['no-consumer', 'late-reply']);
    // Late because nobody consumed the request while the call waited, not because a worker was slow.
    expect(added[1]?.verdict.message).toBe(
      'A worker took the request on "load/rpc" and answered after 8000 ms, but when the timeout of 500 ms ended none consumed it yet (the verdict then: no consumer): the workers were down or started late, and the call had given up. Keep a worker consuming it while devices send.',
    );
    // Its confirm says the broker returned it (nobody subscribed to the reply topic any more): still a late reply (that is
    // why nobody listened), now with the confirm in its evidence; the watch ends there.
    verdict = next();
    store.add({ rpcId: 'r', at: 8002, source: 'server', kind: 'reply.confirmed', detail: { worker: 'w1', outcome: 'returned', returnReason: 'NO_ROUTE' } });
    await verdict;
    expect(added.map((entry) => entry.verdict.code)).toEqual(['no-consumer', 'late-reply', 'late-reply']);
    expect(added.at(-1)?.verdict.evidence).toContain('server: the broker returned the reply (NO_ROUTE)');
    expect(store.listenerCount('added')).toBe(0);
  });

  it('waits for late replies to at most 5,000 failed requests at once (a run failing by the thousand keeps a bounded memory)', async () => {
    const store = new TraceStore({ maxRpcs: 6000 });
    const load = new LoadController({
      ...watchedStore(store),
      addVerdict: (rpcId, verdict) => void store.add({ rpcId, at: 3, source: 'client', kind: 'rpc.diagnosed', detail: { verdict } }),
      lateWatchMs: 60_000,
      run: async (_client, options) => {
        for (let nth = 0; nth < 5001; nth += 1) {
          store.add({ rpcId: `r${nth}`, at: 1, source: 'client', kind: 'composed', detail: { topic: 'load/rpc', qos: 1, replyTopic: 'reply/x', replyStrategy: 'shared', bytes: 3 } });
          options.onFailed?.(`r${nth}`, new BridgeError('timeout', 'No reply.'));
        }
        return summary('t1');
      },
    });
    await load.start(args);
    // Every one judged (steps alone: undetermined, which a late reply could change), 5,000 of them watched.
    expect(store.summary('r5000').verdict?.code).toBe('undetermined');
    expect(load.watchedForLateReplies).toBe(5000);
  });

  it('lets the broker steps decide when the firehose is on', async () => {
    const { load, store, added } = setUp(async (options) => {
      store.add({ rpcId: 'r', at: 1, source: 'client', kind: 'composed', detail: { topic: 'load/rpc', qos: 1, replyTopic: 'reply/x', replyStrategy: 'shared', bytes: 3 } });
      store.add({
        rpcId: 'r',
        at: 2,
        source: 'broker',
        kind: 'broker.published',
        detail: { exchange: 'amq.direct', routingKeys: ['load.rpc'], routedQueues: [], leg: 'request' },
      });
      options.onFailed?.('r', new BridgeError('timeout', 'No reply.'));
      return summary('t1');
    }, true);
    await load.start(args);
    expect(added[0]?.verdict).toMatchObject({ code: 'request-unroutable', hop: 'exchange' });
  });

  it('runs one load at a time and cancels the one going', async () => {
    let release: (value: LoadSummary) => void = () => undefined;
    let signal: AbortSignal | undefined;
    const { load } = setUp((options) => {
      signal = options.signal;
      return new Promise((resolve) => (release = resolve));
    });
    const first = load.start(args);
    await expect(load.start(args)).rejects.toMatchObject({ code: 'busy' });
    expect(load.cancel()).toBe(true);
    expect(signal?.aborted).toBe(true);
    release(summary('t1'));
    await first;
    expect(load.cancel()).toBe(false);
  });

  it('keeps the last 20 summaries for the trace export', async () => {
    let run = 0;
    const { load } = setUp(async () => summary(`t${(run += 1)}`));
    for (let index = 0; index < 22; index += 1) await load.start(args);
    expect(load.runs).toHaveLength(20);
    expect(load.runs[0]?.finishedAt).toBe('t3');
  });
});
