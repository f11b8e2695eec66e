/** The broker's own record of routing: RabbitMQ's firehose (amq.rabbitmq.trace), turned on and off politely, and always given back. */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import { defaultEnvelopeFields, type EnvelopeFields } from '../../shared/rpc';
import { isSubscriptionQueue, subscriptionQueueOwner } from '../../shared/rabbitmq-mqtt';
import type { ErrorCode } from '../../shared/errors';
import type { BrokerParty, TraceStep, TraceStepDetails } from '../../shared/trace';
import { toErrorShape } from '../errors';
import { amqpConnectOptions, closeAmqpBounded, explainAmqpError } from '../links/amqp-link';
import { readFramesWithoutCopies } from '../links/amqp-frames';
import { tlsSocketOptions, type TlsFiles } from '../connection-details';
import { LIVE_TRACER_QUEUE_PREFIX, type ManagementApi, type TracingMarker } from '../broker/management-api';
import { MissingTagError } from '../broker/management-http';
import { readTopLevelFields } from './json-fields';
import { decodeFieldTable, type EncodedTable } from './field-table';
import { routingKeyToTopic } from '../../shared/topic-map';
import { FirehoseHeaders, headersFromDecoded, readFirehoseHeaders } from './firehose-headers';
import { amqpWire, WIRE_SOURCE, type PendingDraft } from './message-view';
import { traceNames } from './intern';
import type { RpcKeys, TraceStore } from './trace-store';
import { TracingNodeKeeper } from './node-restarts';
import { TracingOwnership } from './ownership';
import { MqttClients } from './mqtt-clients';
import { withDeadline } from '../../shared/deadline';

export const TRACE_EXCHANGE = 'amq.rabbitmq.trace';

/** How long a tracer's start waits for the list of MQTT clients (a slow management API names them a little later). */
const CLIENTS_LISTED_WITHIN_MS = 5000;

export type FirehoseStatus =
  | { state: 'off' }
  /** resumed: switched on again after the link to the broker came back (a node restart resets the vhost's flag) */
  | { state: 'on'; since: number; turnedOnByUs: boolean; resumed?: boolean }
  | { state: 'reconnecting'; since: number; attempt: number; reason: string }
  | { state: 'unavailable'; reason: string; code?: ErrorCode };

export interface FirehoseEvent {
  type: 'publish' | 'deliver';
  /** exchange for publish events, queue for deliver events */
  name: string;
  routingKeys: string[];
  routedQueues: string[];
  redelivered: boolean;
  /** the node that saw it (header `node`): in a cluster, where the publishing or consuming channel is */
  node?: string;
  /**
   * the traced message's own AMQP properties and headers (the firehose copies them into its header `properties`): as
   * their table's bytes when the tracer's own frame reader took them (decoded when the step is read), else decoded
   */
  properties?: Record<string, unknown> | EncodedTable;
  /** the publishing (publish) or consuming (deliver) connection, channel and user (headers `connection`, `channel`, `user`) */
  party?: BrokerParty;
  body: Buffer;
}

/** Reads one firehose message: `publish.<exchange>` or `deliver.<queue>` with its headers; undefined for anything else. */
export function parseFirehoseMessage(message: Pick<ConsumeMessage, 'fields' | 'properties' | 'content'>): FirehoseEvent | undefined {
  const key = message.fields.routingKey;
  const dot = key.indexOf('.');
  const type = key.slice(0, dot);
  if (dot < 0 || (type !== 'publish' && type !== 'deliver')) return undefined;
  const given: unknown = message.properties.headers;
  // Read by the tracer's own frame reader (readFirehoseFrames), or else decoded by amqplib.
  const headers = given instanceof FirehoseHeaders ? given : headersFromDecoded((given ?? {}) as Record<string, unknown>);
  const event: FirehoseEvent = {
    type,
    name: traceNames.of(key.slice(dot + 1)),
    routingKeys: headers.routingKeys,
    routedQueues: headers.routedQueues,
    redelivered: headers.redelivered,
    body: message.content,
  };
  if (headers.node !== undefined) event.node = headers.node;
  if (headers.properties !== undefined) event.properties = headers.properties;
  else if (headers.decoded !== undefined) event.properties = headers.decoded;
  if (headers.connection !== undefined) {
    const party: BrokerParty = { connection: headers.connection };
    if (headers.channel !== undefined) party.channel = headers.channel;
    if (headers.user !== undefined) party.user = headers.user;
    event.party = party;
  }
  return event;
}

