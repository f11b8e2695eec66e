/** An in-process TCP server that speaks MQTT packets (mqtt-packet): the base of the fake brokers and peers the tests start. */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

export interface PacketServer {
  url: string;
  close(): Promise<void>;
}

/** Listens on a free loopback port; `onPacket` answers each packet of each connection through `send`. */
export async function startPacketServer(protocolVersion: 4 | 5, onPacket: (packet: Packet, send: (packet: Packet) => void, socket: Socket) => void): Promise<PacketServer> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const parser = mqttPacket.parser({ protocolVersion });
    const send = (packet: Packet): void => void socket.write(mqttPacket.generate(packet, { protocolVersion }));
    parser.on('packet', (packet: Packet) => onPacket(packet, send, socket));
    parser.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
