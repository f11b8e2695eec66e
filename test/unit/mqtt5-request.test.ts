import { createServer, type Server, type Socket } from 'node:net';
import mqttPacket, { type Packet, type IPublishPacket } from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcClient } from '../../src/core/rpc/client';
import { diagnose } from '../../src/shared/diagnosis';
import type { TraceStepDraft } from '../../src/shared/trace';

/** A minimal MQTT 5 peer speaking real packets: enough to see what the client puts on the wire. */
function fakeMqtt5Broker(onPublish: (packet: IPublishPacket, socket: Socket) => void): Promise<{ server: Server; url: string }> {
  const server = createServer((socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    const send = (packet: Packet): void => void socket.write(mqttPacket.generate(packet, { protocolVersion: 5 }));
    parser.on('packet', (packet: Packet) => {
      if (packet.cmd === 'connect') send({ cmd: 'connack', sessionPresent: false, reasonCode: 0 });
      if (packet.cmd === 'subscribe') send({ cmd: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) });
      if (packet.cmd === 'unsubscribe') send({ cmd: 'unsuback', messageId: packet.messageId, granted: [0] });
      if (packet.cmd === 'pingreq') send({ cmd: 'pingresp' });
      if (packet.cmd === 'publish') {
        if (packet.qos === 1) send({ cmd: 'puback', messageId: packet.messageId });
        onPublish(packet, socket);
      }
    });
    socket.on('data', (chunk) => parser.parse(chunk));
    socket.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no address');
    resolve({ server, url: `mqtt://127.0.0.1:${address.port}` });
  }));
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('MQTT 5 request/response (packet level)', () => {
  it('sends Response Topic and Correlation Data, and matches the reply by id', async () => {
    let seen: IPublishPacket | undefined;
    const { server, url } = await fakeMqtt5Broker((packet, socket) => {
      seen = packet;
      const request = JSON.parse(packet.payload.toString()) as { id: string };
      // What a RabbitMQ >= 3.13 worker's reply looks like to the device: published on the response topic.
      const reply: Packet = {
        cmd: 'publish',
        topic: packet.properties?.responseTopic ?? 'none',
        payload: Buffer.from(JSON.stringify({ id: request.id, result: 'ok5' })),
        qos: 0,
        dup: false,
        retain: false,
        properties: { correlationData: packet.properties?.correlationData },
      };
      socket.write(mqttPacket.generate(reply, { protocolVersion: 5 }));
    });
    cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
    const client = new RpcClient({ mqttUrl: url, protocolVersion: 5, strategy: 'per-request' });
    await client.connect();
    cleanups.push(() => client.close());

    const outcome = await client.call({ topic: 'rpc_queue', qos: 1, params: 1, timeoutMs: 2000 });
    expect(outcome.result).toBe('ok5');
    expect(seen?.properties?.responseTopic).toBe(outcome.replyTopic);
    expect(seen?.properties?.correlationData?.toString()).toBe(outcome.id);
    expect(JSON.parse(seen?.payload.toString() ?? '{}')).toMatchObject({ id: outcome.id, reply_to: outcome.replyTopic });
  });

  it('falls back to MQTT 3.1.1 in auto mode when the broker drops an MQTT 5 CONNECT (RabbitMQ < 3.13)', async () => {
    const versions: number[] = [];
    const server = createServer((socket) => {
      const parser = mqttPacket.parser();
      parser.on('packet', (packet: Packet) => {
        if (packet.cmd !== 'connect') return;
        versions.push(packet.protocolVersion ?? 0);
        if (packet.protocolVersion === 5) socket.destroy();
        else socket.write(mqttPacket.generate({ cmd: 'connack', sessionPresent: false, returnCode: 0 }));
      });
      socket.on('data', (chunk) => parser.parse(chunk));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no address');
    const client = new RpcClient({ mqttUrl: `mqtt://127.0.0.1:${address.port}`, protocolVersion: 'auto', strategy: 'per-request' });
    await client.connect();
    cleanups.push(() => client.close());
    expect(client.link.protocolVersion).toBe(4);
    expect(versions).toEqual([5, 4]);
  });
});

/**
 * A peer that answers as RabbitMQ 3.13+ does (rabbit_mqtt_processor.erl): CONNACK with Maximum QoS 1 and its Maximum
 * Packet Size, and a DISCONNECT with reason 0x9B for a QoS 2 PUBLISH. It replies to every request on its response topic.
 */
function rabbitLikeMqtt5Peer(maximumPacketSize: number): Promise<{ server: Server; url: string; published: IPublishPacket[]; disconnects: number[] }> {
  const published: IPublishPacket[] = [];
  const disconnects: number[] = [];
  const server = createServer((socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    const send = (packet: Packet): void => void socket.write(mqttPacket.generate(packet, { protocolVersion: 5 }));
    parser.on('packet', (packet: Packet) => {
      if (packet.cmd === 'connect') send({ cmd: 'connack', sessionPresent: false, reasonCode: 0, properties: { maximumQoS: 1, maximumPacketSize } });
      if (packet.cmd === 'subscribe') send({ cmd: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) });
      if (packet.cmd === 'unsubscribe') send({ cmd: 'unsuback', messageId: packet.messageId, granted: [0] });
      if (packet.cmd === 'pingreq') send({ cmd: 'pingresp' });
      if (packet.cmd !== 'publish') return;
      published.push(packet);
      if (packet.qos === 2) {
        disconnects.push(0x9b);
        send({ cmd: 'disconnect', reasonCode: 0x9b });
        socket.end();
        return;
      }
      // An unrouted QoS 1 publish: RabbitMQ 3.13+ answers PUBACK with reason 0x10 (process_routing_confirm).
      if (packet.qos === 1 && packet.topic === 'nobody_home') {
        send({ cmd: 'puback', messageId: packet.messageId, reasonCode: 0x10 });
        return;
      }
      if (packet.qos === 1) send({ cmd: 'puback', messageId: packet.messageId });
      const request = JSON.parse(packet.payload.toString()) as { id: string };
      send({
        cmd: 'publish',
        topic: packet.properties?.responseTopic ?? 'none',
        payload: Buffer.from(JSON.stringify({ id: request.id, result: 'ok' })),
        qos: 0,
        dup: false,
        retain: false,
      });
    });
    socket.on('data', (chunk) => parser.parse(chunk));
    socket.on('error', () => undefined);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no address');
      resolve({ server, url: `mqtt://127.0.0.1:${address.port}`, published, disconnects });
    }),
  );
}