/**
 * Reads the content headers of the tracer's own connection itself (every message on it is the firehose's) into
 * `FirehoseHeaders` (see `readFirehoseHeaders`): the traced message's own properties stay as their table's bytes until
 * the step is read. Every other frame, and any header that is not a headers table alone, is amqplib's as always; the
 * frames' bytes are gathered without amqplib's copy of every read (`readFramesWithoutCopies`). Returns false, changing
 * nothing, when the connection is not the amqplib it knows (then amqplib reads and decodes everything).
 */
export function readFirehoseFrames(connection: unknown): boolean {
  return readFramesWithoutCopies(connection, (payload, channel) => {
    const read = readFirehoseHeaders(payload);
    return read && { id: 60, channel, size: read.size, fields: { headers: read.headers } };
  });
}

/**
 * A traced message's own properties, decoded (the tracer's frame reader leaves them as their table's bytes); undefined
 * when RabbitMQ's copy of them cannot be followed (the message is then read by its routing key and body alone).
 */
export function firehoseProperties(event: Pick<FirehoseEvent, 'properties'>): Record<string, unknown> | undefined {
  if (!Buffer.isBuffer(event.properties)) return event.properties ?? {};
  try {
    return decodeFieldTable(event.properties);
  } catch {
    return undefined;
  }
}

/** The headers table among a message's decoded properties, if it has one. */
export function headersOf(properties: Record<string, unknown>): Record<string, unknown> | undefined {
  const { headers } = properties;
  return headers !== null && typeof headers === 'object' && !Buffer.isBuffer(headers) ? (headers as Record<string, unknown>) : undefined;
}

/** Where RabbitMQ 3.13+ puts an MQTT 5 Response Topic for AMQP (dotted: a routing key). */
const RESPONSE_TOPIC_HEADER = 'x-reply-to-topic';

/** A header's or property's text: AMQP long strings may arrive as bytes. */
export const textOf = (value: unknown): string | undefined => (typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : undefined);

/**
 * An MQTT 5 device's request whose body names no id (a device of another team's: the reply topic and the id travel as
 * its Response Topic and Correlation Data, which RabbitMQ 3.13+ hands AMQP as header `x-reply-to-topic`, already a
 * routing key, and `correlation_id` or header `x-correlation-id`). Read only for an event nothing else joined: its
 * properties are decoded then.
 */
function mqtt5Request(event: FirehoseEvent): { id: string; replyKey: string } | undefined {
  // Most such events are telemetry and deliveries with no Response Topic: their table's bytes say so without decoding it.
  if (Buffer.isBuffer(event.properties) && event.properties.indexOf(RESPONSE_TOPIC_HEADER) < 0) return undefined;
  const properties = firehoseProperties(event) ?? {};
  const headers = headersOf(properties);
  const replyKey = textOf(headers?.[RESPONSE_TOPIC_HEADER]);
  if (replyKey === undefined || replyKey === '') return undefined;
  const id = textOf(properties.correlation_id) ?? textOf(headers?.['x-correlation-id']);
  return id === undefined || id === '' ? undefined : { id, replyKey };
}

/** A connection as the step names it: with its MQTT client id, or the name its client gave it, when `clients` knows them. */
function named(party: BrokerParty, clients: MqttClients | undefined, clientId = clients?.clientIdOf(party.connection)): BrokerParty {
  const name = clients?.connectionNameOf(party.connection);
  if (clientId === undefined && name === undefined) return party;
  return { ...party, ...(clientId !== undefined ? { mqttClientId: clientId } : {}), ...(name !== undefined ? { connectionName: name } : {}) };
}

/**
 * Turns a firehose event into a trace step, if it belongs to an RPC the store knows (or carries an id). `clients` names
 * the MQTT clients behind the connections (and knows the broker's rule for a transient message's QoS).
 */
