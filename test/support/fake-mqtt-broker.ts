/** A minimal in-process MQTT 3.1.1 broker that is not RabbitMQ (as a Mosquitto would be): it accepts, acks and forgets. */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

export interface FakeMqttBroker {
  url: string;
  /** topics of the PUBLISH packets it acknowledged */
  published: string[];
  close(): Promise<void>;
}

export interface FakeMqttBrokerOptions {
  /** answer CONNECT, then never acknowledge anything (a stuck or overloaded broker) */
  silentAfterConnect?: boolean;
}

export async function startFakeMqttBroker(options: FakeMqttBrokerOptions = {}): Promise<FakeMqttBroker> {
  const published: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const send = (packet: Packet): void => void socket.write(mqttPacket.generate(packet));
    parser.on('packet', (packet: Packet) => {
      if (packet.cmd === 'publish') published.push(packet.topic);
      if (options.silentAfterConnect && packet.cmd !== 'connect') return;
      switch (packet.cmd) {
        case 'connect':
          send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
          break;
        case 'subscribe':
          send({ cmd: 'suback', messageId: packet.messageId ?? 0, granted: packet.subscriptions.map((sub) => sub.qos) });
          break;
        case 'publish':
          if (packet.qos === 1) send({ cmd: 'puback', messageId: packet.messageId ?? 0 });
          break;
        case 'pingreq':
          send({ cmd: 'pingresp' });
          break;
        case 'disconnect':
          socket.end();
          break;
        default:
          break;
      }
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    published,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
