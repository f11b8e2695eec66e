/** The defaults every face starts from (CLI flags, the app's forms, the core's options): change one here, it changes everywhere. */
import type { ServerSettings } from './contract';
import type { QoS } from './rpc';

/** The exchange the MQTT plugin publishes to in BridgeScope's reference setup (`mqtt.exchange = amq.direct`). */
export const DEFAULT_MQTT_EXCHANGE = 'amq.direct';
/** RabbitMQ's own default for `mqtt.exchange`, the other place a probe looks. */
export const RABBITMQ_MQTT_EXCHANGE = 'amq.topic';
/** The shared request queue; it is bound with key = its name, so devices publish requests to the topic of the same name. */
export const DEFAULT_REQUEST_QUEUE = 'rpc_queue';
export const DEFAULT_REQUEST_TOPIC = DEFAULT_REQUEST_QUEUE;
/** Generated reply topics are `<prefix>/<uuid>`. */
export const DEFAULT_REPLY_PREFIX = 'reply';
export const DEFAULT_REQUEST_QOS: QoS = 1;
/** How long a call waits for its reply. */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;
/** How long the embedded server lets a handler run before it answers with an error. */
export const DEFAULT_HANDLER_TIMEOUT_MS = 30_000;
/** How long a stopping server lets in-flight requests finish before the rest go back to the queue. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

/** The embedded server as the CLI's `serve` and the app's Server panel start it. */
export const DEFAULT_SERVER_SETTINGS: Readonly<ServerSettings> = Object.freeze({
  exchange: DEFAULT_MQTT_EXCHANGE,
  queue: DEFAULT_REQUEST_QUEUE,
  workers: 2,
  prefetch: 1,
  handler: 'echo',
});
