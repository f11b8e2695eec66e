/** RpcServer against hostile handlers and listeners, stops during reconnection and lost workers: no delivery is ever left unsettled. */
import { describe, expect, inject, it } from 'vitest';
import { RpcServer, type RpcServerOptions, type ServerProblem } from '../../src/core/rpc/server';
import { uniqueName } from '../support/names';
import { amqpChannelForFile, collectReplies, declareRequestQueue, publishRequest, type ReplyCollector } from '../support/rpc-queues';

const broker = inject('broker');
const { channel, closers } = amqpChannelForFile(broker.urls.amqp);

const replyCollector = (): Promise<ReplyCollector> => collectReplies(channel(), 'robust');
const sendRequest = (queue: string, id: string, replyTopic: string, params?: unknown): void => publishRequest(channel(), queue, id, replyTopic, params);
const declareQueue = (): Promise<string> => declareRequestQueue(channel(), closers);

function newServer(queue: string, options: Partial<RpcServerOptions> & Pick<RpcServerOptions, 'handler'>): RpcServer {
  const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: 1, prefetch: 1, ...options });
  closers.push(() => server.stop(1000));
  return server;
}

describe('a hostile thrown value or a throwing listener', () => {
  it('answers a handler that throws an object whose message getter throws, and the worker (prefetch 1) keeps serving', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const server = newServer(queue, {
      handler: (request) => {
        if (request.params !== 'hostile') return 'fine';
        throw {
          get message(): string {
            throw new Error('x');
          },
        };
      },
    });
    await server.start();
    sendRequest(queue, 'hostile', collector.replyTopic, 'hostile');
    sendRequest(queue, 'after-hostile', collector.replyTopic);
    expect(await collector.waitFor('hostile')).toMatchObject({ error: { code: 'handler-error', message: 'the handler threw an object that cannot be described' } });
    expect(await collector.waitFor('after-hostile')).toMatchObject({ result: 'fine' });
  }, 15_000);

  it('settles the delivery when a step listener throws, so a worker with prefetch 1 takes the next request', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const server = newServer(queue, { handler: (request) => request.params });
    server.on('step', (step) => {
      if (step.rpcId === 'jam' && step.kind === 'worker.received') throw new Error('a buggy step listener');
    });
    const problems: ServerProblem[] = [];
    server.on('problem', (problem) => problems.push(problem));
    await server.start();
    sendRequest(queue, 'jam', collector.replyTopic);
    sendRequest(queue, 'after-jam', collector.replyTopic);
    expect(await collector.waitFor('after-jam')).toMatchObject({ result: 'after-jam' });
    expect(problems.map((problem) => problem.kind)).toContain('internal');
  }, 15_000);

  it('settles the delivery when a problem listener throws, so a worker with prefetch 1 takes the next request', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const server = newServer(queue, {
      handlerTimeoutMs: 50,
      handler: (request) => (request.params === 'hang' ? new Promise(() => undefined) : request.params),
    });
    server.on('problem', () => {
      throw new Error('a buggy problem listener');
    });
    await server.start();
    sendRequest(queue, 'hang', collector.replyTopic, 'hang');
    sendRequest(queue, 'after-hang', collector.replyTopic);
    expect(await collector.waitFor('after-hang')).toMatchObject({ result: 'after-hang' });
  }, 15_000);
});

describe('replies under backpressure', () => {
  it('with prefetch 1500 and 1500 replies published at once (over the 2 x 1024-frame write buffer of amqplib), add no more than one drain listener per channel and print no MaxListenersExceededWarning', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const count = 1500;
    let arrivals = 0;
    let allArrived: () => void = () => undefined;
    const barrier = new Promise<void>((resolve) => (allArrived = resolve));
    const server = newServer(queue, {
      prefetch: count,
      handler: async () => {
        arrivals += 1;
        if (arrivals === count) allArrived();
        await barrier;
        return 'x'.repeat(10_000);
      },
    });
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      await server.start();
      const ids = Array.from({ length: count }, (_, index) => `big-${index}`);
      for (const id of ids) sendRequest(queue, id, collector.replyTopic);
      let mostDrainListeners = 0;
      // Bracket access: the worker's channel is private, and its listeners are what this test is about.
      const workerChannel = server['workers'][0]?.channel;
      // Each reply is published after the previous ones started waiting: count their drain listeners then.
      server.on('step', (step) => {
        if (step.kind === 'reply.published') mostDrainListeners = Math.max(mostDrainListeners, workerChannel?.listenerCount('drain') ?? 0);
      });
      for (const id of ids) await collector.waitFor(id);
      // Node reports the warning on a later tick: let those run before looking.
      await new Promise<void>((resolve) => setImmediate(resolve));
      expect(warnings.map((warning) => `${warning.name}: ${warning.message}`)).toEqual([]);
      // 1, not 0: the replies did meet backpressure.
      expect(mostDrainListeners).toBe(1);
    } finally {
      process.off('warning', onWarning);
    }
  }, 30_000);
});

