/** Whether a request may be sent, and at which QoS: pure, from the broker's limits and the client's own caps. */
import type { QoS } from '../../shared/rpc';
import { MQTT5_SINCE, noMqtt5, versionFindings, type BrokerRules } from '../../shared/broker-versions';
import { redactUrl } from '../../shared/redact';
import { BridgeError } from '../errors';

export interface SendCaps {
  /** the broker's max_message_size */
  maxPayloadBytes: number;
  /** requests waiting at once */
  maxInFlight: number;
  /** requests waiting while the link is down */
  maxOfflineQueue: number;
}

/** Refuses a call at once when memory or the broker could not take it, instead of letting it pile up. */
export function admit(bytes: number, waiting: number, connected: boolean, caps: SendCaps): void {
  if (bytes > caps.maxPayloadBytes) {
    throw new BridgeError('too-large', `The request is ${bytes} bytes; the broker accepts at most ${caps.maxPayloadBytes} (max_message_size).`);
  }
  if (waiting >= caps.maxInFlight) {
    throw new BridgeError('busy', `${waiting} requests are already waiting for replies (the cap is ${caps.maxInFlight}); wait for some to finish.`);
  }
  if (!connected && waiting >= caps.maxOfflineQueue) {
    throw new BridgeError('unreachable', `The MQTT link is down and ${waiting} requests already wait for it (the cap is ${caps.maxOfflineQueue}); try again when it is back.`);
  }
}

/** What the connection says of the broker's limits. */
export interface LinkLimits {
  protocolVersion: 4 | 5;
  /** the MQTT 5 CONNACK's limits (empty over 3.1.1) */
  serverLimits: { maximumQoS?: 0 | 1; maximumPacketSize?: number };
}

export interface SendRequest {
  qos: QoS;
  topic: string;
  replyTopic: string;
  bodyBytes: number;
}

/**
 * The QoS the request can be sent with on this broker, and whether it fits in one MQTT packet there. An MQTT 5 broker
 * says its limits in the CONNACK (RabbitMQ 3.13+ says Maximum QoS 1 and disconnects a client that publishes QoS 2,
 * reason 0x9B); for MQTT 3.1.1 the broker's version rules, when it is known, decide (docs/BROKER-VERSIONS.md). Throws `too-large`
 * when the broker would refuse the packet; a warning is pushed onto `warnings` when the QoS is lowered.
 */
export function allowedQos(link: LinkLimits, rules: BrokerRules, request: SendRequest, warnings: string[]): QoS {
  const { qos } = request;
  const limits = link.protocolVersion === 5 ? link.serverLimits : {};
  // Fixed header, topic, packet id and properties (response topic and correlation data, each about a reply topic and an
  // id long) come on top of the body.
  const packetBytes = request.bodyBytes + Buffer.byteLength(request.topic) + 2 * (Buffer.byteLength(request.replyTopic) + 64);
  if (limits.maximumPacketSize !== undefined && packetBytes > limits.maximumPacketSize) {
    throw new BridgeError(
      'too-large',
      `The request is about ${packetBytes} bytes with its headers; the broker's CONNACK says it takes MQTT packets of at most ${limits.maximumPacketSize} bytes (RabbitMQ: mqtt.max_packet_size_authenticated). Nothing was sent.`,
    );
  }
  if (link.protocolVersion !== 5) {
    // The only finding used here is a packet over the version's limit: most requests are far below it.
    if (packetBytes <= rules.defaultMaxPacketBytes) return qos;
    for (const finding of versionFindings(rules, { protocol: 4, qos, bytes: packetBytes })) {
      if (finding.code !== 'packet-too-large') continue;
      // A known version's limit is a refusal (the broker would close the connection and mqtt.js resend it forever).
      if (finding.severity === 'error') throw new BridgeError('too-large', `${finding.message} Nothing was sent.`);
      warnings.push(finding.message);
    }
    return qos;
  }
  if (limits.maximumQoS !== undefined && qos > limits.maximumQoS) {
    warnings.push(
      `The broker's CONNACK says Maximum QoS ${limits.maximumQoS}: an MQTT 5 client that publishes QoS ${qos} is disconnected (reason 0x9B "QoS not supported"; RabbitMQ 3.13 and later), so the request was sent as QoS ${limits.maximumQoS}.`,
    );
    return limits.maximumQoS;
  }
  return qos;
}

/** RabbitMQ before 3.13 closes the socket on an MQTT 5 CONNECT without a word: say why, and what to do instead (asked MQTT 5, no fallback URLs). */
export function explainMqtt5Refusal(err: unknown, rules: BrokerRules, mqttUrl: string): unknown {
  const closed = err instanceof BridgeError && (err.reason === 'closed-before-connack' || err.reason === 'protocol-version-refused');
  if (!closed) return err;
  const why =
    rules.version && !rules.mqtt5
      ? `${noMqtt5(`RabbitMQ ${rules.version.text}`)}.`
      : `RabbitMQ before ${MQTT5_SINCE} has no MQTT 5 (${MQTT5_SINCE} and later need the feature flag mqtt_v5 enabled).`;
  return new BridgeError(
    'unreachable',
    `The broker at ${redactUrl(mqttUrl)} closed the connection on an MQTT 5 CONNECT: ${why} Connect with MQTT 3.1.1 or auto.`,
    { cause: err },
  );
}

/** Why MQTT 5 options asked of this call were not sent: the connection speaks 3.1.1 (fell back, or was asked to). */
export function mqtt5NotSent(rules: BrokerRules): string {
  const name = rules.version ? `RabbitMQ ${rules.version.text}` : undefined;
  const why =
    name && !rules.mqtt5
      ? `${name} has no MQTT 5 (it came in 3.13), so the connection speaks MQTT 3.1.1`
      : 'the connection speaks MQTT 3.1.1 (it was asked to, or the broker refused MQTT 5)';
  return `The MQTT 5 options (user properties, correlation data, response topic, message expiry) were not sent: ${why}.`;
}
