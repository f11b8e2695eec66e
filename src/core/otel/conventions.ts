/**
 * The attribute names BridgeScope's spans use: OpenTelemetry semantic conventions v1.44.0 for messaging
 * (docs/messaging/messaging-spans.md, https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/: span name
 * `{messaging.operation.name} {destination}`) and RabbitMQ (docs/messaging/rabbitmq.md,
 * https://opentelemetry.io/docs/specs/semconv/messaging/rabbitmq/: send spans PRODUCER, receive CLIENT, process
 * CONSUMER, settle CLIENT, and the destination names below). Kept here as literals, as the JS SDK advises for its
 * incubating entry point; test/unit/otel.test.ts checks them against @opentelemetry/semantic-conventions.
 */
export const ATTR = {
  messagingSystem: 'messaging.system',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  destinationName: 'messaging.destination.name',
  routingKey: 'messaging.rabbitmq.destination.routing_key',
  deliveryTag: 'messaging.rabbitmq.message.delivery_tag',
  messageId: 'messaging.message.id',
  conversationId: 'messaging.message.conversation_id',
  bodySize: 'messaging.message.body.size',
  consumerGroup: 'messaging.consumer.group.name',
  errorType: 'error.type',
  protocolName: 'network.protocol.name',
  protocolVersion: 'network.protocol.version',
} as const;

/** messaging.system: the broker is RabbitMQ on both legs (the MQTT plugin is RabbitMQ's; network.protocol.name says mqtt). */
export const MESSAGING_SYSTEM = 'rabbitmq';

export type OperationType = 'send' | 'receive' | 'process' | 'settle';

/**
 * A producer's destination (semconv v1.44, RabbitMQ, note [1] of the send span): `{exchange}:{routing key}`; only the one
 * present when the other is empty; `amq.default` for the default exchange without a key.
 */
export function destinationName(exchange: string, routingKey: string): string {
  const parts = [exchange, routingKey].filter((part) => part !== '');
  return parts.length === 0 ? 'amq.default' : parts.join(':');
}

/**
 * A consumer's destination (v1.44, process and settle spans): `{exchange}:{routing key}:{queue}`, empty values omitted,
 * and the queue once when it equals the routing key.
 */
export function consumerDestinationName(exchange: string, routingKey: string, queue: string): string {
  const parts = [exchange, routingKey, routingKey === queue ? '' : queue].filter((part) => part !== '');
  return parts.length === 0 ? 'amq.default' : parts.join(':');
}

/** BridgeScope's own attributes and the verdict event (no convention names these). */
export const BRIDGESCOPE = {
  rpcId: 'bridgescope.rpc.id',
  worker: 'bridgescope.worker',
  routedQueues: 'bridgescope.broker.routed_queues',
  node: 'bridgescope.broker.node',
  observedBy: 'bridgescope.observed_by',
  verdictEvent: 'bridgescope.verdict',
  verdictCode: 'bridgescope.verdict.code',
  verdictHop: 'bridgescope.verdict.hop',
  verdictMessage: 'bridgescope.verdict.message',
} as const;
