import { EventEmitter, once } from 'node:events';
import { join } from 'node:path';
import WebSocket from 'ws';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Events, ServerSettings } from '../../src/shared/contract';
import type { RpcOutcome } from '../../src/shared/rpc';
import type { ErrorShape } from '../../src/shared/errors';
import type { TraceStep } from '../../src/shared/trace';
import { dispatch } from '../../src/core/dispatch';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { startHost } from '../../src/host/host';
import { uniqueName } from '../support/names';
import { createTestVhost, type TestVhost } from '../support/vhosts';

/** The app's verdicts: a real Session on the run's broker, in a vhost of its own (tracing is per vhost; other files trace "/"). */
const broker = inject('broker');
const events = new EventEmitter();
let vhost: TestVhost;
let session: Session;

beforeAll(async () => {
  vhost = await createTestVhost(broker.urls, 'session-diagnosis');
  session = new Session({
    mode: 'browser',
    profiles: new ProfileStore(memorySecretBox()),
    traceFlushMs: 10,
    emit: (name, payload) => events.emit(name, payload),
  });
  // The MQTT plugin takes the vhost from a "vhost:user" user name.
  const mqttUser = encodeURIComponent(`${vhost.name}:guest`);
  await session.open({
    name: 'diagnosis',
    amqpUrl: vhost.amqpUrl,
    mqttUrl: broker.urls.mqtt.replace('mqtt://', `mqtt://${mqttUser}:guest@`),
    managementUrl: broker.urls.management,
    vhost: vhost.name,
    exchange: 'amq.direct',
  });
});

afterAll(async () => {
  await session?.dispose();
  await vhost?.remove();
}, 60_000);

const send = (topic: string, timeoutMs: number) =>
  dispatch(session.handlers, 'rpc.request.send', { topic, qos: 1, strategy: 'shared', payloadText: '{"params": {"n": 1}}', timeoutMs });

/** Resolves with the first batch of `trace.steps.added` that holds a step satisfying `until`. */
function nextStep(until: (step: TraceStep) => boolean): Promise<TraceStep> {
  return new Promise((resolve) => {
    const listener = ({ steps }: Events['trace.steps.added']): void => {
      const found = steps.find(until);
      if (!found) return;
      events.off('trace.steps.added', listener);
      resolve(found);
    };
    events.on('trace.steps.added', listener);
  });
}

async function startServer(settings: Partial<ServerSettings>): Promise<string> {
  const queue = uniqueName('diag_queue');
  const started = await dispatch(session.handlers, 'server.start', { exchange: 'amq.direct', queue, workers: 1, prefetch: 1, handler: 'echo', ...settings });
  expect(started).toMatchObject({ ok: true, result: { state: 'running' } });
  return queue;
}

describe.each([
  ['off', false],
  ['on', true],
])('an RPC sent from the app, firehose %s', (_label, firehose) => {
  beforeAll(async () => {
    const view = await session.setTracing(firehose);
    expect(view.state).toBe(firehose ? 'on' : 'off');
  });
  afterAll(async () => {
    await session.stopServer();
    await session.setTracing(false);
  }, 30_000);

  it('to a topic nothing is bound to is rejected with request-unroutable, its id, and a sentence naming the exchange and the key', async () => {
    const topic = `diag/${uniqueName('nobody')}`;
    const diagnosed = nextStep((step) => step.kind === 'rpc.diagnosed');
    const reply = await send(topic, 1000);
    expect(reply.ok).toBe(false);
    const error = (reply as { error: ErrorShape }).error;
    expect(error.code).toBe('timeout');
    expect(error.rpcId).toEqual(expect.any(String));
    expect(error.verdict).toMatchObject({ code: 'request-unroutable', hop: 'exchange' });
    expect(error.verdict?.message).toContain('amq.direct');
    expect(error.verdict?.message).toContain(`"${topic.replace('/', '.')}"`);
    // The same verdict reaches the UI as the RPC's last step.
    const step = await diagnosed;
    expect(step).toMatchObject({ rpcId: error.rpcId, kind: 'rpc.diagnosed', detail: { verdict: { code: 'request-unroutable' } } });
    if (firehose) expect(error.verdict?.evidence.some((line) => line.startsWith('broker: request published on amq.direct'))).toBe(true);
  });

  it('to a server slower than the timeout is rejected with server-slow', async () => {
    const queue = await startServer({ handler: 'delay:4000' });
    const reply = await send(queue, 1000);
    expect(reply.ok).toBe(false);
    const error = (reply as { error: ErrorShape }).error;
    expect(error).toMatchObject({ code: 'timeout', rpcId: expect.any(String), verdict: { code: 'server-slow', hop: 'server' } });
    expect(error.verdict?.message).toContain(`"${queue}"`);
    await session.stopServer();
  }, 30_000);

  it('that is answered returns the outcome with the verdict replied, and the trace holds it as an rpc.diagnosed step', async () => {
    const queue = await startServer({ handler: 'echo' });
    const reply = await send(queue, 5000);
    expect(reply).toMatchObject({ ok: true, result: { verdict: { code: 'replied', hop: 'mqtt-deliver' } } });
    const outcome = (reply as { result: RpcOutcome }).result;
    const snapshot = await session.handlers['trace.snapshot.get']({});
    const diagnosed = snapshot.steps.filter((step) => step.rpcId === outcome.id && step.kind === 'rpc.diagnosed');
    expect(diagnosed).toHaveLength(1);
    expect(diagnosed[0]).toMatchObject({ detail: { verdict: outcome.verdict } });
    expect(session.store.summary(outcome.id).verdict?.code).toBe('replied');
    await session.stopServer();
  });
});

