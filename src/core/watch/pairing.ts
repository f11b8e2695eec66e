/**
 * Passive RPC pairing (issue 23, Watch): requests seen on the MQTT exchange matched with their replies, from the
 * messages alone. Pure: no broker, no clock of its own (every call gets `now`), so the unit tests drive it directly.
 *
 * A request is a message that names where its reply goes:
 * - the seed pattern: a JSON body with `id` and `reply_to` (the reply's routing key is reply_to with "/" turned into ".");
 * - MQTT 5 (RabbitMQ 3.13+): header `x-reply-to-topic` (already dotted) with `correlation_id` or header `x-correlation-id`;
 * - plain AMQP RPC: properties `reply_to` and `correlation_id` (the reply goes to the default exchange, key reply_to).
 * A reply is a message on a pending request's reply key; when several wait on one key, the correlation id (or the seed
 * body's `id`) picks one, else the oldest.
 */
import { percentile } from '../../shared/stats';
import { routingKeyToTopic } from '../../shared/topic-map';
import type { WatchTopicStats } from '../../shared/contract';
import { RecentIds } from '../recent-ids';
import { readTopLevelFields } from '../trace/json-fields';
import { subscriptionQueueOwner, withoutWatchTaps } from '../../shared/rabbitmq-mqtt';

export type RpcPattern = 'seed' | 'mqtt5' | 'amqp';

export interface ObservedMessage {
  at: number;
  exchange: string;
  routingKey: string;
  correlationId?: string;
  replyTo?: string;
  headers?: Record<string, unknown>;
  body: Buffer;
  /** the publishing connection, when the observer knows it (the firehose does, a tap does not) */
  connection?: string;
  /** the queues the broker routed it to, when the observer knows (the firehose does): none means dropped */
  routedQueues?: readonly string[];
  /** whether it was published persistent (delivery_mode 2), when the observer read its properties */
  persistent?: boolean;
}

export interface RpcRef {
  pattern: RpcPattern;
  /** the request's routing key: the topic the stats are kept per */
  topic: string;
  /** the seed body's id or the correlation id */
  id: string;
  replyKey: string;
  /** the reply topic the request names, as an MQTT device subscribes to it (the seed body's reply_to; the MQTT 5 Response Topic read back from its dotted header); none for plain AMQP RPC */
  replyTopic?: string;
  sentAt: number;
  /** the queues the broker routed the request to, when the observer knows (the firehose does; at most MAX_ROUTED_KEPT) */
  routedQueues?: string[];
}

/** Routed queues kept per request: the verdict needs whether any, and which servers' (a fan-out to many subscribers is cut). */
const MAX_ROUTED_KEPT = 20;

export type WatchEvent =
  /** `replyRoutedQueues`: where the broker routed the reply, when the observer knows (the firehose) */
  | (RpcRef & { type: 'pair'; rttMs: number; worker?: string; replyRoutedQueues?: string[] })
  /**
   * the first reply of each worker to a topic's requests that the broker delivers to devices at QoS 0 (published
   * non-persistent, on a broker that then gives QoS 0 whatever the subscription: RabbitMQ 3.13+); all are counted in
   * `qos0Replies`
   */
  | { type: 'qos0-replies'; topic: string; replyKey: string; worker?: string; brokerVersion?: string }
  /** no reply within the timeout; `wrongKey` when a reply naming this request's id came on another key */
  /** `keyWatchedLate`: the reply key began to be watched only when this request was seen (a tap can miss a reply faster than its bind) */
  /** `takenBy`: the firehose saw a consumer of a server's queue take it */
  | (RpcRef & { type: 'unanswered'; waitedMs: number; wrongKey?: WrongReply; keyWatchedLate?: true; takenBy?: TakenBy })
  /** a reply after the timeout (kept for the late window); `replyRoutedQueues` as a pair's */
  /** `reusedAt`: when the device sent another request with its id and reply topic, answered before this late reply came */
  | (RpcRef & { type: 'late'; rttMs: number; worker?: string; replyRoutedQueues?: string[]; reusedAt?: number })
  /**
   * another reply to a request already answered (`firstWorker`: who sent the first), its time from the request;
   * `dropped`: the firehose saw the broker route it to no queue
   */
  | (RpcRef & { type: 'duplicate'; rttMs: number; worker?: string; firstWorker?: string; dropped?: true })
  /** a message on a request key named to be watched that is no request the watch can pair (counted, not followed), and why */
  | { type: 'not-request'; topic: string; reason: string }
  /** a reply key to observe from now on (a tap binds it) and one no longer needed (a tap unbinds it) */
  | { type: 'watch-key'; key: string }
  | { type: 'unwatch-key'; key: string }
  /** what the caps made it forget */
  | { type: 'dropped'; what: 'pending' | 'timed-out' | 'topic'; count: number; reason: string };