export function firehoseStep(event: FirehoseEvent, store: TraceStore, fields: EnvelopeFields = defaultEnvelopeFields, clients?: MqttClients): PendingDraft | undefined {
  // Only the id and the reply topic are read: the rest of the body (a 1 MiB payload) is skipped, never parsed.
  const record = readTopLevelFields(event.body, [fields.id, fields.replyTo]);
  const rawId = record?.get(fields.id);
  let isRequest = record?.has(fields.replyTo) ?? false;
  let rpcId = typeof rawId === 'string' || typeof rawId === 'number' ? String(rawId) : undefined;
  // A body with no id may be a request sent as given (text, hex, a file): found by its key, size and first bytes.
  const routingKey = event.routingKeys[0];
  if (rpcId === undefined && routingKey !== undefined) {
    const copy = event.type === 'publish' ? { type: 'publish' as const, routedQueues: event.routedQueues } : { type: 'deliver' as const, queue: event.name, redelivered: event.redelivered };
    rpcId = store.asGivenRequestOf(copy, routingKey, event.body);
    if (rpcId !== undefined) isRequest = true;
  }
  // An MQTT 5 request of a device not of this app's: joined by its Correlation Data, its reply by its Response Topic.
  let mqtt5ReplyKey: string | undefined;
  if (rpcId === undefined && routingKey !== undefined) {
    const request = mqtt5Request(event);
    if (request) {
      rpcId = request.id;
      isRequest = true;
      mqtt5ReplyKey = request.replyKey;
    }
  }
  const replyTo = mqtt5ReplyKey !== undefined ? routingKeyToTopic(mqtt5ReplyKey) : record?.get(fields.replyTo);
  // Devices count their ids (or Correlation Data) from 1: another device's RPC with the same id, or the next one of a
  // device that started counting again, is an RPC of its own (see `rpcUnder`).
  if (rpcId !== undefined) {
    const requestKey = mqtt5ReplyKey ?? (typeof replyTo === 'string' && replyTo !== '' ? store.replyKeyOf(replyTo) : undefined);
    if (isRequest && requestKey !== undefined) rpcId = store.rpcUnder(rpcId, requestKey, event.type === 'publish' ? 'opens' : 'request');
    else if (!isRequest) rpcId = store.rpcUnder(rpcId, routingKey, 'other');
  }
  let keys = rpcId !== undefined ? store.keysOf(rpcId) : undefined;
  const leg = legOf(event, isRequest, keys, store);
  if (leg === 'request' && rpcId !== undefined && mqtt5ReplyKey !== undefined) store.noteReplyKey(mqtt5ReplyKey, rpcId);
  else if (leg === 'request' && rpcId !== undefined && typeof replyTo === 'string') store.noteReplyKey(store.replyKeyOf(replyTo), rpcId);
  if (rpcId === undefined && leg === 'reply') {
    rpcId = routingKey !== undefined ? store.rpcForReplyKey(routingKey) : undefined;
    keys = rpcId !== undefined ? store.keysOf(rpcId) : undefined;
  }
  if (rpcId === undefined) return undefined;
  const at = Date.now();
  // What the user reads at this hop: the message's properties and headers, and the first bytes of its body (not
  // parsed), built when the step is read.
  if (event.type === 'deliver') {
    const delivered: TraceStepDetails['broker.delivered'] = { queue: event.name, routingKeys: event.routingKeys, redelivered: event.redelivered, leg };
    if (event.node !== undefined) delivered.node = event.node;
    // A client's subscription queue names the client: its consumer's connection is that client's.
    const owner = isSubscriptionQueue(event.name) ? subscriptionQueueOwner(event.name) : undefined;
    if (owner && event.party) clients?.learn(event.party.connection, owner.clientId);
    if (event.party) delivered.consumer = named(event.party, clients, owner?.clientId);
    if (owner?.qos === 1 && clients?.transientAtQos0 !== undefined) delivered.transientAtQos0 = clients.transientAtQos0;
    return { rpcId, at, source: 'broker', kind: 'broker.delivered', detail: delivered, [WIRE_SOURCE]: amqpWire(event.properties, event.body) };
  }
  const predicted = leg === 'request' ? keys?.predictedKey : keys?.repliedKey;
  const published: TraceStepDetails['broker.published'] = { exchange: event.name, routingKeys: event.routingKeys, routedQueues: event.routedQueues, leg };
  if (predicted !== undefined) {
    published.predictedRoutingKey = predicted;
    published.matchesPrediction = event.routingKeys[0] === predicted;
  }
  if (leg === 'request' && typeof replyTo === 'string' && replyTo !== '') published.replyTopic = replyTo;
  if (event.node !== undefined) published.node = event.node;
  if (event.party) published.publisher = named(event.party, clients);
  return { rpcId, at, source: 'broker', kind: 'broker.published', detail: published, [WIRE_SOURCE]: amqpWire(event.properties, event.body) };
}

