/** The device side of an RPC: publish a request over MQTT, wait for the reply, match it by id (never by topic string). */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { IClientPublishOptions, IPublishPacket, Packet } from 'mqtt';
import {
  defaultEnvelopeFields,
  type EnvelopeFields,
  type Mqtt5RequestOptions,
  type QoS,
  type ReplyBody,
  type ReplyStrategy,
  type RpcOutcome,
} from '../../shared/rpc';
import type { TraceStepDetails, TraceStepDraft } from '../../shared/trace';
import { brokerRules, MQTT5_SINCE, noMqtt5, versionFindings, type BrokerRules } from '../../shared/broker-versions';
import { BridgeError } from '../errors';
import { redactUrl } from '../../shared/redact';
import { MqttLink, type MqttVersionChoice } from '../links/mqtt-link';
import { blockingIssue, lintTopic, topicToRoutingKey, type TopicMapOptions } from '../../shared/topic-map';
import { decodeUtf8, encodeRequest, readBody, readReplyFields } from './envelope';
import { mqtt5PublishProperties, readReplyProperties } from './mqtt5-properties';
import { mqttMessage, type MqttPublishFacts } from '../trace/message-view';
import { carryTraceContext, type TraceCarrier } from '../otel/context';
import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_REPLY_PREFIX, DEFAULT_REQUEST_QOS, DEFAULT_REQUEST_TOPIC } from '../../shared/defaults';

/** MQTT 5 PUBACK reason code: the message was accepted but reached no subscriber (RabbitMQ: no queue was bound). */
const NO_MATCHING_SUBSCRIBERS = 0x10;

export interface RpcClientOptions {
  mqttUrl: string;
  /** MQTT URLs of other nodes of the same cluster: tried when `mqttUrl` cannot be reached, and in turn on reconnection */
  fallbackMqttUrls?: readonly string[];
  clientId?: string;
  /** prefix of generated reply topics: `<prefix>/<uuid>` */
  replyPrefix?: string;
  strategy?: ReplyStrategy;
  protocolVersion?: MqttVersionChoice;
  fields?: EnvelopeFields;
  topicMap?: TopicMapOptions;
  keepaliveSeconds?: number;
  /** requests waiting at once; past it, a call is refused at once (memory stays bounded) */
  maxInFlight?: number;
  /** requests allowed to wait while the MQTT link is down; past it, a call is refused at once */
  maxOfflineQueue?: number;
  /** the broker's max_message_size (RabbitMQ 3.10 default: 128 MiB) */
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
  /** bytes sent exactly as given instead of the JSON envelope (no id, no reply_to): method, params and payload are unused */
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
  /** W3C trace context to carry (src/core/otel/context.ts): MQTT 5 user properties, or 3.1.1 body fields */
  traceContext?: TraceCarrier;
}

const RETRY = Symbol('retry');

function timer(ms: number): { elapsed: Promise<typeof RETRY>; cancel: () => void } {
  let handle: NodeJS.Timeout | undefined;
  const elapsed = new Promise<typeof RETRY>((resolve) => (handle = setTimeout(() => resolve(RETRY), ms)));
  return { elapsed, cancel: () => clearTimeout(handle) };
}

/** What the trace keeps of a reply's PUBLISH besides its payload. */
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

function publishFacts(packet: IPublishPacket | undefined): MqttPublishFacts {
  const facts: MqttPublishFacts = { qos: packet?.qos ?? 0, retain: packet?.retain ?? false, dup: packet?.dup ?? false };
  if (packet?.properties) facts.properties = { ...packet.properties };
  return facts;
}

/**
 * A call's one deadline: `expired` rejects when its time is up or it is cancelled; `clear` disarms it. A class, not a
 * closure per call (under tsx every named closure is renamed at run time, which the send path pays per request).
 */
class CallGuard {
  readonly expired: Promise<never>;
  private timer: NodeJS.Timeout | undefined;
  private onAbort: (() => void) | undefined;