export interface PairingOptions {
  timeoutMs: number;
  /** when the watch started (ms): a rate "over the last 10 s" is over the time watched when that is shorter (default: the first message's time) */
  startedAt?: number;
  /** how long an unanswered request is still recognised as late when its reply comes (default: the timeout) */
  lateWindowMs?: number;
  /** most requests waiting for a reply at once (default 10,000): past it the oldest is forgotten and said */
  maxPending?: number;
  /** most round trips kept per topic for the percentiles (default 1,000, the latest) */
  maxSamples?: number;
  /** most topics with stats (default 1,000) */
  maxTopics?: number;
  /**
   * how long a reply key stays watched after its last request closed (default 0). A tap binds a reply key only after it
   * saw the request, so a worker faster than that bind is missed; a device reusing its reply topic is seen from its
   * second request on while the key lingers.
   */
  keyLingerMs?: number;
  /** most lingering reply keys (default 1,000): past it the longest idle is let go */
  maxLingering?: number;
  /**
   * whether a reply key first watched when its request is seen can miss a reply (a tap binds it then, and a fast worker
   * answers before the bind takes effect); default: never (the firehose sees every key). Such a request with no reply
   * seen is counted `unseen`, not `unanswered`.
   */
  boundLate?: (replyKey: string) => boolean;
  /**
   * whether a reply key watched already is still being bound (a tap's bind not yet confirmed by the broker): a request on
   * it meanwhile may miss its reply too, and is counted `unseen` as above. Default: never.
   */
  bindPending?: (replyKey: string) => boolean;
}

/** One request topic's live figures: the same shape the app's Watch panel receives. */
export type TopicStats = WatchTopicStats;

interface Pending extends RpcRef {
  deadline: number;
  keyWatchedLate?: true;
  wrongKey?: WrongReply;
  /** the firehose saw the broker deliver it to a consumer of a server's queue (the first that took it) */
  takenBy?: TakenBy;
}

/** Who took a request from a server's queue, as the firehose saw its delivery. */
export interface TakenBy {
  queue: string;
  /** the consuming connection, as the firehose names it */
  connection?: string;
  /** the name its client gave that connection (a worker's `connection_name`), when the trace knew it */
  connectionName?: string;
  at: number;
}

/** A reply that answered a request and did not reach it: on another key, or dropped by the broker (`dropped`), seen at `at`. */
export interface WrongReply {
  routingKey: string;
  at: number;
  worker?: string;
  dropped?: true;
}

/** One request, whatever became of it since: its pattern, reply key, id and when it was sent. */
function unseenKey(ref: Pick<RpcRef, 'pattern' | 'id' | 'replyKey' | 'sentAt'>): string {
  return `${ref.pattern}:${ref.id}:${ref.sentAt}:${ref.replyKey}`;
}

/**
 * A request waited on: by its pattern, its reply key and its id. Devices count their ids from 1, so two devices (each its
 * own reply topic) may both wait on id 1; one device's second request with an id is a retry of the first.
 */
function pendingKey(ref: Pick<RpcRef, 'pattern' | 'id' | 'replyKey'>): string {
  return `${ref.pattern}:${ref.id}\n${ref.replyKey}`;
}

/** A request's reply key and id, as one key. */
function answeredKey(replyKey: string, id: string): string {
  return `${replyKey}\n${id}`;
}

/** The request waiting with this id on this reply key, whatever its pattern, with its key in `map`. */
function keyed<T extends Pending>(map: Map<string, T>, id: string, replyKey: string): [string, T] | undefined {
  for (const pattern of ['seed', 'mqtt5', 'amqp'] as const) {
    const key = pendingKey({ pattern, id, replyKey });
    const entry = map.get(key);
    if (entry !== undefined) return [key, entry];
  }
  return undefined;
}

/** The oldest request in `map` that `matches`, with its key. */
function first<T extends Pending>(map: Map<string, T>, matches: (entry: T) => boolean): [string, T] | undefined {
  for (const item of map) if (matches(item[1])) return item;
  return undefined;
}

/** answered requests remembered for telling a second reply (two generations of this many) */
const ANSWERED_KEPT = 2000;

/** the window of the live rate, in one-second buckets */
export const RATE_WINDOW_S = 10;

