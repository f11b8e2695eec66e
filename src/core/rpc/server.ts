/** The embedded RPC server: N competing workers on the shared queue, replying through the MQTT exchange. */
import { EventEmitter, once } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import { defaultEnvelopeFields, type EnvelopeFields, type LinkStatus } from '../../shared/rpc';
import type { TraceStepDetails, TraceStepDraft } from '../../shared/trace';
import { BridgeError } from '../errors';
import { AMQPLIB_NACKED, AmqpLink, RABBITMQ_TOO_LARGE } from '../links/amqp-link';
import type { TlsFiles } from '../connection-details';
import type { TopicMapOptions } from '../../shared/topic-map';
import { correlationLost, encodeReply, parseRequest, type RpcRequest } from './envelope';
import { describeThrown, MAX_TIMER_MS, thrownCode, type HandlerContext, type RpcHandler } from './handlers';
import { BoundedMap } from '../bounded-map';
import { amqpMessage } from '../trace/message-view';
import { DELIVERY_ID_PREFIX } from '../trace/raw-requests';
import type { ServerTracing } from '../otel/server-spans';
import { DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_HANDLER_TIMEOUT_MS, DEFAULT_MQTT_EXCHANGE, DEFAULT_REQUEST_QUEUE } from '../../shared/defaults';

/** How often, and from which delay (doubled each time), a worker whose channel the broker closed is reopened. */
const REOPEN_ATTEMPTS = 5;
const REOPEN_FIRST_DELAY_MS = 100;

/** RabbitMQ 3.10's default max_message_size (128 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 134_217_728;

/** Refuses a queue name the broker would not take as given: empty (the broker would invent an `amq.gen-*` one), reserved or too long. */
export function validateQueueName(queue: string): void {
  if (queue === '') {
    throw new BridgeError('bad-input', 'The queue name is empty: give the name of the shared request queue (devices publish to it as their topic).');
  }
  if (Buffer.byteLength(queue) > 255) {
    throw new BridgeError('bad-input', `The queue name is ${Buffer.byteLength(queue)} bytes; AMQP allows at most 255.`);
  }
  if (queue.startsWith('amq.')) {
    throw new BridgeError('bad-input', `The queue name "${queue}" starts with "amq.", which the broker reserves for itself.`);
  }
}

export type QueueType = 'classic' | 'quorum';

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

/** Something a user should hear about: a request that could not be answered, or a reply the broker dropped. */
export interface ServerProblem {
  kind:
    | 'rejected'
    | 'unroutable'
    | 'reply-failed'
    | 'reply-too-large'
    | 'consumer-cancelled'
    | 'channel-reopened'
    | 'worker-lost'
    | 'handler-timeout'
    | 'late-handler'
    | 'correlation-lost'
    | 'event-loop-blocked'
    | 'internal';
  worker: string;
  rpcId: string;
  message: string;
}

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

/** One request a handler is working on. */
interface Running {
  rpcId: string;
  worker: string;
  abandoned: boolean;
  /**
   * the handler's signal: aborted at its timeout or when the server stops. Made only when the handler reads it (most
   * handlers never do, and one per request is measurable); `aborted` remembers an abort that came before.
   */
  controller?: AbortController;
  aborted: boolean;
}

/** Aborts a request's signal, or makes sure it is born aborted if the handler reads it later. */
function abortRunning(entry: Running): void {
  entry.aborted = true;
  entry.controller?.abort();
}

function signalOf(entry: Running): AbortSignal {
  if (!entry.controller) {
    entry.controller = new AbortController();
    if (entry.aborted) entry.controller.abort();
  }
  return entry.controller.signal;
}

type HandlerSettled = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

function failedWith(thrown: unknown): HandlerSettled {
  return { ok: false, error: { code: thrownCode(thrown), message: describeThrown(thrown) } };
}

interface RpcServerEvents {
  step: [TraceStepDraft];
  status: [LinkStatus];
  problem: [ServerProblem];
}

interface Worker {
  name: string;
  channel: ConfirmChannel;
  consumerTag: string;
  returned: Map<string, string>;
  /** why the broker closed this channel, when it did */
  closeReason?: string;
  /** the channel's next 'drain', shared by every reply waiting for it */
  drained?: Promise<void>;
  /** set once a failed reply took the blame for closeReason (when it does not name a size) */
  blamed?: boolean;
  /** deliveries not yet acked or rejected, by delivery tag in arrival order */
  unacked: Map<number, Delivery>;
  flushScheduled: boolean;
}

/** A delivery being handled: `ready` once its reply is confirmed (its ack may go), `settled` once acked or rejected. */
interface Delivery {
  message: ConsumeMessage;
  ready: boolean;
  settled: boolean;
}

/** A reply that could not be published, remembered so its redelivery is answered with an error instead of running the handler again. */
interface FailedReply {
  reason: string;
  code: 'reply-failed' | 'reply-too-large';
  /** error replies already tried for it: a second failure rejects the request so it cannot loop */
  attempts: number;
}