describe('the limits an MQTT 5 broker says in its CONNACK (RabbitMQ 3.13+ rules)', () => {
  it('never publishes QoS 2 where the broker would disconnect for it: sends QoS 1 and says why', async () => {
    const peer = await rabbitLikeMqtt5Peer(16 * 1024 * 1024);
    cleanups.push(() => new Promise((resolve) => peer.server.close(() => resolve())));
    const client = new RpcClient({ mqttUrl: peer.url, protocolVersion: 5, strategy: 'per-request' });
    await client.connect();
    cleanups.push(() => client.close());
    expect(client.link.serverLimits).toEqual({ maximumQoS: 1, maximumPacketSize: 16 * 1024 * 1024 });

    const outcome = await client.call({ topic: 'rpc_queue', qos: 2, params: 1, timeoutMs: 2000 });
    expect(outcome.result).toBe('ok');
    expect(peer.disconnects).toEqual([]);
    expect(peer.published.map((packet) => packet.qos)).toEqual([1]);
    expect(outcome.publishQos).toEqual({ asked: 2, acknowledgedAs: 1 });
    expect(outcome.warnings).toContainEqual(expect.stringContaining('Maximum QoS 1'));
    expect(outcome.warnings).toContainEqual(expect.stringContaining('0x9B'));
  });

  it('refuses a request larger than the Maximum Packet Size before sending anything', async () => {
    const peer = await rabbitLikeMqtt5Peer(4096);
    cleanups.push(() => new Promise((resolve) => peer.server.close(() => resolve())));
    const client = new RpcClient({ mqttUrl: peer.url, protocolVersion: 5, strategy: 'per-request' });
    await client.connect();
    cleanups.push(() => client.close());

    const call = client.call({ topic: 'rpc_queue', qos: 1, params: 'x'.repeat(8000), timeoutMs: 2000 });
    await expect(call).rejects.toMatchObject({ code: 'too-large', message: expect.stringContaining('at most 4096 bytes') });
    expect(peer.published).toEqual([]);
    // a request that fits still goes through on the same connection
    expect((await client.call({ topic: 'rpc_queue', qos: 1, params: 1, timeoutMs: 2000 })).result).toBe('ok');
  });

  it('fails at once with a request-unroutable verdict when the PUBACK says "No matching subscribers", without the firehose', async () => {
    const peer = await rabbitLikeMqtt5Peer(16 * 1024 * 1024);
    cleanups.push(() => new Promise((resolve) => peer.server.close(() => resolve())));
    const client = new RpcClient({ mqttUrl: peer.url, protocolVersion: 5, strategy: 'per-request' });
    const steps: TraceStepDraft[] = [];
    client.on('step', (step) => steps.push(step));
    await client.connect();
    cleanups.push(() => client.close());

    const started = performance.now();
    await expect(client.call({ topic: 'nobody_home', qos: 1, params: 1, timeoutMs: 10_000 })).rejects.toMatchObject({
      code: 'unroutable',
      message: expect.stringContaining('No matching subscribers'),
    });
    // it did not wait for the 10 s timeout
    expect(performance.now() - started).toBeLessThan(5000);
    expect(steps.find((step) => step.kind === 'mqtt.acknowledged')?.detail).toMatchObject({ reasonCode: 0x10 });
    const verdict = diagnose({ rpcId: steps[0]?.rpcId ?? '', steps, firehose: false });
    expect(verdict).toMatchObject({ code: 'request-unroutable', hop: 'exchange' });
    expect(verdict.message).toContain('"nobody_home"');
    expect(verdict.evidence).toContainEqual(expect.stringContaining('No matching subscribers'));
  });
});
