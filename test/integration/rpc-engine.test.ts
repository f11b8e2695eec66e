import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { QoS, ReplyStrategy } from '../../src/shared/rpc';
import type { TraceStepDraft } from '../../src/shared/trace';
import { RpcServer, type ServerProblem } from '../../src/core/rpc/server';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler, parseHandlerSpec } from '../../src/core/rpc/handlers';
import { BridgeError } from '../../src/core/errors';
import { uniqueName } from '../support/names';

const broker = inject('broker');
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function startServer(options: { workers?: number; handler?: string; queue?: string } = {}): Promise<RpcServer> {
  const server = new RpcServer({
    amqpUrl: broker.urls.amqp,
    queue: options.queue ?? uniqueName('rpc_queue'),
    workers: options.workers ?? 2,
    handler: await loadHandler(parseHandlerSpec(options.handler ?? 'echo')),
  });
  await server.start();
  closers.push(() => server.stop());
  return server;
}

async function startClient(strategy: ReplyStrategy = 'shared'): Promise<RpcClient> {
  const client = new RpcClient({ mqttUrl: broker.urls.mqtt, strategy, clientId: uniqueName('device') });
  await client.connect();
  closers.push(() => client.close());
  return client;
}

function nextProblem(server: RpcServer): Promise<ServerProblem> {
  return once(server, 'problem').then(([problem]) => problem as ServerProblem);
}

describe('request and reply through RabbitMQ', () => {
  let server: RpcServer;
  const clients: Partial<Record<ReplyStrategy, RpcClient>> = {};

  beforeAll(async () => {
    server = await startServer();
    clients.shared = await startClient('shared');
    clients['per-request'] = await startClient('per-request');
  });

  const cases: Array<[ReplyStrategy, QoS]> = [
    ['per-request', 0],
    ['per-request', 1],
    ['per-request', 2],
    ['shared', 0],
    ['shared', 1],
    ['shared', 2],
  ];
  it.each(cases)('answers a %s request published with QoS %i, reporting the QoS the broker really granted', async (strategy, qos) => {
    const client = clients[strategy] as RpcClient;
    const outcome = await client.call({ topic: server.queue, qos, params: { strategy, qos } });
    expect(outcome.result).toEqual({ strategy, qos });
    expect(outcome.topicMismatch).toBe(false);
    expect(outcome.worker).toMatch(/^worker-\d$/);
    expect(outcome.publishQos).toEqual({ asked: qos, acknowledgedAs: Math.min(qos, 1) });
    if (qos === 2) expect(outcome.warnings.join(' ')).toMatch(/QoS 2.*PUBACK/);
    if (strategy === 'per-request') expect(outcome.subscriptionQos).toEqual({ asked: qos, granted: Math.min(qos, 1) });
  });

  it('shares 20 requests between two workers in round robin, and every reply names its worker', async () => {
    const client = clients.shared as RpcClient;
    const workers: string[] = [];
    for (let index = 0; index < 20; index += 1) {
      const outcome = await client.call({ topic: server.queue, params: index });
      workers.push(outcome.worker ?? 'none');
    }
    const counts = Object.fromEntries(['worker-1', 'worker-2'].map((name) => [name, workers.filter((w) => w === name).length]));
    // Every reply names one of the two, and both take a fair share. Not exactly 10/10: a worker's ack goes out after its
    // reply's confirm, so the next request can reach the broker before that ack and skip the worker (11/9 seen on a
    // loaded machine); RabbitMQ's round robin is over the consumers that have room at that moment.
    expect(workers.filter((w) => w !== 'worker-1' && w !== 'worker-2')).toEqual([]);
    expect(counts['worker-1']).toBeGreaterThanOrEqual(7);
    expect(counts['worker-2']).toBeGreaterThanOrEqual(7);
  });

  it('round-trips a 1 MiB payload', async () => {
    const big = 'x'.repeat(1024 * 1024);
    const outcome = await (clients.shared as RpcClient).call({ topic: server.queue, params: big, timeoutMs: 20_000 });
    expect(outcome.result).toBe(big);
  });

  it('answers a reply topic with a "." and flags where the reply really arrived', async () => {
    const replyTopic = `reply/v1.2/${uniqueName('x')}`;
    const outcome = await (clients['per-request'] as RpcClient).call({ topic: server.queue, replyTopic, params: 'dot' });
    expect(outcome.result).toBe('dot');
    expect(outcome.topicMismatch).toBe(true);
    expect(outcome.arrivedOn).toBe(replyTopic.replace('v1.2', 'v1/2'));
    expect(outcome.warnings.join(' ')).toContain(`arrived on "${outcome.arrivedOn}"`);
  });

  it('keeps 200 requests in flight on one shared reply subscription and matches every reply by id', async () => {
    const client = clients.shared as RpcClient;
    const outcomes = await Promise.all(Array.from({ length: 200 }, (_, index) => client.call({ topic: server.queue, params: index })));
    expect(outcomes.map((outcome) => outcome.result)).toEqual(Array.from({ length: 200 }, (_, index) => index));
  });

  it('emits the client and server steps of one RPC in order', async () => {
    const client = clients['per-request'] as RpcClient;
    const steps: TraceStepDraft[] = [];
    const collect = (step: TraceStepDraft): void => void steps.push(step);
    client.on('step', collect);
    server.on('step', collect);
    const outcome = await client.call({ topic: server.queue, params: 'trace me' });
    // The reply can reach the device before the broker's confirm reaches the server: wait for that step too.
    if (!steps.some((step) => step.rpcId === outcome.id && step.kind === 'reply.confirmed')) {
      await new Promise<void>((resolve) => {
        const onStep = (step: TraceStepDraft): void => {
          if (step.rpcId !== outcome.id || step.kind !== 'reply.confirmed') return;
          server.off('step', onStep);
          resolve();
        };
        server.on('step', onStep);
      });
    }
    client.off('step', collect);
    server.off('step', collect);
    const mine = steps.filter((step) => step.rpcId === outcome.id).map((step) => step.kind);
    // Acks and confirms may come back before or after the other side's work: each is ordered only after its publish.
    expect(mine.filter((kind) => kind !== 'mqtt.acknowledged' && kind !== 'reply.confirmed')).toEqual([
      'composed',
      'mqtt.subscribed',
      'mqtt.published',
      'worker.received',
      'handler.finished',
      'reply.published',
      'mqtt.reply.received',
    ]);
    expect(mine.indexOf('mqtt.acknowledged')).toBeGreaterThan(mine.indexOf('mqtt.published'));
    expect(mine.indexOf('reply.confirmed')).toBeGreaterThan(mine.indexOf('reply.published'));
  });
});