  constructor(
    link: MqttLink,
    topicMap: TopicMapOptions | undefined,
    id: string,
    replyTopic: string,
    replyRoutingKey: string,
    topic: string,
    timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.expired = new Promise<never>((_, reject) => {
      this.timer = setTimeout(() => {
        // No guess at the cause here: the verdict decided after the timeout says where the RPC stopped (a generic "is a
        // server consuming?" contradicted a verdict such as "rejected", where a server did consume).
        const base = `No reply to ${id} within ${timeoutMs} ms on "${replyTopic}" (routing key "${replyRoutingKey}")`;
        reject(
          link.connected
            ? new BridgeError('timeout', `${base}.`)
            : new BridgeError('timeout', `${base}: the MQTT link is down and did not come back in time.`, { reason: 'link-down' }),
        );
      }, timeoutMs);
      if (!signal) return;
      this.onAbort = () => reject(new BridgeError('cancelled', `The request ${id} was cancelled.`));
      if (signal.aborted) this.onAbort();
      else signal.addEventListener('abort', this.onAbort, { once: true });
    });
    this.expired.catch(() => undefined);
  }

  clear(): void {
    clearTimeout(this.timer);
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
  }
}

/** One request on its way out: what a publish (and each retry of it) needs. */
interface Sending {
  id: string;
  topic: string;
  body: Buffer;
  options: IClientPublishOptions;
  qos: QoS;
  predictedRoutingKey: string;
  guard: CallGuard;
}

interface Reply {
  topic: string;
  payload: Buffer;
  body: ReplyBody;
  packet?: IPublishPacket;
  /** read once, when the reply was matched by its id */
  fields: ReturnType<typeof readReplyFields>;
}

interface PendingCall {
  id: string;
  replyTopic: string;
  replyRoutingKey: string;
  started: number;
  resolve: (reply: Reply) => void;
}

interface RpcClientEvents {
  step: [TraceStepDraft];
  /** a reply that matched no waiting call: late (after a timeout), duplicate, or foreign */
  stray: [{ topic: string; id?: string; duplicate: boolean }];
}

const RECENT_IDS = 10_000;

/**
 * How the last calls ended, by id: at least the last `limit`, at most twice that. Two generations of plain Maps, the
 * older dropped whole when the newer is full: no per-entry eviction on the hot path (a BoundedMap's delete and order
 * array cost about 4 us per call here once full).
 */
class RecentIds {
  private current = new Map<string, 'replied' | 'failed'>();
  private previous = new Map<string, 'replied' | 'failed'>();

  constructor(private readonly limit: number) {}

  set(id: string, outcome: 'replied' | 'failed'): void {
    if (this.current.size >= this.limit) {
      this.previous = this.current;
      this.current = new Map();
    }
    this.current.set(id, outcome);
  }

  get(id: string): 'replied' | 'failed' | undefined {
    return this.current.get(id) ?? this.previous.get(id);
  }
}

interface TopicFacts {
  /** why the topic cannot be used, when it cannot */
  unusable: string | undefined;
  warnings: readonly string[];
  routingKey: string;
}

export class RpcClient extends EventEmitter<RpcClientEvents> {
  readonly link: MqttLink;
  readonly clientId: string;
  readonly strategy: ReplyStrategy;
  private readonly fields: EnvelopeFields;
  private readonly replyPrefix: string;
  private readonly pending = new Map<string, PendingCall>();
  /** how recent calls ended, to tell a duplicate reply (at-least-once) from a late one */
  private readonly recentlyDone = new RecentIds(RECENT_IDS);
  /** acks seen per packet id, so a QoS 2 publish answered with PUBACK is noticed, and an MQTT 5 reason code read */
  private readonly acks = new Map<number, { packet: 'puback' | 'pubrec'; reasonCode?: number }>();
  private sharedReplyTopic: string | undefined;
  /** the topic map's verdicts on the topics every call uses again (see topicFacts) */
  private readonly knownTopics = new Map<string, TopicFacts>();
  private sharedGrant: QoS | 'refused' = 'refused';
  duplicates = 0;
  /** the broker's version rules, decided once per version (not per request: this is the send path) */
  private rules: BrokerRules = brokerRules(undefined);
  private version: string | undefined;

  /** the broker's version once known (the app reads it from the management API after connecting) */
  get brokerVersion(): string | undefined {
    return this.version;
  }

