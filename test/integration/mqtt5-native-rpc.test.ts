/**
 * MQTT 5 request/response the native way, on the run's real broker: a device that puts its reply topic in Response
 * Topic and its correlation in Correlation Data, with nothing in the body, is answered by the embedded server. RabbitMQ
 * 3.13+ hands both to AMQP (x-reply-to-topic, correlation_id or x-correlation-id) and back (docs/BROKER-VERSIONS.md);
 * 3.10-3.12 have no MQTT 5, and the device is told so in one sentence.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RpcServer, type ServerProblem } from '../../src/core/rpc/server';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler, parseHandlerSpec } from '../../src/core/rpc/handlers';
import { brokerRules } from '../../src/shared/broker-versions';
import { uniqueName } from '../support/names';

const broker = inject('broker');
const rules = brokerRules(broker.version);
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
}, 60_000);

/** A bare MQTT 5 device (mqtt.js), subscribed to its reply topic at QoS 1. */
async function device(replyTopic: string): Promise<{ client: MqttClient; next: () => Promise<IPublishPacket> }> {
  const client = await mqtt.connectAsync(broker.urls.mqtt, { protocolVersion: 5, clientId: uniqueName('dev5'), reconnectPeriod: 0 });
  closers.push(() => client.endAsync());
  const arrived: IPublishPacket[] = [];
  const waiting: Array<(packet: IPublishPacket) => void> = [];
  client.on('message', (_topic, _payload, packet) => {
    const taker = waiting.shift();
    if (taker) taker(packet);
    else arrived.push(packet);
  });
  await client.subscribeAsync(replyTopic, { qos: 1 });
  return { client, next: () => new Promise((resolve) => (arrived.length ? resolve(arrived.shift() as IPublishPacket) : waiting.push(resolve))) };
}

describe.runIf(rules.mqtt5)(`native MQTT 5 request/response on RabbitMQ ${broker.version}`, () => {
  let queue: string;
  const problems: ServerProblem[] = [];
  beforeAll(async () => {
    queue = uniqueName('native5');
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: 1, handler: await loadHandler(parseHandlerSpec('echo')) });
    server.on('problem', (problem) => problems.push(problem));
    await server.start();
    closers.push(() => server.stop());
  });

  it.each([
    ['a text correlation (AMQP correlation_id)', Buffer.from(`corr-${randomUUID()}`), Buffer.alloc(0)],
    ['a 300-byte text correlation (AMQP header x-correlation-id: too long for correlation_id)', Buffer.from('c'.repeat(300)), Buffer.alloc(0)],
    ['a plain-text body', Buffer.from(`corr-${randomUUID()}`), Buffer.from('temperature?')],
  ])('answers an empty-bodied request with %s on its Response Topic, Correlation Data echoed', async (_label, correlationData, body) => {
    const replyTopic = `reply/${randomUUID()}`;
    const { client, next } = await device(replyTopic);
    await client.publishAsync(queue, body, { qos: 1, properties: { responseTopic: replyTopic, correlationData } });
    const reply = await next();
    expect(reply.topic).toBe(replyTopic);
    expect(Buffer.from(reply.properties?.correlationData ?? [])).toEqual(correlationData);
    // persistent replies: delivered at the subscription's QoS 1, not 0
    expect(reply.qos).toBe(1);
    const answer = JSON.parse(reply.payload.toString()) as { result: unknown; worker: string };
    expect(answer.worker).toMatch(/^worker-/);
    expect(answer.result).toEqual(body.byteLength === 0 ? null : body.toString());
    expect(problems).toEqual([]);
  });

  it('says in one sentence that a binary Correlation Data cannot be echoed (amqplib reads the header as UTF-8), and still answers', async () => {
    const replyTopic = `reply/${randomUUID()}`;
    const { client, next } = await device(replyTopic);
    const correlationData = Buffer.concat([Buffer.from([0, 255, 0, 0xfe]), randomBytes(8)]);
    await client.publishAsync(queue, Buffer.alloc(0), { qos: 1, properties: { responseTopic: replyTopic, correlationData } });
    const reply = await next();
    expect(reply.topic).toBe(replyTopic);
    expect(Buffer.from(reply.properties?.correlationData ?? [])).not.toEqual(correlationData);
    expect(problems.splice(0)).toEqual([expect.objectContaining({ kind: 'correlation-lost', message: expect.stringContaining('Send UTF-8 Correlation Data') })]);
  });
});

describe.runIf(rules.mqtt5)(`what a third-party server does to an MQTT 5 reply on RabbitMQ ${broker.version}`, () => {
  /** A bare amqplib server: answers each seed-pattern request on its reply key, copying the correlation_id or not. */
  async function thirdPartyServer(queue: string, copyCorrelation: boolean): Promise<void> {
    const connection = await amqp.connect(broker.urls.amqp);
    closers.push(() => connection.close());
    const channel = await connection.createChannel();
    await channel.assertQueue(queue, { durable: false, autoDelete: true });
    await channel.bindQueue(queue, 'amq.direct', queue);
    await channel.consume(queue, (message) => {
      if (!message) return;
      const request = JSON.parse(message.content.toString()) as { id: string; reply_to: string };
      const properties = copyCorrelation ? { deliveryMode: 2, correlationId: message.properties.correlationId as string } : { deliveryMode: 2 };
      channel.publish('amq.direct', request.reply_to.replaceAll('/', '.'), Buffer.from(JSON.stringify({ id: request.id, result: 'ok' })), properties);
      channel.ack(message);
    });
  }

  it.each([
    [false, 'says Correlation Data did not survive when the server drops correlation_id'],
    [true, 'says nothing of Correlation Data when the server copies correlation_id'],
  ])('copy=%s: %s', async (copyCorrelation) => {
    const queue = uniqueName('third5');
    await thirdPartyServer(queue, copyCorrelation);
    const client = new RpcClient({ mqttUrl: broker.urls.mqtt, protocolVersion: 5, strategy: 'per-request', clientId: uniqueName('cli5'), brokerVersion: broker.version });
    await client.connect();
    closers.push(() => client.close());
    const outcome = await client.call({ topic: queue, qos: 1, params: 1, timeoutMs: 10_000, mqtt5: { correlationData: 'order-77' } });
    expect(outcome.result).toBe('ok');
    const lost = outcome.warnings?.filter((warning) => warning.startsWith('Correlation Data did not survive')) ?? [];
    expect(lost).toEqual(copyCorrelation ? [] : ['Correlation Data did not survive the round trip: the request carried "order-77", the reply carried none. The server must copy the request\'s AMQP correlation_id (or its x-correlation-id header) onto its reply; RabbitMQ 3.13+ hands it back to the device as Correlation Data.']);
  });
});

describe.runIf(!rules.mqtt5)(`MQTT 5 request/response on RabbitMQ ${broker.version}, which has no MQTT 5`, () => {
  it('the device gets one sentence that names the version and the way out', async () => {
    const client = new RpcClient({ mqttUrl: broker.urls.mqtt, protocolVersion: 5, clientId: uniqueName('dev5'), brokerVersion: broker.version });
    closers.push(() => client.close());
    await expect(client.connect()).rejects.toMatchObject({ code: 'unreachable', message: expect.stringContaining(`RabbitMQ ${broker.version} has no MQTT 5 (it came in 3.13). Connect with MQTT 3.1.1 or auto.`) });
  });
});
