/**
 * The QoS of other people's MQTT traffic, read off the broker's own record (the firehose's steps): the QoS a device
 * published a request at, and the QoS the broker delivers a reply to a device's subscription at. Neither is in the
 * firehose as such: the first is the header `x-mqtt-publish-qos` (RabbitMQ before 4.0) or the message's durable flag
 * (an MQTT client's QoS 1 publish is persistent, delivery_mode 2); the second follows the subscription queue's name
 * (`mqtt-subscription-<client id>qos<0|1>`) and, on RabbitMQ 3.13+, the message's durable flag (a non-persistent message
 * reaches a QoS 1 subscription at QoS 0: the `transientAtQos0` rule of broker-versions.ts). Pure.
 */
import { subscriptionQueueOwner } from './rabbitmq-mqtt';
import type { TraceMessage, TraceStepDetails } from './trace';

const deliveryMode = (wire: TraceMessage | undefined): unknown => wire?.properties['delivery_mode'];

/**
 * Whether a message was published persistent, the one rule the trace, the tap and the firehose watch use: delivery_mode
 * 2, or an MQTT client's QoS 1 publish (the header RabbitMQ before 4.0 puts on it). From 3.13 only such a message reaches
 * a QoS 1 subscription at QoS 1.
 */
export function persistentMessage(mode: unknown, headers: Readonly<Record<string, unknown>> | undefined): boolean {
  const qos = headers?.['x-mqtt-publish-qos'];
  return mode === 2 || (typeof qos === 'number' && qos >= 1);
}

/** The wire's properties could not be read (RabbitMQ's copy of its table did not decode): nothing can be said of its QoS. */
const unreadable = (wire: TraceMessage): boolean => 'unreadable' in wire.properties;

/**
 * The QoS an MQTT client published a message at, as the broker recorded it; undefined when the publisher is not known to
 * be an MQTT client (an AMQP worker's reply) or the message's properties were not kept.
 */
export function publishedQos(detail: Readonly<TraceStepDetails['broker.published']>): 0 | 1 | undefined {
  const header = detail.wire?.headers['x-mqtt-publish-qos'];
  if (typeof header === 'number') return header >= 1 ? 1 : 0;
  if (detail.publisher?.mqttClientId === undefined || detail.wire === undefined || unreadable(detail.wire)) return undefined;
  return deliveryMode(detail.wire) === 2 ? 1 : 0;
}

/** How a message reached an MQTT client's subscription queue: whose, the QoS it subscribed at, and the QoS it is delivered at. */
export interface MqttDelivery {
  clientId: string;
  subscribedQos: 0 | 1;
  /** undefined when it cannot be told: the broker's version was not known, or the message's properties were not kept */
  deliveredQos?: 0 | 1;
  /** set when the delivery is at QoS 0 below a QoS 1 subscription because the message was published non-persistent */
  transient?: true;
}

/** The delivery of a message to an MQTT client's subscription queue, or undefined for any other queue. */
export function mqttDelivery(detail: Readonly<TraceStepDetails['broker.delivered']>): MqttDelivery | undefined {
  const owner = subscriptionQueueOwner(detail.queue);
  if (!owner) return undefined;
  const delivery: MqttDelivery = { clientId: owner.clientId, subscribedQos: owner.qos };
  if (owner.qos === 0) delivery.deliveredQos = 0;
  else if (detail.wire === undefined || unreadable(detail.wire)) return delivery;
  else if (persistentMessage(deliveryMode(detail.wire), detail.wire.headers)) delivery.deliveredQos = 1;
  else if (detail.transientAtQos0 !== undefined) {
    delivery.deliveredQos = detail.transientAtQos0 ? 0 : 1;
    if (detail.transientAtQos0) delivery.transient = true;
  }
  return delivery;
}

/** The trace's warning for a reply the broker delivers at QoS 0 to a QoS 1 subscription (the watch says it per topic: watch.ts). */
export function transientReplySentence(clientId: string, wire: TraceMessage | undefined): string {
  const mode = deliveryMode(wire);
  const published = typeof mode === 'number' ? `delivery_mode ${mode}` : 'no delivery_mode';
  return (
    `The reply reached MQTT client "${clientId}" at QoS 0, though it subscribed at QoS 1: the worker published it ` +
    `non-persistent (${published}), and RabbitMQ 3.13+ delivers such a message at QoS 0, so it is lost if the device's ` +
    'connection drops before it arrives. Publish replies with delivery_mode 2 (persistent).'
  );
}