  set brokerVersion(version: string | undefined) {
    this.version = version;
    this.rules = brokerRules(version);
  }

  constructor(private readonly options: RpcClientOptions) {
    super();
    this.clientId = options.clientId ?? `bridgescope-${randomUUID().slice(0, 8)}`;
    this.brokerVersion = options.brokerVersion;
    this.strategy = options.strategy ?? 'shared';
    this.fields = options.fields ?? defaultEnvelopeFields;
    this.replyPrefix = options.replyPrefix ?? DEFAULT_REPLY_PREFIX;
    this.link = new MqttLink({
      url: options.mqttUrl,
      clientId: this.clientId,
      protocolVersion: options.protocolVersion ?? 4,
      keepaliveSeconds: options.keepaliveSeconds,
      ...(options.reconnectDelayMs !== undefined ? { reconnectDelayMs: options.reconnectDelayMs } : {}),
      ...(options.fallbackMqttUrls?.length ? { fallbackUrls: options.fallbackMqttUrls } : {}),
    });
    this.link.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
  }

  async connect(): Promise<void> {
    await this.link.open().catch((err: unknown) => {
      throw this.explainMqtt5Refusal(err);
    });
    this.link.client.on('packetreceive', (packet: Packet) => {
      if ((packet.cmd === 'puback' || packet.cmd === 'pubrec') && typeof packet.messageId === 'number') {
        // Per PUBACK: a literal and a conditional field, not a spread of a conditional object (measurably dearer).
        const ack: { packet: 'puback' | 'pubrec'; reasonCode?: number } = { packet: packet.cmd };
        if (typeof packet.reasonCode === 'number') ack.reasonCode = packet.reasonCode;
        this.acks.set(packet.messageId, ack);
      }
    });
    if (this.strategy === 'shared') {
      this.sharedReplyTopic = `${this.replyPrefix}/${randomUUID()}`;
      this.sharedGrant = await this.link.subscribe(this.sharedReplyTopic, 1);
    }
  }

