/** A reply larger than the broker's max_message_size: the caller hears so, the handler runs once, the channel comes back. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { RpcServer, type ServerProblem } from '../../src/core/rpc/server';
import { uniqueName } from '../support/names';
import { claimTestBroker } from '../support/reap';

/** The broker's limit, lowered (through the sandbox's advanced.config) so a test reply can exceed it cheaply. */
const MAX_MESSAGE_BYTES = 262_144;

/** This file lowers a broker-wide limit: it gets a broker of its own, so the shared one keeps RabbitMQ's default. */
let dir: string;
let broker: SandboxInfo;
let connection: ChannelModel;
let channel: Channel;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-maxsize-'));
  await claimTestBroker(dir);
  // From 4.1 the MQTT plugin refuses to boot when its packet limit (16 MiB) is above max_message_size: lowered too
  // (3.10 ignores the key).
  await writeFile(
    join(dir, 'advanced.config'),
    `[{rabbit, [{max_message_size, ${MAX_MESSAGE_BYTES}}]}, {rabbitmq_mqtt, [{max_packet_size_authenticated, ${MAX_MESSAGE_BYTES}}]}].\n`,
  );
  broker = (await startSandbox({ dir, nodeName: `${uniqueName('bridgescope-maxsize')}@localhost`, timeoutMs: 120_000 })).info;
  connection = await amqp.connect(broker.urls.amqp);
  channel = await connection.createChannel();
}, 150_000);