describe('a third-party server that follows AMQP\'s reply_to convention', () => {
  afterAll(async () => {
    await session.setTracing(false);
  }, 30_000);

  it('replying to the default exchange is named as such (firehose on): reply-to-property, with the exchange and key to use', async () => {
    expect((await session.setTracing(true)).state).toBe('on');
    const queue = uniqueName('replyto_queue');
    const connection = await amqp.connect(vhost.amqpUrl);
    const channel = await connection.createChannel();
    try {
      await channel.assertQueue(queue, { durable: false, autoDelete: true });
      await channel.bindQueue(queue, 'amq.direct', queue);
      // An AMQP RPC server as written for AMQP clients: the reply goes to the default exchange, keyed by the reply_to it found.
      await channel.consume(queue, (message) => {
        if (!message) return;
        const request = JSON.parse(message.content.toString()) as { id: string; reply_to: string };
        channel.publish('', (message.properties.replyTo as string | undefined) ?? request.reply_to, Buffer.from(JSON.stringify({ id: request.id, result: 'lost' })));
        channel.ack(message);
      });
      const reply = await send(queue, 1500);
      expect(reply.ok).toBe(false);
      const error = (reply as { error: ErrorShape }).error;
      expect(error.verdict).toMatchObject({ code: 'reply-to-property', hop: 'reply-exchange' });
      expect(error.verdict?.message).toContain('The server published its reply to the default exchange with key "');
      expect(error.verdict?.message).toContain('Publish the reply to amq.direct with key "');
    } finally {
      await connection.close();
    }
  }, 30_000);
});

describe('the error of a failed RPC', () => {
  it('reaches a browser page over the WebSocket host with its RPC id and verdict', async () => {
    const host = await startHost(session.handlers, { staticDir: join(import.meta.dirname, '..', '..', 'out', 'renderer') });
    const socket = new WebSocket(`${host.origin.replace('http', 'ws')}/ws?token=${host.token}`, { origin: host.origin });
    try {
      await once(socket, 'open');
      const answered = new Promise<{ ok: boolean; error?: ErrorShape }>((resolve) => socket.once('message', (data) => resolve(JSON.parse(data.toString()))));
      const topic = `diag/${uniqueName('nobody')}`;
      socket.send(JSON.stringify({ type: 'invoke', id: 1, command: 'rpc.request.send', args: { topic, qos: 1, strategy: 'shared', payloadText: '{}', timeoutMs: 800 } }));
      const reply = await answered;
      expect(reply).toMatchObject({ ok: false, error: { code: 'timeout', rpcId: expect.any(String), verdict: { code: 'request-unroutable', hop: 'exchange' } } });
      expect(reply.error?.message).toMatch(/^No reply to /);
    } finally {
      socket.close();
      await host.close();
    }
  });
});
