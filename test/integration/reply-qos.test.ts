/**
 * The QoS a reply is delivered at (issue 22). Since RabbitMQ 3.13 an AMQP message reaches an MQTT subscriber at
 * min(subscription QoS, delivery_mode 2 ? 1 : 0): our server publishes its replies persistent so a QoS 1 subscriber gets
 * them at QoS 1 on every version, and a transient reply that arrives at QoS 0 is named, with delivery_mode, as the reason.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { QoS, ReplyStrategy, RpcOutcome } from '../../src/shared/rpc';
import type { TraceStepDraft } from '../../src/shared/trace';
import { RpcServer } from '../../src/core/rpc/server';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler, parseHandlerSpec } from '../../src/core/rpc/handlers';
import { uniqueName } from '../support/names';

const broker = inject('broker');
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** 3.13 and later deliver a transient AMQP message to MQTT at QoS 0; 3.10.8 delivered it at the subscription's QoS. */
function downgradesTransient(version: string | undefined): boolean {
  const [major = 0, minor = 0] = (version ?? '0.0').split('.').map(Number);
  return major > 3 || (major === 3 && minor >= 13);
}

async function serverWith(persistentReplies: boolean | undefined): Promise<RpcServer> {
  const server = new RpcServer({
    amqpUrl: broker.urls.amqp,
    queue: uniqueName('rpc_queue'),
    workers: 1,
    handler: await loadHandler(parseHandlerSpec('echo')),
    ...(persistentReplies === undefined ? {} : { persistentReplies }),
  });
  await server.start();
  closers.push(() => server.stop());
  return server;
}

async function callTraced(server: RpcServer, strategy: ReplyStrategy, qos: QoS): Promise<{ outcome: RpcOutcome; steps: TraceStepDraft[] }> {
  const client = new RpcClient({ mqttUrl: broker.urls.mqtt, strategy, clientId: uniqueName('device') });
  await client.connect();
  closers.push(() => client.close());
  const steps: TraceStepDraft[] = [];
  client.on('step', (step: TraceStepDraft) => void steps.push(step));
  const outcome = await client.call({ topic: server.queue, qos, params: 'qos?' });
  return { outcome, steps };
}

describe(`the QoS a reply is delivered at (RabbitMQ ${broker.version ?? 'unknown'})`, () => {
  it.each(['per-request', 'shared'] as const)('a reply from our server reaches a QoS 1 subscriber at QoS 1, and the trace says so (%s reply topic)', async (strategy) => {
    const server = await serverWith(undefined);
    const { outcome, steps } = await callTraced(server, strategy, 1);
    expect(outcome.subscriptionQos.granted).toBe(1);
    expect(outcome.replyQos).toBe(1);
    expect(outcome.warnings.join(' ')).not.toMatch(/delivery_mode/);
    const received = steps.find((step) => step.kind === 'mqtt.reply.received');
    expect(received?.kind === 'mqtt.reply.received' ? received.detail.qos : undefined).toBe(1);
  });

  it('a transient reply (delivery_mode 1) is delivered at QoS 0 on 3.13+ and named with delivery_mode as the reason; at QoS 1 on 3.10', async () => {
    const server = await serverWith(false);
    const { outcome, steps } = await callTraced(server, 'per-request', 1);
    const received = steps.find((step) => step.kind === 'mqtt.reply.received');
    if (downgradesTransient(broker.version)) {
      expect(outcome.replyQos).toBe(0);
      expect(received?.kind === 'mqtt.reply.received' ? received.detail.qos : undefined).toBe(0);
      expect(outcome.warnings.find((warning) => warning.includes('delivery_mode'))).toMatch(/arrived at QoS 0 though its subscription was granted QoS 1/);
    } else {
      expect(outcome.replyQos).toBe(1);
      expect(outcome.warnings.join(' ')).not.toMatch(/delivery_mode/);
    }
  });

  it('a QoS 0 subscriber gets the persistent reply at QoS 0, without a warning', async () => {
    const server = await serverWith(undefined);
    const { outcome } = await callTraced(server, 'per-request', 0);
    expect(outcome.replyQos).toBe(0);
    expect(outcome.warnings.join(' ')).not.toMatch(/delivery_mode/);
  });
});
