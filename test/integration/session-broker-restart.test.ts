import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppState, LoadProgress, LoadSummary } from '../../src/shared/contract';
import type { TraceStep } from '../../src/shared/trace';
import { sandboxStatus, startSandbox, stopSandbox } from '../../src/core/broker/sandbox';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { uniqueName } from '../support/names';
import { claimTestBroker } from '../support/reap';
import { pauseProcess } from '../support/processes';

/**
 * The app (an in-process Session) on a sandbox node of its own that this file stops and starts under it, the way a
 * user runs `bridgescope broker stop` / `start` while the app is open.
 */
let dir: string;
let session: Session;
const events = new EventEmitter();
let latest: AppState | undefined;
const queue = uniqueName('rpc_queue');

beforeAll(async () => {
  // The bridgescope-test- prefix lets the next run reap this node if this run is killed.
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-session-'));
  await claimTestBroker(dir);
  session = new Session({
    mode: 'browser',
    profiles: new ProfileStore(memorySecretBox()),
    sandboxDir: dir,
    traceFlushMs: 10,
    emit: (name, payload) => {
      if (name === 'app.state.changed') latest = payload as AppState;
      events.emit(name, payload);
    },
  });
}, 30_000);

afterAll(async () => {
  await session.dispose();
  await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

/** Resolves with the first emitted app state (or the latest one already emitted) that satisfies `predicate`. */
function untilState(predicate: (state: AppState) => boolean): Promise<AppState> {
  if (latest && predicate(latest)) return Promise.resolve(latest);
  return new Promise((resolve) => {
    const listener = (state: AppState): void => {
      if (!predicate(state)) return;
      events.off('app.state.changed', listener);
      resolve(state);
    };
    events.on('app.state.changed', listener);
  });
}

/** Resolves once the trace has a step from the broker's firehose for this RPC. */
function untilBrokerStep(rpcId: string): Promise<TraceStep> {
  const known = session.store.steps(rpcId).find((step) => step.source === 'broker');
  if (known) return Promise.resolve(known);
  return new Promise((resolve) => {
    const listener = ({ steps }: { steps: TraceStep[] }): void => {
      const found = steps.find((step) => step.rpcId === rpcId && step.source === 'broker');
      if (!found) return;
      events.off('trace.steps.added', listener);
      resolve(found);
    };
    events.on('trace.steps.added', listener);
  });
}

const allGood = (state: AppState): boolean =>
  state.sandbox.state === 'running' &&
  state.links.amqp.state === 'connected' &&
  state.links.mqtt.state === 'connected' &&
  state.server.state === 'running' &&
  state.tracer.state === 'on';

async function rpcWithBrokerSteps(label: string): Promise<void> {
  const outcome = await session.handlers['rpc.request.send']({ topic: queue, qos: 1, strategy: 'shared', payloadText: JSON.stringify(label), timeoutMs: 15_000 });
  expect(outcome.result).toEqual({ delayedMs: 20, echo: label });
  expect((await untilBrokerStep(outcome.id)).kind).toMatch(/^broker\./);
}

describe('a broker restart under the app', () => {
  it('is seen at every stage in the app state, and the server, the tracing and a load run carry on after it', async () => {
    const sandbox = await session.startSandbox();
    const profile = session.sandboxProfile();
    if (!profile) throw new Error('no sandbox profile');
    await session.open(profile);
    await session.startServer({ exchange: 'amq.direct', queue, workers: 2, prefetch: 10, handler: 'delay:20' });
    await session.setTracing(true);
    expect((await untilState(allGood)).sandbox.ownedByApp).toBe(true);
    await rpcWithBrokerSteps('before the restart');

    // A load run that is going when the broker goes away.
    const progressSeen: LoadProgress[] = [];
    events.on('load.progress.changed', (progress: LoadProgress) => progressSeen.push(progress));
    const underway = new Promise<void>((resolve) => {
      const listener = (progress: LoadProgress): void => {
        if (progress.completed < 50) return;
        events.off('load.progress.changed', listener);
        resolve();
      };
      events.on('load.progress.changed', listener);
    });
    const count = 3000;
    const load: Promise<LoadSummary> = session.handlers['load.run.start']({
      topic: queue,
      qos: 1,
      strategy: 'shared',
      payloadText: '"load"',
      timeoutMs: 20_000,
      count,
      concurrency: 10,
    });
    await underway;

    // Stage 1: the node stops. Everything the panels show says so; nothing says "running" or "on".
    await stopSandbox(dir);
    const completedAtStop = progressSeen.at(-1)?.completed ?? 0;
    const down = await untilState(
      (state) =>
        state.sandbox.state === 'stopped' &&
        state.links.amqp.state === 'reconnecting' &&
        state.links.mqtt.state === 'reconnecting' &&
        state.server.state === 'reconnecting' &&
        state.tracer.state === 'reconnecting',
    );
    expect(down.server.message).toMatch(/The broker connection dropped/);
    expect(down.sandbox.message).toMatch(/not running/);

    // Stage 2: the node is back on the same ports; links, server and tracing resume by themselves.
    const restarted = await startSandbox({ dir, timeoutMs: 120_000 });
    expect(restarted.info.urls).toEqual(sandbox.urls);
    const back = await untilState(allGood);
    expect(back.sandbox.urls).toEqual(sandbox.urls);
    // started outside the app this time: quitting the app must not stop it
    expect(back.sandbox.ownedByApp).toBe(false);
    await rpcWithBrokerSteps('after the restart');

    // The load run went on after the reconnect, and its summary accounts for every request and for the outage.
    const summary = await load;
    console.table([{ sent: count, completed: summary.completed, completedAtStop, failed: summary.failed, errors: JSON.stringify(summary.errors), ...summary.brokerAway }]);
    expect(summary.completed + summary.failed).toBe(count);
    expect(summary.completed).toBeGreaterThan(completedAtStop);
    expect(summary.cancelled).toBe(false);
    expect(summary.brokerAway).toMatchObject({ drops: 1, failed: summary.failed, notSent: 0 });
  }, 240_000);

  it('shows the node as unreachable while it is paused, and running again when it answers', async () => {
    const status = await sandboxStatus(dir);
    if (status.state !== 'running') throw new Error(`the node is not running: ${status.state}`);
    await pauseProcess(status.info.pid);
    try {
      // The inspector's AMQP heartbeat notices the silence; the node's process is alive, so it is unreachable, not stopped.
      const paused = await untilState((state) => state.sandbox.state === 'unreachable');
      expect(paused.sandbox.message).toMatch(/alive but not answering/);
    } finally {
      process.kill(status.info.pid, 'SIGCONT');
    }
    await untilState(allGood);
  }, 120_000);
});
