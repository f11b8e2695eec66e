import { describe, expect, it } from 'vitest';
import { commandNames } from '../../src/shared/contract';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { runShutdown, shutdownTasks, type ShutdownTask } from '../../src/core/session/shutdown';
import { fakeSessionFactories, profile } from './session-fakes';

function setUp(mode: 'browser' | 'electron' = 'browser') {
  const fakes = fakeSessionFactories();
  const session = new Session({ mode, profiles: new ProfileStore(memorySecretBox()), emit: () => undefined, sandboxDir: '/tmp/fake', factories: fakes.factories });
  return { session, ...fakes };
}

/** A session with everything going: a sandbox it started, a connection to it, a server, and the firehose on. */
async function busySession() {
  const parts = setUp();
  await parts.session.startSandbox();
  await parts.session.open(parts.session.sandboxProfile() ?? profile);
  await parts.session.startServer({ exchange: 'amq.direct', queue: 'q', workers: 1, prefetch: 1, handler: 'echo' });
  await parts.session.setTracing(true);
  parts.journal.entries.length = 0;
  return parts;
}

describe('the session, wired from fakes', () => {
  it('still implements exactly the contract', () => {
    const { session } = setUp();
    expect(Object.keys(session.handlers).sort()).toEqual([...commandNames].sort());
  });

  it('answers every command that needs a connection, sent before any, with a rejected not-connected (never a throw)', async () => {
    const { session } = setUp();
    const request = { topic: 't', qos: 1, strategy: 'shared', payloadText: '{}', timeoutMs: 100 } as const;
    const calls: Array<() => Promise<unknown>> = [
      () => session.handlers['rpc.request.send'](request),
      () => session.handlers['load.run.start']({ ...request, count: 1, concurrency: 1 }),
      () => session.handlers['rpc.preflight.run']({ topic: 't', strategy: 'shared' }),
      () => session.handlers['broker.bindings.list']({ exchange: 'amq.direct' }),
      () => session.handlers['broker.probe.run']({}),
      () => session.handlers['server.start']({ exchange: 'amq.direct', queue: 'q', workers: 1, prefetch: 1, handler: 'echo' }),
      () => session.handlers['trace.tracing.set']({ on: true }),
    ];
    for (const call of calls) {
      let returned: Promise<unknown> | undefined;
      expect(() => (returned = call())).not.toThrow();
      await expect(returned).rejects.toMatchObject({ code: 'not-connected' });
    }
  });

  it('leaves running a sandbox node that replaced the one it started (stopped and started again from a terminal), and says so', async () => {
    const stops: string[] = [];
    const tasks = shutdownTasks({
      mode: 'browser',
      server: { active: false, stop: async () => undefined },
      tracing: { view: { state: 'off' } } as never,
      sandbox: {
        view: { state: 'running', nodeName: 'bridgescope-1@localhost', ownedByApp: false },
        owned: false,
        replaced: true,
        stop: async () => (stops.push('stop'), { stopped: true }) as never,
      },
      cancelLoad: () => undefined,
      tracingOff: async () => ({ state: 'off' }) as never,
      close: async () => undefined,
    });
    const sandboxTask = tasks.find((task) => task.kind === 'sandbox') as ShutdownTask;
    expect(sandboxTask.what).toBe('leave running the sandbox broker that replaced the one this command started');
    expect(sandboxTask.needed()).toBe(true);
    expect(await sandboxTask.run()).toBe(
      'The sandbox broker this command started was stopped outside it; the one running there now (bridgescope-1@localhost) was started by something else, so it is left running (`bridgescope broker stop` stops it).',
    );
    expect(stops).toEqual([]);
  });

  it('names its shutdown steps in the order they run, each saying whether it has anything to do', async () => {
    const { session } = await busySession();
    const tasks = session.shutdownTasks();
    expect(tasks.map((task) => task.what)).toEqual([
      'drain the embedded server',
      'turn firehose tracing back off',
      'close the connections',
      'stop the sandbox broker this command started',
    ]);
    expect(tasks.map((task) => task.needed())).toEqual([true, true, true, true]);
    expect(setUp('electron').session.shutdownTasks().map((task) => task.needed())).toEqual([false, false, true, false]);
    expect(setUp('electron').session.shutdownTasks()[3]?.what).toBe('stop the sandbox broker the app started');
  });

  it('shuts down in order: drain the server, give tracing back, close the links, stop the sandbox it started', async () => {
    const { session, journal } = await busySession();
    await session.shutdown();
    expect(journal.entries).toEqual(['server1.stop', 'tracer.stop', 'client.close', 'inspector.close', 'node.stop']);
    expect(session.state()).toMatchObject({ sandbox: { state: 'stopped' }, server: { state: 'stopped' }, tracer: { state: 'off' }, links: { mqtt: { state: 'idle' } } });
  });

  it('throws a failure to give tracing back, after still closing the links, when the broker is not its own', async () => {
    const { session, journal, tracers } = setUp();
    await session.open(profile);
    await session.setTracing(true);
    (tracers[0] as { release: unknown }).release = { outcome: 'failed', code: 'auth', reason: 'Could not switch firehose tracing off; it may still be on.' };
    await expect(session.shutdown()).rejects.toMatchObject({ code: 'auth' });
    expect(journal.entries).toEqual(expect.arrayContaining(['client.close', 'inspector.close']));
  });

  it('does not report tracing it could not give back on a sandbox it stopped: a node restart resets it', async () => {
    const { session, tracers } = await busySession();
    (tracers[0] as { release: unknown }).release = { outcome: 'failed', code: 'auth', reason: 'it may still be on' };
    await expect(session.shutdown()).resolves.toBeUndefined();
  });

  it('looks at the sandbox node when a link drops', async () => {
    const { session, node, connection } = setUp();
    await session.startSandbox();
    await session.open(session.sandboxProfile() ?? profile);
    const before = node.statusCalls;
    connection.client.link.setStatus({ state: 'reconnecting', since: 2, attempt: 1, lastError: 'ECONNRESET' });
    expect(node.statusCalls).toBe(before + 1);
    await session.shutdown();
  });
});

describe('running the shutdown steps', () => {
  const task = (kind: ShutdownTask['kind'], ran: string[], failWith?: string): ShutdownTask => ({
    what: kind,
    kind,
    needed: () => true,
    run: async () => {
      ran.push(kind);
      if (failWith) throw new Error(failWith);
      return undefined;
    },
  });

  it('runs every step even after one failed, then throws the first failure', async () => {
    const ran: string[] = [];
    await expect(runShutdown([task('drain', ran, 'drain failed'), task('tracing', ran, 'tracing failed'), task('links', ran)], false)).rejects.toThrow('drain failed');
    expect(ran).toEqual(['drain', 'tracing', 'links']);
  });

  it('throws a failure to stop its own sandbox even though that sandbox would have taken the tracing along', async () => {
    const ran: string[] = [];
    await expect(runShutdown([task('tracing', ran, 'tracing failed'), task('sandbox', ran, 'the node did not stop')], true)).rejects.toThrow('the node did not stop');
  });
});