/**
 * Request or reply: a message on the RPC's own reply key is its reply (whatever its body holds: a forged reply may carry
 * a reply_to); else a body with a reply_to is the request, wherever it goes (an MQTT client subscribed to the request
 * topic gets a copy in its mqtt-subscription queue); else a publish or a delivery to an MQTT subscription is a reply,
 * and a delivery to another queue is a request unless it came on the reply key its request named.
 */
function legOf(event: FirehoseEvent, isRequest: boolean, keys: RpcKeys | undefined, store: TraceStore): 'request' | 'reply' {
  const replyKey = keys?.replyKey;
  const key = event.routingKeys[0];
  if (replyKey !== undefined && key === replyKey) return 'reply';
  if (isRequest) return 'request';
  // A message of no RPC the trace holds (an id, no reply topic: a device's malformed request, or a reply to a request from
  // before tracing began) on a key no request named for its replies: its publish and its delivery are one leg, a request.
  if (keys === undefined && event.type !== 'deliver' && !(key !== undefined && store.rpcForReplyKey(key) !== undefined)) return 'request';
  if (event.type !== 'deliver' || isSubscriptionQueue(event.name)) return 'reply';
  // Delivered to another queue (a watcher's tap, an AMQP consumer of replies) on a key a request named for its reply
  // (noted when the firehose saw it; several devices' requests may share one): a reply, not a request.
  return key !== undefined && store.rpcForReplyKey(key) !== undefined ? 'reply' : 'request';
}

/** What giving tracing back did: switched it off, left it on (not ours, or another BridgeScope tracer still uses it), or failed. */
export type TracingRelease =
  | { outcome: 'switched-off' }
  /** the tracer never read the setting (the management API did not answer): it changed nothing and has nothing to give back */
  | { outcome: 'untouched' }
  | { outcome: 'left-on'; why: 'not-ours' | 'in-use' }
  | { outcome: 'failed'; reason: string; code?: ErrorCode };

/** Whose release this is: the tracer queue of the caller, and the markers it wrote itself and still vouches for. */
export interface ReleaseOptions {
  ownQueue?: string;
  /** markers this process wrote while its link has stayed up since (so on the boot it switched on), valid without a boot check */
  vouched?: readonly string[];
  ownership?: TracingOwnership;
}

/**
 * The one rule for handing tracing back, used by every BridgeScope process when it is done: switch tracing off only
 * when BridgeScope provably switched it on (a marker of ours, for this boot of the nodes: see `TracingOwnership`) and
 * no other live BridgeScope tracer of ours remains; then remove those markers, and only those (a tracer that started
 * meanwhile wrote its own). Tracing anyone else switched on (no marker of ours) is never touched; a forged tracer queue
 * keeps nothing on. Markers of ours from before a node restart are removed on the way. Never throws.
 */
export async function releaseTracing(api: ManagementApi, options: ReleaseOptions = {}): Promise<TracingRelease> {
  const { ownQueue, vouched = [], ownership = new TracingOwnership() } = options;
  try {
    const { ours, stale } = await ownership.classify(api, await api.tracingMarkers(), vouched);
    if (stale.length > 0) await ownership.removeMarkers(api, stale.map((marker) => marker.exchange)).catch(() => undefined);
    if (ours.length === 0) return { outcome: 'left-on', why: 'not-ours' };
    const others = (await ownership.liveTracers(api)).filter((queue) => queue !== ownQueue);
    if (others.length > 0) return { outcome: 'left-on', why: 'in-use' };
    // Off at every node where it is on (in a cluster a restarted node may have lost it while others kept it).
    if (await api.tracingAnywhere()) await api.setTracing(false);
    // A tracer that started meanwhile may have found tracing still on and joined it: give it its tracing back.
    if ((await ownership.liveTracers(api)).some((queue) => queue !== ownQueue)) {
      await api.setTracing(true);
      return { outcome: 'left-on', why: 'in-use' };
    }
    // The markers go last: a crash before this leaves a stale marker (removed by the next check), never an unowned flag.
    await ownership.removeMarkers(api, ours.map((marker) => marker.exchange));
    return { outcome: 'switched-off' };
  } catch (err) {
    const shape = toErrorShape(err);
    return { outcome: 'failed', code: shape.code, reason: `Could not switch firehose tracing off on vhost ${api.vhost} (${shape.message}); it may still be on.` };
  }
}

