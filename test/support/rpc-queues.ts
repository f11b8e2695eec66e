/** Server tests' side of the wire, over plain AMQP: request queues, requests as the MQTT plugin publishes them, and replies counted per id. */
import type { Channel } from 'amqplib';
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
