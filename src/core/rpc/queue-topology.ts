/** The server's queue set-up: the exchange must exist; the shared queue is declared (or taken as it is) and bound. */
import type { Channel, ChannelModel } from 'amqplib';
import { BridgeError } from '../errors';
import { messageOf } from '../../shared/thrown';

export type QueueType = 'classic' | 'quorum';

/** What set-up uses of a connection (a test gives a fake). */
export type TopologyModel = Pick<ChannelModel, 'createChannel'>;

export interface Topology {
  exchange: string;
  queue: string;
  /** unset: an existing queue is used as it is, a missing one is declared classic */
  queueType: QueueType | undefined;
}

/** Refuses a queue name the broker would not take as given: empty (the broker would invent an `amq.gen-*` one), reserved or too long. */
export function validateQueueName(queue: string): void {
  if (queue === '') {
    throw new BridgeError('bad-input', 'The queue name is empty: give the name of the shared request queue (devices publish to it as their topic).');
  }
  if (Buffer.byteLength(queue) > 255) {
    throw new BridgeError('bad-input', `The queue name is ${Buffer.byteLength(queue)} bytes; AMQP allows at most 255.`);
  }
  if (queue.startsWith('amq.')) {
    throw new BridgeError('bad-input', `The queue name "${queue}" starts with "amq.", which the broker reserves for itself.`);
  }
}

/** Checks the exchange, then declares and binds the queue with key = its name. */
export async function declareTopology(model: TopologyModel, topology: Topology): Promise<void> {
  const setupChannel = await model.createChannel();
  setupChannel.on('error', () => undefined);
  try {
    await setupChannel.checkExchange(topology.exchange);
  } catch {
    throw new BridgeError('not-found', `The exchange "${topology.exchange}" does not exist on the broker; the MQTT plugin publishes to mqtt.exchange (amq.topic unless configured).`);
  }
  await declareQueue(model, topology);
  await setupChannel.close().catch(() => undefined);
}

/**
 * Declares the shared queue (durable, of the asked type) and binds it with key = its name. Without a type, an existing
 * queue is taken as it is (a classic declaration of a quorum queue would be refused as inequivalent).
 */
async function declareQueue(model: TopologyModel, { exchange, queue, queueType }: Topology): Promise<void> {
  if (queueType === undefined) {
    const probe = await model.createChannel();
    probe.on('error', () => undefined);
    const exists = await probe.checkQueue(queue).then(
      () => true,
      () => false,
    );
    await probe.close().catch(() => undefined);
    if (exists) {
      await withChannel(model, queue, queueType, (channel) => channel.bindQueue(queue, exchange, queue));
      return;
    }
  }
  await withChannel(model, queue, queueType, async (channel) => {
    // The type is always said: a vhost whose default queue type is quorum (4.x) would otherwise make it a quorum queue.
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': queueType ?? 'classic' } });
    await channel.bindQueue(queue, exchange, queue);
  });
}

async function withChannel(model: TopologyModel, queue: string, queueType: QueueType | undefined, work: (channel: Channel) => Promise<unknown>): Promise<void> {
  const channel = await model.createChannel();
  channel.on('error', () => undefined);
  try {
    await work(channel);
  } catch (err) {
    const text = messageOf(err);
    const asked = queueType ?? 'classic';
    const hint = /x-queue-type/.test(text)
      ? ` It already exists with another type than ${asked}: delete it (its messages go with it) or use another --queue to get a ${asked} queue.`
      : '';
    throw new BridgeError('broker-failed', `Cannot declare the queue "${queue}": ${text}${hint}`);
  }
  await channel.close().catch(() => undefined);
}
