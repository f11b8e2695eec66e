/**
 * Other people's traffic, by name and QoS: a device (an mqtt.js client with its own client id) calls a worker of
 * another team's (plain amqplib) while BridgeScope only traces. The trace names the device by its MQTT client id, says
 * the QoS it published at, and says the QoS its reply reaches it at, which on RabbitMQ 3.13+ drops to 0 for a
 * non-persistent reply: what the device's own packet says is the truth each prediction is held to, on every version.
 */
import mqtt, { type MqttClient } from 'mqtt';
import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { FirehoseTracer } from '../../src/core/trace/firehose';
import { MqttClients } from '../../src/core/trace/mqtt-clients';
import { ExternalVerdicts } from '../../src/core/session/external-verdicts';
import { TraceStore } from '../../src/core/trace/trace-store';
import { mqttDelivery, publishedQos } from '../../src/shared/broker-qos';
import { describeStep } from '../../src/shared/describe';
import type { TraceStep } from '../../src/shared/trace';
import { uniqueName } from '../support/names';
import { startThirdPartyWorker } from '../support/third-party-worker';
import { createTestVhost, type TestVhost } from '../support/vhosts';
import { waitForStep } from '../support/trace-wait';
import { until } from '../support/until';
import { managementRequest } from '../../src/core/broker/management-http';
import { brokerRules } from '../../src/shared/broker-versions';

const broker = inject('broker');
/** RabbitMQ 3.13+ delivers a non-persistent message to a QoS 1 subscription at QoS 0 (docs/BROKER-VERSIONS.md). */
const transientAtQos0 = brokerRules(broker.version).transientAtQos0;
const queue = uniqueName('their_rpc');
let vhost: TestVhost;
let worker: ChannelModel;
let store: TraceStore;
let tracer: FirehoseTracer;
let externals: ExternalVerdicts;
const devices: MqttClient[] = [];

/** A device of theirs on the test's vhost ("vhost:user" is how an MQTT client picks one), subscribed to its reply topic. */
async function device(clientId: string, replyTopic: string): Promise<{ client: MqttClient; replies: Array<{ qos: number }> }> {
  const client = await mqtt.connectAsync(broker.urls.mqtt, { clientId, username: `${vhost.name}:guest`, password: 'guest', protocolVersion: 4, reconnectPeriod: 0 });
  devices.push(client);
  await client.subscribeAsync(replyTopic, { qos: 1 });
  const replies: Array<{ qos: number }> = [];
  client.on('message', (_topic, _payload, packet) => replies.push({ qos: packet.qos }));
  return { client, replies };
}

const stepOf = <K extends TraceStep['kind']>(rpcId: string, kind: K, leg: 'request' | 'reply') => (step: TraceStep): boolean =>
  step.rpcId === rpcId && step.kind === kind && 'leg' in step.detail && step.detail.leg === leg;

beforeAll(async () => {
  vhost = await createTestVhost(broker.urls, 'external-qos');
  // Their worker: a reply to "persist-" ids is persistent (delivery_mode 2), every other one is not (amqplib's default).
  worker = await startThirdPartyWorker(vhost.amqpUrl, queue, (request, channel) => {
    const body = Buffer.from(JSON.stringify({ id: request.id, result: 'done' }));
    channel.publish('amq.direct', request.reply_to.replaceAll('/', '.'), body, request.id.startsWith('persist-') ? { deliveryMode: 2 } : {});
  });
}, 60_000);

afterAll(async () => {
  for (const client of devices.splice(0)) await client.endAsync().catch(() => undefined);
  await externals?.stop();
  await tracer?.stop();
  await worker?.close().catch(() => undefined);
  await vhost?.remove();
});

