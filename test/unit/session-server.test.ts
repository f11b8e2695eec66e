import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServerSettings, ServerView } from '../../src/shared/contract';
import { ServerController } from '../../src/core/session/server';
import { realFactories } from '../../src/core/session/factories';
import { Session } from '../../src/core/session/session';
import { dispatch } from '../../src/core/dispatch';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { FakeServer, Journal, fakeSessionFactories, profile } from './session-fakes';

const settings: ServerSettings = { exchange: 'amq.direct', queue: 'rpc_queue', workers: 2, prefetch: 1, handler: 'echo' };

function setUp(prepare: (server: FakeServer) => void = () => undefined) {
  const journal = new Journal();
  const servers: FakeServer[] = [];
  const asked: unknown[] = [];
  const views: ServerView['state'][] = [];
  const seen = { detached: 0 };
  const controller: ServerController = new ServerController({
    createServer: async (options) => {
      asked.push(options);
      const server = new FakeServer(`server${servers.length + 1}`, journal);
      prepare(server);
      servers.push(server);
      return server.asServer();
    },
    attachSteps: () => () => void (seen.detached += 1),
    onChange: () => views.push(controller.view().state),
  });
  return { controller, servers, journal, asked, views, seen };
}

describe('the embedded server controller', () => {
  it('goes starting, then running, on the connection AMQP URL with the settings asked', async () => {
    const { controller, asked, views } = setUp();
    expect(await controller.start('amqp://broker', settings)).toMatchObject({ state: 'running', settings });
    expect(asked).toEqual([{ amqpUrl: 'amqp://broker', exchange: 'amq.direct', queue: 'rpc_queue', workers: 2, prefetch: 1, handlerSpec: 'echo', name: 'bridgescope-app-server' }]);
    expect(views).toEqual(['starting', 'running']);
    expect(controller.active).toBe(true);
  });

  it('passes the queue type of the Server panel on to the server (a quorum queue survives the loss of a cluster node)', async () => {
    const { controller, asked } = setUp();
    await controller.start('amqp://broker', { ...settings, queueType: 'quorum' });
    expect(asked[0]).toMatchObject({ queue: 'rpc_queue', queueType: 'quorum' });
  });

  it('follows its own link: reconnecting with the reason while the broker is away, running again without it', async () => {
    const { controller, servers } = setUp();
    await controller.start('amqp://broker', settings);
    servers[0]?.setStatus({ state: 'reconnecting', since: 2, attempt: 3, lastError: 'ECONNRESET' });
    expect(controller.view()).toMatchObject({ state: 'reconnecting', message: 'The broker connection dropped (ECONNRESET); reconnecting, attempt 3.' });
    servers[0]?.setStatus({ state: 'connected', since: 4 });
    expect(controller.view().state).toBe('running');
    expect(controller.view().message).toBeUndefined();
  });

  it('shows failed with the reason, and rethrows it, when the server cannot start', async () => {
    const { controller, seen } = setUp((server) => (server.failStart = new Error('ACCESS_REFUSED')));
    await expect(controller.start('amqp://broker', settings)).rejects.toThrow('ACCESS_REFUSED');
    expect(controller.view()).toMatchObject({ state: 'failed', message: 'ACCESS_REFUSED', settings });
    expect(controller.active).toBe(false);
    expect(seen.detached).toBe(1);
  });

  it('stops the running server before it starts another', async () => {
    const { controller, journal } = setUp();
    await controller.start('amqp://broker', settings);
    await controller.start('amqp://broker', { ...settings, queue: 'other' });
    expect(journal.entries).toEqual(['server1.start', 'server1.stop', 'server2.start']);
  });

  it('keeps the last counters when stopped, and shows the live ones while running', async () => {
    const { controller, servers, views } = setUp();
    await controller.start('amqp://broker', settings);
    const server = servers[0] as FakeServer;
    server.stats.received = 3;
    server.stats.perWorker.w1 = 3;
    expect(controller.view().stats).toMatchObject({ received: 3, perWorker: { w1: 3 } });
    await controller.stop();
    server.stats.received = 99;
    expect(controller.view()).toMatchObject({ state: 'stopped', stats: { received: 3 } });
    expect(views.slice(-2)).toEqual(['stopping', 'stopped']);
    // Stopping again has nothing to do.
    await controller.stop();
    expect(views.at(-1)).toBe('stopped');
  });
});

