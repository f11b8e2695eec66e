/** Gathers what the broker can still tell after an RPC failed (bindings, live queue counts, connections) and turns it into a verdict. */
import amqp from 'amqplib';
import { z } from 'zod';
import { closestKeys, diagnose, type BrokerFacts, type DiagnosisInput, type Hop, type QueueFact, type Verdict } from '../../shared/diagnosis';
import { isWatchTapQueue, subscriptionQueueName } from '../../shared/rabbitmq-mqtt';
import type { LinkStatus, RpcOutcome } from '../../shared/rpc';
import type { RpcClient } from '../rpc/client';
import type { TraceStep, TraceStepDraft } from '../../shared/trace';
import { bindingRoutes } from '../broker/checks';
import { ManagementApi } from '../broker/management-api';
import { managementRequest } from '../broker/management-http';
import { amqpConnectOptions } from '../links/amqp-link';
import { tlsSocketOptions, type TlsFiles } from '../connection-details';
import { validateMqttUrl } from '../links/mqtt-link';
import { BridgeError, toErrorShape } from '../errors';
import { topicToRoutingKey, type TopicMapOptions } from '../../shared/topic-map';

export interface FactsOptions {
  managementUrl: string;
  /** for live consumer and ready counts (the management API's lag by its stats interval, ~5 s); without it, the API's counts */
  amqpUrl?: string;
  vhost?: string;
  /** the exchange the MQTT plugin publishes to */
  exchange: string;
  requestKey: string;
  /** our MQTT client id, to tell whether this broker ever saw the client */
  mqttClientId?: string;
  /** whether our MQTT link was up when asked: a client that is not connected is in no broker's list */
  mqttConnected?: boolean;
  /** the MQTT login ("user" or "vhost:user"), to check its permissions; undefined: the plugin's default user, not checked */
  mqttUsername?: string;
  /** for https:// and amqps://: the profile's CA, client certificate and key, and whether certificates are verified */
  tls?: TlsFiles;
  /** queues that are the asker's own (a watch tap): their bindings are not a server's */
  ignoreQueues?: readonly string[];
}

const permissionsSchema = z.object({ configure: z.string(), write: z.string(), read: z.string() });

/** RabbitMQ's permission regexes match unanchored; an empty one grants nothing. */
function grants(pattern: string, name: string): boolean {
  if (pattern === '') return false;
  try {
    return new RegExp(pattern).test(name);
  } catch {
    return true; // a pattern JavaScript cannot read proves nothing: do not accuse it
  }
}

/** The first permission the RPC needs that the MQTT user lacks: publishing to the exchange, subscribing through its own queue. */
async function accessProblemOf(options: FactsOptions, vhost: string): Promise<{ hop: Hop; message: string } | undefined> {
  if (options.mqttUsername === undefined) return undefined;
  const colon = options.mqttUsername.indexOf(':');
  const userVhost = colon > 0 ? options.mqttUsername.slice(0, colon) : vhost;
  const user = colon > 0 ? options.mqttUsername.slice(colon + 1) : options.mqttUsername;
  let raw: unknown;
  try {
    raw = await managementRequest(options.managementUrl, `/api/permissions/${encodeURIComponent(userVhost)}/${encodeURIComponent(user)}`, options.tls ? { tls: options.tls } : {});
  } catch (err) {
    if (err instanceof BridgeError && err.code === 'not-found') return { hop: 'mqtt-publish', message: `MQTT user "${user}" has no permissions at all in vhost "${userVhost}": grant them (rabbitmqctl set_permissions).` };
    return undefined;
  }
  const permissions = permissionsSchema.safeParse(raw);
  if (!permissions.success) return undefined;
  const { configure, write, read } = permissions.data;
  const exchange = options.exchange;
  const queue = subscriptionQueueName(options.mqttClientId ?? '<client id>', 1);
  const where = `in vhost "${userVhost}"`;
  if (!grants(read, exchange)) {
    return { hop: 'reply-queue', message: `MQTT user "${user}" may not read from ${exchange} ${where} (read permission "${read}"), so RabbitMQ refuses its reply subscription and closes the connection: let the read permission match ${exchange}.` };
  }
  if (!grants(configure, queue) || !grants(write, queue) || !grants(read, queue)) {
    return { hop: 'reply-queue', message: `MQTT user "${user}" may not declare, bind and read its subscription queue "${queue}" ${where} (configure "${configure}", write "${write}", read "${read}"), so its reply subscription is refused: let them match ^mqtt-subscription-.` };
  }
  if (!grants(write, exchange)) {
    return { hop: 'mqtt-publish', message: `MQTT user "${user}" may not write to ${exchange} ${where} (write permission "${write}"), so RabbitMQ refuses its request and closes the connection: let the write permission match ${exchange}.` };
  }
  return undefined;
}

