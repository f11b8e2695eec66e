import { describe, expect, it } from 'vitest';
import type { Events, TracerView } from '../../src/shared/contract';
import type { Verdict } from '../../src/shared/diagnosis';
import { TracingController } from '../../src/core/session/tracing';
import type { Connection } from '../../src/core/session/connection';
import { FakeTracer, Journal, profile } from './session-fakes';

// What the tracer (and the verdicts of other teams' RPCs it feeds) reads of a connection: its profile and AMQP node.
const connection = { profile, inspector: { currentUrl: '' } } as unknown as Connection;

function setUp(prepare: (tracer: FakeTracer) => void = () => undefined) {
  const journal = new Journal();
  const tracers: FakeTracer[] = [];
  const batches: Events['trace.steps.added'][] = [];
  let batchSent: () => void = () => undefined;
  const resets: Events['trace.store.reset'][] = [];
  let changes = 0;
  const tracing = new TracingController({
    flushMs: 5,
    emitSteps: (payload) => {
      batches.push(payload);
      batchSent();
    },
    emitReset: (payload) => resets.push(payload),
    createTracer: () => {
      const tracer = new FakeTracer(journal);
      prepare(tracer);
      tracers.push(tracer);
      return tracer.asTracer();
    },
    onChange: () => void (changes += 1),
  });
  /** Resolves when the controller sends its next batch. */
  const nextBatch = (): Promise<void> => new Promise((resolve) => (batchSent = resolve));
  return { tracing, tracers, batches, resets, journal, nextBatch, changes: () => changes };
}

const verdict: Verdict = { code: 'replied', hop: 'mqtt-deliver', message: 'A reply to "rpc_queue" arrived on "reply/x".', evidence: [] };


describe('the tracing controller', () => {
  it('sends a burst of steps to the UI as one batch', async () => {
    const { tracing, batches, nextBatch } = setUp();
    const sent = nextBatch();
    for (let index = 0; index < 5; index += 1) {
      tracing.store.add({ rpcId: 'r1', at: index, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: `m${index}` } });
    }
    await sent;
    expect(batches).toHaveLength(1);
    expect(batches[0]?.steps).toHaveLength(5);
  });

  it('adds a verdict as the RPC\'s rpc.diagnosed step, which the summary then carries', async () => {
    const { tracing, batches, nextBatch } = setUp();
    const sent = nextBatch();
    tracing.addVerdict('r1', verdict);
    expect(tracing.store.summary('r1').verdict).toEqual(verdict);
    await sent;
    expect(batches[0]?.steps[0]).toMatchObject({ rpcId: 'r1', kind: 'rpc.diagnosed', detail: { verdict } });
  });

  it('switches the firehose on once, and says it is on', async () => {
    const { tracing, journal } = setUp();
    expect(tracing.firehoseOn).toBe(false);
    expect(await tracing.set(true, () => connection)).toEqual({ state: 'on', since: 5 });
    expect(await tracing.set(true, () => connection)).toEqual({ state: 'on', since: 5 });
    expect(journal.entries).toEqual(['tracer.start']);
    expect(tracing.firehoseOn).toBe(true);
  });

  it('does not ask for a connection to switch tracing off', async () => {
    const { tracing } = setUp();
    const view = await tracing.set(false, () => {
      throw new Error('not connected');
    });
    expect(view).toEqual({ state: 'off' });
  });

  it('shows off with the reason, and throws, when tracing could not be given back', async () => {
    const { tracing } = setUp((tracer) => (tracer.release = { outcome: 'failed', code: 'auth', reason: 'it may still be on' }));
    await tracing.set(true, () => connection);
    await expect(tracing.set(false, () => connection)).rejects.toMatchObject({ code: 'auth', message: 'it may still be on' });
    expect(tracing.view).toEqual({ state: 'off', reason: 'it may still be on' });
    expect(tracing.firehoseOn).toBe(false);
  });

  it('shows unavailable, with the reason, when the broker does not allow tracing, and keeps no tracer', async () => {
    const { tracing, journal } = setUp((tracer) => (tracer.startsWith = { state: 'unavailable', reason: 'no permission' }));
    expect(await tracing.set(true, () => connection)).toEqual({ state: 'unavailable', reason: 'no permission' });
    await tracing.set(false, () => connection);
    expect(journal.entries).toEqual(['tracer.start']);
  });

  it('follows the tracer through a broker restart: reconnecting, then on again', async () => {
    const { tracing, tracers } = setUp();
    await tracing.set(true, () => connection);
    const seen: TracerView[] = [];
    tracers[0]?.setStatus({ state: 'reconnecting', since: 6, attempt: 1, reason: 'ECONNREFUSED' });
    seen.push(tracing.view);
    tracers[0]?.setStatus({ state: 'on', since: 7, turnedOnByUs: true, resumed: true });
    seen.push(tracing.view);
    expect(seen).toEqual([
      { state: 'reconnecting', since: 6, reason: 'ECONNREFUSED' },
      { state: 'on', since: 7 },
    ]);
  });

  it('replaces the trace on import and empties it on clear, telling the UI to reset each time', () => {
    const { tracing, resets } = setUp();
    tracing.addVerdict('r1', verdict);
    const exported = JSON.parse(JSON.stringify(tracing.export([])));
    tracing.clear();
    expect(tracing.snapshot().steps).toEqual([]);
    const imported = tracing.import(exported);
    expect(imported.steps.map((step) => step.kind)).toEqual(['rpc.diagnosed']);
    expect(resets.map((reset) => reset.steps.length)).toEqual([0, 1]);
  });
});