export class RpcServer extends EventEmitter<RpcServerEvents> {
  readonly exchange: string;
  readonly queue: string;
  private readonly link: AmqpLink;
  private workers: Worker[] = [];
  private draining = false;
  /** set once the drain is over: nothing is published or acked any more, the broker requeues what is left */
  private closing = false;
  private stopping: Promise<StopReport> | undefined;
  private model: ChannelModel | undefined;
  /** requests whose reply could not be published: a redelivery of one is answered with an error, not handled again */
  private readonly failedReplies = new BoundedMap<string, FailedReply>(10_000);
  private replySeq = 0;
  private deliverySeq = 0;
  private readonly running = new Map<number, Running>();
  private readonly handlerTimeoutMs: number;
  private readonly maxAbandonedHandlers: number;
  private abandonedForgotten = 0;
  /** lowered when the broker refuses a reply as too large and names its real limit */
  private maxMessageBytes: number;
  /** the replies' delivery_mode: 2 (persistent) unless the options say transient */
  private readonly replyDeliveryMode: 1 | 2;
  private idle: (() => void) | undefined;
  readonly stats: RpcServerStats = { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} };

  constructor(private readonly options: RpcServerOptions) {
    super();
    this.exchange = options.exchange ?? DEFAULT_MQTT_EXCHANGE;
    this.queue = options.queue ?? DEFAULT_REQUEST_QUEUE;
    const workerCount = options.workers ?? 1;
    const prefetch = options.prefetch ?? 1;
    if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 64) {
      throw new BridgeError('bad-input', 'The number of workers must be a whole number from 1 to 64.');
    }
    if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65_535) {
      throw new BridgeError('bad-input', 'The prefetch must be a whole number from 1 to 65535.');
    }
    validateQueueName(this.queue);
    this.handlerTimeoutMs = options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS;
    if (!Number.isInteger(this.handlerTimeoutMs) || this.handlerTimeoutMs < 1 || this.handlerTimeoutMs > MAX_TIMER_MS) {
      throw new BridgeError('bad-input', `The handler timeout must be a whole number of ms from 1 to ${MAX_TIMER_MS}.`);
    }
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.maxAbandonedHandlers = options.maxAbandonedHandlers ?? 1000;
    this.replyDeliveryMode = options.persistentReplies === false ? 1 : 2;
    this.link = new AmqpLink({
      url: options.amqpUrl,
      ...(options.fallbackAmqpUrls?.length ? { fallbackUrls: options.fallbackAmqpUrls } : {}),
      ...(options.tls ? { tls: options.tls } : {}),
      connectionName: options.name ?? `bridgescope-server ${this.queue}`,
      heartbeatSeconds: options.heartbeatSeconds,
      onConnected: (model) => this.setUp(model, workerCount, prefetch),
    });
    this.link.on('status', (status) => this.emitSafely('status', status));
    // A synchronous handler that blocks the event loop looks like a silent broker to the heartbeat watchdog: say whose it is.
    this.link.on('warning', (message) => this.problem({ kind: 'event-loop-blocked', worker: '', rpcId: '', message }));
  }

  /** The AMQP URL of the node the server is connected to (another than `amqpUrl` after a failover). */
  get connectedUrl(): string {
    return this.link.currentUrl;
  }

  get status(): LinkStatus {
    return this.link.status;
  }

  async start(): Promise<void> {
    await this.link.open();
    // Stopped while connecting: the connection that just opened must not outlive the stop.
    if (this.draining) await this.link.close();
  }

  /** Ids of the requests being handled now (abandoned handlers included). */
  get runningIds(): string[] {
    return [...this.running.values()].map((entry) => entry.rpcId);
  }

  /**
   * Stops taking requests, lets the in-flight ones finish (up to `drainTimeoutMs`), makes sure every ack reached the
   * broker, then closes. A handler still running after that is harmless: its reply is dropped and the broker puts its
   * request back on the queue. Calling it again returns the same stop.
   */
  async stop(drainTimeoutMs = DEFAULT_DRAIN_TIMEOUT_MS): Promise<void> {
    await this.stopWithReport(drainTimeoutMs);
  }

  /** `stop`, telling which requests it left: unfinished (back on the queue) and abandoned handlers. */
  stopWithReport(drainTimeoutMs = DEFAULT_DRAIN_TIMEOUT_MS): Promise<StopReport> {
    this.stopping ??= this.drainAndClose(drainTimeoutMs);
    return this.stopping;
  }

  private async drainAndClose(drainTimeoutMs: number): Promise<StopReport> {
    this.draining = true;
    await Promise.all(this.workers.map((worker) => worker.channel.cancel(worker.consumerTag).catch(() => undefined)));
    let drained = true;
    if (this.stats.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      const finished = new Promise<boolean>((resolve) => (this.idle = () => resolve(true)));
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), drainTimeoutMs)));
      drained = await Promise.race([finished, timedOut]);
      clearTimeout(timer);
    }
    const entries = [...this.running.values()];
    const report: StopReport = {
      drained,
      unfinished: entries.filter((entry) => !entry.abandoned).map((entry) => entry.rpcId),
      abandoned: entries.filter((entry) => entry.abandoned).map((entry) => entry.rpcId),
      abandonedForgotten: this.abandonedForgotten,
    };
    // Acks still waiting for the end of the turn go out now, before the channels close behind them.
    for (const worker of this.workers) this.flushAcks(worker);
    this.closing = true;
    // Acks go out on each channel's own buffer and a connection.close can overtake them: a channel.close, queued behind
    // them and answered by the broker, proves they were processed. Unacked requests go back to the queue.
    await Promise.all(this.workers.map((worker) => worker.channel.close().catch(() => undefined)));
    for (const entry of this.running.values()) abortRunning(entry);
    await this.link.close();
    return report;
  }

  /** Declares the durable shared queue, binds it with key = its name, and starts one consumer per worker. */
  /**
   * Declares the shared queue (durable, of the asked type) and binds it with key = its name. Without a type, an existing
   * queue is taken as it is (a classic declaration of a quorum queue would be refused as inequivalent).
   */
  private async declareQueue(model: ChannelModel): Promise<void> {
    const queueType = this.options.queueType;
    if (queueType === undefined) {
      const probe = await model.createChannel();
      probe.on('error', () => undefined);
      const exists = await probe.checkQueue(this.queue).then(
        () => true,
        () => false,
      );
      await probe.close().catch(() => undefined);
      if (exists) {
        await this.withChannel(model, (channel) => channel.bindQueue(this.queue, this.exchange, this.queue));
        return;
      }
    }
    await this.withChannel(model, async (channel) => {
      // The type is always said: a vhost whose default queue type is quorum (4.x) would otherwise make it a quorum queue.
      await channel.assertQueue(this.queue, { durable: true, arguments: { 'x-queue-type': queueType ?? 'classic' } });
      await channel.bindQueue(this.queue, this.exchange, this.queue);
    });
  }

  private async withChannel(model: ChannelModel, work: (channel: Channel) => Promise<unknown>): Promise<void> {
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    try {
      await work(channel);
    } catch (err) {
      const text = describeThrown(err);
      const asked = this.options.queueType ?? 'classic';
      const hint = /x-queue-type/.test(text)
        ? ` It already exists with another type than ${asked}: delete it (its messages go with it) or use another --queue to get a ${asked} queue.`
        : '';
      throw new BridgeError('broker-failed', `Cannot declare the queue "${this.queue}": ${text}${hint}`);
    }
    await channel.close().catch(() => undefined);
  }

  private async setUp(model: ChannelModel, workerCount: number, prefetch: number): Promise<void> {
    // A reconnection while stopping must not start consuming again: checked before and after every await.
    if (this.draining) return;
    const setupChannel = await model.createChannel();
    setupChannel.on('error', () => undefined);
    try {
      await setupChannel.checkExchange(this.exchange);
    } catch {
      throw new BridgeError('not-found', `The exchange "${this.exchange}" does not exist on the broker; the MQTT plugin publishes to mqtt.exchange (amq.topic unless configured).`);
    }
    await this.declareQueue(model);
    await setupChannel.close().catch(() => undefined);
    if (this.draining) return;

    this.model = model;
    const workers: Worker[] = [];
    for (let index = 0; index < workerCount; index += 1) {
      const worker = await this.openWorker(model, `worker-${index + 1}`, prefetch);
      // Stopped meanwhile: openWorker closed the new channel itself; the ones already opened are closed here.
      if (worker === undefined) {
        await Promise.all(workers.map((opened) => opened.channel.close().catch(() => undefined)));
        return;
      }
      workers.push(worker);
    }
    this.workers = workers;
  }

  /**
   * One competing consumer on its own confirm channel; a channel the broker closes is reopened, the connection kept.
   * Resolves with undefined (its channel closed) when a stop began meanwhile: the drain would never cancel it.
   */
  private async openWorker(model: ChannelModel, name: string, prefetch: number): Promise<Worker | undefined> {
    const channel = await model.createConfirmChannel();
    const abandonIfStopping = async (): Promise<boolean> => {
      if (!this.draining) return false;
      await channel.close().catch(() => undefined);
      return true;
    };
    if (await abandonIfStopping()) return undefined;
    const returned = new Map<string, string>();
    const worker: Worker = { name, channel, consumerTag: '', returned, unacked: new Map(), flushScheduled: false };
    channel.on('error', (err: Error) => {
      worker.closeReason = err.message;
      this.learnMaxMessageSize(err.message);
    });
    await channel.prefetch(prefetch);
    if (await abandonIfStopping()) return undefined;
    channel.on('return', (message: Message) => {
      // amqplib's types omit the basic.return fields that are there at run time.
      const fields = message.fields as Message['fields'] & { replyCode?: number; replyText?: string };
      const id = message.properties.messageId as string | undefined;
      if (id) returned.set(id, `${fields.replyCode ?? ''} ${fields.replyText ?? 'returned'}`.trim());
    });
    channel.on('close', () => {
      // A whole-connection loss is the link's to recover (setUp runs again): wait a moment to tell the two apart.
      setTimeout(() => {
        if (this.draining || this.model !== model || this.link.status.state !== 'connected') return;
        this.problem({ kind: 'channel-reopened', worker: name, rpcId: '', message: `The broker closed ${name}'s channel; reopening it on the same connection.` });
        void this.reopenWorker(model, worker, prefetch);
      }, 100).unref();
    });
    const { consumerTag } = await channel.consume(this.queue, (message) => void this.onMessage(worker, message), { noAck: false });
    worker.consumerTag = consumerTag;
    // A request it took before this close goes back to the queue, unanswered and unhandled.
    if (await abandonIfStopping()) return undefined;
    this.stats.perWorker[name] ??= 0;
    return worker;
  }

  /** Replaces a worker whose channel the broker closed, retrying with backoff; says so when it gives up. */
  private async reopenWorker(model: ChannelModel, worker: Worker, prefetch: number): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      // The connection went meanwhile (setUp opens every worker again) or the server is stopping.
      if (this.draining || this.model !== model) return;
      try {
        const replacement = await this.openWorker(model, worker.name, prefetch);
        if (replacement) this.workers = this.workers.map((existing) => (existing === worker ? replacement : existing));
        return;
      } catch (err) {
        if (this.draining || this.model !== model) return;
        if (attempt >= REOPEN_ATTEMPTS) {
          this.problem({
            kind: 'worker-lost',
            worker: worker.name,
            rpcId: '',
            message: `${worker.name} is gone: its channel could not be reopened after ${attempt} attempts (${describeThrown(err)}); the other workers keep serving.`,
          });
          return;
        }
        const delayMs = REOPEN_FIRST_DELAY_MS * 2 ** (attempt - 1);
        this.problem({
          kind: 'channel-reopened',
          worker: worker.name,
          rpcId: '',
          message: `${worker.name}'s channel could not be reopened (${describeThrown(err)}); retrying in ${delayMs} ms.`,
        });
        await new Promise<void>((resolve) => setTimeout(resolve, delayMs).unref());
      }
    }
  }

  /** Whether anyone listens to steps: when nobody does, no step object is built at all. */
  private get traced(): boolean {
    return this.listenerCount('step') > 0;
  }

  /** emitSafely for the hot path: several steps per request, without the rest-arguments array. */
  private step(draft: TraceStepDraft): void {
    try {
      this.emit('step', draft);
    } catch (err) {
      this.listenerThrew('step', err);
    }
  }

  private problem(problem: ServerProblem): void {
    this.emitSafely('problem', problem);
  }

  /** A listener that throws must not cut a request short (its delivery would stay unacked and jam the worker): report it instead. */
  private emitSafely<K extends keyof RpcServerEvents>(event: K, ...args: RpcServerEvents[K]): void {
    try {
      (this.emit as (name: K, ...rest: RpcServerEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.listenerThrew(event, err);
    }
  }

  private listenerThrew(event: keyof RpcServerEvents, err: unknown): void {
    if (event === 'problem') return;
    this.emitSafely('problem', { kind: 'internal', worker: '', rpcId: '', message: `A listener of the server's ${event} events threw: ${describeThrown(err)}` });
  }

  /**
   * Acks or rejects a delivery once, remembering it so the last resort in onMessage knows it is settled. A reject goes out
   * at once; an ack waits for the end of this turn of the event loop (see flushAcks), unless the server is stopping.
   */
  private settle(worker: Worker, message: ConsumeMessage, outcome: 'ack' | 'reject'): void {
    const tag = message.fields.deliveryTag;
    const entry = worker.unacked.get(tag);
    // Read by onMessage's last resort (a flag on the delivery, not a WeakSet entry per request for the GC to sweep).
    if (entry) entry.settled = true;
    if (outcome === 'reject') {
      worker.unacked.delete(tag);
      safely(() => worker.channel.nack(message, false, false));
      // Its slot at the head of the line may have held back acks ready behind it.
      if (worker.unacked.size > 0) this.scheduleAckFlush(worker);
      return;
    }
    if (entry) entry.ready = true;
    else safely(() => worker.channel.ack(message));
    if (this.draining) this.flushAcks(worker);
    else this.scheduleAckFlush(worker);
  }

  /**
   * Every ack that became ready in this turn (a batch of confirms arrives in one socket read) goes out once the turn's
   * promise continuations have run: one `basic.ack multiple` for the run of ready deliveries at the head of the channel's
   * line, written with the replies published meanwhile. Never before the reply's own confirm.
   */
  private scheduleAckFlush(worker: Worker): void {
    if (worker.flushScheduled) return;
    worker.flushScheduled = true;
    process.nextTick(() => this.flushAcks(worker));
  }

  private flushAcks(worker: Worker): void {
    worker.flushScheduled = false;
    let last: ConsumeMessage | undefined;
    let count = 0;
    // Delivery tags grow on a channel and the map keeps their order: `multiple` acks exactly the ready prefix.
    for (const [tag, entry] of worker.unacked) {
      if (!entry.ready) break;
      worker.unacked.delete(tag);
      last = entry.message;
      count += 1;
    }
    if (last) {
      const upTo = last;
      safely(() => worker.channel.ack(upTo, count > 1));
    }
    // Ready ones behind a request still being handled are acked alone: a slow handler must not hold their prefetch slots.
    for (const [tag, entry] of worker.unacked) {
      if (!entry.ready) continue;
      worker.unacked.delete(tag);
      safely(() => worker.channel.ack(entry.message));
    }
  }

  private async onMessage(worker: Worker, message: ConsumeMessage | null): Promise<void> {
    if (message === null) {
      this.problem({
        kind: 'consumer-cancelled',
        worker: worker.name,
        rpcId: '',
        message: `The broker cancelled ${worker.name}'s consumer: was the queue "${this.queue}" deleted?`,
      });
      return;
    }
    this.stats.received += 1;
    this.stats.inFlight += 1;
    const delivery: Delivery = { message, ready: false, settled: false };
    worker.unacked.set(message.fields.deliveryTag, delivery);
    this.deliverySeq += 1;
    const ticket = this.deliverySeq;
    try {
      await this.handle(worker, message, ticket);
    } catch (err) {
      // Never expected (handlers' throws are answered in handle). An unsettled delivery would hold a prefetch slot for
      // good, so it is rejected without requeue (requeued, the same bug could loop on it).
      if (!this.closing) {
        const settledBefore = delivery.settled;
        if (!settledBefore) this.settle(worker, message, 'reject');
        const fate = settledBefore ? '' : '; the request was rejected without requeue';
        this.problem({ kind: 'internal', worker: worker.name, rpcId: '', message: `Could not finish a request on ${worker.name}: ${describeThrown(err)}${fate}.` });
      }
    } finally {
      this.stats.inFlight -= 1;
      const entry = this.running.get(ticket);
      if (entry && !entry.abandoned) this.running.delete(ticket);
      if (this.draining && this.stats.inFlight === 0) this.idle?.();
    }
  }

  private async handle(worker: Worker, message: ConsumeMessage, ticket: number): Promise<void> {
    const fields = this.options.fields ?? defaultEnvelopeFields;
    const parsed = parseRequest(message.content, {
      fields,
      headers: message.properties.headers as Record<string, unknown> | undefined,
      correlationId: message.properties.correlationId as string | undefined,
      topicMap: this.options.topicMap,
    });
    const rpcId = (parsed.ok ? parsed.request.id : parsed.id) ?? `${DELIVERY_ID_PREFIX}${message.fields.deliveryTag}-${randomUUID().slice(0, 8)}`;
    this.options.tracing?.received(rpcId, worker.name, this.queue, message, parsed.ok ? parsed.request.body : undefined);
    if (this.traced) this.step({
      rpcId,
      at: Date.now(),
      source: 'server',
      kind: 'worker.received',
      detail: {
        worker: worker.name,
        consumerTag: message.fields.consumerTag,
        queue: this.queue,
        routingKey: message.fields.routingKey,
        redelivered: message.fields.redelivered,
        wire: amqpMessage(message.properties as unknown as Record<string, unknown>, message.content),
      },
    });
    if (!parsed.ok) {
      this.stats.rejected += 1;
      this.settle(worker, message, 'reject');
      if (this.traced) this.step({
        rpcId,
        at: Date.now(),
        source: 'server',
        kind: 'request.rejected',
        detail: { worker: worker.name, reason: parsed.reason, bytes: message.content.byteLength },
      });
      this.problem({ kind: 'rejected', worker: worker.name, rpcId, message: `Rejected a request without requeue: ${parsed.reason}` });
      return;
    }
    const request = parsed.request;
    if (correlationLost(request.correlationHeader)) {
      this.problem({
        kind: 'correlation-lost',
        worker: worker.name,
        rpcId,
        message: `The request's MQTT 5 Correlation Data is not UTF-8: RabbitMQ passes such bytes as the AMQP header x-correlation-id, which amqplib reads as UTF-8 text, so the bytes are lost and the reply carries them altered (the device cannot match it). Send UTF-8 Correlation Data: it then travels as correlation_id, unchanged.`,
      });
    }
    // Keyed by id and reply key: ids are chosen by clients, and two devices may well both send id 1.
    const earlier = message.fields.redelivered ? this.failedReplies.get(failedReplyKey(rpcId, request.replyRoutingKey)) : undefined;
    if (earlier !== undefined && earlier.attempts < 1) {
      // Its reply failed before (the channel died with it): answer with that error rather than run the handler twice.
      earlier.attempts += 1;
      const reason = `${earlier.reason}; the handler was not run again.`;
      if (this.traced) this.step({ rpcId, at: Date.now(), source: 'server', kind: 'handler.finished', detail: { worker: worker.name, durationMs: 0, outcome: 'error', errorCode: earlier.code } });
      const body = encodeReply({ id: request.id, error: { code: earlier.code, message: reason }, worker: worker.name }, fields);
      this.stats.failed += 1;
      await this.reply(worker, message, request, rpcId, body);
      return;
    }
    if (earlier !== undefined) {
      this.stats.rejected += 1;
      this.settle(worker, message, 'reject');
      const reason = `Its reply could not be published before (${earlier.reason}); rejected without requeue so it does not loop.`;
      if (this.traced) this.step({ rpcId, at: Date.now(), source: 'server', kind: 'request.rejected', detail: { worker: worker.name, reason, bytes: message.content.byteLength } });
      this.problem({ kind: 'rejected', worker: worker.name, rpcId, message: `Rejected ${rpcId}: ${reason}` });
      return;
    }
    const started = performance.now();
    const entry: Running = { rpcId, worker: worker.name, abandoned: false, aborted: false };
    this.running.set(ticket, entry);
    const running = this.runHandler(request, worker, ticket, entry);
    const settled = running instanceof Promise ? await running : running;
    let reply: Buffer | undefined;
    let error: { code: string; message: string } | undefined;
    if (settled.ok) {
      try {
        reply = encodeReply({ id: request.id, result: settled.result, worker: worker.name }, fields);
      } catch (err) {
        error = { code: 'unserializable-result', message: `The handler's result cannot be sent as JSON: ${describeThrown(err)}` };
      }
      if (reply && reply.byteLength > this.maxMessageBytes) {
        error = {
          code: 'reply-too-large',
          message: `The reply is ${reply.byteLength} bytes; the broker accepts at most ${this.maxMessageBytes} (max_message_size).`,
        };
        this.problem({
          kind: 'reply-too-large',
          worker: worker.name,
          rpcId,
          message: `The reply to ${rpcId} is ${reply.byteLength} bytes, over the broker's max_message_size (${this.maxMessageBytes}); answered with a reply-too-large error instead.`,
        });
      }
    } else {
      error = settled.error;
    }
    if (error) {
      // A handler cancelled by the stop is not a failure: its request goes back to the queue unanswered.
      if (!this.closing) this.stats.failed += 1;
      reply = encodeReply({ id: request.id, error, worker: worker.name }, fields);
    }
    if (this.traced) {
      // Per request: a literal and a conditional field (a spread of a conditional object costs more than the step).
      const detail: TraceStepDetails['handler.finished'] = { worker: worker.name, durationMs: performance.now() - started, outcome: error ? 'error' : 'result' };
      if (error) detail.errorCode = error.code;
      this.step({ rpcId, at: Date.now(), source: 'server', kind: 'handler.finished', detail });
    }
    await this.reply(worker, message, request, rpcId, reply as Buffer);
  }

  /**
   * Runs the handler under the handler timeout. Whatever it throws (even `undefined`) becomes an error; one that does
   * not settle in time is abandoned (its signal aborted) and stays listed until it returns.
   */
  private runHandler(request: RpcRequest, worker: Worker, ticket: number, entry: Running): HandlerSettled | Promise<HandlerSettled> {
    // One signal per request (made when the handler reads it): aborted alone at its timeout, or with all the others when
    // the server stops.
    // A literal with its getter as an own property: a handler may spread the context ({ ...context, log }) and keep
    // the signal (a class's prototype getter would be lost by the spread).
    const context: HandlerContext = {
      worker: worker.name,
      get signal(): AbortSignal {
        return signalOf(entry);
      },
    };
    let value: unknown;
    try {
      value = this.options.handler(request, context);
    } catch (thrown) {
      return failedWith(thrown);
    }
    // A synchronous handler (echo, most real ones) has finished: no timer, no race. Its time cannot be cut short anyway,
    // the event loop was its own until it returned.
    if (!isThenable(value)) return { ok: true, result: value };
    return this.raceHandlerTimeout(Promise.resolve(value), worker, ticket, entry);
  }

  private async raceHandlerTimeout(pending: Promise<unknown>, worker: Worker, ticket: number, entry: Running): Promise<HandlerSettled> {
    const work = pending.then(
      (result): HandlerSettled => ({ ok: true, result }),
      (thrown: unknown) => failedWith(thrown),
    );
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.handlerTimeoutMs)));
    const first = await Promise.race([work, timedOut]);
    clearTimeout(timer);
    if (first !== 'timeout') return first;
    entry.abandoned = true;
    abortRunning(entry);
    this.forgetOldestAbandoned();
    const message = `The handler did not answer ${entry.rpcId} within ${this.handlerTimeoutMs} ms; it was abandoned and the request answered with an error.`;
    this.problem({ kind: 'handler-timeout', worker: worker.name, rpcId: entry.rpcId, message });
    void work.then(() => this.running.delete(ticket));
    return { ok: false, error: { code: 'handler-timeout', message } };
  }

  /** A handler that hangs on every request would grow `running` for good: past the cap, the oldest abandoned are forgotten. */
  private forgetOldestAbandoned(): void {
    let abandoned = 0;
    for (const entry of this.running.values()) if (entry.abandoned) abandoned += 1;
    // Map order is insertion order: the first abandoned entries are the oldest.
    for (const [ticket, entry] of this.running) {
      if (abandoned <= this.maxAbandonedHandlers) break;
      if (!entry.abandoned) continue;
      this.running.delete(ticket);
      this.abandonedForgotten += 1;
      abandoned -= 1;
    }
  }

  /** Reads the broker's real limit out of its refusal ("message size N is larger than configured max size M"). */
  private learnMaxMessageSize(reason: string): void {
    const limit = RABBITMQ_TOO_LARGE.exec(reason);
    if (limit) this.maxMessageBytes = Math.min(this.maxMessageBytes, Number(limit[2]));
  }

  /**
   * Resolves at the channel's next 'drain'. Every reply waiting on the same channel shares one listener (one per reply
   * would pass Node's limit of 10 with prefetch > 10); it is removed when the drain comes or the channel closes.
   */
  private drained(worker: Worker): Promise<void> {
    if (worker.drained) return worker.drained;
    const channel = worker.channel;
    const stopWaiting = new AbortController();
    const onClose = (): void => stopWaiting.abort();
    channel.once('close', onClose);
    worker.drained = once(channel, 'drain', { signal: stopWaiting.signal })
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => {
        channel.off('close', onClose);
        worker.drained = undefined;
      });
    return worker.drained;
  }

  /** Publishes the reply with `mandatory`, waits for the broker's confirm, and only then acks the request. */
  private async reply(worker: Worker, message: ConsumeMessage, request: RpcRequest, rpcId: string, body: Buffer): Promise<void> {
    if (this.closing) {
      this.problem({
        kind: 'late-handler',
        worker: worker.name,
        rpcId,
        message: `The handler of ${rpcId} ended after the drain was over; its reply was dropped and the broker put the request back on the queue.`,
      });
      return;
    }
    // OpenTelemetry: a request that carried its trace context in its body (MQTT 3.1.1) gets the reply's there too.
    body = this.options.tracing?.replyBody(rpcId, worker.name, this.exchange, request.replyRoutingKey, body) ?? body;
    // Only needs to be unique on this channel, to match a basic.return to its publish.
    this.replySeq += 1;
    const messageId = `${worker.name}-${this.replySeq}`;
    const replyTopic = request.replyTopic ?? request.replyRoutingKey;
    // Set by the executor, which runs at once (a named placeholder closure would be renamed per request under tsx).
    let settle!: (err: Error | undefined) => void;
    const confirmed = new Promise<Error | undefined>((resolve) => (settle = resolve));
    let writable = true;
    try {
      writable = worker.channel.publish(
        this.exchange,
        request.replyRoutingKey,
        body,
        // Literals, not a spread of a conditional object: this runs once per request.
        withHeaders(
          request.correlationId
            ? { mandatory: true, messageId, contentType: 'application/json', deliveryMode: this.replyDeliveryMode, correlationId: request.correlationId }
            : request.correlationHeader
              ? { mandatory: true, messageId, contentType: 'application/json', deliveryMode: this.replyDeliveryMode, headers: { 'x-correlation-id': request.correlationHeader } }
              : { mandatory: true, messageId, contentType: 'application/json', deliveryMode: this.replyDeliveryMode },
          this.options.tracing?.replyHeaders(rpcId, worker.name, this.exchange, request.replyRoutingKey),
        ),
        (err: unknown) => settle(err ? (err instanceof Error ? err : new Error(describeThrown(err))) : undefined),
      );
    } catch (err) {
      // The channel closed under us: the broker requeues the request.
      settle(err instanceof Error ? err : new Error(describeThrown(err)));
    }
    if (this.traced) this.step({
      rpcId,
      at: Date.now(),
      source: 'server',
      kind: 'reply.published',
      detail: {
        worker: worker.name,
        exchange: this.exchange,
        routingKey: request.replyRoutingKey,
        replyTopic,
        mandatory: true,
        wire: amqpMessage(
          request.correlationId
            ? { messageId, contentType: 'application/json', deliveryMode: this.replyDeliveryMode, correlationId: request.correlationId }
            : request.correlationHeader
              ? { messageId, contentType: 'application/json', deliveryMode: this.replyDeliveryMode, headers: { 'x-correlation-id': request.correlationHeader } }
              : { messageId, contentType: 'application/json', deliveryMode: this.replyDeliveryMode },
          body,
        ),
      },
    });
    // Respect the socket's backpressure before taking more work; a closed channel settles `confirmed` instead.
    if (!writable) await Promise.race([this.drained(worker), confirmed]);
    const failure = await confirmed;
    if (failure) {
      // The channel is gone (the request will be redelivered) or the broker refused the reply.
      if (this.traced) this.step({ rpcId, at: Date.now(), source: 'server', kind: 'reply.confirmed', detail: { worker: worker.name, outcome: 'nacked' } });
      // The channel's 'error' (the broker's reason) comes before its close, and amqplib then fails every unconfirmed
      // publish of the channel with "channel closed": only the reply whose own size breaks the named limit was refused.
      const closeReason = worker.closeReason;
      if (closeReason !== undefined) this.learnMaxMessageSize(closeReason);
      const tooLarge = closeReason !== undefined && RABBITMQ_TOO_LARGE.test(closeReason) && body.byteLength > this.maxMessageBytes;
      const nacked = failure.message === AMQPLIB_NACKED;
      // Any other channel error is blamed on the oldest unconfirmed reply (the broker works in order), once per close:
      // remembering it bounds the loop of a reply that always fails, and its siblings are merely lost.
      const blamed = closeReason !== undefined && !tooLarge && !RABBITMQ_TOO_LARGE.test(closeReason) && !worker.blamed;
      if (blamed) worker.blamed = true;
      const reason = tooLarge || closeReason === undefined ? (closeReason ?? failure.message) : `${failure.message}; the broker closed the channel: ${closeReason}`;
      // Only a refusal the broker tied to this reply (too large, a nack) is remembered; any other lost reply (a sibling
      // of a refused one, a lost connection) is handled again on redelivery (at least once).
      if (tooLarge || nacked || blamed) {
        const key = failedReplyKey(rpcId, request.replyRoutingKey);
        const previous = this.failedReplies.get(key);
        const described = tooLarge
          ? `The reply was ${body.byteLength} bytes, over the broker's max_message_size (${this.maxMessageBytes})`
          : `The reply could not be published (${reason})`;
        this.failedReplies.set(key, { reason: described, code: tooLarge ? 'reply-too-large' : 'reply-failed', attempts: previous?.attempts ?? 0 });
      }
      if (!this.closing) {
        this.problem({ kind: tooLarge ? 'reply-too-large' : 'reply-failed', worker: worker.name, rpcId, message: `The reply to ${rpcId} was not confirmed: ${reason}` });
      }
      this.settle(worker, message, 'reject');
      return;
    }
    const returnReason = worker.returned.get(messageId);
    worker.returned.delete(messageId);
    // Even while closing: an ack that still precedes the channel.close saves a duplicate; a later one is refused harmlessly.
    this.settle(worker, message, 'ack');
    this.stats.replied += 1;
    this.stats.perWorker[worker.name] = (this.stats.perWorker[worker.name] ?? 0) + 1;
    if (this.traced) {
      const detail: TraceStepDetails['reply.confirmed'] = { worker: worker.name, outcome: returnReason ? 'returned' : 'routed' };
      if (returnReason) detail.returnReason = returnReason;
      this.step({ rpcId, at: Date.now(), source: 'server', kind: 'reply.confirmed', detail });
    }
    if (returnReason) {
      this.stats.unroutable += 1;
      this.problem({
        kind: 'unroutable',
        worker: worker.name,
        rpcId,
        message: `The reply to ${rpcId} was returned as unroutable (${returnReason}): nothing is bound to "${this.exchange}" with key "${request.replyRoutingKey}" (is the device subscribed to "${replyTopic}"?).`,
      });
    }
  }
}

/** A reply's publish options with the trace context's headers, when tracing gave some. */
function withHeaders<T extends { headers?: Record<string, unknown> }>(options: T, headers: Record<string, string> | undefined): T {
  return headers ? { ...options, headers: { ...options.headers, ...headers } } : options;
}

/** Where a failed reply is remembered: the client-chosen id alone is not unique across devices. */
function failedReplyKey(rpcId: string, replyRoutingKey: string): string {
  return `${replyRoutingKey}\u0000${rpcId}`;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

function safely(operation: () => void): void {
  try {
    operation();
  } catch {
    // The channel closed under us; the broker requeues unacked deliveries.
  }
}
