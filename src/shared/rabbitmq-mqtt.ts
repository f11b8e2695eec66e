/**
 * Names and numbers RabbitMQ's MQTT plugin uses, in one place: the subscription queue it declares per client and QoS,
 * and the MQTT 5 reason codes BridgeScope reads. A leaf module: it imports nothing.
 *
 * The queue name is `mqtt-subscription-<client id>qos<0|1>` on every version seen (3.10.8, 4.0.5, 4.3.6): one queue
 * per client and subscription QoS, exclusive since 3.12 (deps/rabbitmq_mqtt/src/rabbit_mqtt_processor.erl,
 * queue_name/2).
 */
export const SUBSCRIPTION_QUEUE_PREFIX = 'mqtt-subscription-';

const SUBSCRIPTION_QUEUE = /^mqtt-subscription-(.*)qos([01])$/;

/** The queue RabbitMQ keeps for an MQTT client's subscriptions of one QoS. */
export function subscriptionQueueName(clientId: string, qos: 0 | 1): string {
  return `${SUBSCRIPTION_QUEUE_PREFIX}${clientId}qos${qos}`;
}

/**
 * The queue a BridgeScope `watch` taps the MQTT exchange with: bound to the request keys (and reply keys) it watches,
 * consumed by the watcher, so it would pass for a server's queue. Every check and verdict leaves it out, and `bindings`
 * says whose it is.
 */
export const WATCH_TAP_QUEUE_PREFIX = 'bridgescope.watch-tap.';

export function isWatchTapQueue(queue: string): boolean {
  return queue.startsWith(WATCH_TAP_QUEUE_PREFIX);
}

/** The queues a message was routed to, a watch's tap left out: it takes what no one else would, and delivers it to nobody. */
export function withoutWatchTaps(queues: readonly string[]): string[] {
  return queues.filter((queue) => !isWatchTapQueue(queue));
}

/** Whether a queue is an MQTT client's subscription queue (by its name: the plugin's prefix). */
export function isSubscriptionQueue(queue: string): boolean {
  return queue.startsWith(SUBSCRIPTION_QUEUE_PREFIX);
}

/** `mqtt-subscription-<clientId>qos1` -> { clientId, qos }; undefined for any other queue. */
export function subscriptionQueueOwner(queue: string): { clientId: string; qos: 0 | 1 } | undefined {
  const match = SUBSCRIPTION_QUEUE.exec(queue);
  if (!match) return undefined;
  return { clientId: match[1] as string, qos: match[2] === '1' ? 1 : 0 };
}

/** MQTT 5 reason codes (OASIS MQTT 5.0, 2.4 "Reason Code") that RabbitMQ sends and BridgeScope reads. */
export const REASON = {
  /** PUBACK: the message reached no queue (RabbitMQ 3.13+, rabbit_mqtt_processor.erl process_routing_confirm) */
  noMatchingSubscribers: 0x10,
  /** PUBACK: a queue refused the message (RabbitMQ: a rejecting queue, e.g. x-overflow reject-publish) */
  implementationSpecificError: 0x83,
  /** PUBACK: over a quota */
  quotaExceeded: 0x97,
  /** DISCONNECT: a QoS the server does not support (RabbitMQ: QoS 2 from an MQTT 5 client) */
  qosNotSupported: 0x9b,
} as const;