interface TopicAcc {
  /** requests per second, by (second % RATE_WINDOW_S), with the second each bucket counts */
  buckets: Array<{ second: number; count: number }>;
  requests: number;
  replies: number;
  unanswered: number;
  unseen: number;
  /** requests followed no more because the same id came again before their reply or verdict (see TopicStats) */
  retried: number;
  /** messages on the key that are no request the watch can pair */
  notRequests: number;
  /** replies (in time: a part of `replies`) the broker delivers to devices at QoS 0: published non-persistent on RabbitMQ 3.13+ */
  qos0Replies: number;
  /** the workers whose replies those were, each said once ('' for replies naming none) */
  qos0Workers: Set<string>;
  late: number;
  duplicates: number;
  firstAt: number;
  lastAt: number;
  samples: number[];
  workers: Map<string, number>;
}

/** A header's text: AMQP long strings arrive as Buffers through amqplib. */
function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number') return String(value);
  return undefined;
}

/** A JSON object body (the seed's envelope), or undefined: not an object, not JSON, or over 1 MB. */
export function jsonObject(body: Buffer): Record<string, unknown> | undefined {
  if (body.length === 0 || body.length > 1_000_000 || body[0] !== 0x7b) return undefined;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The top-level fields the pairing reads of a seed body: a request's id and where to reply; a reply's id; the worker that answered. */
const REQUEST_FIELDS = ['id', 'reply_to'] as const;
const ID_FIELD = ['id'] as const;
const WORKER_FIELD = ['worker'] as const;

/**
 * A seed body's `id`, `reply_to` and `worker`, read without parsing the rest (the trace's reader): a body of any size
 * (a 2 MB request was never paired, so its RPC stayed "pending" in the Trace for good), and one whose JSON breaks after
 * those fields (a device's malformed request is still the request it names, as the trace joins it). Undefined when it
 * does not open as a JSON object.
 */
function seedFields(body: Buffer, wanted: readonly string[] = REQUEST_FIELDS): { id?: string; replyTo?: unknown; worker?: unknown } | undefined {
  // The scan stops once it has them all: only the fields asked for.
  const fields = readTopLevelFields(body, wanted);
  if (fields === undefined) return undefined;
  const id = fields.get('id');
  return {
    ...(typeof id === 'string' || typeof id === 'number' ? { id: String(id) } : {}),
    ...(fields.has('reply_to') ? { replyTo: fields.get('reply_to') } : {}),
    ...(fields.has('worker') ? { worker: fields.get('worker') } : {}),
  };
}

/** AMQP routing keys are short strings: a reply address longer than this cannot be one (nor bound). */
const MAX_KEY_BYTES = 255;

/** What a message says about itself as a request: its pattern, id and reply key; undefined when it names no reply address (or one no reply can be sent to). */
export function asRequest(message: ObservedMessage): Omit<RpcRef, 'sentAt'> | undefined {
  const request = requestOf(message);
  return request && Buffer.byteLength(request.replyKey) <= MAX_KEY_BYTES ? request : undefined;
}

/** Why a message on a request key is no request the watch can pair (see requestOf): one short clause. */
export function whyNotRequest(message: ObservedMessage): string {
  // Half of another pattern: said as such, not as "no reply topic".
  if (text(message.headers?.['x-reply-to-topic']) !== undefined) return 'it has an MQTT 5 Response Topic but no Correlation Data (nor a JSON "id" in its body)';
  if (message.replyTo) return 'its AMQP reply_to comes without a correlation_id (nor a JSON "id" and "reply_to" in its body)';
  const body = seedFields(message.body);
  if (body === undefined) return `its body is not a JSON object (${message.body.length} bytes) and it has no MQTT 5 Response Topic or AMQP reply_to`;
  if (body.id === undefined) return 'its JSON body has no "id" (and the message no correlation id)';
  if (typeof body.replyTo !== 'string' || body.replyTo === '') return 'its JSON body has no "reply_to" (and the message no MQTT 5 Response Topic or AMQP reply_to), so no reply could find the device';
  return 'its reply topic is longer than a routing key may be';
}

function requestOf(message: ObservedMessage): Omit<RpcRef, 'sentAt'> | undefined {
  const headers = message.headers ?? {};
  const replyTopic = text(headers['x-reply-to-topic']);
  const correlation = message.correlationId ?? text(headers['x-correlation-id']);
  if (replyTopic !== undefined && replyTopic !== '') {
    const id = correlation ?? seedFields(message.body, ID_FIELD)?.id;
    if (id !== undefined) return { pattern: 'mqtt5', topic: message.routingKey, id, replyKey: replyTopic, replyTopic: routingKeyToTopic(replyTopic) };
  }
  const body = seedFields(message.body);
  if (body?.id !== undefined && typeof body.replyTo === 'string' && body.replyTo !== '') {
    return { pattern: 'seed', topic: message.routingKey, id: body.id, replyKey: body.replyTo.replaceAll('/', '.'), replyTopic: body.replyTo };
  }
  if (message.replyTo && correlation !== undefined) return { pattern: 'amqp', topic: message.routingKey, id: correlation, replyKey: message.replyTo };
  return undefined;
}

/** The worker a reply names: its body's `worker` field, else its connection when known. */
function workerOf(message: ObservedMessage): string | undefined {
  const worker = seedFields(message.body, WORKER_FIELD)?.worker;
  if (typeof worker === 'string' && worker !== '') return worker.slice(0, 200);
  return message.connection;
}

/** The id a reply carries: its correlation id, else its seed body's id. */
function replyId(message: ObservedMessage): string | undefined {
  const correlation = message.correlationId ?? text(message.headers?.['x-correlation-id']);
  if (correlation !== undefined) return correlation;
  return seedFields(message.body, ID_FIELD)?.id;
}

export class RpcPairing {
  private readonly timeoutMs: number;
  private readonly lateWindowMs: number;
  private readonly maxPending: number;
  private readonly maxSamples: number;
  private readonly maxTopics: number;
  /** by `pendingKey`, in arrival order (a Map keeps it): the oldest is first */
  private readonly pending = new Map<string, Pending>();
  /** the keys (`pendingKey`) of the requests waiting with each pattern:id, oldest first: a reply on a key nobody waits on is looked for among them */
  private readonly pendingIds = new Map<string, Set<string>>();
  /** unanswered, kept for the late window, in timeout order */
  private readonly timedOut = new Map<string, Pending & { lateUntil: number }>();
  /** how many pending or timed-out requests wait on each reply key */
  private readonly keyUse = new Map<string, number>();
  private readonly topics = new Map<string, TopicAcc>();
  /** reply keys nobody waits on, still watched until their linger ends, by when they became idle (in that order) */
  private readonly lingering = new Map<string, number>();
  private readonly keyLingerMs: number;
  private readonly maxLingering: number;
  private readonly boundLate: ((replyKey: string) => boolean) | undefined;
  private readonly bindPending: ((replyKey: string) => boolean) | undefined;
  /** when the watch started, if the caller said (see PairingOptions.startedAt) */
  private startedAt: number | undefined;
  /** the requests counted not seen, by `unseenKey`, with their topic (at most maxPending, the oldest let go) */
  private readonly countedUnseen = new Map<string, string>();
  /** the requests answered lately, by reply key and id, so a second reply is told (the last 2,000 at least, 4,000 at most) */
  private readonly answered = new RecentIds<{ ref: RpcRef; worker: string | undefined }>(ANSWERED_KEPT);
  /** the broker's version, once known, when it delivers a non-persistent message at QoS 0 to every MQTT subscriber (3.13+) */
  private transientAtQos0: string | undefined;

  constructor(options: PairingOptions) {
    this.timeoutMs = options.timeoutMs;
    this.lateWindowMs = options.lateWindowMs ?? options.timeoutMs;
    this.maxPending = options.maxPending ?? 10_000;
    this.maxSamples = options.maxSamples ?? 1000;
    this.maxTopics = options.maxTopics ?? 1000;
    this.keyLingerMs = options.keyLingerMs ?? 0;
    this.maxLingering = options.maxLingering ?? 1000;
    this.boundLate = options.boundLate;
    this.bindPending = options.bindPending;
    this.startedAt = options.startedAt;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** The reply keys waited on now (a tap's bindings besides the request keys). */
  watchedKeys(): string[] {
    return [...this.keyUse.keys(), ...this.lingering.keys()];
  }

  /**
   * `mayBeRequest`: the message may start an RPC (a watched request key, or any under "#"; false: a reply or nothing, as
   * a firehose sees every key); `named`: its key was named
   * to be watched, so a message there that is neither a request nor a reply is counted and said (`not-request`).
   */
  observe(message: ObservedMessage, mayBeRequest = true, named = false): WatchEvent[] {
    const events: WatchEvent[] = [];
    // A reply first: a reply that itself names a reply address (a chained call) still answers the request it answers.
    if (this.keyUse.has(message.routingKey) || this.lingering.has(message.routingKey)) {
      const answered = this.answer(message, events);
      if (answered) return events;
    }
    const request = mayBeRequest ? asRequest(message) : undefined;
    if (request) {
      const routed = message.routedQueues !== undefined ? { routedQueues: message.routedQueues.slice(0, MAX_ROUTED_KEPT) } : {};
      this.addRequest({ ...request, sentAt: message.at, deadline: message.at + this.timeoutMs, ...routed }, events);
      return events;
    }
    // A reply on a key nobody waits on that names a pending seed request's id: a reply sent to the wrong key. A request
    // on a key not watched (it names a reply address of its own) is no reply, whatever id it carries.
    const id = mayBeRequest || asRequest(message) === undefined ? replyId(message) : undefined;
    if (id !== undefined) {
      for (const pattern of ['seed', 'mqtt5', 'amqp'] as const) {
        const entry = this.oldestPending(pattern, id, message.routingKey);
        if (entry) {
          const worker = workerOf(message);
          entry.wrongKey = { routingKey: message.routingKey, at: message.at, ...(worker !== undefined ? { worker } : {}) };
          return events;
        }
      }
    }
    // Not JSON, no id, no reply topic: a device's malformed request is what a watcher is there to see, not to skip.
    if (named) {
      const acc = this.topicAcc(message.routingKey, message.at, events);
      if (acc) acc.notRequests += 1;
      events.push({ type: 'not-request', topic: message.routingKey, reason: whyNotRequest(message) });
    }
    return events;
  }

  /** Requests past their timeout become `unanswered`; timed-out ones past the late window are forgotten. */
  tick(now: number): WatchEvent[] {
    const events: WatchEvent[] = [];
    for (const [key, entry] of this.pending) {
      if (entry.deadline > now) break; // arrival order is deadline order: one timeout for all
      this.unpend(key, entry);
      // The same id and reply key timed out before and still in its late window (a device's retry, or its count from 1
      // again): that one is let go (its key released), and this one takes its place at the end, in timeout order.
      const earlier = this.timedOut.get(key);
      if (earlier !== undefined) {
        this.timedOut.delete(key);
        this.release(earlier.replyKey, events, now);
      }
      this.timedOut.set(key, { ...entry, lateUntil: entry.deadline + this.lateWindowMs });
      if (this.timedOut.size > this.maxPending) {
        const [oldestKey, oldest] = this.timedOut.entries().next().value as [string, Pending];
        this.timedOut.delete(oldestKey);
        this.release(oldest.replyKey, events, now);
        events.push({ type: 'dropped', what: 'timed-out', count: 1, reason: `more than ${this.maxPending} unanswered requests in the late window; a late reply to ${oldest.topic} id ${oldest.id} will not be recognised` });
      }
      const acc = this.topicAcc(entry.topic, entry.sentAt, events);
      if (acc && entry.keyWatchedLate) {
        acc.unseen += 1;
        this.countedUnseen.set(unseenKey(entry), entry.topic);
        if (this.countedUnseen.size > this.maxPending) this.countedUnseen.delete(this.countedUnseen.keys().next().value as string);
      } else if (acc) acc.unanswered += 1;
      const { deadline: _deadline, ...ref } = entry;
      events.push({ ...ref, type: 'unanswered', waitedMs: now - entry.sentAt });
    }
    for (const [key, entry] of this.timedOut) {
      if (entry.lateUntil > now) break;
      this.timedOut.delete(key);
      this.release(entry.replyKey, events, now);
    }
    for (const [key, since] of this.lingering) {
      if (since + this.keyLingerMs > now) break;
      this.lingering.delete(key);
      events.push({ type: 'unwatch-key', key });
    }
    return events;
  }

  /**
   * A request counted not seen turned out to be one no reply could answer (nothing consumed it, or it was routed
   * nowhere): it is counted unanswered after all.
   */
  unseenWasUnanswered(ref: Pick<RpcRef, 'pattern' | 'id' | 'replyKey' | 'sentAt'>): boolean {
    return this.moveUnseen(unseenKey(ref));
  }

  /** Whether this request is still counted not seen (a late reply or a verdict may have moved it since). */
  isUnseen(ref: Pick<RpcRef, 'pattern' | 'id' | 'replyKey' | 'sentAt'>): boolean {
    return this.countedUnseen.has(unseenKey(ref));
  }

  /** Moves one request, and only one that is still counted not seen, to unanswered. */
  private moveUnseen(key: string): boolean {
    const topic = this.countedUnseen.get(key);
    if (topic === undefined) return false;
    this.countedUnseen.delete(key);
    const acc = this.topics.get(topic);
    if (!acc || acc.unseen === 0) return false;
    acc.unseen -= 1;
    acc.unanswered += 1;
    return true;
  }

  /**
   * The broker's version, once read: on one that delivers a non-persistent message to MQTT subscribers at QoS 0 (3.13+),
   * such replies are counted and said once per topic. Before it is known, or on older brokers, they are not.
   */
  brokerVersion(version: string, transientAtQos0: boolean): void {
    this.transientAtQos0 = transientAtQos0 ? version : undefined;
  }

  /** A reply the broker delivers at QoS 0: counted, and said at the first of each worker on the topic. */
  private qos0Reply(message: ObservedMessage, entry: RpcRef, acc: TopicAcc | undefined, worker: string | undefined, events: WatchEvent[]): boolean {
    if (this.transientAtQos0 === undefined || message.persistent !== false || !acc) return false;
    // Seen by the firehose: only a reply that reached an MQTT client's QoS 1 subscription is delivered below its QoS.
    if (message.routedQueues !== undefined && !message.routedQueues.some((queue) => subscriptionQueueOwner(queue)?.qos === 1)) return false;
    acc.qos0Replies += 1;
    // Each worker that does it is named once (at most 100 a topic, as its workers' counts); a reply naming none, once.
    const who = worker ?? '';
    if (!acc.qos0Workers.has(who) && acc.qos0Workers.size < 100) {
      acc.qos0Workers.add(who);
      events.push({ type: 'qos0-replies', topic: entry.topic, replyKey: entry.replyKey, ...(worker !== undefined ? { worker } : {}), brokerVersion: this.transientAtQos0 });
    }
    return true;
  }

  /** Whether a request on this topic may be waiting (a cheap test before a delivery's body is read). */
  waitsOn(topic: string | undefined): boolean {
    return topic !== undefined && this.pending.size > 0 && this.topics.has(topic);
  }

  /**
   * A firehose delivery of a message from a server's queue (not an MQTT subscription's, not a tap's): when it is a
   * request still waiting, it was taken by that consumer (the first delivery counts; a redelivery after a worker died
   * does not change who took it first). Only messages on a topic with requests are read.
   */
  delivered(message: ObservedMessage, queue: string, connectionName?: string): void {
    if (!this.waitsOn(message.routingKey)) return;
    const request = asRequest(message);
    const entry = request ? this.pending.get(pendingKey(request)) : undefined;
    if (entry === undefined || entry.takenBy !== undefined) return;
    entry.takenBy = {
      queue,
      at: message.at,
      ...(message.connection !== undefined ? { connection: message.connection } : {}),
      ...(connectionName !== undefined ? { connectionName } : {}),
    };
  }

  /** From when the watch watches (once its tap or firehose is in place): see PairingOptions.startedAt. */
  watchingSince(at: number): void {
    this.startedAt = at;
  }

  /** Everything waited on is let go (the watcher stops): unwatch-key events for each key. */
  close(): WatchEvent[] {
    const events: WatchEvent[] = [];
    for (const key of this.watchedKeys()) events.push({ type: 'unwatch-key', key });
    this.keyUse.clear();
    this.lingering.clear();
    this.pending.clear();
    this.pendingIds.clear();
    this.timedOut.clear();
    return events;
  }

  stats(now: number): TopicStats[] {
    const waiting = new Map<string, number>();
    for (const entry of this.pending.values()) waiting.set(entry.topic, (waiting.get(entry.topic) ?? 0) + 1);
    return [...this.topics.entries()].map(([topic, acc]) => {
      const sorted = [...acc.samples].sort((a, b) => a - b);
      const nowSecond = Math.floor(now / 1000);
      const recent = acc.buckets.reduce((sum, bucket) => (bucket.second > nowSecond - RATE_WINDOW_S && bucket.second <= nowSecond ? sum + bucket.count : sum), 0);
      // Over the last 10 s, or over the time watched when shorter: not since the topic's first request (5 requests at
      // once, 8 s into a watch, read 2.7/s "over the last 10 s").
      const since = Math.min(this.startedAt ?? acc.firstAt, acc.firstAt);
      const seconds = Math.min(RATE_WINDOW_S, Math.max(1, (now - since) / 1000));
      const line: TopicStats = {
        topic,
        requests: acc.requests,
        replies: acc.replies,
        unanswered: acc.unanswered,
        unseen: acc.unseen,
        waiting: waiting.get(topic) ?? 0,
        retried: acc.retried,
        notRequests: acc.notRequests,
        qos0Replies: acc.qos0Replies,
        late: acc.late,
        duplicates: acc.duplicates,
        rate: Math.round((recent / seconds) * 100) / 100,
        rateOverS: Math.round(seconds),
        workers: Object.fromEntries(acc.workers),
      };
      const p50 = percentile(sorted, 50);
      const p95 = percentile(sorted, 95);
      const p99 = percentile(sorted, 99);
      if (p50 !== undefined) line.p50 = p50;
      if (p95 !== undefined) line.p95 = p95;
      if (p99 !== undefined) line.p99 = p99;
      return line;
    });
  }

  /** The oldest request waiting with this id on another reply key than `routingKey` and no wrong reply yet (a wrong key's reply). */
  private oldestPending(pattern: RpcRef['pattern'], id: string, routingKey: string): Pending | undefined {
    const keys = this.pendingIds.get(`${pattern}:${id}`);
    if (keys === undefined) return undefined;
    let other: Pending | undefined;
    for (const key of keys) {
      const entry = this.pending.get(key);
      if (entry === undefined || entry.replyKey === routingKey) continue;
      if (entry.wrongKey === undefined) return entry;
      other ??= entry;
    }
    return other;
  }

  /** Adds a request to those waited on. */
  private pend(key: string, entry: Pending): void {
    this.pending.set(key, entry);
    const ids = `${entry.pattern}:${entry.id}`;
    const keys = this.pendingIds.get(ids);
    if (keys) keys.add(key);
    else this.pendingIds.set(ids, new Set([key]));
  }

  /** Takes a request from those waited on. */
  private unpend(key: string, entry: Pending): void {
    if (!this.pending.delete(key)) return;
    const ids = `${entry.pattern}:${entry.id}`;
    const keys = this.pendingIds.get(ids);
    keys?.delete(key);
    if (keys?.size === 0) this.pendingIds.delete(ids);
  }

  private addRequest(entry: Pending, events: WatchEvent[]): void {
    const key = pendingKey(entry);
    // A new request naming an answered one's id and reply key (a device's retry, an id counter reused): its replies are its own.
    this.answered.delete(answeredKey(entry.replyKey, entry.id));
    // The same id again (a retry, or QoS 1 redelivery): the newer replaces the older, which is not counted as lost but as
    // retried, so the topic's figures still add up (its requests are replied, unanswered, not seen, waiting or retried).
    const previous = this.pending.get(key);
    if (previous) {
      this.unpend(key, previous);
      this.release(previous.replyKey, events, entry.sentAt);
      const replaced = this.topics.get(previous.topic);
      if (replaced) replaced.retried += 1;
    }
    if (this.pending.size >= this.maxPending) {
      const [oldestKey, oldest] = this.pending.entries().next().value as [string, Pending];
      this.unpend(oldestKey, oldest);
      this.release(oldest.replyKey, events, entry.sentAt);
      events.push({ type: 'dropped', what: 'pending', count: 1, reason: `more than ${this.maxPending} requests waited for a reply at once; the oldest (${oldest.topic} id ${oldest.id}) is no longer followed` });
    }
    const acc = this.topicAcc(entry.topic, entry.sentAt, events);
    if (acc) {
      acc.requests += 1;
      acc.lastAt = entry.sentAt;
      const second = Math.floor(entry.sentAt / 1000);
      const bucket = acc.buckets[second % RATE_WINDOW_S] as { second: number; count: number };
      if (bucket.second !== second) {
        bucket.second = second;
        bucket.count = 0;
      }
      bucket.count += 1;
    }
    // Its reply key bound only now (its first request), or still being bound (a second request came before the broker
    // confirmed the bind): a prompt reply may have come before it.
    if (this.hold(entry.replyKey, events) ? this.boundLate?.(entry.replyKey) : this.bindPending?.(entry.replyKey)) entry.keyWatchedLate = true;
    this.pend(key, entry);
  }

  private answer(message: ObservedMessage, events: WatchEvent[]): boolean {
    const id = replyId(message);
    const matches = (entry: Pending): boolean => entry.replyKey === message.routingKey && (id === undefined || entry.id === id);
    // A reply naming its id is found by its key (the request's id on this reply key); one naming none, by a scan.
    const found = id !== undefined ? keyed(this.pending, id, message.routingKey) : first(this.pending, matches);
    const worker = workerOf(message);
    // The firehose saw the reply reach no queue (a watch's tap aside): the device was not subscribed, so it is no answer.
    if (found && message.routedQueues !== undefined && withoutWatchTaps(message.routedQueues).length === 0) {
      found[1].wrongKey = { routingKey: message.routingKey, at: message.at, ...(worker !== undefined ? { worker } : {}), dropped: true };
      return true;
    }
    if (found) {
      const [key, entry] = found;
      this.unpend(key, entry);
      this.release(entry.replyKey, events, message.at);
      const rttMs = Math.max(0, message.at - entry.sentAt);
      const acc = this.topics.get(entry.topic);
      if (acc) {
        acc.replies += 1;
        acc.samples.push(rttMs);
        if (acc.samples.length > this.maxSamples) acc.samples.shift();
        if (worker !== undefined && (acc.workers.has(worker) || acc.workers.size < 100)) acc.workers.set(worker, (acc.workers.get(worker) ?? 0) + 1);
      }
      const { deadline: _deadline, wrongKey: _wrong, keyWatchedLate: _late, takenBy: _taken, ...ref } = entry;
      if (id !== undefined) this.answered.set(answeredKey(entry.replyKey, id), { ref, worker });
      const replyRouted = message.routedQueues !== undefined ? { replyRoutedQueues: message.routedQueues.slice(0, MAX_ROUTED_KEPT) } : {};
      events.push({ ...ref, type: 'pair', rttMs, ...(worker !== undefined ? { worker } : {}), ...replyRouted });
      this.qos0Reply(message, ref, acc, worker, events);
      return true;
    }
    const late = id !== undefined ? keyed(this.timedOut, id, message.routingKey) : first(this.timedOut, matches);
    if (!late) return this.another(message, id, worker, events);
    const [key, entry] = late;
    this.timedOut.delete(key);
    this.release(entry.replyKey, events, message.at);
    // A reply after the timeout: the tap's bind was in place, so a request counted not seen was answered late, not unseen.
    this.moveUnseen(unseenKey(entry));
    const acc = this.topics.get(entry.topic);
    if (acc) acc.late += 1;
    const { deadline: _deadline, wrongKey: _wrong, lateUntil: _until, keyWatchedLate: _late, takenBy: _taken, ...ref } = entry;
    // The device sent another request with this id on this reply topic since, answered already (it counted from 1 again
    // after a reboot, or retried): the late reply reaches it as a second answer to that one.
    const since = id !== undefined ? this.answered.get(answeredKey(entry.replyKey, id)) : undefined;
    const reused = since !== undefined && since.ref.sentAt > entry.sentAt ? { reusedAt: since.ref.sentAt } : {};
    if (id !== undefined) this.answered.set(answeredKey(entry.replyKey, id), { ref, worker });
    const replyRouted = message.routedQueues !== undefined ? { replyRoutedQueues: message.routedQueues.slice(0, MAX_ROUTED_KEPT) } : {};
    events.push({ ...ref, type: 'late', rttMs: Math.max(0, message.at - entry.sentAt), ...(worker !== undefined ? { worker } : {}), ...replyRouted, ...reused });
    return true;
  }

  /** A reply naming a request answered already (by id, on its reply key): counted, and said, never paired again. */
  private another(message: ObservedMessage, id: string | undefined, worker: string | undefined, events: WatchEvent[]): boolean {
    const first = id !== undefined ? this.answered.get(answeredKey(message.routingKey, id)) : undefined;
    if (!first) return false;
    const acc = this.topics.get(first.ref.topic);
    if (acc) acc.duplicates += 1;
    events.push({
      ...first.ref,
      type: 'duplicate',
      rttMs: Math.max(0, message.at - first.ref.sentAt),
      ...(worker !== undefined ? { worker } : {}),
      ...(first.worker !== undefined ? { firstWorker: first.worker } : {}),
      // The firehose saw the broker route it to no queue: no device got this one.
      ...(message.routedQueues !== undefined && withoutWatchTaps(message.routedQueues).length === 0 ? { dropped: true as const } : {}),
    });
    return true;
  }

  private topicAcc(topic: string, at: number, events: WatchEvent[]): TopicAcc | undefined {
    let acc = this.topics.get(topic);
    if (acc) return acc;
    if (this.topics.size >= this.maxTopics) {
      events.push({ type: 'dropped', what: 'topic', count: 1, reason: `more than ${this.maxTopics} request topics; "${topic}" gets no stats` });
      return undefined;
    }
    acc = { buckets: Array.from({ length: RATE_WINDOW_S }, () => ({ second: -1, count: 0 })), requests: 0, replies: 0, unanswered: 0, unseen: 0, retried: 0, notRequests: 0, qos0Replies: 0, qos0Workers: new Set(), late: 0, duplicates: 0, firstAt: at, lastAt: at, samples: [], workers: new Map() };
    this.topics.set(topic, acc);
    return acc;
  }

  /** true when the key starts being watched now */
  private hold(key: string, events: WatchEvent[]): boolean {
    const uses = this.keyUse.get(key) ?? 0;
    this.keyUse.set(key, uses + 1);
    if (uses > 0 || this.lingering.delete(key)) return false;
    events.push({ type: 'watch-key', key });
    return true;
  }

  private release(key: string, events: WatchEvent[], now: number): void {
    const uses = this.keyUse.get(key) ?? 0;
    if (uses > 1) {
      this.keyUse.set(key, uses - 1);
      return;
    }
    if (!this.keyUse.delete(key)) return;
    if (this.keyLingerMs <= 0) {
      events.push({ type: 'unwatch-key', key });
      return;
    }
    this.lingering.set(key, now);
    if (this.lingering.size > this.maxLingering) {
      const [oldest] = this.lingering.keys();
      this.lingering.delete(oldest as string);
      events.push({ type: 'unwatch-key', key: oldest as string });
    }
  }
}
