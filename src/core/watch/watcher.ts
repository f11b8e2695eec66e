/** Watch (issue 23): a tap and the pairing together, with a verdict for each request left unanswered. */
import { EventEmitter } from 'node:events';
import { diagnose, lateBecauseNoConsumer, otherTopicSentence, WATCH_TIMEOUT_REMEDY, type TimeoutRemedy, type Verdict, type VerdictCode } from '../../shared/diagnosis';
import { routingKeyToTopic } from '../../shared/topic-map';
import { RecentIds } from '../recent-ids';
import { isSubscriptionQueue, isWatchTapQueue, subscriptionQueueOwner, withoutWatchTaps } from '../../shared/rabbitmq-mqtt';
import type { BrokerParty, TraceStepDraft } from '../../shared/trace';
import { diagnoseWithFacts, gatherBrokerFacts } from '../diagnosis/evidence';
import { asRequest, jsonObject, RpcPairing, type ObservedMessage, type RpcRef, type TopicStats, type WatchEvent } from './pairing';
import type { WatchSpans } from '../otel/watch-spans';
import { Tap, type TapStatus } from './tap';
import { deliveryFromFirehose, FirehoseSource } from './firehose-source';
import { ManagementApi } from '../broker/management-api';
import type { TlsFiles } from '../connection-details';
import type { FirehoseEvent, FirehoseStatus, TracingRelease } from '../trace/firehose';
import { transientAtQos0Of } from '../../shared/broker-versions';
import { withDeadline } from '../../shared/deadline';
import { MqttClients } from '../trace/mqtt-clients';

/** verdicts that say no reply could have come, whatever the tap saw */
const NO_REPLY_POSSIBLE: ReadonlySet<string> = new Set(['request-unroutable', 'wrong-exchange', 'no-consumer', 'not-this-broker']);

/** how long a watch's start waits for the broker's version (its rule on non-persistent replies), at most */
const VERSION_READ_WITHIN_MS = 5000;

/** how long the broker's facts for one topic serve the verdicts of its unanswered requests */
const FACTS_FRESH_MS = 2000;

/** unanswered requests whose verdict is remembered, at least, for a late reply to read (see `firstVerdicts`) */
const KEPT_FIRST_VERDICTS = 10_000;

/** A request as the pairing tells it apart: its pattern, id and reply key (two devices may both count from id 1). */
const verdictKey = (ref: Pick<RpcRef, 'pattern' | 'id' | 'replyKey'>): string => `${ref.pattern}:${ref.id}\n${ref.replyKey}`;

export interface WatcherOptions {
  /**
   * tap (default): a private queue bound to the keys; firehose: the vhost's trace exchange (needs the management URL);
   * fed: nothing of its own, the publishes a firehose someone else runs are handed to `feed` (the app's Trace firehose)
   */
  mode?: 'tap' | 'firehose' | 'fed';
  amqpUrl: string;
  /** the profile's TLS files (a private CA, a client certificate), for every connection the watch makes: AMQP and HTTP */
  tls?: TlsFiles;
  /** for the verdicts' broker facts (bindings, consumers); without it a verdict says it could not ask */
  managementUrl?: string;
  vhost?: string;
  exchange: string;
  requestKeys: readonly string[];
  timeoutMs: number;
  /**
   * the name a connection's client gave it (a worker's `connection_name`), asked when a verdict names the connection that
   * took a request (the trace's tracer knows the names; a worker seen first by that delivery is named by then)
   */
  connectionNameOf?: (connection: string) => string | undefined;
  /** what a late reply's verdict says waited `timeoutMs` and how to wait longer (default: the watch's `--timeout`, the Watch panel's Timeout) */
  timeoutRemedy?: TimeoutRemedy;
  lateWindowMs?: number;
  /** how long a reply key stays bound after its last request closed (default 30 s) */
  keyLingerMs?: number;
  maxPending?: number;
  /** OpenTelemetry spans for the requests that carry a trace context (`watch --otlp`); none without it */
  spans?: WatchSpans;
}

