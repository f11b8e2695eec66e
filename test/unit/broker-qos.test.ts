/**
 * Other people's traffic by MQTT client and QoS, from the broker's record: the QoS a device published at, the QoS its
 * reply reaches it at (0 below a QoS 1 subscription for a non-persistent reply on RabbitMQ 3.13+), the device's name in
 * the summary, and the connections the management API names (MqttClients). The same facts on real brokers:
 * test/integration/external-qos.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { mqttDelivery, publishedQos } from '../../src/shared/broker-qos';
import { describeStep } from '../../src/shared/describe';
import { summarize } from '../../src/shared/trace-summary';
import type { TraceMessage, TraceStep, TraceStepDetails } from '../../src/shared/trace';
import { MqttClients } from '../../src/core/trace/mqtt-clients';
import { firehoseStep, type FirehoseEvent } from '../../src/core/trace/firehose';
import { TraceStore } from '../../src/core/trace/trace-store';
import { withWire } from '../../src/core/trace/message-view';

const wire = (properties: TraceMessage['properties'], headers: TraceMessage['headers'] = {}): TraceMessage => ({
  protocol: 'amqp',
  properties,
  headers,
  body: { bytes: 2, encoding: 'json', preview: '{}', shown: 2 },
});
const device = { connection: '10.0.0.7:5100 -> 10.0.0.1:1883', channel: 0, user: 'guest' };
const worker = { connection: '10.0.0.9:6100 -> 10.0.0.1:5672', channel: 1, user: 'guest' };

function request(detail: Partial<TraceStepDetails['broker.published']>): TraceStep {
  return { rpcId: 'r1', seq: 1, at: 1000, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request', ...detail } };
}
function replyDelivered(detail: Partial<TraceStepDetails['broker.delivered']>): TraceStep {
  return { rpcId: 'r1', seq: 2, at: 1010, source: 'broker', kind: 'broker.delivered', detail: { queue: 'mqtt-subscription-dev-7qos1', routingKeys: ['reply.dev-7'], redelivered: false, leg: 'reply', ...detail } };
}

describe('the QoS a device published at', () => {
  it('reads the header RabbitMQ before 4.0 puts on an MQTT publish', () => {
    expect(publishedQos(request({ publisher: device, wire: wire({ delivery_mode: 1 }, { 'x-mqtt-publish-qos': 0 }) }).detail as TraceStepDetails['broker.published'])).toBe(0);
    expect(publishedQos(request({ publisher: device, wire: wire({ delivery_mode: 2 }, { 'x-mqtt-publish-qos': 1 }) }).detail as TraceStepDetails['broker.published'])).toBe(1);
  });

  it('reads the durable flag of an MQTT client publish on 4.x (no header), and says nothing of an AMQP publisher', () => {
    const of = (step: TraceStep) => publishedQos(step.detail as TraceStepDetails['broker.published']);
    expect(of(request({ publisher: { ...device, mqttClientId: 'dev-7' }, wire: wire({ delivery_mode: 2 }) }))).toBe(1);
    expect(of(request({ publisher: { ...device, mqttClientId: 'dev-7' }, wire: wire({ delivery_mode: 1 }) }))).toBe(0);
    expect(of(request({ publisher: worker, wire: wire({ delivery_mode: 2 }) }))).toBeUndefined();
    expect(of(request({ publisher: { ...device, mqttClientId: 'dev-7' } }))).toBeUndefined();
  });

  it('is said in the step line, with the client id', () => {
    const line = describeStep(request({ publisher: { ...device, mqttClientId: 'dev-7' }, wire: wire({ delivery_mode: 2 }) }));
    expect(line).toContain('published at QoS 1 by MQTT client "dev-7", user "guest" on connection "10.0.0.7:5100 -> 10.0.0.1:1883" (channel 0)');
  });
});

describe('the QoS a reply reaches the device at', () => {
  const of = (step: TraceStep) => mqttDelivery(step.detail as TraceStepDetails['broker.delivered']);

  it('is 1 for a persistent reply, 0 for a transient one on 3.13+, 1 before, and unknown without the version', () => {
    expect(of(replyDelivered({ wire: wire({ delivery_mode: 2 }), transientAtQos0: true }))).toEqual({ clientId: 'dev-7', subscribedQos: 1, deliveredQos: 1 });
    expect(of(replyDelivered({ wire: wire({}), transientAtQos0: true }))).toEqual({ clientId: 'dev-7', subscribedQos: 1, deliveredQos: 0, transient: true });
    expect(of(replyDelivered({ wire: wire({ delivery_mode: 1 }), transientAtQos0: false }))).toEqual({ clientId: 'dev-7', subscribedQos: 1, deliveredQos: 1 });
    expect(of(replyDelivered({ wire: wire({}) }))).toEqual({ clientId: 'dev-7', subscribedQos: 1 });
    expect(of(replyDelivered({ queue: 'mqtt-subscription-dev-7qos0', wire: wire({ delivery_mode: 2 }) }))).toEqual({ clientId: 'dev-7', subscribedQos: 0, deliveredQos: 0 });
    expect(of(replyDelivered({ queue: 'rpc_replies', wire: wire({}) }))).toBeUndefined();
  });

  it('is said in the step line, and a drop to QoS 0 is a warning of the summary naming the device and the fix', () => {
    const transient = replyDelivered({ consumer: device, wire: wire({}), transientAtQos0: true });
    expect(describeStep(transient)).toContain('to MQTT client "dev-7", user "guest"');
    expect(describeStep(transient)).toContain('at QoS 0 (subscribed at QoS 1; published non-persistent)');
    const summary = summarize('r1', [request({ publisher: device }), transient]);
    expect(summary.warnings).toEqual([expect.stringContaining('The reply reached MQTT client "dev-7" at QoS 0, though it subscribed at QoS 1')]);
    expect(summary.warnings[0]).toContain('no delivery_mode');
    expect(summary.warnings[0]).toContain('delivery_mode 2');
    expect(summarize('r1', [request({ publisher: device }), replyDelivered({ consumer: device, wire: wire({ delivery_mode: 2 }), transientAtQos0: true })]).warnings).toEqual([]);
  });

  it("leaves the warning to the device's own packet when the RPC was sent here", () => {
    const received: TraceStep = { rpcId: 'r1', seq: 3, at: 1011, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/dev-7', replyTopic: 'reply/dev-7', topicMismatch: false, bytes: 2, qos: 0 } };
    expect(summarize('r1', [replyDelivered({ wire: wire({}), transientAtQos0: true }), received]).warnings).toEqual([]);
  });
});

describe('the device of an RPC not sent here', () => {
  it('is the publisher the management API named, else the client whose subscription on the same connection got the reply', () => {
    expect(summarize('r1', [request({ publisher: { ...device, mqttClientId: 'dev-7' } })]).device).toBe('dev-7');
    expect(summarize('r1', [request({ publisher: device }), replyDelivered({ consumer: device })]).device).toBe('dev-7');
    // Another connection got the reply (a second device subscribed to the same topic): not taken for the sender.
    expect(summarize('r1', [request({ publisher: device }), replyDelivered({ consumer: { ...device, connection: '10.0.0.8:5200 -> 10.0.0.1:1883' } })]).device).toBeUndefined();
  });
});

describe('MqttClients: the connections the management API names', () => {
  function api(version = '4.3.6') {
    const listed = [{ name: device.connection, protocol: 'MQTT 3-1-1', mqttClientId: 'dev-7' }, { name: worker.connection, protocol: 'AMQP 0-9-1' }];
    const calls = { connections: 0, overview: 0 };
    return {
      calls,
      listed,
      connections: async () => {
        calls.connections += 1;
        return listed.map((connection) => ({ ...connection }));
      },
      overview: async () => {
        calls.overview += 1;
        return { rabbitmqVersion: version, erlangVersion: '27', clusterName: 'c', protocols: [] };
      },
    };
  }

  it('names the clients listed at start, knows an AMQP connection is none, and reads the version rule once', async () => {
    const fake = api();
    const clients = new MqttClients(fake);
    await clients.start();
    expect(clients.clientIdOf(device.connection)).toBe('dev-7');
    expect(clients.clientIdOf(worker.connection)).toBeUndefined();
    expect(clients.transientAtQos0).toBe(true);
    expect(fake.calls).toEqual({ connections: 1, overview: 1 });
    clients.stop();
    const old = new MqttClients(api('3.10.8'));
    await old.start();
    expect(old.transientAtQos0).toBe(false);
    old.stop();
  });

  it('asks again for a connection it does not know, at most once per interval, and learns one from its subscription', async () => {
    const fake = api();
    const clients = new MqttClients(fake, 0);
    await clients.start();
    const late = '10.0.0.5:5300 -> 10.0.0.1:1883';
    fake.listed.push({ name: late, protocol: 'MQTT 3-1-1', mqttClientId: 'dev-late' });
    expect(clients.clientIdOf(late)).toBeUndefined();
    expect(clients.clientIdOf(late)).toBeUndefined();
    await new Promise<void>((resolve) => {
      const check = (): void => (clients.clientIdOf(late) === 'dev-late' ? resolve() : void setImmediate(check));
      check();
    });
    expect(fake.calls.connections).toBe(2);
    clients.learn('10.0.0.6:5400 -> 10.0.0.1:1883', 'dev-sub');
    expect(clients.clientIdOf('10.0.0.6:5400 -> 10.0.0.1:1883')).toBe('dev-sub');
    clients.stop();
  });

  it('stays quiet when the management API fails: nothing named, nothing thrown', async () => {
    const clients = new MqttClients({ connections: () => Promise.reject(new Error('401')), overview: () => Promise.reject(new Error('401')) });
    await clients.start();
    expect(clients.clientIdOf(device.connection)).toBeUndefined();
    expect(clients.transientAtQos0).toBeUndefined();
    clients.stop();
  });

  it('puts the names and the version rule on the firehose steps of an RPC', async () => {
    const clients = new MqttClients(api());
    await clients.start();
    const store = new TraceStore();
    const body = Buffer.from(JSON.stringify({ id: 'r9', reply_to: 'reply/dev-7' }));
    const published: FirehoseEvent = { type: 'publish', name: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], redelivered: false, properties: { delivery_mode: 2 }, party: device, body };
    const delivered: FirehoseEvent = { type: 'deliver', name: 'mqtt-subscription-dev-7qos1', routingKeys: ['reply.dev-7'], routedQueues: [], redelivered: false, properties: {}, party: device, body: Buffer.from('{"id":"r9"}') };
    const request = withWire(firehoseStep(published, store, undefined, clients) as TraceStep);
    const reply = withWire(firehoseStep(delivered, store, undefined, clients) as TraceStep);
    expect(request.kind === 'broker.published' && request.detail.publisher?.mqttClientId).toBe('dev-7');
    expect(reply.kind === 'broker.delivered' && reply.detail.transientAtQos0).toBe(true);
    expect(reply.kind === 'broker.delivered' && mqttDelivery(reply.detail)?.deliveredQos).toBe(0);
    clients.stop();
  });

  it("joins another team's MQTT 5 request with no id in its body by its Correlation Data, and its reply by its Response Topic", () => {
    const store = new TraceStore();
    const request: FirehoseEvent = {
      type: 'publish', name: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], redelivered: false,
      properties: { correlation_id: 'corr-7', headers: { 'x-reply-to-topic': 'reply.dev-7' }, delivery_mode: 2 }, party: device, body: Buffer.from('{"op":"status"}'),
    };
    const binaryCorrelation: FirehoseEvent = { ...request, properties: { headers: { 'x-reply-to-topic': 'reply.dev-8', 'x-correlation-id': Buffer.from('corr-8') } } };
    const reply: FirehoseEvent = { type: 'publish', name: 'amq.direct', routingKeys: ['reply.dev-7'], routedQueues: ['mqtt-subscription-dev-7qos1'], redelivered: false, properties: { correlation_id: 'corr-7' }, party: worker, body: Buffer.from('{"result":1}') };
    const telemetry: FirehoseEvent = { ...request, properties: { delivery_mode: 1 }, body: Buffer.from('21.5') };
    expect(firehoseStep(request, store)).toMatchObject({ rpcId: 'corr-7', kind: 'broker.published', detail: { leg: 'request', replyTopic: 'reply/dev-7' } });
    expect(firehoseStep(binaryCorrelation, store)).toMatchObject({ rpcId: 'corr-8', detail: { replyTopic: 'reply/dev-8' } });
    expect(firehoseStep(reply, store)).toMatchObject({ rpcId: 'corr-7', kind: 'broker.published', detail: { leg: 'reply' } });
    // Not an RPC: no id in the body, no Response Topic.
    expect(firehoseStep(telemetry, store)).toBeUndefined();
  });
});