  /** Sends one request and resolves with its reply; rejects with `timeout`, `cancelled` or `bad-input`. */
  async call(asked: RpcCallOptions = {}): Promise<RpcOutcome> {
    const options = asked.traceContext ? carryTraceContext(asked, asked.traceContext, this.link.protocolVersion) : asked;
    const id = options.id ?? randomUUID();
    const topic = options.topic ?? DEFAULT_REQUEST_TOPIC;
    const qos = options.qos ?? DEFAULT_REQUEST_QOS;
    const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const warnings: string[] = options.warnings ? [...options.warnings] : [];

    const topicFacts = this.topicFacts(topic, 'publish', true);
    if (topicFacts.unusable) throw new BridgeError('bad-input', `The request topic cannot be used: ${topicFacts.unusable}`);
    if (topicFacts.warnings.length > 0) warnings.push(...topicFacts.warnings);

    const strategy = options.strategy ?? this.strategy;
    const useShared = strategy === 'shared' && options.replyTopic === undefined && this.sharedReplyTopic !== undefined;
    const replyTopic = options.replyTopic ?? (useShared ? (this.sharedReplyTopic as string) : `${this.replyPrefix}/${randomUUID()}`);
    // A per-request reply topic is new every time: not worth keeping.
    const replyFacts = this.topicFacts(replyTopic, 'reply', replyTopic === this.sharedReplyTopic);
    if (replyFacts.unusable) throw new BridgeError('bad-input', `The reply topic cannot be used: ${replyFacts.unusable}`);
    if (replyFacts.warnings.length > 0) warnings.push(...replyFacts.warnings);

    const replyRoutingKey = replyFacts.routingKey;
    const raw = options.rawBody;
    const body = raw
      ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
      : encodeRequest({ id, replyTopic, method: options.method, params: options.params, extra: options.payload }, this.fields);
    this.admit(body.byteLength);
    const sendQos = this.allowedQos(qos, topic, replyTopic, body.byteLength, warnings);
    const step = this.emitStep;
    if (this.traced) {
      // The hot path of every traced call: literals with conditional fields, no spreads of conditional objects.
      const facts: MqttPublishFacts = { qos: sendQos, retain: false };
      if (this.link.protocolVersion === 5) facts.properties = { ...mqtt5PublishProperties(id, replyTopic, options.mqtt5) };
      const detail: TraceStepDetails['composed'] = { topic, qos, replyTopic, replyStrategy: useShared ? 'shared' : 'per-request', bytes: body.byteLength };
      if (options.method) detail.method = options.method;
      detail.wire = mqttMessage(facts, body);
      step({ rpcId: id, at: Date.now(), source: 'client', kind: 'composed', detail });
    }

    // One deadline for the whole call: subscribing and publishing can hang too while the broker is away.
    const guard = new CallGuard(this.link, this.options.topicMap, id, replyTopic, replyRoutingKey, topic, timeoutMs, options.signal);
    let grant: QoS | 'refused' = this.sharedGrant;
    if (!useShared) {
      const subscribing = this.link.subscribe(replyTopic, qos);
      grant = await Promise.race([subscribing, guard.expired]).catch((err: unknown) => {
        // Cancelled or timed out while subscribing: the subscription may still complete; it must not outlive the call.
        void subscribing.then(() => this.link.unsubscribe(replyTopic)).catch(() => undefined);
        return this.failEarly(id, guard, err);
      });
      if (this.traced) step({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.subscribed', detail: { topic: replyTopic, qosAsked: qos, qosGranted: grant } });
      if (grant === 'refused') this.failEarly(id, guard, new BridgeError('broker-failed', `The broker refused the subscription to the reply topic "${replyTopic}".`));
    }
    const subscriptionAsked: QoS = useShared ? 1 : qos;
    if (grant !== 'refused' && grant < subscriptionAsked) {
      warnings.push(`The reply subscription asked QoS ${subscriptionAsked}; the broker granted QoS ${grant}.`);
    }

    const started = performance.now();
    let outcomeOf: 'replied' | 'failed' = 'failed';
    const replied = new Promise<Reply>((resolve) => {
      this.pending.set(id, { id, replyTopic, replyRoutingKey, started, resolve });
    });
    try {
      const publishOptions: IClientPublishOptions = { qos: sendQos };
      if (this.link.protocolVersion === 5) {
        publishOptions.properties = mqtt5PublishProperties(id, replyTopic, options.mqtt5);
      } else if (options.mqtt5 !== undefined) {
        warnings.push(this.mqtt5NotSent());
      }
      const sending: Sending = { id, topic, body, options: publishOptions, qos: sendQos, predictedRoutingKey: topicFacts.routingKey, guard };
      const acknowledgedAs = await this.publish(sending);
      if (sendQos === 2 && acknowledgedAs < 2) {
        warnings.push('Published with QoS 2; the broker answered PUBACK, so it was delivered as QoS 1 (RabbitMQ grants at most 1).');
      }

      // At-least-once: with retries, a request without a reply in time is published again under the same id;
      // the first reply wins and later ones are counted as duplicates, never delivered twice.
      let reply: Reply | undefined;
      for (let attempt = 1; reply === undefined; attempt += 1) {
        const retrying = attempt <= (options.retries ?? 0) && options.attemptTimeoutMs !== undefined;
        const wait = retrying ? timer(options.attemptTimeoutMs as number) : undefined;
        const next = await (wait ? Promise.race([replied, guard.expired, wait.elapsed]) : Promise.race([replied, guard.expired]));
        wait?.cancel();
        if (next !== RETRY) {
          reply = next;
          break;
        }
        warnings.push(`No reply after ${options.attemptTimeoutMs} ms: published again (attempt ${attempt + 1}).`);
        await this.publish(sending);
      }

      const fields = reply.fields;
      const topicMismatch = reply.topic !== replyTopic;
      if (topicMismatch) {
        warnings.push(`The reply asked for "${replyTopic}" arrived on "${reply.topic}": a "." in a topic level is a level separator for RabbitMQ.`);
      }
      outcomeOf = 'replied';
      const replyQos = (reply.packet?.qos ?? 0) as QoS;
      if (grant !== 'refused' && grant >= 1 && replyQos === 0) warnings.push(DOWNGRADED_REPLY_WARNING(grant));
      if (this.link.protocolVersion === 5) {
        const lost = correlationLostWarning(options.mqtt5?.correlationData || id, reply.packet?.properties?.correlationData);
        if (lost) warnings.push(lost);
      }
      if (this.traced) step({
        rpcId: id,
        at: Date.now(),
        source: 'client',
        kind: 'mqtt.reply.received',
        detail: { topic: reply.topic, replyTopic, topicMismatch, bytes: reply.payload.byteLength, qos: replyQos, wire: mqttMessage(publishFacts(reply.packet), reply.payload) },
      });
      // Once per call: a literal, then the optional fields in their place (spreads of conditional objects cost more).
      const outcome: RpcOutcome = {
        id,
        replyTopic,
        arrivedOn: reply.topic,
        topicMismatch,
        body: reply.body,
        bodyBytes: reply.payload.byteLength,
        mqttVersion: this.link.protocolVersion,
      } as RpcOutcome;
      const replyProperties = reply.packet ? readReplyProperties(reply.packet) : undefined;
      if (replyProperties) outcome.replyProperties = replyProperties;
      if (fields.result !== undefined) outcome.result = fields.result;
      if (fields.error) outcome.error = fields.error;
      if (fields.worker) outcome.worker = fields.worker;
      outcome.durationMs = performance.now() - started;
      outcome.publishQos = { asked: qos, acknowledgedAs };
      outcome.subscriptionQos = { asked: subscriptionAsked, granted: grant };
      outcome.replyQos = replyQos;
      outcome.warnings = warnings;
      return outcome;
    } catch (err) {
      const failure = err instanceof BridgeError ? err : new BridgeError('internal', (err as Error).message, { cause: err });
      if (this.traced) step({ rpcId: id, at: Date.now(), source: 'client', kind: 'rpc.failed', detail: failure.reason ? { code: failure.code, message: failure.message, reason: failure.reason } : { code: failure.code, message: failure.message } });
      throw failure;
    } finally {
      guard.clear();
      this.pending.delete(id);
      this.remember(id, outcomeOf);
      if (!useShared) void this.link.unsubscribe(replyTopic).catch(() => undefined);
    }
  }

  /** A call that ends before its publish still settles in the trace, with the reason. */
  private failEarly(id: string, guard: CallGuard, err: unknown): never {
    guard.clear();
    const failure = err instanceof BridgeError ? err : new BridgeError('internal', (err as Error).message, { cause: err });
    if (this.traced) this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'rpc.failed', detail: failure.reason ? { code: failure.code, message: failure.message, reason: failure.reason } : { code: failure.code, message: failure.message } });
    throw failure;
  }

