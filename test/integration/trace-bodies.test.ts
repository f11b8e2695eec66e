import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { wireOf, type TraceStep } from '../../src/shared/trace';
import { ManagementApi } from '../../src/core/broker/management-api';
import { FirehoseTracer } from '../../src/core/trace/firehose';
import { TraceStore } from '../../src/core/trace/trace-store';
import { RpcServer } from '../../src/core/rpc/server';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler } from '../../src/core/rpc/handlers';
import { atLeast, parseBrokerVersion } from '../../src/shared/broker-versions';
import { uniqueName } from '../support/names';
import { waitForStep } from '../support/trace-wait';

const broker = inject('broker');
const api = new ManagementApi(broker.urls.management);
/**
 * The headers the MQTT plugin marks an MQTT publish with, on the version under test: both on 3.10 (seen on 3.10.8),
 * x-mqtt-dup gone in 3.12, x-mqtt-publish-qos gone in 4.0 (seen absent on 4.0.5 and 4.3.6; docs/BROKER-VERSIONS.md).
 */
const version = parseBrokerVersion(broker.version);
const pluginMarks: Record<string, unknown> = {
  ...(version && !atLeast(version, 4, 0) ? { 'x-mqtt-publish-qos': 1 } : {}),
  ...(version && !atLeast(version, 3, 12) ? { 'x-mqtt-dup': false } : {}),
};
const gone = ['x-mqtt-publish-qos', 'x-mqtt-dup'].filter((name) => !(name in pluginMarks));
let server: RpcServer;
let client: RpcClient;

beforeAll(async () => {
  server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
  await server.start();
  client = new RpcClient({ mqttUrl: broker.urls.mqtt, clientId: uniqueName('device') });
  await client.connect();
});
afterAll(async () => {
  await client.close();
  await server.stop();
});

describe('bodies and headers in the trace, from the real broker', () => {
  it('every hop carries what it saw: the MQTT plugin headers at the broker, QoS at the client, and the body start with its size', async () => {
    const store = new TraceStore();
    const tracer = new FirehoseTracer({ amqpUrl: broker.urls.amqp, api, store });
    expect((await tracer.start()).state).toBe('on');
    const detach = [store.attach(client), store.attach(server)];
    try {
      const big = 'x'.repeat(10_000);
      const outcome = await client.call({ topic: server.queue, qos: 1, params: { big } });
      const replyDelivered = await waitForStep(store, (step) => step.rpcId === outcome.id && step.kind === 'broker.delivered' && step.detail.leg === 'reply');
      const steps = store.steps(outcome.id);
      const find = (kind: string, leg?: string) => steps.find((step) => step.kind === kind && (leg === undefined || ('leg' in step.detail && step.detail.leg === leg)));

      const composed = wireOf(find('composed') as TraceStep);
      expect(composed).toMatchObject({ protocol: 'mqtt', properties: { qos: 1, retain: false }, body: { encoding: 'json', shown: 4096 } });
      expect(composed?.body.bytes).toBeGreaterThan(10_000);
      expect(composed?.body.preview.startsWith('{')).toBe(true);

      // RabbitMQ's MQTT plugin marks what it publishes; the firehose copies the message's own properties and headers.
      const published = wireOf(find('broker.published', 'request') as TraceStep);
      expect(published).toMatchObject({ protocol: 'amqp' });
      expect(published?.headers ?? {}).toMatchObject(pluginMarks);
      for (const name of gone) expect(published?.headers ?? {}).not.toHaveProperty(name);
      expect(published?.body).toMatchObject({ bytes: composed?.body.bytes, shown: 4096, preview: composed?.body.preview });
      expect(wireOf(find('broker.delivered', 'request') as TraceStep)?.body.bytes).toBe(composed?.body.bytes);

      // The server's own view: the delivery's properties and headers, and the reply it published.
      const received = wireOf(find('worker.received') as TraceStep);
      expect(received).toMatchObject({ protocol: 'amqp', body: { bytes: composed?.body.bytes } });
      expect(received?.headers ?? {}).toMatchObject(pluginMarks);
      for (const name of gone) expect(received?.headers ?? {}).not.toHaveProperty(name);

      const reply = wireOf(find('mqtt.reply.received') as TraceStep);
      expect(wireOf(find('reply.published') as TraceStep)).toMatchObject({ properties: { contentType: 'application/json' }, body: { bytes: reply?.body.bytes } });
      expect(reply).toMatchObject({ protocol: 'mqtt', properties: { qos: 1, retain: false, dup: false } });
      expect(reply?.body.bytes).toBeGreaterThan(10_000);
      expect(wireOf(replyDelivered)?.body.bytes).toBe(reply?.body.bytes);
      expect(wireOf(find('broker.published', 'reply') as TraceStep)?.body.preview).toBe(reply?.body.preview);
    } finally {
      for (const off of detach) off();
      await tracer.stop();
    }
  });
});
