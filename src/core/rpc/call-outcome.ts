/** What a call ends with: the typed outcome built from its reply, and the warnings its reply and publish give rise to. */
import type { IPublishPacket } from 'mqtt';
import type { QoS, RpcOutcome } from '../../shared/rpc';
import type { MqttPublishFacts } from '../trace/message-view';
import { decodeUtf8 } from './envelope';
import { readReplyProperties } from './mqtt5-properties';
import type { Reply } from './reply-matcher';

/**
 * A reply delivered below its subscription's grant. RabbitMQ 3.13+ delivers an AMQP message to an MQTT subscriber at
 * min(subscription QoS, 1 if the message is persistent (delivery_mode 2) else 0): the server published it transient.
 */
export const DOWNGRADED_REPLY_WARNING = (granted: QoS): string =>
  `The reply arrived at QoS 0 though its subscription was granted QoS ${granted}: the server published it non-persistent (AMQP delivery_mode 1 or unset), and RabbitMQ 3.13+ delivers such a message to MQTT at QoS 0; publish replies with delivery_mode 2 to keep QoS 1.`;

/**
 * An MQTT 5 request's Correlation Data that did not come back on its reply. RabbitMQ 3.13+ maps it to AMQP correlation_id
 * (or header x-correlation-id) and back (mc_mqtt.erl at v3.13.0): a server must copy it onto its reply, or the device
 * cannot match the reply by it.
 */
export function correlationLostWarning(sent: string, received: Buffer | undefined): string | undefined {
  if (received !== undefined && received.equals(Buffer.from(sent, 'utf8'))) return undefined;
  const shown = received === undefined ? 'none' : `"${decodeUtf8(received) ?? `base64:${received.toString('base64')}`}"`.slice(0, 120);
  return `Correlation Data did not survive the round trip: the request carried "${sent.slice(0, 80)}", the reply carried ${shown}. The server must copy the request's AMQP correlation_id (or its x-correlation-id header) onto its reply; RabbitMQ 3.13+ hands it back to the device as Correlation Data.`;
}

/**
 * A PUBACK with an error reason code (MQTT 5): a queue the request was routed to refused it. Measured with a queue at
 * x-max-length 0 and x-overflow reject-publish: RabbitMQ 4.0.5 answers 0x83 "Implementation specific error", 4.3.6
 * 0x97 "Quota exceeded" (test/integration/mqtt5-on-the-broker.test.ts).
 */
export function refusedPublishSentence(reasonCode: number, mqttMessage: string, routingKey: string): string {
  const reason = mqttMessage.replace(/^Publish error: /, '');
  return `The broker refused the request with PUBACK 0x${reasonCode.toString(16).padStart(2, '0')} "${reason}": a queue bound for routing key "${routingKey}" rejected it (a full queue with x-overflow reject-publish, or a limit of its queue type), so it was not delivered.`;
}

/** What the trace keeps of a reply's PUBLISH besides its payload. */
export function publishFacts(packet: IPublishPacket | undefined): MqttPublishFacts {
  const facts: MqttPublishFacts = { qos: packet?.qos ?? 0, retain: packet?.retain ?? false, dup: packet?.dup ?? false };
  if (packet?.properties) facts.properties = { ...packet.properties };
  return facts;
}

/** What the call knew besides its reply. */
export interface CallFacts {
  id: string;
  replyTopic: string;
  mqttVersion: 4 | 5;
  durationMs: number;
  publishQos: RpcOutcome['publishQos'];
  subscriptionQos: RpcOutcome['subscriptionQos'];
  /** the Correlation Data the request carried (MQTT 5): its reply must carry it back */
  correlationData: string | undefined;
  /** said before the reply came; the reply's own warnings are added */
  warnings: string[];
}

/** The warnings a reply gives rise to: a topic that changed on the way, a QoS downgrade, lost Correlation Data. */
export function replyWarnings(reply: Reply, facts: CallFacts): string[] {
  const warnings = facts.warnings;
  if (reply.topic !== facts.replyTopic) {
    warnings.push(`The reply asked for "${facts.replyTopic}" arrived on "${reply.topic}": a "." in a topic level is a level separator for RabbitMQ.`);
  }
  const granted = facts.subscriptionQos.granted;
  if (granted !== 'refused' && granted >= 1 && (reply.packet?.qos ?? 0) === 0) warnings.push(DOWNGRADED_REPLY_WARNING(granted));
  if (facts.correlationData !== undefined) {
    const lost = correlationLostWarning(facts.correlationData, reply.packet?.properties?.correlationData);
    if (lost) warnings.push(lost);
  }
  return warnings;
}

/** The call's outcome, every required field given at once; the optional ones only when the reply has them. */
export function buildOutcome(reply: Reply, facts: CallFacts): RpcOutcome {
  const outcome: RpcOutcome = {
    id: facts.id,
    replyTopic: facts.replyTopic,
    arrivedOn: reply.topic,
    topicMismatch: reply.topic !== facts.replyTopic,
    body: reply.body,
    bodyBytes: reply.payload.byteLength,
    mqttVersion: facts.mqttVersion,
    durationMs: facts.durationMs,
    publishQos: facts.publishQos,
    subscriptionQos: facts.subscriptionQos,
    replyQos: (reply.packet?.qos ?? 0) as QoS,
    warnings: replyWarnings(reply, facts),
  };
  const replyProperties = reply.packet ? readReplyProperties(reply.packet) : undefined;
  if (replyProperties) outcome.replyProperties = replyProperties;
  const { fields } = reply;
  if (fields.result !== undefined) outcome.result = fields.result;
  if (fields.error) outcome.error = fields.error;
  if (fields.worker) outcome.worker = fields.worker;
  return outcome;
}