export type WatchLine =
  | (RpcRef & { type: 'pair'; rttMs: number; worker?: string; replyRoutedQueues?: string[] })
  /** `unseen`: no reply seen, but the tap could not have seen a prompt one (its reply key was bound only once the request was seen) */
  /** `wrongReply`: a reply to it that did not reach the device (another key, or dropped) */
  /** `replyRoutedQueues`: where the broker routed a late reply, when the observer knows (the firehose) */
  | (RpcRef & { type: 'verdict'; verdict: Verdict; rttMs?: number; worker?: string; unseen?: true; wrongReply?: { routingKey: string; at: number; dropped?: true }; replyRoutedQueues?: string[] })
  /** another reply to a request already answered (`firstWorker` sent the first; `dropped`: the broker routed it to no queue) */
  | (RpcRef & { type: 'duplicate'; rttMs: number; worker?: string; firstWorker?: string; dropped?: true })
  /** a message on a named request key that is no request the watch can pair (counted in the topic's `notRequests`) */
  | { type: 'not-request'; topic: string; reason: string }
  /** the first reply of each worker to a topic's requests the broker delivers at QoS 0 (all: the topic's `qos0Replies`) */
  | { type: 'qos0-replies'; topic: string; replyKey: string; worker?: string; brokerVersion?: string }
  | { type: 'dropped'; what: string; count: number; reason: string };

export interface WatcherEvents {
  line: [WatchLine];
  lost: [reason: string];
  status: [FirehoseStatus];
  /** tap mode: the connection lost and the tap back on a new queue (a broker restart) */
  tapStatus: [TapStatus];
}

/**
 * The verdict of a request whose reply a watcher saw published (a pair): who answered, on which key, how long after the
 * request, and where the broker routed it when the observer knows (the firehose). `by`: whose eyes ('watch', 'firehose').
 */
export function repliedVerdict(pair: RpcRef & { rttMs: number; worker?: string; replyRoutedQueues?: string[] }, by: 'watch' | 'firehose'): Verdict {
  const routed = pair.replyRoutedQueues?.length ? `, routed to ${pair.replyRoutedQueues.map((queue) => `"${queue}"`).join(', ')}` : '';
  const who = pair.worker !== undefined ? ` by ${pair.worker}` : '';
  const evidence = [`${by}: request "${pair.id}" (${pair.pattern}) on "${pair.topic}", its reply on "${pair.replyKey}" ${pair.rttMs} ms later${routed}`];
  // A "." inside a level of the reply topic the device named: the broker delivers the reply on another topic.
  // Only where it reaches an MQTT subscription (when the firehose says where): an AMQP requester reads its key as it is.
  const toDevice = pair.replyRoutedQueues === undefined || pair.replyRoutedQueues.some((queue) => isSubscriptionQueue(queue));
  const arrivesOn = pair.replyTopic !== undefined && toDevice ? routingKeyToTopic(pair.replyKey) : undefined;
  if (arrivesOn !== undefined && pair.replyTopic !== undefined && arrivesOn !== pair.replyTopic) {
    evidence.push(`${by}: the device asked for its reply on "${pair.replyTopic}"; the broker delivers key "${pair.replyKey}" on "${arrivesOn}"`);
    return { code: 'reply-on-other-topic', hop: 'mqtt-deliver', message: otherTopicSentence(pair.replyTopic, arrivesOn, 'arrives'), evidence };
  }
  return {
    code: 'replied',
    hop: 'mqtt-deliver',
    message: `The reply to "${pair.topic}" id ${pair.id} was published${who} on "${pair.replyKey}" ${pair.rttMs} ms after the request${routed}.`,
    evidence,
  };
}

/** The MQTT client whose subscription a reply was routed to (the first, when several were), as a late reply's `toSubscription`. */
function subscriberOf(routedQueues: readonly string[] | undefined): { toSubscription?: string } {
  const queue = routedQueues?.find(isSubscriptionQueue);
  const owner = queue !== undefined ? subscriptionQueueOwner(queue) : undefined;
  return owner !== undefined ? { toSubscription: owner.clientId } : {};
}

