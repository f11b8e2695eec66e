/** Server tests' side of the wire, over plain AMQP: request queues, requests as the MQTT plugin publishes them, and replies counted per id. */
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll } from 'vitest';
import { uniqueName } from './names';

export interface ReplyCollector {
  replyTopic: string;
  replies: Map<string, Array<Record<string, unknown>>>;
  waitFor(id: string): Promise<Record<string, unknown>>;
}

/** A reply topic with a queue bound to its routing key, collecting the replies per request id (duplicates included). */
export async function collectReplies(channel: Channel, prefix: string): Promise<ReplyCollector> {
  const replyTopic = `reply/${uniqueName(prefix)}`;
  const { queue } = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(queue, 'amq.direct', replyTopic.replace('/', '.'));
  const replies = new Map<string, Array<Record<string, unknown>>>();
  const waiters = new Map<string, (reply: Record<string, unknown>) => void>();
  await channel.consume(
    queue,
    (message) => {
      if (!message) return;
      const reply = JSON.parse(message.content.toString()) as Record<string, unknown>;
      const id = String(reply.id);
      replies.set(id, [...(replies.get(id) ?? []), reply]);
      waiters.get(id)?.(reply);
      waiters.delete(id);
    },
    { noAck: true },
  );
  return {
    replyTopic,
    replies,
    waitFor(id) {
      const earlier = replies.get(id)?.[0];
      if (earlier) return Promise.resolve(earlier);
      return new Promise((resolve) => waiters.set(id, resolve));
    },
  };
}

/** Publishes a request as the MQTT plugin does: to amq.direct with routing key = the request topic. */
export function publishRequest(channel: Channel, queue: string, id: string, replyTopic: string, params: unknown = id): void {
  channel.publish('amq.direct', queue, Buffer.from(JSON.stringify({ id, reply_to: replyTopic, params })));
}

/** A durable request queue bound on amq.direct with key = its name, deleted by the closer it registers. */
export async function declareRequestQueue(channel: Channel, closers: Array<() => Promise<unknown>>): Promise<string> {
  const queue = uniqueName('rpc_queue');
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, 'amq.direct', queue);
  closers.push(() => channel.deleteQueue(queue));
  return queue;
}

/**
 * One AMQP connection and channel for a whole test file: opened before its tests, closed after them, together with
 * whatever the tests put in `closers` (closed newest first, a failure there ignored).
 */
export function amqpChannelForFile(url: string): { channel: () => Channel; closers: Array<() => Promise<unknown>> } {
  let connection: ChannelModel | undefined;
  let channel: Channel | undefined;
  const closers: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    connection = await amqp.connect(url);
    channel = await connection.createChannel();
  });
  afterAll(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
    await connection?.close();
  });
  return {
    channel: () => {
      if (!channel) throw new Error('The AMQP channel is opened in beforeAll: use it inside a test.');
      return channel;
    },
    closers,
  };
}
