/** What an RpcClient and each of its calls are given. */
import type { EnvelopeFields, Mqtt5RequestOptions, QoS, ReplyStrategy } from '../../shared/rpc';
import type { TopicMapOptions } from '../../shared/topic-map';
import type { MqttVersionChoice } from '../links/mqtt-link';
import type { TraceCarrier } from '../otel/context';
import type { LoadRunMark } from '../../shared/trace';

export interface RpcClientOptions {
  mqttUrl: string;
  /** MQTT URLs of other nodes of the same cluster: tried when `mqttUrl` cannot be reached, and in turn on reconnection */
  fallbackMqttUrls?: readonly string[];
  clientId?: string;
  /** prefix of generated reply topics: `<prefix>/<uuid>` */
  replyPrefix?: string;
  /** default DEFAULT_CLIENT_REPLY_STRATEGY (shared) */
  strategy?: ReplyStrategy;
  protocolVersion?: MqttVersionChoice;
  fields?: EnvelopeFields;
  topicMap?: TopicMapOptions;
  keepaliveSeconds?: number;
  /** requests waiting at once; past it, a call is refused at once (memory stays bounded) */
  maxInFlight?: number;
  /** requests allowed to wait while the MQTT link is down; past it, a call is refused at once */
  maxOfflineQueue?: number;
  /** the broker's max_message_size (default DEFAULT_MAX_MESSAGE_BYTES, RabbitMQ's 128 MiB) */
  maxPayloadBytes?: number;
  /** passed to the MQTT link (tests shorten them) */
  reconnectDelayMs?: number;
  /** the broker's version (management overview), when known: its rules apply where MQTT 3.1.1 cannot say them */
  brokerVersion?: string;
}

export interface RpcCallOptions {
  topic?: string;
  qos?: QoS;
  method?: string;
  params?: unknown;
  /** a whole JSON object to send; id and reply_to are added to it */
  payload?: Record<string, unknown>;
  /**
   * bytes sent exactly as given instead of the JSON envelope (no id, no reply_to): method, params and payload are unused.
   * Not to be changed while the call is on its way: the trace reads its first bytes after the call has handed it over.
   */
  rawBody?: Uint8Array;
  /** MQTT 5 properties of the request; over MQTT 3.1.1 they cannot be sent, and a warning says so */
  mqtt5?: Mqtt5RequestOptions;
  replyTopic?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** an id of the caller's choosing (default: a fresh uuid) */
  id?: string;
  /** overrides the client's strategy for this call (per-request needs no shared subscription) */
  strategy?: ReplyStrategy;
  /** publish again (same id) when no reply came within attemptTimeoutMs, this many times at most */
  retries?: number;
  attemptTimeoutMs?: number;
  /** said before the call (e.g. by buildCallOptions): the outcome's warnings start with them */
  warnings?: readonly string[];
  /** a load run's request traced in full: why (its composed step says it, so a trace read later still tells) */
  loadRun?: LoadRunMark;
  /** W3C trace context to carry (src/core/otel/context.ts): MQTT 5 user properties, or 3.1.1 body fields */
  traceContext?: TraceCarrier;
}