export interface AbandonedTracing {
  /** one sentence for the user */
  message: string;
  since: string;
  /** call when this process is done: switches tracing off unless another live BridgeScope tracer uses it by then */
  restore: () => Promise<TracingRelease>;
}

/**
 * Call on connect (CLI or app, tracing or not): tracing on + a marker of ours for this boot + no live tracer of ours
 * means a BridgeScope process died without restoring it. Returns the sentence to show and the restore to run when done,
 * or undefined. Markers of ours that are stale (a node restarted since, or tracing already off) are removed quietly;
 * markers anyone else made are left alone. Throws the management API's error (e.g. 'auth') so a caller can tell the user.
 */
export async function checkAbandonedTracing(api: ManagementApi, ownership: TracingOwnership = new TracingOwnership()): Promise<AbandonedTracing | undefined> {
  const { ours, stale } = await ownership.classify(api, await api.tracingMarkers());
  if (stale.length > 0) await ownership.removeMarkers(api, stale.map((marker) => marker.exchange)).catch(() => undefined);
  const marker = ours[0];
  if (!marker) return undefined;
  if ((await ownership.liveTracers(api)).length > 0) return undefined;
  if (!(await api.tracingAnywhere())) {
    await ownership.removeMarkers(api, ours.map((old) => old.exchange)).catch(() => undefined);
    return undefined;
  }
  return {
    since: marker.since,
    message: `Firehose tracing on vhost ${api.vhost} was left on by a BridgeScope process that ended without restoring it (since ${marker.since}); it will be switched off when this one is done.`,
    restore: () => releaseTracing(api, { ownership }),
  };
}

export interface FirehoseTracerOptions {
  amqpUrl: string;
  /** for amqps://: CA, client certificate and key, and whether the broker's certificate is verified */
  tls?: TlsFiles;
  api: ManagementApi;
  store: TraceStore;
  fields?: EnvelopeFields;
  /** every parsed broker event, with the step it became when it joined a known RPC (the `trace` CLI prints them all) */
  onEvent?: (event: FirehoseEvent, step: TraceStep | undefined) => void;
  /** who is tracing, left in the marker for whoever finds tracing on later (default: "BridgeScope pid N on HOST") */
  owner?: string;
  /** longest wait between reconnection attempts (default 5 s) */
  maxReconnectDelayMs?: number;
  /** on a cluster, how often the nodes are looked at to switch tracing on again at one that restarted (default 2 s) */
  nodeWatchMs?: number;
  /** where this OS user's records of markers and tracer queues are kept (default: the config folder's `tracing`) */
  ownership?: TracingOwnership;
  /**
   * names the MQTT clients behind the firehose's connections (default: one asking `api`); false: none (a reader of no
   * steps, as `watch --mode firehose`, does not ask the management API for names it never shows)
   */
  mqttClients?: MqttClients | false;
}

interface FirehoseTracerEvents {
  status: [FirehoseStatus];
  /** tracing was switched on again at a cluster node that restarted (its flag does not survive a restart) */
  'node-resumed': [node: string];
}

type Unavailable = Extract<FirehoseStatus, { state: 'unavailable' }>;

function unavailableBecause(err: unknown, what: string, vhost: string): Unavailable {
  const shape = toErrorShape(err);
  // Only administrators may switch tracing (the API answers 401 to others, though their password is right).
  if (err instanceof MissingTagError) {
    return {
      state: 'unavailable',
      code: shape.code,
      reason: `Firehose tracing on vhost ${vhost} needs a management user with the "administrator" tag (RabbitMQ lets only administrators switch it); showing client and server steps only.`,
    };
  }
  return { state: 'unavailable', code: shape.code, reason: `${what} (${shape.message}); showing client and server steps only.` };
}

