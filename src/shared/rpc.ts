/** Data shapes of one RPC as the user sees them: options, replies, link status. */
import type { Verdict } from './verdict';

export type QoS = 0 | 1 | 2;
/** How a call gets its reply: a reply topic of its own (subscribed for the call), or the client's one shared topic. */
export const REPLY_STRATEGIES = ['per-request', 'shared'] as const;
export type ReplyStrategy = (typeof REPLY_STRATEGIES)[number];

/** Names of the request body's fields; devices that use other names can rename them. */
export interface EnvelopeFields {
  id: string;
  replyTo: string;
  method: string;
  params: string;
}

export const defaultEnvelopeFields: EnvelopeFields = { id: 'id', replyTo: 'reply_to', method: 'method', params: 'params' };

/** A reply body as received: JSON when it parses, otherwise text (the seed's server answers `done`), otherwise bytes. */
export type ReplyBody =
  /** `text`: the JSON as it arrived, so it can also be shown as its exact bytes */
  | { kind: 'json'; value: unknown; text?: string }
  | { kind: 'text'; text: string }
  | { kind: 'binary'; base64: string; bytes: number };

/** One MQTT 5 user property; a key may repeat (MQTT 5 keeps each pair, in order). */
export interface UserProperty {
  key: string;
  value: string;
}

/** What a request carries in MQTT 5 properties besides its body (RabbitMQ 3.13+ maps each to AMQP: docs/BROKER-VERSIONS.md). */
export interface Mqtt5RequestOptions {
  /** -> AMQP headers */
  userProperties?: UserProperty[];
  /** UTF-8 text; default: the RPC id (-> AMQP correlation_id) */
  correlationData?: string;
  /** default: the reply topic (-> AMQP header x-reply-to-topic) */
  responseTopic?: string;
  /** seconds (-> a per-message TTL) */
  messageExpirySeconds?: number;
}

/** The MQTT 5 properties a reply arrived with (absent over MQTT 3.1.1, which has none). */
export interface ReplyProperties {
  userProperties?: UserProperty[];
  /** as UTF-8 text when it is, else base64 with `correlationDataEncoding: 'base64'` */
  correlationData?: string;
  correlationDataEncoding?: 'utf8' | 'base64';
  responseTopic?: string;
  contentType?: string;
  payloadFormatIndicator?: boolean;
  messageExpiryInterval?: number;
}

export interface RpcErrorBody {
  code: string;
  message: string;
}

export interface RpcOutcome {
  id: string;
  /** the reply topic the request asked for */
  replyTopic: string;
  /** the topic the reply really arrived on; differs from replyTopic in the dot pitfall */
  arrivedOn: string;
  topicMismatch: boolean;
  body: ReplyBody;
  /** the reply body's size in bytes, as it arrived */
  bodyBytes?: number;
  /** the reply's MQTT 5 properties, when the connection speaks MQTT 5 and the reply had any */
  replyProperties?: ReplyProperties;
  /** the MQTT protocol the request went out on: 4 = 3.1.1, 5 = MQTT 5 */
  mqttVersion?: 4 | 5;
  result?: unknown;
  error?: RpcErrorBody;
  worker?: string;
  durationMs: number;
  /** QoS the request was published with, and how the broker acknowledged it */
  publishQos: { asked: QoS; acknowledgedAs: QoS };
  /** QoS asked and granted for the reply subscription */
  subscriptionQos: { asked: QoS; granted: QoS | 'refused' };
  /** the QoS the reply was delivered at (its PUBLISH packet's): below the grant when the broker downgraded it */
  replyQos?: QoS;
  warnings: string[];
  /** where the RPC stopped and why (the app and `call` always diagnose; a bare RpcClient does not) */
  verdict?: Verdict;
}

export type LinkStatus =
  | { state: 'idle' }
  | { state: 'connecting'; since: number }
  | { state: 'connected'; since: number }
  | { state: 'reconnecting'; since: number; attempt: number; lastError: string }
  | { state: 'failed'; message: string }
  | { state: 'closed' };