  /** Publishes a request (again, on a retry) and reads how the broker acknowledged it. */
  private async publish(sending: Sending): Promise<QoS> {
    const { id, qos, predictedRoutingKey } = sending;
    if (this.traced) this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.published', detail: { topic: sending.topic, qosAsked: qos, predictedRoutingKey } });
    const packet = await Promise.race([this.link.client.publishAsync(sending.topic, sending.body, sending.options), sending.guard.expired]).catch((err: unknown) => {
      if (err instanceof BridgeError) throw err;
      // mqtt.js fails the publish with the PUBACK's reason code when it is an error (0x80 and up, MQTT 5 only).
      const reasonCode = (err as { code?: unknown }).code;
      if (typeof reasonCode === 'number' && reasonCode >= 0x80) {
        if (this.traced) this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: qos, acknowledgedAs: 1, packet: 'puback', reasonCode } });
        throw new BridgeError('unroutable', refusedPublishSentence(reasonCode, (err as Error).message, predictedRoutingKey));
      }
      throw new BridgeError('unreachable', `The MQTT connection closed before the broker acknowledged request ${id} (${(err as Error).message}).`);
    });
    const ack = packet?.messageId !== undefined ? this.acks.get(packet.messageId) : undefined;
    if (packet?.messageId !== undefined) this.acks.delete(packet.messageId);
    const acknowledgedAs: QoS = qos === 0 ? 0 : ack?.packet === 'pubrec' ? 2 : 1;
    if (qos > 0 && this.traced) {
      const detail: TraceStepDetails['mqtt.acknowledged'] = { qosAsked: qos, acknowledgedAs, packet: ack?.packet ?? (acknowledgedAs === 2 ? 'pubrec' : 'puback') };
      if (ack?.reasonCode !== undefined) detail.reasonCode = ack.reasonCode;
      this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.acknowledged', detail });
    }
    // RabbitMQ 3.13+ tells an MQTT 5 client that a QoS 1 publish reached no queue: no reply can come, say so now.
    if (ack?.reasonCode === NO_MATCHING_SUBSCRIBERS) {
      throw new BridgeError(
        'unroutable',
        `The broker answered PUBACK "No matching subscribers" (0x10): nothing is bound on the MQTT exchange for routing key "${predictedRoutingKey}", so the request was dropped.`,
      );
    }
    return acknowledgedAs;
  }

  /**
   * The QoS the request can be sent with on this broker, and whether it fits in one MQTT packet there. An MQTT 5 broker
   * says its limits in the CONNACK (RabbitMQ 3.13+ says Maximum QoS 1 and disconnects a client that publishes QoS 2,
   * reason 0x9B); for MQTT 3.1.1 the broker's version, when known, decides (docs/BROKER-VERSIONS.md).
   */
  private allowedQos(qos: QoS, topic: string, replyTopic: string, bodyBytes: number, warnings: string[]): QoS {
    const limits = this.link.protocolVersion === 5 ? this.link.serverLimits : {};
    // Fixed header, topic, packet id and properties (response topic and correlation data, each about a reply topic
    // and an id long) come on top of the body.
    const packetBytes = bodyBytes + Buffer.byteLength(topic) + 2 * (Buffer.byteLength(replyTopic) + 64);
    if (limits.maximumPacketSize !== undefined && packetBytes > limits.maximumPacketSize) {
      throw new BridgeError(
        'too-large',
        `The request is about ${packetBytes} bytes with its headers; the broker's CONNACK says it takes MQTT packets of at most ${limits.maximumPacketSize} bytes (RabbitMQ: mqtt.max_packet_size_authenticated). Nothing was sent.`,
      );
    }
    if (this.link.protocolVersion !== 5) {
      // The only finding used here is a packet over the version's limit: most requests are far below it (hot path).
      if (packetBytes <= this.rules.defaultMaxPacketBytes) return qos;
      for (const finding of versionFindings(this.rules, { protocol: 4, qos, bytes: packetBytes })) {
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

  /** RabbitMQ before 3.13 closes the socket on an MQTT 5 CONNECT without a word: say why, and what to do instead. */
  private explainMqtt5Refusal(err: unknown): unknown {
    const closed = err instanceof BridgeError && (err.reason === 'closed-before-connack' || err.reason === 'protocol-version-refused');
    if (this.options.protocolVersion !== 5 || !closed || (this.options.fallbackMqttUrls?.length ?? 0) > 0) return err;
    const why =
      this.rules.version && !this.rules.mqtt5
        ? `${noMqtt5(`RabbitMQ ${this.rules.version.text}`)}.`
        : `RabbitMQ before ${MQTT5_SINCE} has no MQTT 5 (${MQTT5_SINCE} and later need the feature flag mqtt_v5 enabled).`;
    return new BridgeError(
      'unreachable',
      `The broker at ${redactUrl(this.options.mqttUrl)} closed the connection on an MQTT 5 CONNECT: ${why} Connect with MQTT 3.1.1 or auto.`,
      { cause: err },
    );
  }

  /** Why MQTT 5 options asked of this call were not sent: the connection speaks 3.1.1 (fell back, or was asked to). */
  private mqtt5NotSent(): string {
    const name = this.rules.version ? `RabbitMQ ${this.rules.version.text}` : undefined;
    const why =
      name && !this.rules.mqtt5
        ? `${name} has no MQTT 5 (it came in 3.13), so the connection speaks MQTT 3.1.1`
        : 'the connection speaks MQTT 3.1.1 (it was asked to, or the broker refused MQTT 5)';
    return `The MQTT 5 options (user properties, correlation data, response topic, message expiry) were not sent: ${why}.`;
  }

  /** Refuses a call at once when memory or the broker could not take it, instead of letting it pile up. */
  private admit(bytes: number): void {
    const maxPayload = this.options.maxPayloadBytes ?? 128 * 1024 * 1024;
    if (bytes > maxPayload) {
      throw new BridgeError('too-large', `The request is ${bytes} bytes; the broker accepts at most ${maxPayload} (max_message_size).`);
    }
    const maxInFlight = this.options.maxInFlight ?? 20_000;
    if (this.pending.size >= maxInFlight) {
      throw new BridgeError('busy', `${this.pending.size} requests are already waiting for replies (the cap is ${maxInFlight}); wait for some to finish.`);
    }
    const maxOffline = this.options.maxOfflineQueue ?? 1000;
    if (!this.link.connected && this.pending.size >= maxOffline) {
      throw new BridgeError('unreachable', `The MQTT link is down and ${this.pending.size} requests already wait for it (the cap is ${maxOffline}); try again when it is back.`);
    }
  }

  private remember(id: string, outcome: 'replied' | 'failed'): void {
    this.recentlyDone.set(id, outcome);
  }

  /** Matches by the id in the reply; replies without one (plain text) by routing-key equivalence, oldest call first. */
  private onMessage(topic: string, payload: Buffer, packet?: IPublishPacket): void {
    const body = readBody(payload);
    const fields = readReplyFields(body, this.fields);
    const { id } = fields;
    let call = id !== undefined ? this.pending.get(id) : undefined;
    // An MQTT 5 reply to a body without an id (text, bytes) may still carry the request's Correlation Data: the id.
    const correlation = id === undefined ? packet?.properties?.correlationData : undefined;
    if (!call && correlation !== undefined) call = this.pending.get(correlation.toString('utf8'));
    if (!call && id === undefined) {
      const key = topicToRoutingKey(topic, this.options.topicMap);
      for (const candidate of this.pending.values()) {
        if (candidate.replyRoutingKey === key) {
          call = candidate;
          break;
        }
      }
    }
    if (!call) {
      const duplicate = id !== undefined && this.recentlyDone.get(id) === 'replied';
      if (duplicate) this.duplicates += 1;
      // A second reply to a call that took one: kept in the trace (it may be the true one), never used.
      if (duplicate && this.traced) {
        const detail: TraceStepDetails['mqtt.reply.ignored'] = { topic, bytes: payload.byteLength, reason: 'second-reply', wire: mqttMessage(publishFacts(packet), payload) };
        this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.reply.ignored', detail });
      }
      this.emit('stray', { topic, ...(id !== undefined ? { id } : {}), duplicate });
      return;
    }
    this.pending.delete(call.id);
    const reply: Reply = { topic, payload, body, fields };
    if (packet) reply.packet = packet;
    call.resolve(reply);
  }

  private readonly emitStep = (draft: TraceStepDraft): void => void this.emit('step', draft);

  /**
   * What the topic map says of a topic in a role: the reason it cannot be used, the warnings, its routing key. The request
   * topic and the shared reply topic come back on every call: theirs are kept (a few, so a burst of topics cannot grow it).
   */
  private topicFacts(topic: string, role: 'publish' | 'reply', keep: boolean): TopicFacts {
    const cacheKey = `${role}\u0000${topic}`;
    const known = keep ? this.knownTopics.get(cacheKey) : undefined;
    if (known) return known;
    const issues = lintTopic(topic, role, this.options.topicMap);
    const facts: TopicFacts = {
      unusable: blockingIssue(issues)?.message,
      // a request topic's warnings; a reply topic's warnings and its errors that do not block
      warnings: issues.filter((issue) => (role === 'publish' ? issue.severity === 'warning' : issue.severity !== 'info')).map((issue) => issue.message),
      routingKey: topicToRoutingKey(topic, this.options.topicMap),
    };
    if (keep) {
      if (this.knownTopics.size >= 64) this.knownTopics.clear();
      this.knownTopics.set(cacheKey, facts);
    }
    return facts;
  }

  /** the one reply topic of the shared strategy, once connected */
  /** Whether anyone listens to steps: when nobody does, no step object is built at all. */
  private get traced(): boolean {
    return this.listenerCount('step') > 0;
  }

  get sharedTopic(): string | undefined {
    return this.sharedReplyTopic;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  async close(): Promise<void> {
    await this.link.close();
  }
}