/** Tells a failure of the management API (tracing not permitted, say) from one of the AMQP link. */
class ManagementFailure extends Error {
  constructor(readonly original: unknown) {
    super(toErrorShape(original).message);
  }
}

/**
 * Consumes the trace exchange through an exclusive `bridgescope.tracer.<uuid>` queue (which also tells other
 * BridgeScope processes it is alive), switches tracing on for the vhost when it is off (leaving the ownership marker
 * first), reconnects after a lost link or a node restart and switches tracing on again, and gives tracing back on stop
 * by the rule of `releaseTracing`. Reports every change as a 'status' event.
 */
export class FirehoseTracer extends EventEmitter<FirehoseTracerEvents> {
  private connection: amqp.RecoveringChannelModel | undefined;
  /** the current connection's model, whose socket a close that is never answered destroys */
  private model: ChannelModel | undefined;
  private queue: string | undefined;
  private current: FirehoseStatus = { state: 'off' };
  private starting: Promise<unknown> | undefined;
  private stopping: Promise<TracingRelease> | undefined;
  private connectedOnce = false;
  /** set once the management API answered: only then can (and must) tracing be given back */
  private touched = false;
  /** the release made when the start failed after tracing was read (the stop reports it, once) */
  private givenBack: TracingRelease | undefined;
  private lastTurnedOn = false;
  private lostBecause: string | undefined;
  /** on a cluster: switches tracing on again at a node that restarts, without waiting for our own link */
  private readonly keeper: TracingNodeKeeper;
  private readonly ownership: TracingOwnership;
  private readonly clients: MqttClients | undefined;
  /** the marker this tracer wrote, while its link has stayed up since: ours on this boot without asking the nodes */
  private ownMarker: string | undefined;
  private bootsTimer: NodeJS.Timeout | undefined;
  /** a record update under way: waited for before the record is removed, so it cannot bring the record back */
  private completing: Promise<unknown> | undefined;

  constructor(private readonly options: FirehoseTracerOptions) {
    super();
    this.ownership = options.ownership ?? new TracingOwnership();
    this.clients = options.mqttClients === false ? undefined : (options.mqttClients ?? new MqttClients(options.api));
    this.keeper = new TracingNodeKeeper(
      options.api,
      (node) => {
        // That node's boot in our record is the old one now: recorded again once the node reports its new one.
        if (this.ownMarker !== undefined) this.completeBootsLater(this.ownMarker, node);
        this.emit('node-resumed', node);
      },
      options.nodeWatchMs,
    );
  }

  private release(): Promise<TracingRelease> {
    return releaseTracing(this.options.api, {
      ...(this.queue !== undefined ? { ownQueue: this.queue } : {}),
      vouched: this.ownMarker !== undefined ? [this.ownMarker] : [],
      ownership: this.ownership,
    });
  }

  /** Nodes report their boot some seconds after they start: added to the marker's record once they do (for 30 s at most). */
  private completeBootsLater(exchange: string, renew?: string, attempt = 0): void {
    clearTimeout(this.bootsTimer);
    if (attempt > 30) return;
    this.bootsTimer = setTimeout(() => {
      if (this.ownMarker !== exchange || this.stopping) return;
      const run = this.ownership.completeBoots(this.options.api, exchange, attempt === 0 ? renew : undefined).then(
        (complete) => complete || this.completeBootsLater(exchange, undefined, attempt + 1),
        () => this.completeBootsLater(exchange, undefined, attempt + 1),
      );
      this.completing = run.finally(() => (this.completing = undefined));
    }, 1000);
    this.bootsTimer.unref();
  }

  get status(): FirehoseStatus {
    return this.current;
  }

  private setStatus(status: FirehoseStatus): FirehoseStatus {
    this.current = status;
    this.emit('status', status);
    return status;
  }

  /**
   * Resolves 'on', or 'unavailable' when the management API refuses (no permission to trace: the caller can go on
   * without broker steps); rejects with one sentence when the AMQP link cannot be opened. Either way nothing is left changed.
   */
  start(): Promise<FirehoseStatus> {
    const run = this.run();
    this.starting = run.catch(() => undefined);
    return run;
  }

