import { rm } from 'node:fs/promises';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LinkStatus } from '../../src/shared/rpc';
import { startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { RpcServer, type ServerProblem } from '../../src/core/rpc/server';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler } from '../../src/core/rpc/handlers';
import { BridgeError } from '../../src/core/errors';
import type { TraceStepDraft } from '../../src/shared/trace';
import { wireSourceOf } from '../../src/core/trace/message-view';
import { uniqueName } from '../support/names';
import { startOwnTestBroker } from '../support/reap';
import { pauseProcess } from '../support/processes';

/**
 * These tests stop, start and pause a broker: they get one of their own, so the shared one keeps serving the other files.
 */
let dir: string;
let broker: SandboxInfo;
const closers: Array<() => Promise<void>> = [];
const table: Array<Record<string, string | number>> = [];

beforeAll(async () => {
  ({ dir, broker } = await startOwnTestBroker('own-faults'));
}, 150_000);

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
  if (table.length > 0) console.table(table);
}, 60_000);

/** Stops the node gracefully and starts it again with the same name, ports and data. */
async function restartBroker(): Promise<void> {
  await stopSandbox(dir);
  broker = (await startSandbox({ dir, nodeName: broker.nodeName, ports: broker.ports, timeoutMs: 120_000 })).info;
}

function untilStatus(emitter: { on(event: 'status', listener: (status: LinkStatus) => void): unknown; off(event: 'status', listener: (status: LinkStatus) => void): unknown }, states: LinkStatus['state'][], current: LinkStatus): Promise<LinkStatus> {
  if (states.includes(current.state)) return Promise.resolve(current);
  return new Promise((resolve) => {
    const listener = (status: LinkStatus): void => {
      if (!states.includes(status.state)) return;
      emitter.off('status', listener);
      resolve(status);
    };
    emitter.on('status', listener);
  });
}

async function startPair(options: { heartbeatSeconds?: number; keepaliveSeconds?: number; maxOfflineQueue?: number; maxInFlight?: number; prefetch?: number } = {}) {
  const server = new RpcServer({
    amqpUrl: broker.urls.amqp,
    queue: uniqueName('rpc_queue'),
    workers: 2,
    prefetch: options.prefetch ?? 50,
    heartbeatSeconds: options.heartbeatSeconds ?? 5,
    handler: await loadHandler({ kind: 'echo' }),
  });
  await server.start();
  const client = new RpcClient({
    mqttUrl: broker.urls.mqtt,
    strategy: 'shared',
    clientId: uniqueName('device'),
    reconnectDelayMs: 200,
    ...(options.keepaliveSeconds ? { keepaliveSeconds: options.keepaliveSeconds } : {}),
    ...(options.maxOfflineQueue ? { maxOfflineQueue: options.maxOfflineQueue } : {}),
    ...(options.maxInFlight ? { maxInFlight: options.maxInFlight } : {}),
  });
  await client.connect();
  closers.push(() => client.close(), () => server.stop(2000));
  return { server, client };
}

describe.each([
  ['near the start', 0.1],
  ['in the middle', 0.5],
  ['near the end', 0.9],
])('a broker restart %s of a burst of 1,000 QoS 1 requests', (label, fraction) => {
  it('ends every request with exactly one outcome: a reply or a clear error, none lost, duplicates counted', async () => {
    const { server, client } = await startPair();
    const total = 1000;
    let settled = 0;
    let restart: Promise<void> | undefined;
    const outcomes = new Map<string, 'reply' | string>();
    const ids = Array.from({ length: total }, (_, index) => `${label.replaceAll(' ', '-')}-${index}`);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < total) {
        const id = ids[next] as string;
        next += 1;
        try {
          const outcome = await client.call({ id, topic: server.queue, qos: 1, params: id, timeoutMs: 90_000, retries: 20, attemptTimeoutMs: 4000 });
          outcomes.set(id, outcome.id === id && outcome.result === id ? 'reply' : `wrong reply: ${JSON.stringify(outcome.error ?? outcome.body)}`);
        } catch (err) {
          outcomes.set(id, err instanceof BridgeError ? err.code : 'crash');
        }
        settled += 1;
        if (!restart && settled >= total * fraction) restart = restartBroker();
      }
    };
    await Promise.all(Array.from({ length: 100 }, lane));
    await restart;

    const replies = [...outcomes.values()].filter((outcome) => outcome === 'reply').length;
    const errors = outcomes.size - replies;
    table.push({ fault: `broker restart ${label}`, sent: total, replies, errors, lost: total - outcomes.size, duplicates: client.duplicates });
    expect(outcomes.size).toBe(total);
    expect([...outcomes.values()].filter((outcome) => outcome !== 'reply' && !['timeout', 'unreachable'].includes(outcome))).toEqual([]);
    expect(replies).toBeGreaterThan(0);
    // Both links come back by themselves (each on its own backoff), and the server consumes again.
    await untilStatus(client.link, ['connected'], client.link.status);
    await untilStatus(server, ['connected'], server.status);
    const after = await client.call({ topic: server.queue, params: 'after the restart', timeoutMs: 10_000 });
    expect(after.result).toBe('after the restart');
  }, 240_000);
});