describe('a handler module asked for over the browser socket', () => {
  const made: string[] = [];
  afterEach(async () => {
    for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  /** A connected browser-mode session whose server is built by the real factory (the module is loaded before any broker is asked). */
  async function browserSession(allowHandlerModules?: boolean) {
    const fakes = fakeSessionFactories();
    const session = new Session({
      mode: 'browser',
      profiles: new ProfileStore(memorySecretBox()),
      emit: () => undefined,
      sandboxDir: '/tmp/fake',
      factories: { ...fakes.factories, createServer: realFactories.createServer },
      ...(allowHandlerModules !== undefined ? { allowHandlerModules } : {}),
    });
    await session.open(profile);
    return session;
  }

  async function moduleFile(): Promise<{ path: string; mark: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'bridgescope-socket-module-'));
    made.push(dir);
    const mark = `ran${Math.random().toString(36).slice(2)}`;
    const path = join(dir, 'handler.mjs');
    await writeFile(path, `globalThis.${mark} = true;\nexport default () => 'ok';\n`, { mode: 0o644 });
    return { path, mark };
  }

  const start = (session: Session, handler: string) => dispatch(session.handlers, 'server.start', { ...settings, handler });

  it('is refused unless `bridgescope ui --allow-handler-modules` allowed it, even the user\'s own file, and its code never runs', async () => {
    const { path, mark } = await moduleFile();
    expect(await start(await browserSession(), path)).toEqual({
      ok: false,
      error: {
        code: 'bad-input',
        message: `The handler module ${path} is refused: handler modules run code as the user running BridgeScope, so the browser socket takes them only after \`bridgescope ui --allow-handler-modules\` (echo, delay:MS and fail:CODE:MESSAGE work always).`,
      },
    });
    expect((globalThis as Record<string, unknown>)[mark]).toBeUndefined();
  });

  it('is refused, allowed or not, when another user owns it; the built-in handlers start either way', async () => {
    const { path, mark } = await moduleFile();
    await chown(path, 65534, 65534);
    expect(await start(await browserSession(true), path)).toEqual({
      ok: false,
      error: { code: 'bad-input', message: `The handler module ${path} is refused: it belongs to user id 65534, not to you or root, so its owner could run code as you.` },
    });
    expect((globalThis as Record<string, unknown>)[mark]).toBeUndefined();
    const fakes = fakeSessionFactories();
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined, sandboxDir: '/tmp/fake', factories: fakes.factories });
    await session.open(profile);
    for (const handler of ['echo', 'delay:5', 'fail:E1:no']) expect(await start(session, handler)).toMatchObject({ ok: true, result: { state: 'running' } });
  });
});

describe('the embedded server\'s log (issue 26)', () => {
  it('keeps, per request, the handler\'s outcome and every problem with its sentence, newest first, and keeps it after a stop', async () => {
    const { controller, servers } = setUp();
    await controller.start('amqp://broker', settings);
    const server = servers[0]!;
    server.emit('step', { rpcId: 'r1', at: 10, source: 'server', kind: 'worker.received', detail: { worker: 'w1', consumerTag: 'c', queue: 'rpc_queue', routingKey: 'rpc_queue', redelivered: false } });
    server.emit('step', { rpcId: 'r1', at: 11, source: 'server', kind: 'handler.finished', detail: { worker: 'w1', durationMs: 2.4, outcome: 'result' } });
    server.emit('step', { rpcId: 'r2', at: 12, source: 'server', kind: 'handler.finished', detail: { worker: 'w2', durationMs: 5, outcome: 'error', errorCode: '-32601' } });
    server.emit('problem', { kind: 'handler-timeout', worker: 'w1', rpcId: 'r3', message: 'The handler did not answer r3 within 30000 ms.' });
    server.emit('problem', { kind: 'event-loop-blocked', worker: '', rpcId: '', message: 'The event loop was blocked for 900 ms.' });
    const log = controller.view().log ?? [];
    expect(log.map(({ rpcId, worker, outcome, text }) => ({ rpcId, worker, outcome, text }))).toEqual([
      { rpcId: '', worker: '', outcome: 'problem', text: 'The event loop was blocked for 900 ms.' },
      { rpcId: 'r3', worker: 'w1', outcome: 'problem', text: 'The handler did not answer r3 within 30000 ms.' },
      { rpcId: 'r2', worker: 'w2', outcome: 'error', text: 'answered with error -32601 in 5 ms' },
      { rpcId: 'r1', worker: 'w1', outcome: 'result', text: 'answered in 2 ms' },
    ]);
    await controller.stop();
    expect(controller.view().log).toHaveLength(4);
  });

  it('keeps the last 200 lines only', async () => {
    const { controller, servers } = setUp();
    await controller.start('amqp://broker', settings);
    for (let index = 0; index < 250; index += 1) {
      servers[0]!.emit('step', { rpcId: `r${index}`, at: index, source: 'server', kind: 'handler.finished', detail: { worker: 'w1', durationMs: 1, outcome: 'result' } });
    }
    const log = controller.view().log ?? [];
    expect(log).toHaveLength(200);
    expect(log[0]?.rpcId).toBe('r249');
  });
});