  private async run(): Promise<FirehoseStatus> {
    const { api } = this.options;
    try {
      // A read first: a refused password or a missing vhost fails here, before anything is changed.
      await api.tracing();
    } catch (err) {
      return this.setStatus(unavailableBecause(err, 'Cannot read the firehose setting', api.vhost));
    }
    this.touched = true;
    if (this.stopping) return this.current;
    // Beside the connection: the clients connected now, and the broker's version (a trace without them is still a trace).
    const listing = this.clients?.start() ?? Promise.resolve();
    const connection = await amqp.connect(amqpConnectOptions(this.options.amqpUrl, 10), {
      ...tlsSocketOptions(this.options.tls),
      noDelay: true,
      timeout: 5000,
      clientProperties: { connection_name: 'bridgescope-tracer' },
      recovery: {
        initialMaxRetries: 0,
        initialDelay: 200,
        maxDelay: this.options.maxReconnectDelayMs ?? 5000,
        jitter: 0.3,
        waitForConnect: false,
        setup: (model: ChannelModel) => this.setup(model),
      },
    });
    this.connection = connection;
    // Connection-level errors are followed by 'disconnect'; the listener keeps them from crashing the process.
    connection.on('error', () => undefined);
    connection.on('disconnect', (err: Error) => {
      // The node may restart while the link is down: from now on our marker must prove its boot like anyone's.
      this.ownMarker = undefined;
      if (!this.stopping) this.setStatus({ state: 'reconnecting', since: Date.now(), attempt: 0, reason: this.lostBecause ?? err.message });
      this.lostBecause = undefined;
    });
    connection.on('reconnect-scheduled', (info: { attempt: number; error: Error }) => {
      if (this.connectedOnce && !this.stopping) {
        this.setStatus({ state: 'reconnecting', since: Date.now(), attempt: info.attempt, reason: info.error.message });
      }
    });
    connection.on('connect', () => {
      if (this.stopping) return;
      const resumed = this.connectedOnce;
      this.connectedOnce = true;
      this.setStatus({ state: 'on', since: Date.now(), turnedOnByUs: this.lastTurnedOn, ...(resumed ? { resumed: true } : {}) });
    });
    connection.on('reconnect-failed', (err: Error) => {
      if (this.connectedOnce && !this.stopping) this.setStatus(unavailableBecause(err, 'Tracing stopped: lost the broker', this.options.api.vhost));
    });
    try {
      await connection.waitForConnect();
    } catch (err) {
      this.connection = undefined;
      await this.closeBounded(connection);
      const release = await this.release();
      // Given back here: the stop reports this release rather than make a second one (which would read "left on, as it
      // was found" of tracing just switched off).
      if (release.outcome !== 'failed') {
        this.touched = false;
        this.givenBack = release;
      }
      if (err instanceof ManagementFailure) {
        const status = unavailableBecause(err.original, 'Cannot turn on firehose tracing', api.vhost);
        return this.setStatus(release.outcome === 'failed' ? { ...status, reason: `${status.reason} ${release.reason}` } : status);
      }
      if (this.stopping) return this.current;
      throw explainAmqpError(err, this.options.amqpUrl);
    }
    if (!this.stopping) await this.keeper.start();
    // The clients connected before tracing began are named from its first event, unless the API takes long to list them.
    await withDeadline(listing, CLIENTS_LISTED_WITHIN_MS);
    return this.current;
  }

  /** Runs on every (re)connection: the live queue first (so nobody takes us for dead), then tracing on. */
  private async setup(model: ChannelModel): Promise<void> {
    this.model = model;
    model.on('error', () => undefined);
    readFirehoseFrames((model as unknown as { connection?: unknown }).connection);
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    // A fresh name per connection: the broker may still hold the previous connection's exclusive queue for a moment.
    const queue = `${LIVE_TRACER_QUEUE_PREFIX}${randomUUID()}`;
    // Recorded before it exists: only a queue this user's BridgeScope recorded counts as a live tracer.
    await this.ownership.registerTracer(queue, this.options.api.vhost);
    const previous = this.queue;
    if (previous !== undefined) await this.ownership.unregisterTracer(previous);
    // Bounded at the broker too: a burst while we are slow never grows without limit.
    await channel.assertQueue(queue, { exclusive: true, autoDelete: true, arguments: { 'x-max-length': 100_000 } });
    this.queue = queue;
    await channel.bindQueue(queue, TRACE_EXCHANGE, '#');
    await channel.consume(
      queue,
      (message) => {
        // null: the broker cancelled our consumer (the queue was deleted); a new connection starts over, and says so.
        if (message === null) {
          this.lostBecause = 'the broker cancelled the trace consumer (its queue was deleted)';
          void model.close().catch(() => undefined);
        }
        else this.onMessage(message);
      },
      { noAck: true },
    );
    if (this.stopping) throw new Error('stopping');
    try {
      this.lastTurnedOn = await this.switchOn();
    } catch (err) {
      throw new ManagementFailure(err);
    }
  }

