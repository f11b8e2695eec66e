/**
 * Other people's traffic by MQTT client and QoS, from the broker's record: the QoS a device published at, the QoS its
 * reply reaches it at (0 below a QoS 1 subscription for a non-persistent reply on RabbitMQ 3.13+), the device's name in
 * the summary, and the connections the management API names (MqttClients). The same facts on real brokers:
 * test/integration/external-qos.test.ts.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BoundedMap } from '../../src/core/bounded-map';
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
    // An echo's microseconds: not "0.0 ms".
    const finished = (durationMs: number) => describeStep({ rpcId: 'r1', seq: 1, at: 1, source: 'server', kind: 'handler.finished', detail: { worker: 'w1', outcome: 'result', durationMs } } as TraceStep);
    expect(finished(0.012)).toBe('w1: handler answered in under 0.1 ms');
    expect(finished(2.26)).toBe('w1: handler answered in 2.3 ms');
    // A watch's tap took a copy: named as such, not read as a server's or a device's delivery.
    expect(describeStep(replyDelivered({ queue: 'bridgescope.watch-tap.1f2e', wire: wire({}) }))).toContain("from queue bridgescope.watch-tap.1f2e (a BridgeScope watch's tap: a copy, not a server's or a device's)");
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

describe('what cannot be told is not claimed', () => {
  it('says nothing of a QoS when the properties could not be read, and an MQTT QoS 1 reply (its header) is persistent', () => {
    const unreadable: TraceMessage = { ...wire({}), properties: { unreadable: "RabbitMQ's copy could not be decoded" } };
    expect(mqttDelivery(replyDelivered({ wire: unreadable, transientAtQos0: true }).detail as TraceStepDetails['broker.delivered'])).toEqual({ clientId: 'dev-7', subscribedQos: 1 });
    expect(summarize('r1', [replyDelivered({ wire: unreadable, transientAtQos0: true })]).warnings).toEqual([]);
    expect(mqttDelivery(replyDelivered({ wire: wire({}, { 'x-mqtt-publish-qos': 1 }), transientAtQos0: true }).detail as TraceStepDetails['broker.delivered'])?.deliveredQos).toBe(1);
  });

  it('judges the reply reaching the requester, not another subscriber of a shared reply topic', () => {
    const other = { connection: '10.0.0.8:5200 -> 10.0.0.1:1883', channel: 0, user: 'guest' };
    const steps = [
      request({ publisher: device }),
      // Another device subscribed to the same topic at QoS 1 first gets a transient copy; the requester's QoS 0 queue the other.
      replyDelivered({ queue: 'mqtt-subscription-dev-9qos1', consumer: other, wire: wire({}), transientAtQos0: true }),
      replyDelivered({ queue: 'mqtt-subscription-dev-7qos0', consumer: device, wire: wire({}), transientAtQos0: true }),
    ];
    const summary = summarize('r1', steps);
    expect(summary.device).toBe('dev-7');
    expect(summary.warnings).toEqual([]);
  });
});

describe('the device of an RPC not sent here', () => {
  it('is the publisher the management API named, else the client whose subscription on the same connection got the reply', () => {
    expect(summarize('r1', [request({ publisher: { ...device, mqttClientId: 'dev-7' } })]).device).toBe('dev-7');
    expect(summarize('r1', [request({ publisher: device }), replyDelivered({ consumer: device })]).device).toBe('dev-7');
    // Another connection got the reply (a second device subscribed to the same topic): not taken for the sender.
    expect(summarize('r1', [request({ publisher: device }), replyDelivered({ consumer: { ...device, connection: '10.0.0.8:5200 -> 10.0.0.1:1883' } })]).device).toBeUndefined();
  });

  it("is none for an RPC sent from this app: its own client is nobody's device, and its row keeps the RPC's id", () => {
    const composed: TraceStep = { rpcId: 'r1', seq: 0, at: 990, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic: 'reply/dev-7', replyStrategy: 'shared', bytes: 2 } };
    expect(summarize('r1', [composed, request({ publisher: { ...device, mqttClientId: 'bridgescope-app' } }), replyDelivered({ consumer: device })]).device).toBeUndefined();
  });
});

describe('BoundedMap under adds and deletes that never fill it', () => {
  it('keeps its bookkeeping the size of what it holds (a tracer that runs for days against a reconnecting fleet)', () => {
    const map = new BoundedMap<string, number>(50_000);
    for (let n = 0; n < 200_000; n += 1) {
      map.add(`conn-${n}`, n);
      map.delete(`conn-${n}`);
    }
    map.add('last', 1);
    expect(map.size).toBe(1);
    expect((map as unknown as { order: unknown[]; head: number }).order.length).toBeLessThan(2_000);
    expect([...map.keys()]).toEqual(['last']);
  });
});

describe('MqttClients: the connections the management API names', () => {
  function api(version = '4.3.6') {
    const listed: Array<{ name: string; protocol: string; mqttClientId?: string; connectionName?: string }> = [
      { name: device.connection, protocol: 'MQTT 3-1-1', mqttClientId: 'dev-7' },
      { name: worker.connection, protocol: 'AMQP 0-9-1' },
    ];
    const calls = { connections: 0, overview: 0 };
    return {
      calls,
      listed,
      vhostConnections: async () => {
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

  afterEach(() => {
    vi.useRealTimers();
  });

  it('forgets a connection gone from the list: its address and port may come back as another device', async () => {
    const fake = api();
    const clients = new MqttClients(fake, 1000);
    await clients.start();
    expect(clients.clientIdOf(device.connection)).toBe('dev-7');
    // dev-7 left; a new device got the same address and port (a load balancer's); an unknown name brings a new listing.
    fake.listed.splice(0, 1, { name: device.connection, protocol: 'MQTT 3-1-1', mqttClientId: 'dev-new' });
    await clients.start();
    expect(clients.clientIdOf(device.connection)).toBe('dev-new');
    fake.listed.splice(0, 1);
    await clients.start();
    expect(clients.clientIdOf(device.connection)).toBeUndefined();
    clients.stop();
  });

  it('asks at most once per interval however many unknown names come, and later each time the API fails', async () => {
    vi.useFakeTimers();
    let failing = true;
    const calls: number[] = [];
    const clients = new MqttClients(
      {
        vhostConnections: async () => {
          calls.push(Date.now());
          if (failing) throw new Error('503');
          return [];
        },
        overview: async () => ({ rabbitmqVersion: '4.3.6', erlangVersion: '', clusterName: '', protocols: [] }),
      },
      1000,
    );
    const start = Date.now();
    await clients.start();
    for (let n = 0; n < 500; n += 1) clients.clientIdOf(`10.0.${n >> 8}.${n & 255}:1 -> 10.0.0.1:1883`);
    await vi.advanceTimersByTimeAsync(7_100);
    // Failing: at 0, then 2 s (1 s doubled), then 4 s more: 3 asks in 7 s for 500 names, not 500.
    expect(calls.map((at) => at - start)).toEqual([0, 2000, 6000]);
    failing = false;
    await vi.advanceTimersByTimeAsync(8_000);
    // The next one answers; the names it did not list are asked for again for a while, then given up.
    expect(calls.length).toBeGreaterThanOrEqual(4);
    const asked = calls.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls.length - asked).toBeLessThanOrEqual(3);
    clients.stop();
  });

  it('stays quiet when the management API fails: nothing named, nothing thrown', async () => {
    const clients = new MqttClients({ vhostConnections: () => Promise.reject(new Error('401')), overview: () => Promise.reject(new Error('401')) });
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

  it('names the worker that took a request by the name its client gave its connection, in the step line', async () => {
    const fake = api();
    fake.listed[1] = { name: worker.connection, protocol: 'AMQP 0-9-1', connectionName: 'billing-worker-2' };
    const clients = new MqttClients(fake);
    await clients.start();
    expect(clients.connectionNameOf(worker.connection)).toBe('billing-worker-2');
    expect(clients.connectionNameOf(device.connection)).toBeUndefined();
    const store = new TraceStore();
    const body = Buffer.from(JSON.stringify({ id: 'r10', reply_to: 'reply/dev-7' }));
    const taken: FirehoseEvent = { type: 'deliver', name: 'rpc_queue', routingKeys: ['rpc_queue'], routedQueues: [], redelivered: false, properties: {}, party: worker, body };
    const step = withWire(firehoseStep(taken, store, undefined, clients) as TraceStep);
    expect(step.kind === 'broker.delivered' && step.detail.consumer).toEqual({ ...worker, connectionName: 'billing-worker-2' });
    expect(describeStep(step)).toContain(`connection "${worker.connection}" named "billing-worker-2"`);
    // A connection learned from its subscription keeps the name it was listed with.
    clients.learn(worker.connection, 'odd');
    expect(clients.connectionNameOf(worker.connection)).toBe('billing-worker-2');
    clients.stop();
  });

  it("joins another team's MQTT 5 request with no id in its body by its Correlation Data, and its reply by its Response Topic", () => {
    const store = new TraceStore();
    // Each step kept, as the tracer does: the store then knows the RPCs the next events may collide with.
    const kept = (event: FirehoseEvent) => {
      const draft = firehoseStep(event, store);
      if (draft) store.record(draft);
      return draft;
    };
    const request: FirehoseEvent = {
      type: 'publish', name: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], redelivered: false,
      properties: { correlation_id: 'corr-7', headers: { 'x-reply-to-topic': 'reply.dev-7' }, delivery_mode: 2 }, party: device, body: Buffer.from('{"op":"status"}'),
    };
    const binaryCorrelation: FirehoseEvent = { ...request, properties: { headers: { 'x-reply-to-topic': 'reply.dev-8', 'x-correlation-id': Buffer.from('corr-8') } } };
    const reply: FirehoseEvent = { type: 'publish', name: 'amq.direct', routingKeys: ['reply.dev-7'], routedQueues: ['mqtt-subscription-dev-7qos1'], redelivered: false, properties: { correlation_id: 'corr-7' }, party: worker, body: Buffer.from('{"result":1}') };
    const telemetry: FirehoseEvent = { ...request, properties: { delivery_mode: 1 }, body: Buffer.from('21.5') };
    expect(kept(request)).toMatchObject({ rpcId: 'corr-7', kind: 'broker.published', detail: { leg: 'request', replyTopic: 'reply/dev-7' } });
    expect(kept(binaryCorrelation)).toMatchObject({ rpcId: 'corr-8', detail: { replyTopic: 'reply/dev-8' } });
    expect(kept(reply)).toMatchObject({ rpcId: 'corr-7', kind: 'broker.published', detail: { leg: 'reply' } });
    // Not an RPC: no id in the body, no Response Topic.
    expect(kept(telemetry)).toBeUndefined();
    // Another device counting its Correlation Data from the same number: another RPC.
    const sameCorrelation: FirehoseEvent = { ...request, properties: { correlation_id: 'corr-7', headers: { 'x-reply-to-topic': 'reply.dev-9' } } };
    expect(kept(sameCorrelation)?.rpcId).toBe('corr-7 (reply/dev-9)');
    expect(kept({ ...sameCorrelation, type: 'deliver', name: 'rpc_queue' })?.rpcId).toBe('corr-7 (reply/dev-9)');
    // The first device's own request delivered: still its RPC.
    expect(kept({ ...request, type: 'deliver', name: 'rpc_queue' })?.rpcId).toBe('corr-7');
  });
});
