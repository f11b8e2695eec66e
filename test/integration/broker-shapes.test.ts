/**
 * What the real RabbitMQ under test shows of native MQTT and of its management API, per version (issue 22 item 3):
 * the subscription queues' shapes, the consumers' tags, the MQTT connection as the management API lists it, a passive
 * declare of an exclusive queue, and what 4.3 denies by default. Runs on 3.10.8, 4.0.5 and 4.3.6
 * (BRIDGESCOPE_TEST_RABBITMQ); docs/BROKER-VERSIONS.md's "seen" columns cite it. Each test asserts the shape of the
 * version it ran on, and that BridgeScope's own readers (ManagementApi, the consumer counter) get the right answer.
 */
import amqp, { type ChannelModel } from 'amqplib';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ManagementApi } from '../../src/core/broker/management-api';
import { managementRequest } from '../../src/core/broker/management-http';
import { amqpConsumerCounter } from '../../src/core/broker/checks';
import { atLeast, parseBrokerVersion } from '../../src/shared/broker-versions';
import { subscriptionQueueName } from '../../src/shared/rabbitmq-mqtt';
import { uniqueName } from '../support/names';
import { until } from '../support/until';

const broker = inject('broker');
const version = parseBrokerVersion(broker.version ?? '');
if (!version) throw new Error(`The sandbox broker did not report its version (${broker.version ?? 'none'}).`);
/** native MQTT (no internal AMQP channels) since 3.12 */
const native = atLeast(version, 3, 12);
const api = new ManagementApi(broker.urls.management);
const clients: MqttClient[] = [];
let connection: ChannelModel;

beforeAll(async () => {
  console.log(`broker-shapes: RabbitMQ ${broker.version}`);
  connection = await amqp.connect(broker.urls.amqp);
  connection.on('error', () => undefined);
});

afterAll(async () => {
  for (const client of clients) await client.endAsync().catch(() => undefined);
  await connection.close().catch(() => undefined);
});

interface QueueShape {
  name: string;
  type: string;
  durable: boolean;
  exclusive: boolean;
  auto_delete: boolean;
}
interface ConsumerShape {
  queue: { name: string };
  consumer_tag: string;
}

const queueShape = (name: string): Promise<QueueShape> => managementRequest<QueueShape>(broker.urls.management, `/api/queues/%2F/${encodeURIComponent(name)}`);

async function subscribedClient(): Promise<{ clientId: string; client: MqttClient }> {
  const clientId = uniqueName('shapes');
  const client = await mqtt.connectAsync(broker.urls.mqtt, { clientId, clean: true, reconnectPeriod: 0 });
  clients.push(client);
  await client.subscribeAsync(`shapes/${clientId}/one`, { qos: 1 });
  await client.subscribeAsync(`shapes/${clientId}/zero`, { qos: 0 });
  return { clientId, client };
}

describe(`native MQTT's shapes on RabbitMQ ${broker.version}`, () => {
  it('subscription queues: exclusive since 3.12, QoS 0 of type rabbit_mqtt_qos0_queue with no consumer, consumers tagged mqtt', async () => {
    const { clientId } = await subscribedClient();
    const one = await queueShape(subscriptionQueueName(clientId, 1));
    const zero = await queueShape(subscriptionQueueName(clientId, 0));
    const consumers = await until("the subscription queues' consumers", async () => {
      const all = await managementRequest<ConsumerShape[]>(broker.urls.management, '/api/consumers/%2F');
      const listed = (queue: string): boolean => all.some((consumer) => consumer.queue.name === queue);
      // Before 3.12 each subscription queue has a consumer of its own, each listed a moment after its subscribe: both are
      // waited for (a CI run read the QoS 0 one's list empty right after the QoS 1 one's came).
      return listed(one.name) && (native || listed(zero.name)) ? all : undefined;
    });
    const tags = (queue: string): string[] => consumers.filter((consumer) => consumer.queue.name === queue).map((consumer) => consumer.consumer_tag);
    console.log(`broker-shapes ${broker.version}: qos1 ${JSON.stringify(one)}, qos0 ${JSON.stringify(zero)}, tags qos1 ${JSON.stringify(tags(one.name))} qos0 ${JSON.stringify(tags(zero.name))}`);
    if (native) {
      expect(one).toMatchObject({ type: 'classic', exclusive: true });
      expect(zero).toMatchObject({ type: 'rabbit_mqtt_qos0_queue', exclusive: true });
      expect(tags(one.name)).toEqual(['mqtt']);
      // the QoS 0 queue delivers straight to the connection's process: no consumer is ever listed
      expect(tags(zero.name)).toEqual([]);
    } else {
      expect(one).toMatchObject({ type: 'classic', exclusive: false, auto_delete: true });
      expect(zero).toMatchObject({ type: 'classic', exclusive: false, auto_delete: true });
      expect(tags(one.name)).toHaveLength(1);
      expect(tags(zero.name)).toHaveLength(1);
    }
  });

  it('the MQTT connection as the management API lists it: protocol, client_properties, null fields; BridgeScope still finds the client id', async () => {
    const { clientId } = await subscribedClient();
    const raw = await until('the MQTT connection', async () => {
      const all = await managementRequest<Array<Record<string, unknown>>>(broker.urls.management, '/api/connections');
      return all.find((entry) => (entry.client_properties as Record<string, unknown> | undefined)?.client_id === clientId);
    });
    const nulls = Object.keys(raw).filter((key) => raw[key] === null).sort();
    console.log(`broker-shapes ${broker.version}: connection protocol ${JSON.stringify(raw.protocol)}, client_properties ${JSON.stringify(raw.client_properties)}, null fields ${JSON.stringify(nulls)}`);
    expect(raw.protocol).toBe(native ? 'MQTT 3-1-1' : 'MQTT 3.1.1');
    // 3.10 (an internal AMQP connection) says the product and lists no null field; native MQTT drops the product and
    // lists its TLS fields as null on a plain connection
    if (native) {
      expect(raw.client_properties).toEqual({ client_id: clientId });
      expect(nulls).toEqual(expect.arrayContaining(['peer_cert_issuer', 'peer_cert_subject', 'peer_cert_validity', 'ssl_cipher', 'ssl_hash', 'ssl_key_exchange', 'ssl_protocol']));
    } else {
      expect(raw.client_properties).toEqual({ client_id: clientId, product: 'MQTT client' });
      expect(nulls).toEqual([]);
    }
    // what the diagnosis reads: the connection, by the client id it carries
    const listed = await api.connections();
    expect(listed.find((entry) => entry.mqttClientId === clientId)).toMatchObject({ protocol: raw.protocol });
  });

  it('a passive declare of an MQTT client\'s subscription queue from another connection: 405 (exclusive) since 3.12, closing only its channel', async () => {
    const { clientId } = await subscribedClient();
    const queue = subscriptionQueueName(clientId, 1);
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    const outcome = await channel.checkQueue(queue).then(
      (ok) => ({ consumers: ok.consumerCount }),
      (err: { code?: number }) => ({ code: err.code }),
    );
    console.log(`broker-shapes ${broker.version}: checkQueue(${queue}) -> ${JSON.stringify(outcome)}`);
    expect(outcome).toEqual(native ? { code: 405 } : { consumers: 1 });
    // the connection lives on: BridgeScope's consumer counter (a channel of its own) still answers on it
    const counter = amqpConsumerCounter(connection);
    const own = uniqueName('shapes');
    const other = await connection.createChannel();
    await other.assertQueue(own, { exclusive: true });
    expect(await counter(own)).toBe(0);
    if (native) await expect(counter(queue)).rejects.toMatchObject({ code: 405 });
    else expect(await counter(queue)).toBe(1);
    expect(await counter(own)).toBe(0);
    await other.close();
  });
});