  /**
   * Switches tracing on when it is off, marker first: a crash in between leaves a stale marker, never an unowned flag.
   * Markers of ours found while tracing is off are stale (a node restart resets the flag, not a durable exchange): they
   * are replaced, so the marker names this process and this time. Markers anyone else made are left alone.
   */
  private async switchOn(): Promise<boolean> {
    const { api } = this.options;
    if (await api.tracing()) return false;
    const stale = await this.ownership.recorded(api, await api.tracingMarkers());
    await this.ownership.removeMarkers(api, stale.map((marker) => marker.exchange));
    const marker: TracingMarker = { since: new Date().toISOString(), by: this.options.owner ?? `BridgeScope pid ${process.pid} on ${hostname()}` };
    const exchange = await this.ownership.claimMarker(api, marker);
    this.ownMarker = exchange;
    await api.setTracing(true);
    this.completeBootsLater(exchange);
    return true;
  }

  /** Nothing a broker sends may crash the process: a body or a listener that throws costs that one event. */
  private onMessage(message: ConsumeMessage): void {
    try {
      const event = parseFirehoseMessage(message);
      if (!event) return;
      const draft = firehoseStep(event, this.options.store, this.options.fields, this.clients);
      const { onEvent, store } = this.options;
      // The step is built only for a listener of every event (the `trace` CLI); the store keeps the draft until read.
      if (onEvent) onEvent(event, draft ? store.add(draft) : undefined);
      else if (draft) store.record(draft);
    } catch {
      // One unreadable event is dropped; the stream goes on.
    }
  }

  /** Closes politely, but never waits longer than `boundMs` for a broker that does not answer (a paused node): then the socket goes. */
  private closeBounded(connection: amqp.RecoveringChannelModel, boundMs = 5000): Promise<void> {
    return closeAmqpBounded(connection, this.model, boundMs);
  }

  /** The name a connection's client gave it (a worker's `connection_name`), as the management API listed it; undefined if not known. */
  connectionNameOf(connection: string): string | undefined {
    return this.clients?.connectionNameOf(connection);
  }

  /**
   * The MQTT client id of a connection, if the management API has named it by now: a device that connected after tracing
   * began is unknown at its first publish (asked for then), and a request that gets no reply has no later event to carry it.
   */
  mqttClientIdOf(connection: string): string | undefined {
    return this.clients?.knownClientIdOf(connection);
  }

  /** Stops consuming and gives tracing back (see `releaseTracing`); safe to call during start and more than once. Never throws. */
  stop(): Promise<TracingRelease> {
    this.stopping ??= this.finish();
    return this.stopping;
  }

  private async finish(): Promise<TracingRelease> {
    // First: nothing may switch tracing on again at a node while it is being given back.
    await this.keeper.stop();
    this.clients?.stop();
    const connection = this.connection;
    this.connection = undefined;
    // Closing first removes our own live queue, so two tracers stopping at once both see "no other tracer".
    if (connection) await this.closeBounded(connection);
    await this.starting;
    // A start that was still connecting when stop was called has set its connection by now.
    const late = this.connection as amqp.RecoveringChannelModel | undefined;
    this.connection = undefined;
    if (late) await this.closeBounded(late);
    // No record update may land after the record is removed.
    clearTimeout(this.bootsTimer);
    await this.completing;
    const release: TracingRelease = this.touched ? await this.release() : (this.givenBack ?? { outcome: 'untouched' });
    if (this.queue !== undefined) await this.ownership.unregisterTracer(this.queue);
    this.setStatus({ state: 'off' });
    return release;
  }
}