describe('a dead link', () => {
  it('is noticed within twice the heartbeat/keepalive interval, refuses requests past the offline cap, and recovers', async () => {
    const intervalSeconds = 2;
    const { server, client } = await startPair({ heartbeatSeconds: intervalSeconds, keepaliveSeconds: intervalSeconds, maxOfflineQueue: 5 });
    let paused = 0;
    // Each link's own time, so a slow detection names the link that was slow and the reason it gave.
    const noticed = (link: 'MQTT' | 'AMQP') => (status: LinkStatus) => ({ link, afterMs: Date.now() - paused, reason: 'lastError' in status ? status.lastError : status.state });
    const mqttDown = untilStatus(client.link, ['reconnecting', 'failed'], client.link.status).then(noticed('MQTT'));
    const amqpDown = untilStatus(server, ['reconnecting', 'failed'], server.status).then(noticed('AMQP'));
    paused = Date.now();
    await pauseProcess(broker.pid);
    try {
      const [mqtt, amqp] = await Promise.all([mqttDown, amqpDown]);
      const noticedAfterMs = Math.max(mqtt.afterMs, amqp.afterMs);
      table.push({ fault: 'broker paused (SIGSTOP)', sent: 0, replies: 0, errors: 0, lost: 0, duplicates: 0, noticedAfterMs, mqttAfterMs: mqtt.afterMs, amqpAfterMs: amqp.afterMs });
      // The detection bound comes from the protocols' own intervals, plus a second for timer slack.
      expect([mqtt, amqp].filter((down) => down.afterMs > 2 * intervalSeconds * 1000 + 1000)).toEqual([]);

      const waiting = Array.from({ length: 5 }, () => client.call({ topic: server.queue, params: 'queued', timeoutMs: 60_000 }));
      await expect(client.call({ topic: server.queue, params: 'one too many' })).rejects.toMatchObject({
        code: 'unreachable',
        message: expect.stringMatching(/MQTT link is down and 5 requests already wait/),
      });
      process.kill(broker.pid, 'SIGCONT');
      const outcomes = await Promise.allSettled(waiting);
      expect(outcomes.every((outcome) => outcome.status === 'fulfilled' || outcome.reason instanceof BridgeError)).toBe(true);
    } finally {
      process.kill(broker.pid, 'SIGCONT');
    }
    await untilStatus(client.link, ['connected'], client.link.status);
    await untilStatus(server, ['connected'], server.status);
    expect((await client.call({ topic: server.queue, params: 'alive', timeoutMs: 10_000 })).result).toBe('alive');
  }, 120_000);
});

describe('a channel closed by the broker', () => {
  it('is reopened on the same connection, and the request whose reply failed is rejected instead of looping', async () => {
    const connection = await amqp.connect(broker.urls.amqp);
    closers.push(() => connection.close());
    const channel = await connection.createChannel();
    const exchange = uniqueName('replies');
    await channel.assertExchange(exchange, 'direct', { autoDelete: false });
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, exchange, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
    await server.start();
    closers.push(() => server.stop(2000));
    const statuses: string[] = [];
    server.on('status', (status) => statuses.push(status.state));
    const problems: ServerProblem[] = [];
    server.on('problem', (problem) => problems.push(problem));

    // The exchange the replies go to disappears: the reply publish makes the broker close the channel (404).
    await channel.deleteExchange(exchange);
    const rejected = new Promise<void>((resolve) => server.on('problem', (problem) => problem.kind === 'rejected' && resolve()));
    channel.sendToQueue(server.queue, Buffer.from(JSON.stringify({ id: 'doomed', reply_to: 'reply/doomed' })));
    await rejected;
    expect(problems.map((problem) => problem.kind)).toEqual(expect.arrayContaining(['reply-failed', 'channel-reopened', 'rejected']));

    // Back to normal: the reopened worker answers the next request on the same connection.
    await channel.assertExchange(exchange, 'direct', { autoDelete: false });
    const { queue: replies } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(replies, exchange, 'reply.fine');
    const answered = new Promise<string>((resolve) => void channel.consume(replies, (message) => message && resolve(message.content.toString()), { noAck: true }));
    channel.sendToQueue(server.queue, Buffer.from(JSON.stringify({ id: 'fine', reply_to: 'reply/fine', params: 'ok' })));
    expect(JSON.parse(await answered)).toMatchObject({ id: 'fine', result: 'ok' });
    expect(statuses).not.toContain('reconnecting');
    table.push({ fault: 'channel closed by the broker (404)', sent: 2, replies: 1, errors: 1, lost: 0, duplicates: 0 });
  }, 60_000);
});

/** The head of the message a step saw on the wire, as text. */
const wireBody = (step: TraceStepDraft): string => wireSourceOf(step)?.head.toString('latin1') ?? '';

