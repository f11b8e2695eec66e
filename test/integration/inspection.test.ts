import mqtt from 'mqtt';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { TraceStep } from '../../src/shared/trace';
import { ManagementApi } from '../../src/core/broker/management-api';
import { preflight, probeMqttExchange } from '../../src/core/broker/checks';
import { FirehoseTracer, type FirehoseEvent } from '../../src/core/trace/firehose';
import { TraceStore } from '../../src/core/trace/trace-store';
import { RpcServer } from '../../src/core/rpc/server';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler } from '../../src/core/rpc/handlers';
import { topicToRoutingKey, MAX_ROUTING_KEY_BYTES } from '../../src/shared/topic-map';
import { uniqueName } from '../support/names';
import { runCli } from '../support/cli';
import { waitForStep } from '../support/trace-wait';

const broker = inject('broker');
const api = new ManagementApi(broker.urls.management);
const closers: Array<() => Promise<void>> = [];
let server: RpcServer;
let client: RpcClient;

beforeAll(async () => {
  server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 2, handler: await loadHandler({ kind: 'echo' }) });
  await server.start();
  client = new RpcClient({ mqttUrl: broker.urls.mqtt, strategy: 'shared', clientId: uniqueName('device') });
  await client.connect();
  closers.push(() => client.close(), () => server.stop());
});
afterAll(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Tracing is a vhost-wide setting: every test must leave it as it found it. */
let tracingBefore: boolean;
beforeEach(async () => {
  tracingBefore = await api.tracing();
});
afterEach(async () => {
  expect(await api.tracing()).toBe(tracingBefore);
});

async function traced<T>(run: (store: TraceStore, tracer: FirehoseTracer) => Promise<T>, onEvent?: (event: FirehoseEvent) => void): Promise<T> {
  const store = new TraceStore();
  const tracer = new FirehoseTracer({ amqpUrl: broker.urls.amqp, api, store, ...(onEvent ? { onEvent } : {}) });
  const status = await tracer.start();
  expect(status.state).toBe('on');
  const detach = [store.attach(client), store.attach(server)];
  try {
    return await run(store, tracer);
  } finally {
    for (const off of detach) off();
    await tracer.stop();
  }
}

const replyDelivered = (rpcId: string) => (step: TraceStep): boolean =>
  step.rpcId === rpcId && step.kind === 'broker.delivered' && step.detail.leg === 'reply';

describe('broker inspection', () => {
  it('lists rpc_queue and the live MQTT reply subscription among the bindings on amq.direct', async () => {
    const bindings = await api.bindings('amq.direct');
    expect(bindings).toContainEqual(expect.objectContaining({ destination: server.queue, bindingKey: server.queue, destinationType: 'queue' }));
    expect(bindings).toContainEqual(
      expect.objectContaining({ destination: `mqtt-subscription-${client.clientId}qos1`, mqttClientId: client.clientId, mqttQos: 1 }),
    );
    const cli = await runCli(['bindings', '--management', broker.urls.management, '--amqp', broker.urls.amqp, '--json']);
    expect(cli.code).toBe(0);
    const rows = JSON.parse(cli.stdout) as Array<{ destination: string; consumers: number | null }>;
    expect(rows.find((row) => row.destination === server.queue)?.consumers).toBe(2);
  });

  it('reads the overview with the RabbitMQ version and the enabled protocols', async () => {
    const overview = await api.overview();
    expect(overview.rabbitmqVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(overview.protocols).toEqual(expect.arrayContaining(['amqp', 'mqtt', 'http']));
  });

  it('refuses wrong credentials, an unknown exchange and a dead port, each in one sentence', async () => {
    const wrong = new ManagementApi(broker.urls.management.replace('guest:guest', 'guest:wrong'));
    await expect(wrong.overview()).rejects.toMatchObject({ code: 'auth', message: expect.stringMatching(/401/) });
    await expect(api.bindings(uniqueName('no-such-exchange'))).rejects.toMatchObject({ code: 'not-found' });
    const dead = new ManagementApi('http://127.0.0.1:1');
    await expect(dead.overview()).rejects.toMatchObject({ code: 'unreachable', message: expect.stringMatching(/management plugin/) });
  });

  it('probes the MQTT plugin and names amq.direct on the sandbox broker', async () => {
    const verdict = await probeMqttExchange({ mqttUrl: broker.urls.mqtt, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct', api });
    expect(verdict.observedExchange).toBe('amq.direct');
    expect(verdict.exchangeType).toBe('direct');
    expect(verdict.lines[0]).toMatchObject({ status: 'pass' });
    const mismatch = await probeMqttExchange({ mqttUrl: broker.urls.mqtt, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.topic', api });
    expect(mismatch.lines[0]).toMatchObject({ status: 'fail', message: expect.stringMatching(/publishes to amq.direct, but BridgeScope is configured for amq.topic/) });
  });

  it('warns when an MQTT client subscribes with a wildcard on the direct exchange', async () => {
    const device = await mqtt.connectAsync(broker.urls.mqtt, { clientId: uniqueName('wild') });
    closers.push(() => device.endAsync());
    await device.subscribeAsync('sensors/+/temp', { qos: 1 });
    const verdict = await probeMqttExchange({ mqttUrl: broker.urls.mqtt, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct', api });
    expect(verdict.lines).toContainEqual(expect.objectContaining({ status: 'warn', message: expect.stringMatching(/"sensors\.\*\.temp".*literal/) }));
  });

  it('pre-flight passes a routed, consumed request and fails an unbound one', async () => {
    const good = await preflight(api, { exchange: 'amq.direct', requestTopic: server.queue, replyTopic: undefined, strategy: 'per-request' });
    expect(good.map((line) => line.status)).not.toContain('fail');
    const bad = await preflight(api, { exchange: 'amq.direct', requestTopic: uniqueName('unbound'), replyTopic: 'reply/v1.2/x', strategy: 'shared' });
    expect(bad).toContainEqual(expect.objectContaining({ check: 'request routed', status: 'fail' }));
    expect(bad).toContainEqual(expect.objectContaining({ check: 'reply topic', status: 'fail' }));
    expect(bad).toContainEqual(expect.objectContaining({ check: 'reply subscription', status: 'fail' }));
    // A reply topic nobody subscribes to yet, per-request: never read as "the device is subscribed".
    const fresh = `reply/${uniqueName('fresh')}`;
    const later = await preflight(api, { exchange: 'amq.direct', requestTopic: server.queue, replyTopic: fresh, strategy: 'per-request' });
    expect(later).toContainEqual({ check: 'reply subscription', status: 'pass', message: `Nothing is subscribed to "${fresh}" now: a call (per-request) subscribes just before sending; a device must do the same, or its reply is dropped.` });
  });
});

describe('tracing', () => {
  it('joins one RPC into the nine steps in order, with the broker routing keys equal to the predicted ones', async () => {
    await traced(async (store) => {
      const outcome = await client.call({ topic: server.queue, params: 'nine steps' });
      await waitForStep(store, replyDelivered(outcome.id));
      const nine = store
        .steps(outcome.id)
        .filter((step) => !['mqtt.acknowledged', 'reply.confirmed', 'mqtt.subscribed'].includes(step.kind))
        .map((step) => (step.kind === 'broker.published' || step.kind === 'broker.delivered' ? `${step.kind}:${step.detail.leg}` : step.kind));
      expect(nine).toEqual([
        'composed',
        'mqtt.published',
        'broker.published:request',
        'broker.delivered:request',
        'worker.received',
        'handler.finished',
        'reply.published',
        'broker.published:reply',
        'broker.delivered:reply',
        'mqtt.reply.received',
      ]);
      const brokerPublishes = store.steps(outcome.id).filter((step) => step.kind === 'broker.published');
      for (const step of brokerPublishes) expect(step.detail.matchesPrediction).toBe(true);
      const summary = store.summary(outcome.id);
      expect(summary).toMatchObject({ state: 'replied', brokerSeen: true, worker: outcome.worker, warnings: [] });
    });
  });

  it('shows the broker dropping a reply nobody is subscribed to', async () => {
    await traced(async (store) => {
      const device = await mqtt.connectAsync(broker.urls.mqtt, { clientId: uniqueName('raw') });
      closers.push(() => device.endAsync());
      const id = uniqueName('lost');
      await device.publishAsync(server.queue, JSON.stringify({ id, reply_to: `reply/${uniqueName('nobody')}` }), { qos: 1 });
      const dropped = await waitForStep(store, (step) => step.rpcId === id && step.kind === 'broker.published' && step.detail.leg === 'reply');
      expect(dropped.kind === 'broker.published' && dropped.detail.routedQueues).toEqual([]);
      await waitForStep(store, (step) => step.rpcId === id && step.kind === 'reply.confirmed');
      expect(store.summary(id).warnings.join(' ')).toMatch(/dropped the reply as unroutable/);
    });
  });

  it('shows the dot pitfall as "asked reply/v1.2/x, arrived on reply/v1/2/x"', async () => {
    await traced(async (store) => {
      const replyTopic = `reply/v1.2/${uniqueName('x')}`;
      const outcome = await client.call({ topic: server.queue, replyTopic, params: 'dot' });
      await waitForStep(store, replyDelivered(outcome.id));
      expect(store.summary(outcome.id).warnings).toContain(
        `asked ${replyTopic}, arrived on ${replyTopic.replace('v1.2', 'v1/2')}: a "." in a topic level is a level separator for RabbitMQ.`,
      );
    });
  });

  it('restores tracing that was already on, and leaves it on', async () => {
    await api.setTracing(true);
    try {
      await traced(async (_store, tracer) => {
        expect(tracer.status).toMatchObject({ state: 'on', turnedOnByUs: false });
      });
      expect(await api.tracing()).toBe(true);
    } finally {
      await api.setTracing(tracingBefore);
    }
  });

  it('keeps client and server steps, labelled as such, when tracing is not permitted', async () => {
    const store = new TraceStore();
    const denied = new FirehoseTracer({ amqpUrl: broker.urls.amqp, api: new ManagementApi(broker.urls.management.replace('guest:guest', 'guest:nope')), store });
    const status = await denied.start();
    expect(status).toMatchObject({ state: 'unavailable', reason: expect.stringMatching(/client and server steps only/) });
    const detach = [store.attach(client), store.attach(server)];
    const outcome = await client.call({ topic: server.queue, params: 'no firehose' });
    for (const off of detach) off();
    await denied.stop();
    const sources = new Set(store.steps(outcome.id).map((step) => step.source));
    expect(sources).toEqual(new Set(['client', 'server']));
    expect(store.summary(outcome.id).brokerSeen).toBe(false);
  });

  it('observes, for 200 generated topics clean and not, the routing keys the topic map predicts', async () => {
    const level = fc.string({ unit: fc.constantFrom('a', 'B', '7', '-', '_', '.', '*', ' ', 'é', '$'), maxLength: 5 });
    const topics = fc
      .sample(fc.array(level, { minLength: 1, maxLength: 5 }).map((levels) => levels.join('/')), { numRuns: 400, seed: 4242 })
      .filter((topic) => topic.length > 0 && Buffer.byteLength(topicToRoutingKey(topic)) <= MAX_ROUTING_KEY_BYTES)
      .slice(0, 200);
    expect(topics.length).toBe(200);
    expect(topics.some((topic) => topic.includes('.'))).toBe(true);
    expect(topics.some((topic) => topic.includes('//') || topic.startsWith('/') || topic.endsWith('/'))).toBe(true);

    const run = uniqueName('diff');
    const observed = new Map<string, string>();
    let allSeen: () => void = () => undefined;
    const complete = new Promise<void>((resolve) => (allSeen = resolve));
    await traced(
      async () => {
        const device = await mqtt.connectAsync(broker.urls.mqtt, { clientId: uniqueName('diff') });
        closers.push(() => device.endAsync());
        await Promise.all(topics.map((topic, index) => device.publishAsync(topic, `${run}:${index}`, { qos: 1 })));
        await complete;
      },
      (event) => {
        const body = event.body.toString('utf8');
        if (event.type !== 'publish' || !body.startsWith(`${run}:`)) return;
        observed.set(body, event.routingKeys[0] ?? '');
        if (observed.size === topics.length) allSeen();
      },
    );
    const mismatches = topics.filter((topic, index) => observed.get(`${run}:${index}`) !== topicToRoutingKey(topic));
    expect(mismatches).toEqual([]);
  });
});