export class Watcher extends EventEmitter<WatcherEvents> {
  readonly pairing: RpcPairing;
  /** the tap, in tap mode */
  readonly tap: Tap | undefined;
  /** the firehose, in firehose mode */
  readonly firehose: FirehoseSource | undefined;
  /** in firehose mode: how tracing was given back */
  releases: TracingRelease[] = [];
  /**
   * In firehose mode, without names given: the names workers gave their connections (pika's and amqplib's
   * `connection_name`), from the management API, so a verdict names the worker that took a request as the Trace does.
   */
  private readonly clients: MqttClients | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** the last time the tap saw nothing (its connection lost): a request waiting then may have had a reply it missed */
  private blind: { from: number; until?: number } | undefined;
  /** verdicts being worked out (facts asked of the broker), so stop can wait for them */
  private readonly deciding = new Set<Promise<void>>();
  /**
   * The broker's facts per request topic, asked once and shared for FACTS_FRESH_MS: a worker gone under 1,000 RPC/s
   * would otherwise send the management API thousands of requests a second, each listing every queue and binding.
   */
  private readonly facts = new Map<string, { at: number; facts: Promise<Awaited<ReturnType<typeof gatherBrokerFacts>> | undefined> }>();
  /** the verdict each request got when its wait ended, for a late reply's (a request nobody consumed then is not slow) */
  private readonly firstVerdicts = new RecentIds<VerdictCode>(KEPT_FIRST_VERDICTS);

  constructor(private readonly options: WatcherOptions) {
    super();
    this.pairing = new RpcPairing({
      timeoutMs: options.timeoutMs,
      ...(options.lateWindowMs !== undefined ? { lateWindowMs: options.lateWindowMs } : {}),
      ...(options.maxPending !== undefined ? { maxPending: options.maxPending } : {}),
      keyLingerMs: options.keyLingerMs ?? 30_000,
      // A tap binds a reply key only once it sees the request: a reply faster than that bind is not seen.
      ...(options.mode === 'firehose' || options.mode === 'fed'
        ? {}
        : { boundLate: (key: string) => this.tap?.needsBinding(key) ?? false, bindPending: (key: string) => this.tap?.bindPending(key) ?? false }),
    });
    const spans = options.spans;
    if (spans) this.on('line', (line) => line.type !== 'dropped' && line.type !== 'duplicate' && line.type !== 'not-request' && line.type !== 'qos0-replies' && spans.settle(line));
    if (options.mode === 'firehose') {
      if (!options.managementUrl) throw new Error('The firehose mode needs a management URL (it switches tracing on through the management API).');
      const api = new ManagementApi(options.managementUrl, options.vhost ?? '/', undefined, options.tls);
      if (options.connectionNameOf === undefined) this.clients = new MqttClients(api);
      this.firehose = new FirehoseSource({
        amqpUrl: options.amqpUrl,
        api,
        exchange: options.exchange,
        ...(options.tls ? { tls: options.tls } : {}),
        owner: `bridgescope watch (pid ${process.pid})`,
      });
      this.firehose.on('message', (message) => this.feed(message));
      this.firehose.on('delivery', (event) => this.deliveredEvent(event));
      this.firehose.on('status', (status) => this.emit('status', status));
    } else if (options.mode !== 'fed') {
      this.tap = new Tap({ amqpUrl: options.amqpUrl, exchange: options.exchange, requestKeys: options.requestKeys, ...(options.tls ? { tls: options.tls } : {}) });
      this.tap.on('message', (message) => this.observe(message, true, this.options.requestKeys.includes(message.routingKey)));
      this.tap.on('lost', (reason) => this.emit('lost', reason));
      this.tap.on('status', (status) => {
        if (status.state === 'reconnecting') this.blind = { from: status.since };
        else this.blind = { from: status.blindFrom, until: status.blindUntil };
        this.emit('tapStatus', status);
      });
    }
  }

  private observe(message: ObservedMessage, mayBeRequest: boolean, named: boolean): void {
    const spans = this.options.spans;
    if (spans && mayBeRequest) {
      const request = asRequest(message);
      if (request) spans.request({ ...request, sentAt: message.at }, message.headers, jsonObject(message.body), message.routedQueues);
    }
    this.handle(this.pairing.observe(message, mayBeRequest, named));
  }

