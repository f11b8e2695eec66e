/** A call cancelled (or timed out) while its reply subscription is still being set up: nothing outlives it, and the trace says so. */
import { createServer, type Server } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcClient } from '../../src/core/rpc/client';
import type { TraceStepDraft } from '../../src/shared/trace';

/** An MQTT 3.1.1 peer that holds every SUBACK until told, and records what the client subscribes and unsubscribes. */
async function slowSubackBroker() {
  const seen: string[] = [];
  const held: Array<() => void> = [];
  let onUnsubscribe: (() => void) | undefined;
  let onSubscribe: (() => void) | undefined;
  const server: Server = createServer((socket) => {
    const parser = mqttPacket.parser();
    const send = (packet: Packet): void => void socket.write(mqttPacket.generate(packet));
    parser.on('packet', (packet: Packet) => {
      if (packet.cmd === 'connect') send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
      if (packet.cmd === 'subscribe') {
        seen.push(`subscribe ${packet.subscriptions[0]?.topic}`);
        held.push(() => send({ cmd: 'suback', messageId: packet.messageId, granted: [1] }));
        onSubscribe?.();
      }
      if (packet.cmd === 'unsubscribe') {
        seen.push(`unsubscribe ${packet.unsubscriptions[0]}`);
        send({ cmd: 'unsuback', messageId: packet.messageId, granted: [] });
        onUnsubscribe?.();
      }
      if (packet.cmd === 'pingreq') send({ cmd: 'pingresp' });
    });
    socket.on('data', (chunk) => parser.parse(chunk));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    server,
    url: `mqtt://127.0.0.1:${address.port}`,
    seen,
    releaseSubacks: () => held.splice(0).forEach((release) => release()),
    unsubscribed: () => new Promise<void>((resolve) => (onUnsubscribe = resolve)),
    subscribeArrived: () => new Promise<void>((resolve) => (onSubscribe = resolve)),
  };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('a call cancelled while it subscribes to its reply topic', () => {
  it('is rejected as cancelled with an rpc.failed step, and its subscription is removed once the broker grants it', async () => {
    const broker = await slowSubackBroker();
    cleanups.push(() => new Promise((resolve) => broker.server.close(() => resolve())));
    const client = new RpcClient({ mqttUrl: broker.url, strategy: 'per-request' });
    const steps: TraceStepDraft[] = [];
    client.on('step', (step) => steps.push(step));
    await client.connect();
    cleanups.push(() => client.close());

    const controller = new AbortController();
    const arrived = broker.subscribeArrived();
    const call = client.call({ topic: 'rpc_queue', qos: 1, params: 1, timeoutMs: 10_000, signal: controller.signal });
    await arrived;
    const subscribed = steps.length;
    controller.abort();
    await expect(call).rejects.toMatchObject({ code: 'cancelled' });
    expect(subscribed).toBe(1);
    expect(steps.map((step) => step.kind)).toEqual(['composed', 'rpc.failed']);

    const unsubscribed = broker.unsubscribed();
    broker.releaseSubacks();
    await unsubscribed;
    const topic = steps[0]?.kind === 'composed' ? steps[0].detail.replyTopic : '?';
    expect(broker.seen).toEqual([`subscribe ${topic}`, `unsubscribe ${topic}`]);
  });
});
