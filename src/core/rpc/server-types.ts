/** The embedded RPC server's options, figures and reports (server.ts re-exports them). */
import type { EnvelopeFields } from '../../shared/rpc';
import type { TopicMapOptions } from '../../shared/topic-map';
import type { TlsFiles } from '../connection-details';
import type { ServerTracing } from '../otel/server-spans';
import type { RpcHandler } from './handlers';
import type { QueueType } from './queue-topology';

export interface RpcServerOptions {
  amqpUrl: string;
  /** AMQP URLs of other nodes of the same cluster: tried when `amqpUrl` cannot be reached, and in turn on reconnection */
  fallbackAmqpUrls?: readonly string[];
  /** for amqps://: CA, client certificate and key, and whether the broker's certificate is verified */
  tls?: TlsFiles;
  /**
   * The shared queue's type when the server declares it: `quorum` is replicated over the cluster's nodes and survives
   * the loss of one. Unset: an existing queue is used as it is, a missing one is declared classic.
   */
  queueType?: QueueType;
  exchange?: string;
  queue?: string;
  /** competing consumers (default DEFAULT_SERVER_SETTINGS.workers) */
  workers?: number;
  prefetch?: number;
  handler: RpcHandler;
  fields?: EnvelopeFields;
  topicMap?: TopicMapOptions;
  heartbeatSeconds?: number;
  name?: string;
  /** a handler still running after this long is abandoned and its request answered with `handler-timeout` (default 30 s) */
  handlerTimeoutMs?: number;
  /** the broker's max_message_size: a bigger reply is answered with a `reply-too-large` error instead (default 128 MiB) */
  maxMessageBytes?: number;
  /** abandoned handlers still listed (to be named on stop); beyond this the oldest are forgotten (default 1000) */
  maxAbandonedHandlers?: number;
  /**
   * Replies published persistent (delivery_mode 2), the default: since RabbitMQ 3.13 an AMQP message reaches an MQTT
   * subscriber at QoS 1 only when persistent, so a transient reply is delivered at QoS 0 whatever the device subscribed.
   */
  persistentReplies?: boolean;
  /** OpenTelemetry (src/core/otel/server-spans.ts): continues each request's trace and puts it on the reply */
  tracing?: ServerTracing;
}

export interface RpcServerStats {
  received: number;
  replied: number;
  failed: number;
  rejected: number;
  unroutable: number;
  inFlight: number;
  perWorker: Record<string, number>;
}

/** What a server problem is about: a request that could not be answered, a reply the broker dropped, a worker. */
export const SERVER_PROBLEM_KINDS = [
  'rejected',
  'unroutable',
  'reply-failed',
  'reply-too-large',
  'consumer-cancelled',
  'channel-reopened',
  'worker-lost',
  'handler-timeout',
  'late-handler',
  'correlation-lost',
  'event-loop-blocked',
  'internal',
] as const;
export type ServerProblemKind = (typeof SERVER_PROBLEM_KINDS)[number];

/** Something a user should hear about: a request that could not be answered, or a reply the broker dropped. */
export interface ServerProblem {
  kind: ServerProblemKind;
  worker: string;
  rpcId: string;
  message: string;
}

/**
 * The codes of the error replies the server itself sends (`{"error": {"code", "message"}}`). A handler's HandlerError
 * answers with a code of its own choosing besides these.
 */
export const SERVER_REPLY_ERROR_CODES = [
  /** the handler threw something that is not a HandlerError */
  'handler-error',
  /** the handler did not settle within the handler timeout */
  'handler-timeout',
  /** the handler's result cannot be encoded as JSON */
  'unserializable-result',
  /** the reply is over the broker's max_message_size */
  'reply-too-large',
  /** an earlier reply to the same request was refused by the broker */
  'reply-failed',
] as const;
export type ServerReplyErrorCode = (typeof SERVER_REPLY_ERROR_CODES)[number];

/** What a stop left behind, by request id, so a user can be told. */
export interface StopReport {
  /** every in-flight request was answered and its ack reached the broker */
  drained: boolean;
  /** requests still being handled when the drain timed out: the broker puts them back on the queue */
  unfinished: string[];
  /** handlers that timed out earlier (their requests were answered with `handler-timeout`) and had still not returned */
  abandoned: string[];
  /** abandoned handlers beyond `maxAbandonedHandlers`, no longer listed in `abandoned` (whether they returned is unknown) */
  abandonedForgotten: number;
}