  /** The connection that took a request, with the name its client gave it when known (then, or now). */
  private takerOf(connection: string, nameThen: string | undefined): BrokerParty {
    const name = nameThen ?? this.options.connectionNameOf?.(connection) ?? this.clients?.connectionNameOf(connection);
    return name !== undefined ? { connection, connectionName: name } : { connection };
  }

  /**
   * A firehose delivery (fed mode, or this watch's firehose): from a server's queue, on a topic with requests waiting, it
   * says which worker took one (`RpcPairing.delivered`). Any other is passed over before its body or properties are read.
   */

  deliveredEvent(event: FirehoseEvent, connectionName?: string): void {
    if (!this.pairing.waitsOn(event.routingKeys[0])) return;
    const delivery = deliveryFromFirehose(event, this.options.exchange, Date.now());
    if (!delivery) return;
    // Named now when listed (a worker that then stops is forgotten by the next listing); one not listed yet is asked for
    // now, and read when the request's verdict is decided.
    let name = connectionName;
    if (name === undefined && event.party && this.clients) {
      name = this.clients.connectionNameOf(event.party.connection);
      if (name === undefined) this.clients.clientIdOf(event.party.connection);
    }
    this.pairing.delivered(delivery.message, delivery.queue, name);
  }

  /**
   * A publish a firehose of someone else's saw (fed mode): only the watched request keys on the exchange start an RPC,
   * every reply is seen anyway.
   */
  feed(message: ObservedMessage): void {
    const keys = this.options.requestKeys;
    const named = message.exchange === this.options.exchange && keys.includes(message.routingKey);
    this.observe(message, named || (message.exchange === this.options.exchange && keys.includes('#')), named);
  }

  /** Starts observing: the tap queue's name, or the firehose's status ('fed' when fed). */
  async start(): Promise<string | FirehoseStatus> {
    // The broker's version, for its rule on non-persistent replies (QoS 0 to every MQTT subscriber on 3.13+): asked beside
    // the start, waited for a moment at most (a watch without it counts no QoS 0 replies, and says nothing wrong). Fed
    // (the app's Trace), its lines are verdicts only: not asked.
    const version =
      this.options.managementUrl === undefined || this.options.mode === 'fed'
        ? Promise.resolve()
        : new ManagementApi(this.options.managementUrl, this.options.vhost ?? '/', undefined, this.options.tls)
            .overview()
            .then((overview) => this.pairing.brokerVersion(overview.rabbitmqVersion, transientAtQos0Of(overview.rabbitmqVersion) === true))
            .catch(() => undefined);
    // The connections' names, listed beside the start (best effort: unnamed, a verdict names the connection's address).
    void this.clients?.start().catch(() => undefined);
    const queue = this.firehose ? await this.firehose.start() : this.tap ? await this.tap.start() : 'fed';
    await withDeadline(version, VERSION_READ_WITHIN_MS);
    // Stopped while it started: no timer may outlive the stop.
    if (this.stopped) return queue;
    // Watching from now: the rate over the time watched leaves out the start (a firehose's start can take seconds).
    this.pairing.watchingSince(Date.now());
    const every = Math.max(20, Math.min(250, Math.floor(this.options.timeoutMs / 4)));
    this.timer = setInterval(() => this.handle(this.pairing.tick(Date.now())), every);
    this.timer.unref();
    return queue;
  }

  stats(): TopicStats[] {
    return this.pairing.stats(Date.now());
  }

  /** in tap mode: 'cut' when the broker did not answer the delete nor the close in time and the socket was cut */
  tapStopped: 'deleted' | 'cut' | undefined;

