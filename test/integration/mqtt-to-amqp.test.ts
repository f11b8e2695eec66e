import amqp from 'amqplib';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniqueName } from '../support/names';

const broker = inject('broker');
let connection: amqp.ChannelModel;
let channel: amqp.Channel;

beforeAll(async () => {
  connection = await amqp.connect(broker.urls.amqp);
  channel = await connection.createChannel();
});
afterAll(async () => {
  await connection.close();
});

async function firstMessage(queue: string): Promise<amqp.ConsumeMessage> {
  return new Promise((resolve) => {
    void channel.consume(queue, (message) => {
      if (message) resolve(message);
    }, { noAck: true });
  });
}

describe(`the MQTT plugin of the sandbox broker (RabbitMQ ${broker.version ?? 'unknown'})`, () => {
  it('publishes an MQTT message to amq.direct, where a queue bound with the topic as key receives it', async () => {
    const queue = uniqueName('rpc_queue');
    await channel.assertQueue(queue, { exclusive: true });
    await channel.bindQueue(queue, 'amq.direct', queue);
    const received = firstMessage(queue);

    const client = await mqtt.connectAsync(broker.urls.mqtt, { clientId: uniqueName('device') });
    await client.publishAsync(queue, JSON.stringify({ reply_to: 'reply/abc' }), { qos: 1 });
    await client.endAsync();

    const message = await received;
    expect(message.fields.exchange).toBe('amq.direct');
    expect(message.fields.routingKey).toBe(queue);
    expect(JSON.parse(message.content.toString())).toEqual({ reply_to: 'reply/abc' });
    // The header went away in 4.0 (message containers; docs/BROKER-VERSIONS.md): seen on 3.10.8, gone on 4.0.5 and 4.3.6.
    const major = Number((broker.version ?? '0').split('.')[0]);
    expect(message.properties.headers?.['x-mqtt-publish-qos']).toBe(major >= 4 ? undefined : 1);
  });

  it('turns every / of a topic into a . of the routing key', async () => {
    const level = uniqueName('dev');
    const queue = uniqueName('levels');
    await channel.assertQueue(queue, { exclusive: true });
    await channel.bindQueue(queue, 'amq.direct', `devices.${level}.request`);
    const received = firstMessage(queue);

    const client = await mqtt.connectAsync(broker.urls.mqtt, { clientId: uniqueName('device') });
    await client.publishAsync(`devices/${level}/request`, 'ping', { qos: 0 });
    await client.endAsync();

    expect((await received).fields.routingKey).toBe(`devices.${level}.request`);
  });
});
