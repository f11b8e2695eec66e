import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { LoadArgs } from '../../src/shared/contract';
import { wireOf, type LoadRunMark, type TraceStep, type TraceStepDraft } from '../../src/shared/trace';
import { BridgeError } from '../../src/core/errors';
import { LoadTraceSample, runLoad, type LoadOptions } from '../../src/core/rpc/load-engine';
import type { RpcCallOptions, RpcClient } from '../../src/core/rpc/client';
import { LoadController } from '../../src/core/session/load';
import { TraceStore } from '../../src/core/trace/trace-store';
import { mqttWire, WIRE_SOURCE, type PendingDraft } from '../../src/core/trace/message-view';

const composed = (rpcId: string): TraceStepDraft => ({
  rpcId,
  at: 1,
  source: 'client',
  kind: 'composed',
  detail: { topic: 'rpc_queue', qos: 1, replyTopic: 'reply/shared', replyStrategy: 'shared', bytes: 10 },
});
const received = (rpcId: string): TraceStepDraft => ({ rpcId, at: 2, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/shared', replyTopic: 'reply/shared', topicMismatch: false, bytes: 4 } });
const confirmed = (rpcId: string): TraceStepDraft => ({ rpcId, at: 3, source: 'server', kind: 'reply.confirmed', detail: { worker: 'w1', outcome: 'routed' } });
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function attached(store: TraceStore): (draft: TraceStepDraft) => void {
  const emitter = new EventEmitter<{ step: [TraceStepDraft] }>();
  store.attach(emitter);
  return (draft) => void emitter.emit('step', draft);
}

describe('a held RPC in the trace store (a load run keeps a sample)', () => {
  it('shows none of its steps until it settles, then all of them in the order they came, numbered after what came meanwhile', () => {
    const store = new TraceStore();
    const emit = attached(store);
    store.hold('held');
    emit(composed('held'));
    emit(composed('other'));
    emit(received('held'));
    expect(store.rpcIds()).toEqual(['other']);
    expect(store.keysOf('held')).toBeUndefined();
    store.settle('held', true);
    emit(confirmed('held'));
    expect(store.rpcIds()).toEqual(['other', 'held']);
    // In flow order (the server's confirm before the device's reply), numbered in the order they came.
    expect(store.steps('held').map((step) => [step.kind, step.seq])).toEqual([
      ['composed', 2],
      ['reply.confirmed', 4],
      ['mqtt.reply.received', 3],
    ]);
    expect(store.rpcForReplyKey('reply.shared')).toBe('held');
    expect(store.sampledOut).toBe(0);
  });

  it('stores a kept RPC by the next turn when nothing reads, and announces its steps then', async () => {
    const store = new TraceStore();
    const emit = attached(store);
    const announced: string[] = [];
    store.on('added', (step) => announced.push(`${step.rpcId} ${step.kind}`));
    store.hold('kept');
    emit(composed('kept'));
    emit(received('kept'));
    await nextTurn();
    expect(announced).toEqual([]);
    store.settle('kept', true);
    await nextTurn();
    expect(announced).toEqual(['kept composed', 'kept mqtt.reply.received']);
  });

  it('lets go of an RPC not kept, and of its steps that come after (a server confirms a moment after the reply), counting it', () => {
    const store = new TraceStore();
    const emit = attached(store);
    store.hold('gone');
    emit(composed('gone'));
    emit(received('gone'));
    store.settle('gone', false);
    emit(confirmed('gone'));
    store.add(confirmed('gone'));
    emit(composed('next'));
    expect(store.rpcIds()).toEqual(['next']);
    expect(store.steps('gone')).toEqual([]);
    expect(store.sampledOut).toBe(1);
    expect(store.droppedSteps).toBe(0);
    // A clear starts the count again; what was let go stays let go.
    store.clear();
    expect(store.sampledOut).toBe(0);
    emit(confirmed('gone'));
    expect(store.size).toBe(0);
  });

  it("holds each step without its message (body, headers), which a step not held keeps", () => {
    const store = new TraceStore();
    const emit = attached(store);
    const withWire = (rpcId: string): TraceStepDraft => ({ ...composed(rpcId), [WIRE_SOURCE]: mqttWire({ qos: 1, retain: false }, Buffer.from('{"id":1}')) }) as PendingDraft;
    store.hold('held');
    emit(withWire('held'));
    emit(withWire('free'));
    store.settle('held', true);
    expect(wireOf(store.steps('free')[0] as TraceStep)?.body.preview).toBe('{"id":1}');
    expect(wireOf(store.steps('held')[0] as TraceStep)).toBeUndefined();
    expect(store.steps('held')[0]?.detail).toMatchObject({ topic: 'rpc_queue', replyTopic: 'reply/shared' });
  });

  it('forgets the steps a clear came after, and keeps holding the RPC while it is being sent', () => {
    const store = new TraceStore();
    const emit = attached(store);
    store.hold('sending');
    emit(composed('sending'));
    store.clear();
    emit(received('sending'));
    expect(store.size).toBe(0);
    store.settle('sending', true);
    expect(store.steps('sending').map((step) => step.kind)).toEqual(['mqtt.reply.received']);
  });
});

describe('LoadTraceSample', () => {
  /** A trace that records what the sample asks of it. */
  const recorder = () => {
    const calls: string[] = [];
    return { calls, hold: (id: string) => void calls.push(`hold ${id}`), settle: (id: string, keep: LoadRunMark | false) => void calls.push(keep ? `keep ${id} (${keep.kept})` : `let go ${id}`) };
  };

  it('traces the first request in full, then one in every, and every one while it is told to (the firehose runs), each with its reason; the others are held', () => {
    let firehose = false;
    const trace = recorder();
    const sample = new LoadTraceSample(10, trace, () => firehose);
    const marks = Array.from({ length: 25 }, (_, nth) => {
      firehose = nth >= 22;
      return sample.send(`r${nth}`);
    });
    expect(marks.flatMap((mark, nth) => (mark ? [`${nth} ${mark.kept} 1 in ${mark.every}`] : []))).toEqual(['0 chosen 1 in 10', '10 chosen 1 in 10', '20 chosen 1 in 10', '22 firehose 1 in 10', '23 firehose 1 in 10', '24 firehose 1 in 10']);
    expect(sample.inFull).toBe(6);
    expect(trace.calls).toHaveLength(19);
  });

  it('keeps a held request that failed, lets go of one cancelled, and counts what it kept', () => {
    const trace = recorder();
    const sample = new LoadTraceSample(10, trace);
    for (const id of ['full', 'failed', 'cancelled', 'replied']) sample.send(id);
    sample.failed('full', false, false);
    sample.failed('failed', true, false);
    sample.failed('cancelled', true, true);
    sample.replied('replied', true, 3);
    expect(trace.calls).toEqual(['hold failed', 'hold cancelled', 'hold replied', 'keep failed (failed)', 'let go cancelled', 'let go replied']);
    expect(sample.kept).toBe(2);
  });

  it("keeps a held reply slower than 99 % of the run's last replies once there are 100 (the slow tail), not a rare fast one", () => {
    const trace = recorder();
    const sample = new LoadTraceSample(10, trace);
    // Before 100 replies nothing is rare yet.
    for (const ms of [3, 4000, 4000]) sample.replied('early', true, ms);
    for (let nth = 3; nth < 300; nth += 1) sample.replied('usual', true, 3);
    sample.replied('fast', true, 0.1);
    sample.replied('slow', true, 900);
    // 4 s is slower than 99 % of the last replies (two early ones of 4 s among 300 do not move the 99th percentile).
    sample.replied('slower', true, 4000);
    expect(trace.calls.filter((call) => call.startsWith('keep'))).toEqual(['keep slow (slow)', 'keep slower (slow)']);
    expect(sample.kept).toBe(2);
  });

  it('keeps about the slowest 1 % of a run whose tail is 5 % of its replies, and nothing from its fast side', () => {
    const trace = recorder();
    const sample = new LoadTraceSample(1_000_000, trace);
    // As the trial's run: most replies about 40-60 ms, one in 20 between 200 and 500 ms.
    const latencies = Array.from({ length: 2000 }, (_, nth) => (nth % 20 === 7 ? 200 + ((nth * 37) % 300) : 40 + ((nth * 13) % 20)));
    latencies.forEach((ms, nth) => {
      sample.send(`r${nth}`);
      sample.replied(`r${nth}`, true, ms);
    });
    const kept = trace.calls.filter((call) => call.startsWith('keep')).map((call) => latencies[Number(call.slice('keep r'.length, call.indexOf(' ', 'keep r'.length)))] as number);
    expect(kept.length).toBeGreaterThan(5);
    expect(kept.length).toBeLessThan(40);
    expect(Math.min(...kept)).toBeGreaterThan(400);
  });
});

/** A client whose calls emit a request's steps (to the store), reply at once, and fail every `failEvery`th request. */
function fakeClient(emit: (draft: TraceStepDraft) => void, failEvery: number): RpcClient {
  let calls = 0;
  return {
    link: new EventEmitter(),
    call: async (options: RpcCallOptions) => {
      calls += 1;
      const id = options.id as string;
      // As RpcClient does: a request traced in full says why on its composed step.
      const step = composed(id);
      if (options.loadRun && step.kind === 'composed') step.detail.loadRun = options.loadRun;
      emit(step);
      await Promise.resolve();
      if (calls % failEvery === 0) {
        emit({ rpcId: id, at: 3, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: 'No reply within 500 ms.' } });
        throw new BridgeError('timeout', 'No reply within 500 ms.');
      }
      emit(received(id));
      return {};
    },
  } as unknown as RpcClient;
}

describe('a load run with a trace sample', () => {
  it('traces 1 in 10 in full and keeps every failed one (its steps there for its verdict), and says how many it kept', async () => {
    const store = new TraceStore();
    const emit = attached(store);
    const stepsWhenFailed: number[] = [];
    const failedIds: string[] = [];
    const options: LoadOptions = {
      count: 200,
      concurrency: 4,
      call: {},
      onProgress: () => undefined,
      onFailed: (rpcId) => {
        failedIds.push(rpcId);
        stepsWhenFailed.push(store.steps(rpcId).length);
      },
      traceSample: { every: 10, trace: store },
    };
    const summary = await runLoad(fakeClient(emit, 7), options);
    expect(summary.failed).toBe(28);
    expect(stepsWhenFailed).toEqual(new Array(28).fill(2));
    // The 1st, 11th ... 191st sent in full (20: 3 of them among the 28 failed), the 25 other failed ones, and any whose
    // latency was rare (a pause here).
    expect(summary.traceSample?.every).toBe(10);
    expect(summary.traceSample?.inFull).toBe(20);
    // Of the 28 failed, 3 were among those in full; the other 25 are kept with their steps.
    expect(summary.traceSample?.kept).toBe(store.size);
    expect(store.size).toBeGreaterThanOrEqual(20 + 25);
    expect(store.size).toBeLessThan(20 + 25 + 10);
    expect(store.sampledOut).toBe(200 - store.size);
    // Each kept request says why, on its composed step, so a trace read later (a reloaded page, an export) still tells.
    const why = new Map(store.rpcIds().map((rpcId) => [rpcId, store.summary(rpcId).loadRun]));
    expect([...why.values()].filter((mark) => mark?.kept === 'chosen')).toHaveLength(20);
    expect(store.summary(store.rpcIds()[0] as string).loadRun).toEqual({ every: 10, kept: 'chosen' });
    for (const rpcId of failedIds) expect(['chosen', 'failed']).toContain(why.get(rpcId)?.kept);
    for (const [rpcId, mark] of why) if (mark?.kept === 'failed') expect(failedIds).toContain(rpcId);
    expect([...why.values()].every((mark) => mark !== undefined && mark.every === 10)).toBe(true);
  });

  it('keeps every request without a sample (the engine alone, as before)', async () => {
    const store = new TraceStore();
    const summary = await runLoad(fakeClient(attached(store), 7), { count: 50, concurrency: 4, call: {}, onProgress: () => undefined });
    expect(summary.traceSample).toBeUndefined();
    expect(store.size).toBe(50);
  });
});

describe('which load runs the session samples', () => {
  const args: LoadArgs = { topic: 'load/rpc', qos: 1, strategy: 'shared', payloadText: '"x"', timeoutMs: 500, count: 3, concurrency: 1 };

  function asked(firehose: boolean, traceEvery?: number): Promise<LoadOptions['traceSample']> {
    const store = new TraceStore();
    let seen: LoadOptions['traceSample'];
    const load = new LoadController({
      client: () => ({}) as RpcClient,
      emitProgress: () => undefined,
      steps: (rpcId) => store.steps(rpcId),
      firehoseOn: () => firehose,
      addVerdict: () => undefined,
      trace: store,
      run: async (_client, options) => {
        seen = options.traceSample;
        return runLoad(fakeClient(attached(store), 1000), { ...options, count: 1 });
      },
    });
    return load.start({ ...args, ...(traceEvery !== undefined ? { traceEvery } : {}) }).then(() => seen);
  }

  it('samples 1 in 10 by default, as asked, and keeps every request when asked for 1 or while the firehose is on (asked per request)', async () => {
    expect((await asked(false))?.every).toBe(10);
    expect((await asked(false))?.inFullNow?.()).toBe(false);
    expect((await asked(false, 50))?.every).toBe(50);
    expect((await asked(false, 1))?.every).toBe(1);
    expect((await asked(true))?.inFullNow?.()).toBe(true);
  });
});