describe(`other people's RPCs by MQTT client and QoS (RabbitMQ ${broker.version})`, () => {
  it('names the device that was connected before tracing began, and tells its publish QoS and its reply QoS as the device got them', async () => {
    const clientId = uniqueName('dev-before');
    const replyTopic = `reply/${clientId}`;
    const dev = await device(clientId, replyTopic);
    // Connected before tracing began, as a fleet's devices are: the management API lists it (a few seconds late on 3.10).
    await until(`the connection of ${clientId}`, async () => (await vhost.api.connections()).find((connection) => connection.mqttClientId === clientId));
    store = new TraceStore();
    // As the app's Trace panel and `bridgescope trace` do: every RPC the firehose joins gets its verdict.
    externals = new ExternalVerdicts({
      watch: { amqpUrl: vhost.amqpUrl, managementUrl: vhost.managementUrl, vhost: vhost.name, exchange: 'amq.direct' },
      store,
      addVerdict: (rpcId, verdict) => store.add({ rpcId, at: Date.now(), source: 'broker', kind: 'rpc.diagnosed', detail: { verdict } }),
    });
    tracer = new FirehoseTracer({
      amqpUrl: vhost.amqpUrl,
      api: vhost.api,
      store,
      owner: 'external-qos test',
      onEvent: (event, step) => externals.observe(event, step),
      // Asks for an unknown connection every 200 ms instead of 5 s: the late device below is named sooner.
      mqttClients: new MqttClients(vhost.api, 200),
    });
    expect((await tracer.start()).state).toBe('on');
    externals.nameConnectionsWith(tracer);
    externals.start();

    const cases = [
      { id: uniqueName('transient'), qos: 1 as const },
      { id: uniqueName('persist'), qos: 1 as const },
      { id: uniqueName('qos0'), qos: 0 as const },
    ];
    for (const [index, sent] of cases.entries()) {
      await dev.client.publishAsync(queue, JSON.stringify({ id: sent.id, reply_to: replyTopic }), { qos: sent.qos });
      const delivered = await waitForStep(store, stepOf(sent.id, 'broker.delivered', 'reply'));
      const published = await waitForStep(store, stepOf(sent.id, 'broker.published', 'request'));
      // The device's own packet, the truth the trace's prediction is held to.
      while (dev.replies.length <= index) await new Promise((resolve) => dev.client.once('message', resolve));
      const got = dev.replies[index]?.qos;

      if (published.kind !== 'broker.published' || delivered.kind !== 'broker.delivered') throw new Error('unexpected steps');
      expect(published.detail.publisher?.mqttClientId).toBe(clientId);
      expect(publishedQos(published.detail)).toBe(sent.qos);
      expect(describeStep(published)).toContain(`published at QoS ${sent.qos} by MQTT client "${clientId}"`);

      const delivery = mqttDelivery(delivered.detail);
      expect(delivery).toMatchObject({ clientId, subscribedQos: 1 });
      expect(delivery?.deliveredQos).toBe(got);
      const summary = store.summary(sent.id);
      expect(summary.device).toBe(clientId);
      const warned = summary.warnings.some((warning) => warning.includes(`reached MQTT client "${clientId}" at QoS 0`));
      // Every reply but the "persist-" one is published non-persistent (the request's own QoS does not matter).
      const dropsToQos0 = !sent.id.startsWith('persist-') && transientAtQos0;
      expect({ id: sent.id, got, warned }).toEqual({ id: sent.id, got: dropsToQos0 ? 0 : 1, warned: dropsToQos0 });
    }
  }, 60_000);

  it('names a device that connects while tracing, at the latest by the subscription its reply reaches', async () => {
    const clientId = uniqueName('dev-after');
    const replyTopic = `reply/${clientId}`;
    const dev = await device(clientId, replyTopic);
    const id = uniqueName('persist');
    await dev.client.publishAsync(queue, JSON.stringify({ id, reply_to: replyTopic }), { qos: 1 });
    const delivered = await waitForStep(store, stepOf(id, 'broker.delivered', 'reply'));
    expect(delivered.kind === 'broker.delivered' && delivered.detail.consumer?.mqttClientId).toBe(clientId);
    expect(store.summary(id).device).toBe(clientId);
    expect(describeStep(delivered)).toContain(`to MQTT client "${clientId}"`);
    expect(describeStep(delivered)).toContain('at QoS 1');
    // Its connection, unknown at its first publish, was asked of the management API: a later request of its own is
    // named by it (the broker lists a new connection a few seconds late on 3.10, at once on 4.x).
    await until(`the connection of ${clientId}`, async () => (await vhost.api.vhostConnections()).find((connection) => connection.mqttClientId === clientId));
    let named: string | undefined;
    for (let n = 0; named === undefined; n += 1) {
      // One round trip of the management API per round: the tracer's next listing comes within 200 ms.
      await vhost.api.vhostConnections();
      const again = uniqueName(`persist-again${n}`);
      await dev.client.publishAsync(queue, JSON.stringify({ id: again, reply_to: replyTopic }), { qos: 1 });
      const published = await waitForStep(store, stepOf(again, 'broker.published', 'request'));
      await waitForStep(store, stepOf(again, 'broker.delivered', 'reply'));
      named = published.kind === 'broker.published' ? published.detail.publisher?.mqttClientId : undefined;
    }
    expect(named).toBe(clientId);
  }, 60_000);

  it('judges a 2 MB request like any other (replied), and a reply topic with a "." inside a level as the other topic the device gets it on', async () => {
    const clientId = uniqueName('dev-big');
    const dev = await device(clientId, `reply/${clientId}`);
    const big = uniqueName('big');
    await dev.client.publishAsync(queue, JSON.stringify({ id: big, reply_to: `reply/${clientId}`, params: { blob: 'x'.repeat(2_000_000) } }), { qos: 1 });
    const bigVerdict = await waitForStep(store, (step) => step.rpcId === big && step.kind === 'rpc.diagnosed');
    // It stayed "pending" for good: the watch's pairing parsed no body over 1 MB.
    expect(bigVerdict.kind === 'rpc.diagnosed' && bigVerdict.detail.verdict.code).toBe('replied');
    expect(store.summary(big).state).toBe('replied');

    const dotted = `reply/v1.2/${clientId}`;
    await dev.client.subscribeAsync(dotted, { qos: 1 });
    const dot = uniqueName('dot');
    const arrived = new Promise<string>((resolve) => dev.client.on('message', (topic, payload) => payload.toString().includes(dot) && resolve(topic)));
    await dev.client.publishAsync(queue, JSON.stringify({ id: dot, reply_to: dotted }), { qos: 1 });
    // The device's own packet: the topic the broker really delivered on.
    const topic = await arrived;
    expect(topic).toBe(`reply/v1/2/${clientId}`);
    const dotVerdict = await waitForStep(store, (step) => step.rpcId === dot && step.kind === 'rpc.diagnosed');
    const verdict = dotVerdict.kind === 'rpc.diagnosed' ? dotVerdict.detail.verdict : undefined;
    expect(verdict?.code).toBe('reply-on-other-topic');
    expect(verdict?.message).toBe(`The reply to "${dotted}" arrives on "${topic}": RabbitMQ turns a "." inside a topic level into a level separator, so use a reply topic without "." (e.g. "reply/v1_2/${clientId}").`);
    await waitForStep(store, stepOf(dot, 'broker.delivered', 'reply'));
    const summary = store.summary(dot);
    expect(summary).toMatchObject({ arrivedOn: topic, topicMismatch: true });
    expect(summary.warnings).toContain(`asked ${dotted}, arrived on ${topic}: a "." in a topic level is a level separator for RabbitMQ.`);
  }, 60_000);

  it('a worker that took the request and died without replying: server slow, naming the connection that took it and the name its client gave it, never "no consumer"', async () => {
    const zombieQueue = uniqueName('their_zombie_rpc');
    const workerName = uniqueName('billing-worker');
    // As pika's and amqplib's users name their workers: the management API lists it as the connection's name.
    const connection = await amqp.connect(vhost.amqpUrl, { clientProperties: { connection_name: workerName } });
    connection.on('error', () => undefined);
    const channel = await connection.createChannel();
    await channel.assertQueue(zombieQueue, { durable: true, autoDelete: false });
    await channel.bindQueue(zombieQueue, 'amq.direct', zombieQueue);
    // Takes the request, acks it, and dies before answering.
    const took = new Promise<void>((resolve) => {
      void channel.consume(zombieQueue, (message) => {
        if (!message) return;
        channel.ack(message);
        resolve();
      });
    });
    const clientId = uniqueName('dev-zombie');
    const dev = await device(clientId, `reply/${clientId}`);
    const id = uniqueName('zombie');
    await dev.client.publishAsync(zombieQueue, JSON.stringify({ id, reply_to: `reply/${clientId}` }), { qos: 1 });
    await took;
    const delivered = await waitForStep(store, stepOf(id, 'broker.delivered', 'request'));
    const consumerConnection = delivered.kind === 'broker.delivered' ? delivered.detail.consumer?.connection : undefined;
    // The worker was first seen by that delivery: the tracer lists the vhost's connections again for it (every 200 ms
    // here), and names it before the worker dies, as a worker that ran for a while is.
    await until(`the tracer naming ${workerName}`, async () => {
      // One round trip of the management API per round (the tracer asks it too), not a spin.
      await vhost.api.vhostConnections();
      return consumerConnection !== undefined && tracer.connectionNameOf(consumerConnection) === workerName ? true : undefined;
    });
    await connection.close();
    const step = await waitForStep(store, (candidate) => candidate.rpcId === id && candidate.kind === 'rpc.diagnosed');
    const verdict = step.kind === 'rpc.diagnosed' ? step.detail.verdict : undefined;
    const consumer = delivered.kind === 'broker.delivered' ? delivered.detail.consumer?.connection : undefined;
    expect(verdict?.code).toBe('server-slow');
    expect(verdict?.message).toContain(`took the request, but no reply came within 5000 ms and the queue has no consumer now`);
    expect(verdict?.message).toContain(`connection "${consumer}" named "${workerName}"`);
    await managementRequest(broker.urls.management, `/api/queues/${encodeURIComponent(vhost.name)}/${encodeURIComponent(zombieQueue)}`, { method: 'DELETE' });
  }, 60_000);

  it('a reply that came late because no worker consumed the request when the wait ended: says so, never "raise the timeout"', async () => {
    const lateQueue = uniqueName('their_late_start');
    const setup = await amqp.connect(vhost.amqpUrl);
    const channel = await setup.createChannel();
    // Their queue, bound, with its workers down: the request waits there.
    await channel.assertQueue(lateQueue, { durable: false, autoDelete: true });
    await channel.bindQueue(lateQueue, 'amq.direct', lateQueue);
    const clientId = uniqueName('dev-early');
    const dev = await device(clientId, `reply/${clientId}`);
    // Connected after tracing began, as the trial's device was: the tracer asks the management API for it only at its
    // first publish, too late for that publish's step, and an unanswered request has no later event to carry the name.
    await until(`the connection of ${clientId}`, async () => (await vhost.api.vhostConnections()).find((connection) => connection.mqttClientId === clientId));
    const id = uniqueName('early');
    await dev.client.publishAsync(lateQueue, JSON.stringify({ id, reply_to: `reply/${clientId}` }), { qos: 1 });
    const verdictOf = (code: string) => (step: TraceStep): boolean => step.rpcId === id && step.kind === 'rpc.diagnosed' && step.detail.verdict.code === code;
    const first = await waitForStep(store, verdictOf('no-consumer'));
    // The failed RPC names its device all the same (the Trace header's "from MQTT client ..."), by its verdict if not its step.
    expect(store.summary(id).device).toBe(clientId);
    const published = store.findDetail(id, 'broker.published');
    if (published?.publisher?.mqttClientId === undefined && first.kind === 'rpc.diagnosed') {
      expect(first.detail.verdict.device).toBe(clientId);
      expect(first.detail.verdict.evidence.at(-1)).toMatch(new RegExp(`^broker: the request was published at QoS 1 by MQTT client "${clientId}" \\(connection ".+", named by the management API after that publish\\)$`));
    }
    // The workers come back and answer the backlog.
    const late = await startThirdPartyWorker(vhost.amqpUrl, lateQueue, (request, worker) => {
      worker.publish('amq.direct', request.reply_to.replaceAll('/', '.'), Buffer.from(JSON.stringify({ id: request.id, result: 'at last' })));
    });
    try {
      const step = await waitForStep(store, verdictOf('late-reply'));
      const message = step.kind === 'rpc.diagnosed' ? step.detail.verdict.message : '';
      expect(message).toContain(`A worker took the request on "${lateQueue}" and answered after`);
      expect(message).toContain("but when the Trace panel's wait of 5000 ms ended none consumed it yet (the verdict then: no consumer)");
      expect(message).not.toContain('raise');
    } finally {
      await late.close();
      await setup.close();
    }
  }, 60_000);

  // MQTT 5 came in 3.13: on 3.10 a device cannot send a Response Topic at all.
  it.runIf(transientAtQos0)('joins an MQTT 5 request whose body names no id, by its Correlation Data, and its reply by its Response Topic', async () => {
    const mqtt5Queue = uniqueName('their_mqtt5_rpc');
    // Their MQTT 5-aware worker: answers on the Response Topic (header x-reply-to-topic) with the correlation id.
    const connection = await amqp.connect(vhost.amqpUrl);
    try {
      const channel = await connection.createChannel();
      await channel.assertQueue(mqtt5Queue, { durable: false, autoDelete: true });
      await channel.bindQueue(mqtt5Queue, 'amq.direct', mqtt5Queue);
      await channel.consume(mqtt5Queue, (message) => {
        if (!message) return;
        channel.ack(message);
        const replyKey = String(message.properties.headers?.['x-reply-to-topic'] ?? '');
        channel.publish('amq.direct', replyKey, Buffer.from('{"result":"done"}'), { correlationId: message.properties.correlationId as string, deliveryMode: 2 });
      });
      const clientId = uniqueName('dev-mqtt5');
      const replyTopic = `reply/${clientId}`;
      const client = await mqtt.connectAsync(broker.urls.mqtt, { clientId, username: `${vhost.name}:guest`, password: 'guest', protocolVersion: 5, reconnectPeriod: 0 });
      devices.push(client);
      await client.subscribeAsync(replyTopic, { qos: 1 });
      const correlation = uniqueName('corr');
      const arrived = new Promise<number>((resolve) => client.once('message', (_topic, _payload, packet) => resolve(packet.qos)));
      await client.publishAsync(mqtt5Queue, '{"op":"status"}', { qos: 1, properties: { responseTopic: replyTopic, correlationData: Buffer.from(correlation) } });
      expect(await arrived).toBe(1);
      const request = await waitForStep(store, stepOf(correlation, 'broker.published', 'request'));
      const reply = await waitForStep(store, stepOf(correlation, 'broker.delivered', 'reply'));
      expect(request.kind === 'broker.published' && request.detail.replyTopic).toBe(replyTopic);
      expect(reply.kind === 'broker.delivered' && mqttDelivery(reply.detail)).toEqual({ clientId, subscribedQos: 1, deliveredQos: 1 });
      expect(store.summary(correlation)).toMatchObject({ device: clientId, replyTopic, replyRoutedQueues: [`mqtt-subscription-${clientId}qos1`], warnings: [] });
      // Its verdict, as for a request with an id in its body (it stayed pending before).
      const verdict = await waitForStep(store, (step) => step.rpcId === correlation && step.kind === 'rpc.diagnosed');
      expect(verdict.kind === 'rpc.diagnosed' && verdict.detail.verdict.code).toBe('replied');
    } finally {
      await connection.close().catch(() => undefined);
    }
  }, 60_000);
});
