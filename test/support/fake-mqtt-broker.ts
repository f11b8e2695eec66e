/** A minimal in-process MQTT 3.1.1 broker that is not RabbitMQ (as a Mosquitto would be): it accepts, acks and forgets. */
import { startPacketServer } from './mqtt-packet-server';

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
  const server = await startPacketServer(4, (packet, send, socket) => {
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
  return { ...server, published };
}
