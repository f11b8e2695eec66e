import { createServer, type Server, type Socket } from 'node:net';
import mqttPacket, { type Packet, type IPublishPacket } from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcClient } from '../../src/core/rpc/client';

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
