/** The defaults every face starts from (CLI flags, the app's forms, the core's options): change one here, it changes everywhere. */
import type { ServerSettings } from './contract';
import type { QoS, ReplyStrategy } from './rpc';

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

/** RabbitMQ's default max_message_size (128 MiB, since 3.8): the server's reply limit and the client's request limit. */
export const DEFAULT_MAX_MESSAGE_BYTES = 134_217_728;

/**
 * The reply strategy has two defaults, on purpose:
 * - a one-off call (the CLI's `call`/`inspect`, the app's Compose) subscribes a reply topic of its own: nothing outlives
 *   the call, and what the trace shows is one request's whole round trip;
 * - a long-lived client (RpcClient as a library, the session's connection, load runs) shares one reply topic: one
 *   SUBSCRIBE at connect instead of a SUBSCRIBE/UNSUBSCRIBE pair per call.
 */
export const DEFAULT_CALL_REPLY_STRATEGY: ReplyStrategy = 'per-request';
export const DEFAULT_CLIENT_REPLY_STRATEGY: ReplyStrategy = 'shared';

/**
 * Workers (competing consumers) also have two: `serve` and the Server panel start DEFAULT_SERVER_SETTINGS.workers, so a
 * slow request does not hold the others; RpcServer as a library starts one, so replies come in request order unless
 * asked otherwise.
 */
export const DEFAULT_LIBRARY_SERVER_WORKERS = 1;
/** Unacked deliveries per worker. */
export const DEFAULT_PREFETCH = 1;
/** Handlers that timed out and still run, listed to be named on stop; the oldest beyond this are forgotten. */
export const DEFAULT_MAX_ABANDONED_HANDLERS = 1000;

/** Requests a client lets wait for replies at once; past it a call is refused at once (memory stays bounded). */
export const DEFAULT_MAX_IN_FLIGHT = 20_000;
/** Requests a client lets wait while its MQTT link is down; past it a call is refused at once. */
export const DEFAULT_MAX_OFFLINE_QUEUE = 1000;

/** RPCs the trace keeps (the oldest are dropped beyond it) and steps kept per RPC. */
export const DEFAULT_TRACE_MAX_RPCS = 10_000;
export const DEFAULT_TRACE_MAX_STEPS_PER_RPC = 64;
/** A load run's trace keeps 1 request in this many in full, and of the others the failed and slow ones (1: all in full). */
export const DEFAULT_LOAD_TRACE_EVERY = 10;

/** A broker on this machine with RabbitMQ's own ports and its guest user (the profile BRIDGESCOPE_AMQP_URL starts). */
export const DEFAULT_VHOST = '/';
export const DEFAULT_MQTT_URL = 'mqtt://127.0.0.1:1883';
export const DEFAULT_MANAGEMENT_URL = 'http://guest:guest@127.0.0.1:15672';

/** The embedded server as the CLI's `serve` and the app's Server panel start it. */
export const DEFAULT_SERVER_SETTINGS: Readonly<ServerSettings> = Object.freeze({
  exchange: DEFAULT_MQTT_EXCHANGE,
  queue: DEFAULT_REQUEST_QUEUE,
  workers: 2,
  prefetch: DEFAULT_PREFETCH,
  handler: 'echo',
});