describe('failures the user must hear about', () => {
  let server: RpcServer;
  let client: RpcClient;
  let device: mqtt.MqttClient;

  beforeAll(async () => {
    server = await startServer({ workers: 1 });
    client = await startClient('shared');
    device = await mqtt.connectAsync(broker.urls.mqtt, { clientId: uniqueName('raw-device') });
    closers.push(() => device.endAsync());
  });
  afterEach(() => server.removeAllListeners('problem'));

  it('reports a reply the broker returned as unroutable', async () => {
    const problem = nextProblem(server);
    const replyTopic = `reply/${uniqueName('nobody-listens')}`;
    await device.publishAsync(server.queue, JSON.stringify({ id: 'lost-1', reply_to: replyTopic }), { qos: 1 });
    const reported = await problem;
    expect(reported.kind).toBe('unroutable');
    expect(reported.message).toContain(replyTopic.replaceAll('/', '.'));
  });

  it.each([
    ['malformed JSON', Buffer.from('{"id": 1, "reply_to": '), /not valid JSON/],
    ['a missing reply_to', Buffer.from(JSON.stringify({ id: 'no-reply-to' })), /no "reply_to" field/],
    ['a binary payload', Buffer.from([0xff, 0xfe, 0x00, 0x81]), /binary/],
    ['a wildcard reply_to', Buffer.from(JSON.stringify({ id: 'w', reply_to: 'reply/#' })), /wildcard/],
    ['an empty body', Buffer.alloc(0), /empty/],
  ])('rejects %s without requeue, reports why, and keeps serving', async (_label, payload, reason) => {
    const problem = nextProblem(server);
    const rejectedBefore = server.stats.rejected;
    await device.publishAsync(server.queue, payload, { qos: 1 });
    const reported = await problem;
    expect(reported.kind).toBe('rejected');
    expect(reported.message).toMatch(reason);
    expect(server.stats.rejected).toBe(rejectedBefore + 1);
    const outcome = await client.call({ topic: server.queue, params: 'still here' });
    expect(outcome.result).toBe('still here');
  });

  it('times out with one sentence naming the reply topic and its routing key', async () => {
    const failure = await client.call({ topic: uniqueName('nobody_consumes'), timeoutMs: 300 }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(BridgeError);
    expect((failure as BridgeError).code).toBe('timeout');
    expect((failure as BridgeError).message).toMatch(/No reply to .* within 300 ms on "reply\/.*" \(routing key "reply\./);
  });

  it('cancels a waiting request', async () => {
    const controller = new AbortController();
    const pending = client.call({ topic: uniqueName('nobody_consumes'), timeoutMs: 10_000, signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: 'cancelled' });
    expect(client.inFlight).toBe(0);
  });

  it('refuses a wildcard reply topic before sending anything', async () => {
    await expect(client.call({ topic: server.queue, replyTopic: 'reply/+' })).rejects.toMatchObject({ code: 'bad-input' });
  });

  it('reports a dead broker URL in one sentence', async () => {
    const dead = new RpcClient({ mqttUrl: 'mqtt://127.0.0.1:1' });
    await expect(dead.connect()).rejects.toMatchObject({ code: 'unreachable', message: expect.stringMatching(/connection refused/) });
    const deadServer = new RpcServer({ amqpUrl: 'amqp://127.0.0.1:1', handler: () => null });
    await expect(deadServer.start()).rejects.toMatchObject({ code: 'unreachable' });
  });

  it('reports a missing exchange instead of retrying forever', async () => {
    const lost = new RpcServer({ amqpUrl: broker.urls.amqp, exchange: uniqueName('no-such-exchange'), handler: () => null });
    await expect(lost.start()).rejects.toMatchObject({ code: 'not-found', message: expect.stringMatching(/does not exist/) });
  });
});

describe('handlers', () => {
  it('answers with a structured error from the fail handler', async () => {
    const server = await startServer({ workers: 1, handler: 'fail:E_DEVICE:device is on fire' });
    const client = await startClient();
    const outcome = await client.call({ topic: server.queue });
    expect(outcome.error).toEqual({ code: 'E_DEVICE', message: 'device is on fire' });
    expect(server.stats.failed).toBe(1);
  });

  it('runs a user-supplied JavaScript module', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bridgescope-handler-'));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'handler.mjs');
    await writeFile(path, 'export default (request, context) => ({ sum: request.params.a + request.params.b, by: context.worker });\n');
    const server = await startServer({ workers: 1, handler: path });
    const client = await startClient();
    const outcome = await client.call({ topic: server.queue, params: { a: 2, b: 3 } });
    expect(outcome.result).toEqual({ sum: 5, by: 'worker-1' });
  });

  it('delays the reply by the asked time', async () => {
    const server = await startServer({ workers: 1, handler: 'delay:50' });
    const client = await startClient();
    const outcome = await client.call({ topic: server.queue, params: 'late' });
    expect(outcome.result).toEqual({ delayedMs: 50, echo: 'late' });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(50);
  });

  it('drains an in-flight request before stopping', async () => {
    const server = new RpcServer({
      amqpUrl: broker.urls.amqp,
      queue: uniqueName('rpc_queue'),
      workers: 1,
      handler: await loadHandler(parseHandlerSpec('delay:200')),
    });
    await server.start();
    const client = await startClient();
    const received = once(server, 'step');
    const call = client.call({ topic: server.queue, params: 'finish me' });
    await received;
    await server.stop();
    await expect(call).resolves.toMatchObject({ result: { delayedMs: 200, echo: 'finish me' } });
  });
});