/** The broker's management API, with the test broker's credentials as a header (fetch refuses them in the URL). */
async function management(path: string, method = 'GET'): Promise<unknown> {
  const url = new URL(broker.urls.management);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
  const response = await fetch(`${url.protocol}//${url.host}${path}`, { method, headers: { authorization } });
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status}`);
  return method === 'GET' ? response.json() : undefined;
}

/** Closes a client's AMQP connection from the broker's side, as a network fault would; waits until the broker lists it. */
async function closeConnectionNamed(connectionName: string): Promise<void> {
  for (;;) {
    const connections = (await management('/api/connections')) as Array<{ name: string; user_provided_name?: string }>;
    const found = connections.find((entry) => entry.user_provided_name === connectionName);
    if (found) {
      await management(`/api/connections/${encodeURIComponent(found.name)}`, 'DELETE');
      return;
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

describe('a stop while the server reconnects', () => {
  it('leaves no consumer on the queue when the stop lands while the workers are being reopened', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let slowStarted: () => void = () => undefined;
    const slowRunning = new Promise<void>((resolve) => (slowStarted = resolve));
    const name = uniqueName('reconnecting-server');
    const server = newServer(queue, {
      name,
      handler: async (request) => {
        if (request.params !== 'slow') return request.params;
        slowStarted();
        await released;
        return 'slow';
      },
    });
    await server.start();
    // Bracket access to a private method: the stop must land exactly while a worker is reopened after the reconnection.
    const openWorker = server['openWorker'].bind(server);
    let reopening: Promise<unknown> | undefined;
    let stopping: Promise<void> | undefined;
    let reopenStarted: () => void = () => undefined;
    const reopenStartedPromise = new Promise<void>((resolve) => (reopenStarted = resolve));
    server['openWorker'] = (...args: Parameters<typeof openWorker>) => {
      stopping ??= server.stop(10_000);
      reopening = openWorker(...args);
      reopenStarted();
      return reopening as ReturnType<typeof openWorker>;
    };
    sendRequest(queue, 'slow', collector.replyTopic, 'slow');
    await slowRunning;
    await closeConnectionNamed(name);
    await reopenStartedPromise;
    await reopening?.catch(() => undefined);
    // The drain is still waiting for the slow handler: nothing may consume the queue meanwhile.
    expect((await channel().checkQueue(queue)).consumerCount).toBe(0);
    release();
    await stopping;
  }, 30_000);
});

describe('handlers that hang on every request', () => {
  it('are forgotten beyond the cap of abandoned handlers, oldest first, and the stop report counts them', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const server = newServer(queue, { handlerTimeoutMs: 20, maxAbandonedHandlers: 3, handler: () => new Promise(() => undefined) });
    await server.start();
    const ids = Array.from({ length: 10 }, (_, index) => `hang-${index}`);
    for (const id of ids) sendRequest(queue, id, collector.replyTopic);
    for (const id of ids) expect(await collector.waitFor(id)).toMatchObject({ error: { code: 'handler-timeout' } });
    expect(server.runningIds).toEqual(['hang-7', 'hang-8', 'hang-9']);
    expect(await server.stopWithReport(1000)).toMatchObject({ abandoned: ['hang-7', 'hang-8', 'hang-9'], abandonedForgotten: 7 });
  }, 15_000);
});

describe('a worker whose channel cannot be reopened at once', () => {
  it('is reopened with backoff after failed attempts, each reported, and serves again', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const server = newServer(queue, { handler: (request) => request.params });
    const problems: ServerProblem[] = [];
    server.on('problem', (problem) => problems.push(problem));
    await server.start();
    // Bracket access to private members: the reopen must fail twice, and the worker's channel is closed from here.
    const openWorker = server['openWorker'].bind(server);
    let failures = 0;
    server['openWorker'] = (...args: Parameters<typeof openWorker>) => {
      if (failures < 2) {
        failures += 1;
        return Promise.reject(new Error(`refused reopen ${failures}`));
      }
      return openWorker(...args);
    };
    await server['workers'][0]?.channel.close();
    sendRequest(queue, 'after-reopen', collector.replyTopic);
    expect(await collector.waitFor('after-reopen')).toMatchObject({ result: 'after-reopen' });
    expect(problems.filter((problem) => /could not be reopened/.test(problem.message)).map((problem) => problem.message)).toEqual([
      expect.stringMatching(/\(refused reopen 1\); retrying in 100 ms/),
      expect.stringMatching(/\(refused reopen 2\); retrying in 200 ms/),
    ]);
  }, 15_000);

  it('is reported as lost after the last failed attempt', async () => {
    const queue = await declareQueue();
    const server = newServer(queue, { handler: (request) => request.params });
    const problems: ServerProblem[] = [];
    let lost: () => void = () => undefined;
    const workerLost = new Promise<void>((resolve) => (lost = resolve));
    server.on('problem', (problem) => {
      problems.push(problem);
      if (problem.kind === 'worker-lost') lost();
    });
    await server.start();
    server['openWorker'] = () => Promise.reject(new Error('refused for good'));
    await server['workers'][0]?.channel.close();
    await workerLost;
    expect(problems.find((problem) => problem.kind === 'worker-lost')?.message).toMatch(/worker-1 is gone: its channel could not be reopened after 5 attempts \(refused for good\)/);
  }, 15_000);
});
