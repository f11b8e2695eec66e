/** The device side of an RPC: publish a request over MQTT, wait for the reply, match it by id (never by topic string). */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { IClientPublishOptions, IPublishPacket, Packet } from 'mqtt';
import { defaultEnvelopeFields, type EnvelopeFields, type QoS, type ReplyStrategy, type RpcOutcome } from '../../shared/rpc';
import type { TraceStepDetails, TraceStepDraft } from '../../shared/trace';
import { brokerRules, type BrokerRules } from '../../shared/broker-versions';
import { messageOf } from '../../shared/thrown';
import { BridgeError } from '../errors';
import { MqttLink } from '../links/mqtt-link';
import { topicToRoutingKey } from '../../shared/topic-map';
import { encodeRequest } from './envelope';
import { mqtt5PublishProperties } from './mqtt5-properties';
import { mqttWire, WIRE_SOURCE, type MqttPublishFacts, type PendingDraft } from '../trace/message-view';
import { readTopLevelFields } from '../trace/json-fields';
import { carryTraceContext } from '../otel/context';
import {
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_CLIENT_REPLY_STRATEGY,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_OFFLINE_QUEUE,
  DEFAULT_REPLY_PREFIX,
  DEFAULT_REQUEST_QOS,
  DEFAULT_REQUEST_TOPIC,
} from '../../shared/defaults';
import { CallGuard } from './call-guard';
import { ReplyMatcher, type Reply } from './reply-matcher';
import { admit, allowedQos, explainMqtt5Refusal, mqtt5NotSent, type SendCaps } from './send-limits';
import { TopicFactsCache } from './topic-facts';
import type { RpcCallOptions, RpcClientOptions } from './client-options';

export type { RpcCallOptions, RpcClientOptions } from './client-options';
import { buildOutcome, publishFacts, refusedPublishSentence } from './call-outcome';

export { correlationLostWarning, DOWNGRADED_REPLY_WARNING, refusedPublishSentence } from './call-outcome';

/** MQTT 5 PUBACK reason code: the message was accepted but reached no subscriber (RabbitMQ: no queue was bound). */
const NO_MATCHING_SUBSCRIBERS = 0x10;

const RETRY = Symbol('retry');