interface LiveQueue {
  consumers: number;
  ready: number;
}

/**
 * What a passive queue.declare learnt of a queue: its counts; `missing` (404); `locked` (405 RESOURCE_LOCKED: it exists,
 * exclusive to another connection, as an MQTT client's subscription queues are since RabbitMQ 3.12); `unknown` otherwise.
 */
type QueueCheck = LiveQueue | 'missing' | 'locked' | 'unknown';

/** Passive queue.declare on a throwaway channel each (a missing or locked queue closes only its channel). */
async function checkQueues(amqpUrl: string, names: string[], tls: TlsFiles | undefined): Promise<Map<string, QueueCheck> | undefined> {
  const connection = await amqp.connect(amqpConnectOptions(amqpUrl, 0), { ...tlsSocketOptions(tls), timeout: 3000 }).catch(() => undefined);
  if (!connection) return undefined;
  connection.on('error', () => undefined);
  const found = new Map<string, QueueCheck>();
  try {
    for (const name of names) {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      try {
        const queue = await channel.checkQueue(name);
        found.set(name, { consumers: queue.consumerCount, ready: queue.messageCount });
        await channel.close().catch(() => undefined);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        found.set(name, code === 404 ? 'missing' : code === 405 ? 'locked' : 'unknown');
      }
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
  return found;
}

const reason = (err: unknown): string => toErrorShape(err).message;

/** Asks the broker, after the fact, where a request to `requestKey` would go and whether our MQTT client is there at all. */
export async function gatherBrokerFacts(options: FactsOptions): Promise<BrokerFacts> {
  const api = new ManagementApi(options.managementUrl, options.vhost ?? '/', undefined, options.tls);
  const facts: BrokerFacts = { exchange: options.exchange, requestQueues: [], closestKeys: [], elsewhere: [], unavailable: [] };
  const [exchangeType, bindings, exchanges, vhostBindings, queues, connections] = await Promise.all([
    api.exchangeType(options.exchange).catch((err: unknown) => void facts.unavailable.push(`the type of ${options.exchange}: ${reason(err)}`)),
    api.bindings(options.exchange).catch((err: unknown) => void facts.unavailable.push(`the bindings on ${options.exchange}: ${reason(err)}`)),
    api.exchanges().catch(() => undefined),
    api.vhostBindings().catch(() => undefined),
    api.queues().catch(() => undefined),
    options.mqttClientId !== undefined ? api.connections().catch(() => undefined) : Promise.resolve(undefined),
  ]);
  const accessProblem = await accessProblemOf(options, api.vhost);
  if (accessProblem) facts.accessProblem = accessProblem;

  const routes = (type: string | undefined, bindingKey: string): boolean => bindingRoutes(type ?? 'direct', bindingKey, options.requestKey);
  // A watcher's tap is bound for the key too, and consumed: no server's queue.
  const serverBindings = (bindings ?? []).filter(
    (binding) => binding.destinationType === 'queue' && binding.mqttClientId === undefined && !isWatchTapQueue(binding.destination) && !options.ignoreQueues?.includes(binding.destination),
  );
  const bound = [...new Set(serverBindings.filter((binding) => routes(exchangeType ?? undefined, binding.bindingKey)).map((binding) => binding.destination))];
  facts.closestKeys = closestKeys(
    options.requestKey,
    serverBindings.map((binding) => binding.bindingKey).filter((key) => key !== options.requestKey),
  );

  // Evidence of a wrong mqtt.exchange is a server queue bound for this very key elsewhere: not the default exchange (it binds
  // every queue by name), not the firehose's exchange, not a catch-all "#" (a logger catches everything and serves nothing).
  const typeOf = new Map((exchanges ?? []).map((exchange) => [exchange.name, exchange.type]));
  for (const binding of vhostBindings ?? []) {
    if (binding.exchange === options.exchange || binding.exchange === 'amq.rabbitmq.trace') continue;
    if (binding.destinationType !== 'queue' || binding.mqttClientId !== undefined || isWatchTapQueue(binding.destination) || binding.bindingKey === '#') continue;
    if (routes(typeOf.get(binding.exchange), binding.bindingKey)) facts.elsewhere.push({ exchange: binding.exchange, queue: binding.destination });
  }

  const subscriptionQueues = options.mqttClientId !== undefined ? [subscriptionQueueName(options.mqttClientId, 1), subscriptionQueueName(options.mqttClientId, 0)] : [];
  const live = options.amqpUrl ? await checkQueues(options.amqpUrl, [...bound, ...subscriptionQueues], options.tls) : undefined;
  if (options.amqpUrl && !live) facts.unavailable.push('live queue counts over AMQP (could not connect); the management API counts are up to ~5 s old');
  const listed = new Map((queues ?? []).map((queue) => [queue.name, queue]));
  for (const name of bound) {
    const checked = live?.get(name);
    const now = typeof checked === 'object' ? checked : undefined;
    const stats = listed.get(name);
    // AMQP says it does not exist (404): the listed binding was stale (a queue deleted since), so it is not bound.
    if (checked === 'missing') continue;
    // Neither AMQP nor the management API gave its counts: unknown, not 0 consumers (a wrong "no consumer").
    if (!now && !stats) {
      facts.unavailable.push(`the consumers of queue "${name}": ${queues ? 'the management API does not list it' : 'the management API did not list the queues'}${live ? '' : ', and AMQP could not be asked'}`);
      continue;
    }
    const fact: QueueFact = now
      ? { name, consumers: now.consumers, ready: now.ready, live: true }
      : { name, consumers: stats?.consumers ?? 0, ready: stats?.messagesReady ?? 0, live: false };
    if (stats) fact.unacked = stats.messagesUnacked;
    facts.requestQueues.push(fact);
  }

  if (options.mqttClientId !== undefined && options.mqttConnected === false) {
    facts.mqttClientId = options.mqttClientId;
    facts.unavailable.push('whether this broker knows our MQTT client (our MQTT link was down when asked)');
  } else if (options.mqttClientId !== undefined) {
    facts.mqttClientId = options.mqttClientId;
    const inConnections = connections?.some((connection) => connection.mqttClientId === options.mqttClientId);
    // A subscription queue that exists proves the client is here, even one exclusive to its connection (405, 3.12+);
    // only every queue answered missing (404) counts against.
    const checks = subscriptionQueues.map((name) => live?.get(name));
    const hasQueue = !live ? undefined : checks.some((check) => check !== 'missing' && check !== 'unknown') ? true : checks.every((check) => check === 'missing') ? false : undefined;
    // Either is proof it is here; both must be asked and negative to say it is not.
    if (inConnections === true || hasQueue === true) facts.clientSeen = true;
    else if (inConnections === false && hasQueue === false) facts.clientSeen = false;
    else facts.unavailable.push('whether this broker knows our MQTT client');
  }
  return facts;
}

export interface RpcDiagnosisOptions {
  rpcId: string;
  steps: ReadonlyArray<TraceStep | TraceStepDraft>;
  firehose: boolean;
  requestTopic: string;
  replyTopic?: string;
  timeoutMs?: number;
  topicMap?: TopicMapOptions;
  outcome?: RpcOutcome;
  /** what the call threw */
  error?: unknown;
  lateReply?: { topic: string; at: number };
  linkLost?: { at: number; reason: string };
  /** where to ask after a failure; without it, the verdict rests on the steps alone */
  broker?: Omit<FactsOptions, 'requestKey'>;
  /** how long asking the broker may take in all (default 6 s): a hung broker must not hold the verdict */
  askTimeoutMs?: number;
  /** where the user reads the verdict: 'app' names its panels in the remedies (DiagnosisInput.remedies) */
  remedies?: 'app' | 'cli';
}

/** Where to ask the broker why a call of `client` failed: its management API, AMQP (live counts) and the MQTT login to check. */
export function diagnosisBroker(
  where: { managementUrl: string; amqpUrl?: string; vhost: string; exchange: string; mqttUrl: string },
  client: Pick<RpcClient, 'clientId' | 'link'>,
  tls?: TlsFiles,
): NonNullable<RpcDiagnosisOptions['broker']> {
  let mqttUsername: string | undefined;
  try {
    mqttUsername = validateMqttUrl(where.mqttUrl).username;
  } catch {
    mqttUsername = undefined; // an MQTT URL that cannot be read has no login to check
  }
  return {
    managementUrl: where.managementUrl,
    vhost: where.vhost,
    exchange: where.exchange,
    mqttClientId: client.clientId,
    mqttConnected: client.link.connected,
    ...(mqttUsername !== undefined ? { mqttUsername } : {}),
    ...(where.amqpUrl !== undefined ? { amqpUrl: where.amqpUrl } : {}),
    ...(tls ? { tls } : {}),
  };
}

/** The verdict on one RPC: on a failure the broker is asked first (never throws: what cannot be asked is listed as evidence). */
export async function diagnoseRpc(options: RpcDiagnosisOptions): Promise<Verdict> {
  const requestKey = topicToRoutingKey(options.requestTopic, options.topicMap);
  const composed = options.steps.find((step) => step.kind === 'composed');
  const replyTopic = options.outcome?.replyTopic ?? options.replyTopic ?? (composed?.kind === 'composed' ? composed.detail.replyTopic : undefined);
  const input: DiagnosisInput = {
    rpcId: options.rpcId,
    steps: options.steps,
    firehose: options.firehose,
    request: { topic: options.requestTopic, routingKey: requestKey },
    ...(replyTopic !== undefined ? { reply: { topic: replyTopic, routingKey: topicToRoutingKey(replyTopic, options.topicMap) } } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.lateReply ? { lateReply: options.lateReply } : {}),
    ...(options.linkLost ? { linkLost: options.linkLost } : {}),
    ...(options.remedies ? { remedies: options.remedies } : {}),
  };
  if (options.outcome) {
    const { replyTopic: asked, arrivedOn, topicMismatch, durationMs, error, worker } = options.outcome;
    input.outcome = { replyTopic: asked, arrivedOn, topicMismatch, durationMs, ...(error ? { error } : {}), ...(worker !== undefined ? { worker } : {}) };
    return diagnose(input);
  }
  if (options.error !== undefined) input.failure = toErrorShape(options.error);
  // Connection-level failures are decided by the error alone; asking the broker would only add a wait.
  const askBroker = options.broker && !['auth', 'unreachable', 'bad-input', 'too-large', 'cancelled'].includes(input.failure?.code ?? '');
  if (askBroker && options.broker) {
    const askTimeoutMs = options.askTimeoutMs ?? 6000;
    let timer: NodeJS.Timeout | undefined;
    const tooLong = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BridgeError('timeout', `the broker did not answer within ${askTimeoutMs} ms`)), askTimeoutMs);
    });
    const asked = gatherBrokerFacts({ ...options.broker, requestKey });
    asked.catch(() => undefined); // a late failure after the deadline is moot
    input.facts = await Promise.race([asked, tooLong]).finally(() => clearTimeout(timer)).catch((err: unknown) => ({
      exchange: options.broker?.exchange ?? '',
      requestQueues: [],
      closestKeys: [],
      elsewhere: [],
      unavailable: [`the broker's facts: ${reason(err)}`],
    }));
    return diagnoseWithFacts(input, input.facts);
  }
  return diagnose(input);
}

