/**
 * An in-process MQTT peer speaking real packets (3.1.1 or 5), that answers each request the way a RabbitMQ 3.13+
 * worker's reply reaches a device: on the request's Response Topic (else its body's reply_to), with the request's
 * Correlation Data and, when asked, reply properties. Enough to see what the client puts on the wire and reads back.
 */
import type { IPublishPacket } from 'mqtt-packet';
import { startPacketServer } from './mqtt-packet-server';

export interface FakeMqtt5Peer {
  url: string;
  /** every PUBLISH the client sent, as parsed off the wire */
  published: IPublishPacket[];
  close(): Promise<void>;
}

export interface FakeMqtt5PeerOptions {
  protocolVersion?: 4 | 5;
  /** the reply's body; default: `{"id": <request id>, "result": "ok"}` for a JSON request, `done` for any other body */
  reply?: (request: IPublishPacket) => Buffer;
  /** MQTT 5 properties the reply carries besides the echoed Correlation Data */
  replyProperties?: NonNullable<IPublishPacket['properties']>;
}

function replyTopicOf(packet: IPublishPacket): string | undefined {
  if (packet.properties?.responseTopic) return packet.properties.responseTopic;
  try {
    const body = JSON.parse(packet.payload.toString()) as { reply_to?: unknown };
    return typeof body.reply_to === 'string' ? body.reply_to : undefined;
  } catch {
    return undefined;
  }
}

function defaultReply(packet: IPublishPacket): Buffer {
  try {
    const body = JSON.parse(packet.payload.toString()) as { id?: unknown };
    return Buffer.from(JSON.stringify({ id: body.id, result: 'ok' }));
  } catch {
    return Buffer.from('done');
  }
}

export async function startFakeMqtt5Peer(options: FakeMqtt5PeerOptions = {}): Promise<FakeMqtt5Peer> {
  const protocolVersion = options.protocolVersion ?? 5;
  const published: IPublishPacket[] = [];
  const server = await startPacketServer(protocolVersion, (packet, send) => {
    if (packet.cmd === 'connect') {
      send(protocolVersion === 5 ? { cmd: 'connack', sessionPresent: false, reasonCode: 0 } : { cmd: 'connack', sessionPresent: false, returnCode: 0 });
    }
    if (packet.cmd === 'subscribe') send({ cmd: 'suback', messageId: packet.messageId ?? 0, granted: packet.subscriptions.map(() => 1) });
    if (packet.cmd === 'unsubscribe') send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: [0] });
    if (packet.cmd === 'pingreq') send({ cmd: 'pingresp' });
    if (packet.cmd !== 'publish') return;
    published.push(packet);
    if (packet.qos === 1) send({ cmd: 'puback', messageId: packet.messageId ?? 0 });
    const topic = replyTopicOf(packet);
    if (topic === undefined) return;
    const properties =
      protocolVersion === 5
        ? { ...options.replyProperties, ...(packet.properties?.correlationData ? { correlationData: packet.properties.correlationData } : {}) }
        : undefined;
    send({ cmd: 'publish', topic, payload: (options.reply ?? defaultReply)(packet), qos: 0, dup: false, retain: false, ...(properties ? { properties } : {}) });
  });
  return { ...server, published };
}