function timer(ms: number): { elapsed: Promise<typeof RETRY>; cancel: () => void } {
  let handle: NodeJS.Timeout | undefined;
  const elapsed = new Promise<typeof RETRY>((resolve) => (handle = setTimeout(() => resolve(RETRY), ms)));
  return { elapsed, cancel: () => clearTimeout(handle) };
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

interface RpcClientEvents {
  step: [TraceStepDraft];
  /** a reply that matched no waiting call: late (after a timeout), duplicate, or foreign */
  stray: [{ topic: string; id?: string; duplicate: boolean }];
}

export class RpcClient extends EventEmitter<RpcClientEvents> {
  readonly link: MqttLink;
  readonly clientId: string;
  readonly strategy: ReplyStrategy;
  private readonly fields: EnvelopeFields;
  private readonly replyPrefix: string;
  /** the calls waiting for replies, and how recent ones ended (a duplicate reply is told from a late one) */
  private readonly replies: ReplyMatcher;
  /** acks seen per packet id, so a QoS 2 publish answered with PUBACK is noticed, and an MQTT 5 reason code read */
  private readonly acks = new Map<number, { packet: 'puback' | 'pubrec'; reasonCode?: number }>();
  private sharedReplyTopic: string | undefined;
  /** the topic map's verdicts on the topics every call uses again */
  private readonly topics: TopicFactsCache;
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

  /** the client's own limits, read once */
  private readonly caps: SendCaps;

  constructor(private readonly options: RpcClientOptions) {
    super();
    this.caps = {
      maxPayloadBytes: options.maxPayloadBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      maxOfflineQueue: options.maxOfflineQueue ?? DEFAULT_MAX_OFFLINE_QUEUE,
    };
    this.clientId = options.clientId ?? `bridgescope-${randomUUID().slice(0, 8)}`;
    this.brokerVersion = options.brokerVersion;
    this.strategy = options.strategy ?? DEFAULT_CLIENT_REPLY_STRATEGY;
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
    this.topics = new TopicFactsCache(options.topicMap);
    this.replies = new ReplyMatcher(
      () => this.fields,
      (topic) => topicToRoutingKey(topic, this.options.topicMap),
    );
    this.link.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
  }

  async connect(): Promise<void> {
    await this.link.open().catch((err: unknown) => {
      throw this.options.protocolVersion === 5 && !this.options.fallbackMqttUrls?.length ? explainMqtt5Refusal(err, this.rules, this.options.mqttUrl) : err;
    });
    this.link.client.on('packetreceive', (packet: Packet) => {
      // A plain MQTT 3.1.1 PUBACK (no reason code) says nothing a missing entry does not (see publish): not kept.
      if (packet.cmd === 'puback' && typeof packet.reasonCode !== 'number') return;
      if ((packet.cmd === 'puback' || packet.cmd === 'pubrec') && typeof packet.messageId === 'number') {
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

    const topicFacts = this.topics.facts(topic, 'publish', true);
    if (topicFacts.unusable) throw new BridgeError('bad-input', `The request topic cannot be used: ${topicFacts.unusable}`);
    if (topicFacts.warnings.length > 0) warnings.push(...topicFacts.warnings);

    const strategy = options.strategy ?? this.strategy;
    const useShared = strategy === 'shared' && options.replyTopic === undefined && this.sharedReplyTopic !== undefined;
    const replyTopic = options.replyTopic ?? (useShared ? (this.sharedReplyTopic as string) : `${this.replyPrefix}/${randomUUID()}`);
    // A per-request reply topic is new every time: not worth keeping.
    const replyFacts = this.topics.facts(replyTopic, 'reply', replyTopic === this.sharedReplyTopic);
    if (replyFacts.unusable) throw new BridgeError('bad-input', `The reply topic cannot be used: ${replyFacts.unusable}`);
    if (replyFacts.warnings.length > 0) warnings.push(...replyFacts.warnings);

    const replyRoutingKey = replyFacts.routingKey;
    const raw = options.rawBody;
    const body = raw
      ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
      : encodeRequest({ id, replyTopic, method: options.method, params: options.params, extra: options.payload }, this.fields);
    admit(body.byteLength, this.replies.size, this.link.connected, this.caps);
    const sendQos = allowedQos(this.link, this.rules, { qos, topic, replyTopic, bodyBytes: body.byteLength }, warnings);
    const step = this.emitStep;
    if (this.traced) {
      const facts: MqttPublishFacts = { qos: sendQos, retain: false };
      if (this.link.protocolVersion === 5) facts.properties = { ...mqtt5PublishProperties(id, replyTopic, options.mqtt5) };
      const detail: TraceStepDetails['composed'] = { topic, qos, replyTopic, replyStrategy: useShared ? 'shared' : 'per-request', bytes: body.byteLength };
      if (options.method) detail.method = options.method;
      if (options.loadRun) detail.loadRun = options.loadRun;
      // A body that is itself an envelope with a reply topic (a captured request sent from a file) names where to answer.
      const envelope = raw ? readTopLevelFields(body, [this.fields.replyTo]) : undefined;
      if (raw && !envelope?.has(this.fields.replyTo)) {
        detail.asGiven = this.link.protocolVersion === 5 ? 'with-response-topic' : 'without-reply-topic';
      }
      // The wire is built when the step is read.
      step({ rpcId: id, at: Date.now(), source: 'client', kind: 'composed', detail, [WIRE_SOURCE]: mqttWire(facts, body) });
    }

    // One deadline for the whole call: subscribing and publishing can hang too while the broker is away.
    const guard = new CallGuard({ id, replyTopic, replyRoutingKey, timeoutMs, signal: options.signal, connected: () => this.link.connected });
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
    const slot = this.replies.expect(id, replyRoutingKey);
    try {
      const publishOptions: IClientPublishOptions = { qos: sendQos };
      if (this.link.protocolVersion === 5) {
        publishOptions.properties = mqtt5PublishProperties(id, replyTopic, options.mqtt5);
      } else if (options.mqtt5 !== undefined) {
        warnings.push(mqtt5NotSent(this.rules));
      }
      const sending: Sending = { id, topic, body, options: publishOptions, qos: sendQos, predictedRoutingKey: topicFacts.routingKey, guard };
      const acknowledgedAs = await this.publish(sending);
      if (sendQos === 2 && acknowledgedAs < 2) {
        warnings.push('Published with QoS 2; the broker answered PUBACK, so it was delivered as QoS 1 (RabbitMQ grants at most 1).');
      }

      // At-least-once: with retries, a request without a reply in time is published again under the same id;
      // the first reply wins and later ones are counted as duplicates, never delivered twice.
      // Nearly every call: the reply came during the publish, or the guard's one wait takes it (no race promise).
      let reply: Reply | undefined = (options.retries ?? 0) > 0 && options.attemptTimeoutMs !== undefined ? undefined : (slot.reply ?? (await guard.wait<Reply>((resolve) => (slot.resolve = resolve))));
      const replied = reply === undefined ? (slot.reply !== undefined ? Promise.resolve(slot.reply) : new Promise<Reply>((resolve) => (slot.resolve = resolve))) : undefined;
      for (let attempt = 1; reply === undefined; attempt += 1) {
        const retrying = attempt <= (options.retries ?? 0) && options.attemptTimeoutMs !== undefined;
        const wait = retrying ? timer(options.attemptTimeoutMs as number) : undefined;
        const next = await (wait ? Promise.race([replied as Promise<Reply>, guard.expired, wait.elapsed]) : Promise.race([replied as Promise<Reply>, guard.expired]));
        wait?.cancel();
        if (next !== RETRY) {
          reply = next;
          break;
        }
        warnings.push(`No reply after ${options.attemptTimeoutMs} ms: published again (attempt ${attempt + 1}).`);
        await this.publish(sending);
      }

      outcomeOf = 'replied';
      if (this.traced) {
        const detail = { topic: reply.topic, replyTopic, topicMismatch: reply.topic !== replyTopic, bytes: reply.payload.byteLength, qos: (reply.packet?.qos ?? 0) as QoS };
        step({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.reply.received', detail, [WIRE_SOURCE]: mqttWire(publishFacts(reply.packet), reply.payload) });
      }
      const mqttVersion = this.link.protocolVersion;
      return buildOutcome(reply, {
        id,
        replyTopic,
        mqttVersion,
        durationMs: performance.now() - started,
        publishQos: { asked: qos, acknowledgedAs },
        subscriptionQos: { asked: subscriptionAsked, granted: grant },
        correlationData: mqttVersion === 5 ? options.mqtt5?.correlationData || id : undefined,
        warnings,
      });
    } catch (err) {
      throw this.failed(id, err);
    } finally {
      guard.clear();
      this.replies.done(id, outcomeOf);
      if (!useShared) void this.link.unsubscribe(replyTopic).catch(() => undefined);
    }
  }

  /** A call that ends before its publish still settles in the trace, with the reason. */
  private failEarly(id: string, guard: CallGuard, err: unknown): never {
    guard.clear();
    throw this.failed(id, err);
  }

  /** A failed call's error, as a BridgeError, with its step in the trace. */
  private failed(id: string, err: unknown): BridgeError {
    const failure = err instanceof BridgeError ? err : new BridgeError('internal', messageOf(err), { cause: err });
    if (this.traced) {
      const detail: TraceStepDetails['rpc.failed'] = { code: failure.code, message: failure.message };
      if (failure.reason) detail.reason = failure.reason;
      this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'rpc.failed', detail });
    }
    return failure;
  }

  /** Publishes a request (again, on a retry) and reads how the broker acknowledged it. */
  private async publish(sending: Sending): Promise<QoS> {
    const { id, qos, predictedRoutingKey } = sending;
    if (this.traced) this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.published', detail: { topic: sending.topic, qosAsked: qos, predictedRoutingKey } });
    // The guard's wait settles on the acknowledgement or the call's end, whichever comes first (no race promise).
    const client = this.link.client;
    const packet = await sending.guard.wait<Packet | undefined>((resolve, reject) => {
      client.publish(sending.topic, sending.body, sending.options, (err, sent) => (err ? reject(err) : resolve(sent)));
    }).catch((err: unknown) => {
      if (err instanceof BridgeError) throw err;
      // mqtt.js fails the publish with the PUBACK's reason code when it is an error (0x80 and up, MQTT 5 only).
      const reasonCode = (err as { code?: unknown }).code;
      if (typeof reasonCode === 'number' && reasonCode >= 0x80) {
        if (this.traced) this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: qos, acknowledgedAs: 1, packet: 'puback', reasonCode } });
        throw new BridgeError('unroutable', refusedPublishSentence(reasonCode, messageOf(err), predictedRoutingKey));
      }
      throw new BridgeError('unreachable', `The MQTT connection closed before the broker acknowledged request ${id} (${messageOf(err)}).`);
    });
    const ack = packet?.messageId !== undefined && this.acks.size > 0 ? this.acks.get(packet.messageId) : undefined;
    if (ack !== undefined) this.acks.delete(packet?.messageId as number);
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

  /** A reply for a waiting call resolves it; any other is a stray (a second reply to a call is kept in the trace, never used). */
  private onMessage(topic: string, payload: Buffer, packet?: IPublishPacket): void {
    const stray = this.replies.match(topic, payload, packet);
    if (!stray) return;
    const { id, duplicate } = stray;
    if (duplicate) this.duplicates += 1;
    if (duplicate && id !== undefined && this.traced) {
      const detail: TraceStepDetails['mqtt.reply.ignored'] = { topic, bytes: payload.byteLength, reason: 'second-reply' };
      this.emitStep({ rpcId: id, at: Date.now(), source: 'client', kind: 'mqtt.reply.ignored', detail, [WIRE_SOURCE]: mqttWire(publishFacts(packet), payload) });
    }
    this.emit('stray', { topic, ...(id !== undefined ? { id } : {}), duplicate });
  }

  private readonly emitStep = (draft: PendingDraft): void => void this.emit('step', draft);

  /** Whether anyone listens to steps: when nobody does, no step object is built at all. */
  private get traced(): boolean {
    return this.listenerCount('step') > 0;
  }

  /** the one reply topic of the shared strategy, once connected */
  get sharedTopic(): string | undefined {
    return this.sharedReplyTopic;
  }

  get inFlight(): number {
    return this.replies.size;
  }

  async close(): Promise<void> {
    await this.link.close();
  }
}