/**
 * Facts missing any of these decide nothing: without the bindings nothing reads as bound; without the exchange's type a
 * topic pattern would be matched as a direct key; without a bound queue's counts it would read as having no consumer.
 */
const QUEUE_COUNTS = 'the consumers of';
const UNDECIDING = ['the bindings on', 'the type of', "the broker's facts", QUEUE_COUNTS];

/**
 * The verdict from the broker's facts, when they can decide one. Facts without the exchange's bindings, its type or a
 * bound queue's counts (the management API not reached, refused, too slow) decide nothing: they are left out rather than read as "nothing is bound", and
 * what could not be asked is said in the evidence. `watch` and a call's diagnosis both go through here.
 */
export function diagnoseWithFacts(input: DiagnosisInput, facts: BrokerFacts | undefined): Verdict {
  if (facts === undefined) {
    delete input.facts;
    return diagnose(input);
  }
  const blocking = facts.unavailable.filter((line) => UNDECIDING.some((prefix) => line.startsWith(prefix)));
  // Counts missing for some bound queue still leave a decision where the known facts make one: a known queue with no
  // consumer, or a broker that never saw the client.
  const countsOnly = blocking.every((line) => line.startsWith(QUEUE_COUNTS));
  const decidedAnyway = countsOnly && (facts.clientSeen === false || facts.requestQueues.some((queue) => queue.consumers === 0));
  if (blocking.length > 0 && !decidedAnyway) {
    delete input.facts;
    input.factsIncomplete = blocking;
    const verdict = diagnose(input);
    verdict.evidence.push(...facts.unavailable.map((line) => `not asked: ${line}`));
    return verdict;
  }
  input.facts = facts;
  return diagnose(input);
}

/** What a client saw while a call was in flight that its error does not say: the first link loss, a reply that came late. */
export class CallWitness {
  linkLost: { at: number; reason: string } | undefined;
  lateReply: { topic: string; at: number } | undefined;
  private readonly detach: () => void;

  constructor(client: RpcClient, rpcId: () => string | undefined) {
    const onStatus = (status: LinkStatus): void => {
      if (this.linkLost === undefined && (status.state === 'reconnecting' || status.state === 'failed')) {
        this.linkLost = { at: Date.now(), reason: status.state === 'failed' ? status.message : status.lastError };
      }
    };
    const onStray = (stray: { topic: string; id?: string }): void => {
      if (stray.id !== undefined && stray.id === rpcId()) this.lateReply ??= { topic: stray.topic, at: Date.now() };
    };
    client.link.on('status', onStatus);
    client.on('stray', onStray);
    this.detach = () => {
      client.link.off('status', onStatus);
      client.off('stray', onStray);
    };
  }

  stop(): void {
    this.detach();
  }
}