afterAll(async () => {
  await connection?.close().catch(() => undefined);
  await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('a reply over the broker\'s max_message_size', () => {
  it('is answered with a reply-too-large error, the handler runs once, and the worker keeps serving', async () => {
    const queue = uniqueName('rpc_queue');
    const replyTopic = `reply/${uniqueName('maxsize')}`;
    const { queue: replyQueue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(replyQueue, 'amq.direct', replyTopic.replace('/', '.'));
    const replies = new Map<string, Array<Record<string, unknown>>>();
    const waiters = new Map<string, (reply: Record<string, unknown>) => void>();
    await channel.consume(
      replyQueue,
      (message) => {
        if (!message) return;
        const reply = JSON.parse(message.content.toString()) as Record<string, unknown>;
        replies.set(String(reply.id), [...(replies.get(String(reply.id)) ?? []), reply]);
        waiters.get(String(reply.id))?.(reply);
      },
      { noAck: true },
    );
    const ask = (id: string, bytes: number): Promise<Record<string, unknown>> => {
      const answered = new Promise<Record<string, unknown>>((resolve) => waiters.set(id, resolve));
      channel.publish('amq.direct', queue, Buffer.from(JSON.stringify({ id, reply_to: replyTopic, params: { bytes } })));
      return answered;
    };

    const calls = new Map<string, number>();
    const server = new RpcServer({
      amqpUrl: broker.urls.amqp,
      queue,
      workers: 1,
      handler: (request) => {
        calls.set(String(request.id), (calls.get(String(request.id)) ?? 0) + 1);
        return 'x'.repeat((request.params as { bytes: number }).bytes);
      },
    });
    const problems: ServerProblem[] = [];
    server.on('problem', (problem) => problems.push(problem));
    await server.start();
    try {
      // The server starts with RabbitMQ's default limit (128 MiB): the broker itself refuses this reply.
      const refused = await ask('too-big', MAX_MESSAGE_BYTES + 1000);
      expect(refused).toMatchObject({ error: { code: 'reply-too-large', message: expect.stringMatching(/max_message_size \(262144\)/) } });
      expect(calls.get('too-big')).toBe(1);
      expect(problems.map((problem) => problem.kind)).toContain('channel-reopened');

      expect(await ask('small', 10)).toMatchObject({ result: 'x'.repeat(10) });

      // The broker named its limit: the next oversized reply is refused before publishing, the channel untouched.
      const reopenedBefore = problems.filter((problem) => problem.kind === 'channel-reopened').length;
      expect(await ask('too-big-again', MAX_MESSAGE_BYTES + 1000)).toMatchObject({ error: { code: 'reply-too-large' } });
      expect(calls.get('too-big-again')).toBe(1);
      expect(problems.find((problem) => problem.rpcId === 'too-big-again')?.message).toMatch(/is \d+ bytes, over the broker's max_message_size \(262144\)/);
      expect(await ask('small-again', 10)).toMatchObject({ result: 'x'.repeat(10) });
      expect(problems.filter((problem) => problem.kind === 'channel-reopened').length).toBe(reopenedBefore);
      expect([...replies.values()].map((list) => list.length)).toEqual([1, 1, 1, 1]);
    } finally {
      await server.stop(1000);
      await channel.deleteQueue(queue).catch(() => undefined);
    }
  }, 60_000);
});

/** A reply queue bound to one reply topic, collecting the replies per request id. */
async function replyCollector(replyTopic: string): Promise<{ replies: Map<string, Array<Record<string, unknown>>>; waitFor(id: string): Promise<Record<string, unknown>> }> {
  const { queue: replyQueue } = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(replyQueue, 'amq.direct', replyTopic.replace('/', '.'));
  const replies = new Map<string, Array<Record<string, unknown>>>();
  const waiters = new Map<string, (reply: Record<string, unknown>) => void>();
  await channel.consume(
    replyQueue,
    (message) => {
      if (!message) return;
      const reply = JSON.parse(message.content.toString()) as Record<string, unknown>;
      replies.set(String(reply.id), [...(replies.get(String(reply.id)) ?? []), reply]);
      waiters.get(String(reply.id))?.(reply);
    },
    { noAck: true },
  );
  return {
    replies,
    waitFor(id) {
      const earlier = replies.get(id)?.[0];
      return earlier ? Promise.resolve(earlier) : new Promise((resolve) => waiters.set(id, resolve));
    },
  };
}

/**
 * One worker with prefetch 10 holds an oversized reply and small ones until all have arrived, then publishes them
 * back to back on its channel: the broker's refusal of the big one closes the channel under the unconfirmed small ones.
 */
async function refusedWithSiblings(smallIds: string[]): Promise<{
  big: Awaited<ReturnType<typeof replyCollector>>;
  small: Awaited<ReturnType<typeof replyCollector>>;
  calls: Map<string, number>;
  server: RpcServer;
  queue: string;
}> {
  const queue = uniqueName('rpc_queue');
  const bigTopic = `reply/${uniqueName('big')}`;
  const smallTopic = `reply/${uniqueName('small')}`;
  const big = await replyCollector(bigTopic);
  const small = await replyCollector(smallTopic);
  const calls = new Map<string, number>();
  let arrivals = 0;
  let allArrived: () => void = () => undefined;
  const barrier = new Promise<void>((resolve) => (allArrived = resolve));
  const server = new RpcServer({
    amqpUrl: broker.urls.amqp,
    queue,
    workers: 1,
    prefetch: 10,
    handler: async (request) => {
      const { bytes, label } = request.params as { bytes: number; label: string };
      calls.set(label, (calls.get(label) ?? 0) + 1);
      arrivals += 1;
      if (arrivals === smallIds.length + 1) allArrived();
      await barrier;
      return 'x'.repeat(bytes);
    },
  });
  await server.start();
  const send = (id: string, replyTopic: string, bytes: number, label: string): void => {
    channel.publish('amq.direct', queue, Buffer.from(JSON.stringify({ id, reply_to: replyTopic, params: { bytes, label } })));
  };
  send('refused', bigTopic, MAX_MESSAGE_BYTES + 1000, 'big');
  for (const id of smallIds) send(id, smallTopic, 10, `small ${id}`);
  return { big, small, calls, server, queue };
}

describe('a reply refused as too large on a channel with other replies unconfirmed', () => {
  it('leaves the other replies lost, not too large: their requests are handled again and answered with their results', async () => {
    const siblings = ['sibling-1', 'sibling-2', 'sibling-3'];
    const { big, small, calls, server, queue } = await refusedWithSiblings(siblings);
    try {
      expect(await big.waitFor('refused')).toMatchObject({ error: { code: 'reply-too-large' } });
      for (const id of siblings) expect(await small.waitFor(id)).toMatchObject({ result: 'x'.repeat(10) });
      expect(calls.get('big')).toBe(1);
      expect([...small.replies.values()].map((list) => list.length)).toEqual([1, 1, 1]);
    } finally {
      await server.stop(1000);
      await channel.deleteQueue(queue).catch(() => undefined);
    }
  }, 60_000);

  it('answers a request that reuses the refused request\'s id on another reply topic with its own result', async () => {
    const { big, small, server, queue } = await refusedWithSiblings(['refused']);
    try {
      expect(await small.waitFor('refused')).toMatchObject({ result: 'x'.repeat(10) });
      expect(await big.waitFor('refused')).toMatchObject({ error: { code: 'reply-too-large' } });
    } finally {
      await server.stop(1000);
      await channel.deleteQueue(queue).catch(() => undefined);
    }
  }, 20_000);
});
