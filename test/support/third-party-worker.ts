/**
 * Another team's AMQP worker, as the watch and trace tests meet one: a plain amqplib consumer of `queue` (bound on
 * amq.direct with its own name as key) that acks each request and leaves the answer to `answer`, which may reply at
 * once, later, twice, on a wrong key, or never. A body that is not JSON gets no reply (a device's malformed request).
 */
import amqp, { type Channel, type ChannelModel } from 'amqplib';

export interface SeedRequest {
  id: string;
  reply_to: string;
}

export async function startThirdPartyWorker(amqpUrl: string, queue: string, answer: (request: SeedRequest, channel: Channel) => void): Promise<ChannelModel> {
  const connection = await amqp.connect(amqpUrl);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: false, autoDelete: true });
  await channel.bindQueue(queue, 'amq.direct', queue);
  await channel.consume(queue, (message) => {
    if (!message) return;
    channel.ack(message);
    let request: SeedRequest;
    try {
      request = JSON.parse(message.content.toString()) as SeedRequest;
    } catch {
      return;
    }
    answer(request, channel);
  });
  return connection;
}
