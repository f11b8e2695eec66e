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
  await writeFile(join(dir, 'advanced.config'), `[{rabbit, [{max_message_size, ${MAX_MESSAGE_BYTES}}]}].\n`);
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