  private stopped = false;

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.clients?.stop();
    if (this.firehose) this.releases = await this.firehose.stop();
    if (this.tap) this.tapStopped = await this.tap.stop();
    await Promise.allSettled([...this.deciding]);
    this.options.spans?.endAll();
  }

  private handle(events: WatchEvent[]): void {
    for (const event of events) {
      switch (event.type) {
        case 'watch-key':
          this.tap?.watchKey(event.key);
          break;
        case 'unwatch-key':
          this.tap?.unwatchKey(event.key);
          break;
        case 'pair':
          this.emit('line', event);
          break;
        case 'dropped':
        case 'duplicate':
        case 'not-request':
        case 'qos0-replies':
          this.emit('line', event);
          break;
        case 'late': {
          const { type: _type, rttMs, worker, replyRoutedQueues, reusedAt, ...ref } = event;
          const verdict = diagnose({
            rpcId: ref.id,
            steps: [],
            firehose: false,
            remedies: 'watch',
            ...(this.options.timeoutRemedy ? { timeoutRemedy: this.options.timeoutRemedy } : {}),
            request: { topic: ref.topic, routingKey: ref.topic },
            reply: { topic: ref.replyTopic ?? ref.replyKey, routingKey: ref.replyKey },
            timeoutMs: this.options.timeoutMs,
            failure: { code: 'timeout', message: `no reply within ${this.options.timeoutMs} ms` },
            // The firehose says where the broker routed it: nowhere is a reply that stopped at the exchange, not one that arrived.
            lateReply: { topic: ref.replyKey, at: Date.now(), afterMs: rttMs, ...(worker !== undefined ? { worker } : {}), ...(replyRoutedQueues !== undefined && withoutWatchTaps(replyRoutedQueues).length === 0 ? { dropped: true } : {}), ...subscriberOf(replyRoutedQueues) },
          });
          verdict.evidence.push(`watch: the reply came on "${ref.replyKey}" after ${rttMs} ms${worker !== undefined ? `, from ${worker}` : ''}`);
          // Nobody consumed the request when the wait ended: the reply is late because a worker came late, not because one
          // was slow, and raising the timeout is not the remedy.
          const told =
            this.firstVerdicts.get(verdictKey(ref)) === 'no-consumer'
              ? lateBecauseNoConsumer(verdict, { topic: ref.topic, afterMs: rttMs, waited: (this.options.timeoutRemedy ?? WATCH_TIMEOUT_REMEDY).name, timeoutMs: this.options.timeoutMs, whoGaveUp: 'a device that waited as long' })
              : verdict;
          // The device reused the id on that reply topic since: the late reply is a second answer to its newer request.
          // (Only when the reply reached a queue, or where it went is not known: one routed nowhere reached nobody.)
          const reached = replyRoutedQueues === undefined ? 'if it is still subscribed, it gets' : withoutWatchTaps(replyRoutedQueues).length > 0 ? 'it gets' : undefined;
          const said =
            reusedAt !== undefined && reached !== undefined
              ? {
                  ...told,
                  message: `${told.message} The device has since sent another request with id ${ref.id} on "${ref.replyTopic ?? ref.replyKey}" (at ${new Date(reusedAt).toISOString().slice(11, 23)}), answered already: ${reached} this late reply as a second answer to that one, and may take it for that one's.`,
                  evidence: [...told.evidence, `watch: another request with id ${ref.id} and reply key "${ref.replyKey}" at ${new Date(reusedAt).toISOString()}, answered before this reply came`],
                }
              : told;
          this.emit('line', { ...ref, type: 'verdict', verdict: said, rttMs, ...(worker !== undefined ? { worker } : {}), ...(replyRoutedQueues !== undefined ? { replyRoutedQueues } : {}) });
          break;
        }
        case 'unanswered': {
          const decided = this.decide(event).then((verdict) => {
            const { type: _type, waitedMs: _waited, wrongKey, keyWatchedLate: _late, takenBy: _taken, ...ref } = event;
            // The reply that did not reach the device, for a trace of this request (its key, when, whether the broker dropped it).
            const wrongReply = wrongKey ? { wrongReply: { routingKey: wrongKey.routingKey, at: wrongKey.at, ...(wrongKey.dropped ? { dropped: true as const } : {}) } } : {};
            this.firstVerdicts.set(verdictKey(ref), verdict.code);
            this.emit('line', { ...ref, type: 'verdict', verdict, ...wrongReply, ...(this.pairing.isUnseen(event) ? { unseen: true as const } : {}) });
          });
          this.deciding.add(decided);
          void decided.finally(() => this.deciding.delete(decided));
          break;
        }
      }
    }
  }

  private factsFor(topic: string): Promise<Awaited<ReturnType<typeof gatherBrokerFacts>> | undefined> {
    const managementUrl = this.options.managementUrl;
    if (!managementUrl) return Promise.resolve(undefined);
    const now = Date.now();
    const known = this.facts.get(topic);
    if (known && now - known.at < FACTS_FRESH_MS) return known.facts;
    // Stale entries go as new ones come: the map holds at most the topics asked about in the last FACTS_FRESH_MS.
    for (const [key, entry] of this.facts) if (now - entry.at >= FACTS_FRESH_MS) this.facts.delete(key);
    const facts = gatherBrokerFacts({
      managementUrl,
      amqpUrl: this.options.amqpUrl,
      ...(this.options.vhost !== undefined ? { vhost: this.options.vhost } : {}),
      ...(this.options.tls ? { tls: this.options.tls } : {}),
      exchange: this.options.exchange,
      requestKey: topic,
      ignoreQueues: this.tap?.queue !== undefined ? [this.tap.queue] : [],
    }).catch(() => undefined);
    this.facts.set(topic, { at: now, facts });
    return facts;
  }

  /** The verdict on a request left unanswered: a reply on the wrong key decides it; otherwise what the broker tells now. */
  private async decide(event: Extract<WatchEvent, { type: 'unanswered' }>): Promise<Verdict> {
    const waited = `${this.options.timeoutMs} ms`;
    // A reply on another key (or one the firehose saw dropped) was seen: the request was answered, wrongly.
    if (event.wrongKey && event.keyWatchedLate) this.pairing.unseenWasUnanswered(event);
    if (event.wrongKey?.dropped) {
      const who = event.wrongKey.worker !== undefined ? ` (${event.wrongKey.worker})` : '';
      return {
        code: 'reply-unroutable',
        hop: 'reply-exchange',
        message: `The server${who} answered request ${event.id} (on "${event.topic}") with key "${event.replyKey}", but no device's queue was bound to it (a BridgeScope watch's tap, if one was, delivers to nobody), so no device got the reply: no client was subscribed to its reply topic when the reply came: the device had not subscribed yet, had unsubscribed, or had disconnected (a clean session's subscription goes with its connection). A device must subscribe before sending and stay connected and subscribed until the reply.`,
        evidence: [`watch: request "${event.id}" published with key "${event.topic}"`, `broker: the reply was published with key "${event.replyKey}" and routed to no device's queue`],
      };
    }
    if (event.wrongKey) {
      const who = event.wrongKey.worker !== undefined ? ` (${event.wrongKey.worker})` : '';
      return {
        code: 'reply-unroutable',
        hop: 'reply-exchange',
        message: `The server${who} answered request ${event.id} (on "${event.topic}") with key "${event.wrongKey.routingKey}", not "${event.replyKey}" (${event.pattern === 'mqtt5' ? 'the Response Topic as a routing key' : event.pattern === 'amqp' ? 'its reply_to' : 'the reply_to with "/" turned into "."'}), so the device subscribed to it never got the reply: fix the server to reply with key "${event.replyKey}".`,
        evidence: [`watch: request "${event.id}" published with key "${event.topic}"`, `watch: a reply naming id "${event.id}" was published with key "${event.wrongKey.routingKey}"`],
      };
    }
    const facts = await this.factsFor(event.topic);
    // The firehose saw the broker route the request nowhere: dropped then, whatever is bound now (a queue bound since read
    // "nobody consumed it"). That record needs no delivery to be read right; a routed one does (below).
    const dropped: TraceStepDraft[] =
      event.routedQueues !== undefined && withoutWatchTaps(event.routedQueues).length === 0
        ? [{ rpcId: event.id, at: event.sentAt, source: 'broker', kind: 'broker.published', detail: { exchange: this.options.exchange, routingKeys: [event.topic], routedQueues: [], leg: 'request' } }]
        : [];
    // The firehose saw a consumer take it: whatever the queue has now (its worker may have died since, taking the request
    // with it), it was consumed; the verdict is the server's, and names the connection that took it.
    const taken = event.takenBy;
    if (taken) {
      dropped.push({
        rpcId: event.id,
        at: taken.at,
        source: 'broker',
        kind: 'broker.delivered',
        detail: { queue: taken.queue, routingKeys: [event.topic], redelivered: false, leg: 'request', ...(taken.connection !== undefined ? { consumer: this.takerOf(taken.connection, taken.connectionName) } : {}) },
      });
    }
    // Facts without the exchange's bindings (the management API not reached) decide nothing: never "nothing is bound".
    const verdict = diagnoseWithFacts(
      {
        rpcId: event.id,
        steps: dropped,
        // In firehose (or fed) mode the firehose is on: a verdict never advises it.
        firehose: this.tap === undefined,
        remedies: 'watch',
        ...(this.options.timeoutRemedy ? { timeoutRemedy: this.options.timeoutRemedy } : {}),
        request: { topic: event.topic, routingKey: event.topic },
        reply: { topic: event.replyTopic ?? event.replyKey, routingKey: event.replyKey },
        timeoutMs: this.options.timeoutMs,
        failure: { code: 'timeout', message: `no reply within ${waited}` },
      },
      facts,
    );
    verdict.evidence.unshift(`watch: request "${event.id}" (${event.pattern}) on "${event.topic}", no reply on "${event.replyKey}" within ${waited}`);
    // The firehose saw where the broker routed the request then; the bindings asked now may have changed since (a queue
    // deleted after it took the request read "nothing is bound ... dropped"). Its deliveries are not followed, so whether
    // a consumer took it before is not known.
    // A device's subscription to the request topic (or a tap) serves nobody: routed only there is "nothing is bound".
    const routed = event.routedQueues?.filter((queue) => !isWatchTapQueue(queue) && !isSubscriptionQueue(queue));
    if (routed !== undefined && routed.length > 0 && verdict.code === 'request-unroutable') {
      return {
        code: 'undetermined',
        hop: 'queue',
        message: `The broker routed the request to ${routed.map((queue) => `queue "${queue}"`).join(', ')}, but nothing is bound for "${event.topic}" on ${this.options.exchange} now (deleted or unbound since): whether a consumer took it before is not known; no reply came on "${event.replyKey}" within ${waited}.`,
        evidence: [`firehose: request "${event.id}" published with key "${event.topic}", routed to ${routed.map((queue) => `"${queue}"`).join(', ')}`, ...verdict.evidence],
      };
    }
    const blind = this.blind;
    if (blind && (blind.until === undefined || blind.until > event.sentAt) && blind.from < event.sentAt + this.options.timeoutMs) {
      verdict.evidence.push(`tap: the connection to the broker was lost from ${new Date(blind.from).toISOString()}${blind.until !== undefined ? ` to ${new Date(blind.until).toISOString()}` : ''}; a reply in that gap was not seen`);
    }
    if (!event.keyWatchedLate) return verdict;
    verdict.evidence.push(`tap: the reply key "${event.replyKey}" was not bound yet when this request was seen (the tap binds a reply key once it sees a request naming it, and the broker takes a moment to confirm the bind); a reply published before that bind took effect is not seen (the firehose mode sees it)`);
    // A late reply came while the facts were asked: it is counted unanswered and late already, and its verdict is that.
    if (!this.pairing.isUnseen(event)) return verdict;
    // Only a verdict from complete facts that no reply could have come (routed nowhere, no bound queue consumed, the key
    // bound elsewhere) makes it unanswered after all; otherwise a prompt reply may have come before the tap's bind.
    const nobodyServes = facts !== undefined && facts.unavailable.length === 0 && facts.requestQueues.every((queue) => queue.consumers === 0);
    if (NO_REPLY_POSSIBLE.has(verdict.code) && nobodyServes) {
      this.pairing.unseenWasUnanswered(event);
      return verdict;
    }
    if (verdict.code !== 'server-slow') return verdict;
    const queue = facts?.requestQueues.find((candidate) => candidate.consumers > 0)?.name;
    return {
      ...verdict,
      code: 'undetermined',
      message: `A consumer${queue !== undefined ? ` of queue "${queue}"` : ''} took the request; no reply was seen on "${event.replyKey}" within ${waited}, but the tap could bind that key only once it saw the request (a reply topic it had not seen before, or whose bind the broker had not confirmed yet), so a prompt reply may have come before the bind: whether one came is not known. --mode firehose (Mode in the Watch panel) sees every reply.`,
    };
  }
}