describe('a reply the broker nacks', () => {
  it('goes again once, when its request comes back, without running the handler twice; then the request is rejected instead of looping', async () => {
    const connection = await amqp.connect(broker.urls.amqp);
    closers.push(() => connection.close());
    const channel = await connection.createChannel();
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
    await server.start();
    closers.push(() => server.stop(2000));
    const steps: TraceStepDraft[] = [];
    server.on('step', (step) => steps.push(step));
    const problems: ServerProblem[] = [];
    // The device's reply queue refuses every message: RabbitMQ nacks the reply (as 4.x does for a subscription queue
    // going down while the node stops, the case this is for; a full reject-publish queue makes it happen on demand).
    const { queue: replies } = await channel.assertQueue('', { exclusive: true, arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
    await channel.bindQueue(replies, 'amq.direct', 'reply.nacked');
    const rejected = new Promise<void>((resolve) =>
      server.on('problem', (problem) => {
        problems.push(problem);
        if (problem.kind === 'rejected') resolve();
      }),
    );
    channel.sendToQueue(server.queue, Buffer.from(JSON.stringify({ id: 'nacked', reply_to: 'reply/nacked', params: 'kept' })));
    await rejected;
    expect(problems.map((problem) => `${problem.kind}: ${problem.message}`)).toEqual([
      'reply-failed: The reply to nacked was not confirmed: message nacked; the request goes back to the queue and the same reply is published again when it comes back',
      'rejected: The reply to nacked was not confirmed: message nacked, for the second time: the request is rejected without requeue so it does not loop.',
    ]);
    expect(server.stats).toMatchObject({ received: 2, rejected: 1, replied: 0 });

    const mine = steps.filter((step) => step.rpcId === 'nacked');
    expect(mine.filter((step) => step.kind === 'worker.received').map((step) => step.detail)).toEqual([
      expect.objectContaining({ redelivered: false }),
      expect.objectContaining({ redelivered: true }),
    ]);
    // The handler ran once; the redelivery published the very reply it made.
    expect(mine.filter((step) => step.kind === 'handler.finished').map((step) => step.detail)).toEqual([
      expect.objectContaining({ outcome: 'result' }),
      expect.objectContaining({ outcome: 'result', durationMs: 0, keptReply: true }),
    ]);
    const published = mine.filter((step) => step.kind === 'reply.published').map((step) => JSON.parse(wireBody(step)) as unknown);
    expect(published).toEqual([expect.objectContaining({ id: 'nacked', result: 'kept' }), expect.objectContaining({ id: 'nacked', result: 'kept' })]);
    expect(mine.filter((step) => step.kind === 'reply.confirmed').map((step) => step.detail)).toEqual([
      expect.objectContaining({ outcome: 'nacked' }),
      expect.objectContaining({ outcome: 'nacked' }),
    ]);
    expect(mine.filter((step) => step.kind === 'request.rejected')).toHaveLength(1);
    // Nothing is left on the request queue: the request did not loop.
    expect((await channel.checkQueue(server.queue)).messageCount).toBe(0);
    table.push({ fault: 'reply nacked twice (reject-publish)', sent: 1, replies: 0, errors: 1, lost: 0, duplicates: 0 });
  }, 60_000);
});

describe('a duplicate MQTT client id', () => {
  it('is reported, not fought over in a reconnect loop', async () => {
    const clientId = uniqueName('twin');
    const first = new RpcClient({ mqttUrl: broker.urls.mqtt, clientId, reconnectDelayMs: 100, strategy: 'per-request' });
    await first.connect();
    const second = new RpcClient({ mqttUrl: broker.urls.mqtt, clientId, reconnectDelayMs: 100, strategy: 'per-request' });
    closers.push(() => first.close(), () => second.close());
    const firstFailed = untilStatus(first.link, ['failed'], first.link.status);
    const secondFailed = untilStatus(second.link, ['failed'], second.link.status);
    await second.connect();
    const failed = await Promise.race([firstFailed, secondFailed]);
    expect(failed).toMatchObject({ state: 'failed', message: expect.stringMatching(new RegExp(`another client is probably using the client id "${clientId}"`)) });
    const survivor = first.link.status.state === 'failed' ? second : first;
    await untilStatus(survivor.link, ['connected'], survivor.link.status);
  }, 60_000);
});

describe('backpressure', () => {
  it('keeps 10,000 requests in flight, answers all of them, and refuses the next one at the cap', async () => {
    const { server, client } = await startPair({ maxInFlight: 10_000, prefetch: 500 });
    const calls = Array.from({ length: 10_000 }, (_, index) => client.call({ topic: server.queue, params: index, timeoutMs: 120_000 }));
    expect(client.inFlight).toBe(10_000);
    await expect(client.call({ topic: server.queue, params: 'over the cap' })).rejects.toMatchObject({ code: 'busy', message: expect.stringMatching(/the cap is 10000/) });
    const outcomes = await Promise.all(calls);
    expect(outcomes.map((outcome) => outcome.result)).toEqual(Array.from({ length: 10_000 }, (_, index) => index));
    expect(client.inFlight).toBe(0);
    table.push({ fault: '10,000 requests in flight', sent: 10_001, replies: 10_000, errors: 1, lost: 0, duplicates: client.duplicates });
  }, 180_000);
});
