/**
 * The few texts of others that BridgeScope still recognises by their words (amqplib's and RabbitMQ's: neither gives a
 * code), each checked here against the real library and broker, so an upgrade that rewords one fails this file rather
 * than silently changing a verdict. BridgeScope's own sentences are never read: failures carry a `reason`.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AMQPLIB_NACKED, RABBITMQ_TOO_LARGE } from '../../src/core/links/amqp-link';
import { uniqueName } from '../support/names';

const broker = inject('broker');
let connection: amqp.ChannelModel;
beforeAll(async () => {
  connection = await amqp.connect(broker.urls.amqp);
});
afterAll(async () => {
  await connection.close().catch(() => undefined);
});

describe(`the outside texts BridgeScope reads, on RabbitMQ ${broker.version} with the installed amqplib`, () => {
  it('AMQPLIB_NACKED is what amqplib says of a publish the broker nacked (a full reject-publish queue)', async () => {
    const channel = await connection.createConfirmChannel();
    const queue = uniqueName('nack');
    await channel.assertQueue(queue, { durable: false, autoDelete: false, arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
    try {
      const nacked = new Promise<Error | undefined>((resolve) => channel.sendToQueue(queue, Buffer.from('x'), {}, (err: unknown) => resolve(err as Error | undefined)));
      expect((await nacked)?.message).toBe(AMQPLIB_NACKED);
    } finally {
      await channel.deleteQueue(queue);
      await channel.close();
    }
  });

  it('RABBITMQ_TOO_LARGE matches the broker\'s close for a message over max_message_size, and reads the limit', async () => {
    const channel = await connection.createChannel();
    const closed = new Promise<Error>((resolve) => channel.once('error', resolve));
    // The limit of 4.x is 16 MiB; 3.10's is 128 MiB: send one byte over whichever this broker has.
    const limit = (broker.version ?? '').startsWith('3.') ? 128 * 1024 * 1024 : 16 * 1024 * 1024;
    channel.publish('amq.direct', 'nowhere', Buffer.alloc(limit + 1));
    const match = RABBITMQ_TOO_LARGE.exec((await closed).message);
    expect(match?.[1]).toBe(String(limit + 1));
    expect(match?.[2]).toBe(String(limit));
  }, 60_000);
});