describe(`what RabbitMQ ${broker.version} denies by default`, () => {
  /** One AMQP operation on a connection of its own: what happened to the channel and to the connection. */
  async function attempt(operation: (channel: amqp.Channel) => Promise<unknown>): Promise<string> {
    const own = await amqp.connect(broker.urls.amqp);
    let connectionClosed: string | undefined;
    own.on('error', (err: Error & { code?: number }) => (connectionClosed = `connection closed ${err.code ?? ''}`.trim()));
    const closed = new Promise<void>((resolve) => own.on('close', () => resolve()));
    const channel = await own.createChannel();
    channel.on('error', () => undefined);
    const result = await operation(channel).then(
      () => 'ok',
      (err: Error & { code?: number }) => `channel closed ${err.code ?? err.message}`,
    );
    if (connectionClosed === undefined) {
      // a connection-level close arrives as the channel's failure first: ask on a new channel whether the connection lives
      await own.createChannel().then((fresh) => fresh.close()).catch(() => undefined);
    }
    if (connectionClosed !== undefined) {
      await closed;
      return connectionClosed;
    }
    await own.close();
    return result;
  }

  it('a transient non-exclusive queue, global QoS and x-queue-mode: all answered ok on a fresh node (4.3 lists global_qos denied_by_default and still answers qos-ok)', async () => {
    const transient = await attempt(async (channel) => {
      const name = uniqueName('shapes-transient');
      await channel.assertQueue(name, { durable: false, exclusive: false });
      await channel.deleteQueue(name);
    });
    const globalQos = await attempt((channel) => channel.prefetch(10, true));
    const queueMode = await attempt(async (channel) => {
      const name = uniqueName('shapes-lazy');
      await channel.assertQueue(name, { durable: true, arguments: { 'x-queue-mode': 'lazy' } });
      await channel.deleteQueue(name);
    });
    console.log(`broker-shapes ${broker.version}: transient non-exclusive queue -> ${transient}; global QoS -> ${globalQos}; x-queue-mode -> ${queueMode}`);
    // what the issue expected of 4.3 (the queue closing the connection with 541) is not what 4.3.6 does out of the box:
    // transient non-exclusive queues are a deprecated feature still permitted by default (an operator may deny it in
    // rabbitmq.conf); BridgeScope declares only exclusive or durable queues and per-consumer prefetch either way
    expect({ transient, globalQos, queueMode }).toEqual({ transient: 'ok', globalQos: 'ok', queueMode: 'ok' });
    if (atLeast(version, 4, 0)) {
      const features = await managementRequest<Array<{ name: string; deprecation_phase: string }>>(broker.urls.management, '/api/deprecated-features');
      const phases = Object.fromEntries(features.map((feature) => [feature.name, feature.deprecation_phase]));
      console.log(`broker-shapes ${broker.version}: deprecated features ${JSON.stringify(phases)}`);
      expect(phases.transient_nonexcl_queues).toBe('permitted_by_default');
      // x-queue-mode is no deprecated feature: classic queues ignore it since 3.12 (CQ v2)
      expect(phases).not.toHaveProperty('queue_mode');
      // 4.3 lists global QoS as denied by default, yet answers basic.qos global=true with qos-ok (the channel lives)
      if (atLeast(version, 4, 3)) expect(phases.global_qos).toBe('denied_by_default');
    }
  });
});
