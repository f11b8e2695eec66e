/**
 * Watch's "tap" observation: a private exclusive server-named queue bound on the MQTT exchange to the request keys, and
 * to each reply key while a request waits on it. It publishes nothing, and the broker deletes the queue (with its
 * bindings) when the connection closes, however the process ends. A lost connection (a broker restart) is retried: a
 * new queue, the same bindings.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { WATCH_TAP_QUEUE_PREFIX } from '../../shared/rabbitmq-mqtt';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { amqpConnectOptions, AMQP_CONNECT_TIMEOUT_MS, connectAmqp } from '../links/amqp-link';
import { withDeadline } from '../../shared/deadline';
import { BridgeError } from '../errors';
import { tlsSocketOptions, type TlsFiles } from '../connection-details';
import type { ObservedMessage } from './pairing';
import { persistentMessage } from '../../shared/broker-qos';

/** how long each step of the tap's stop (delete the queue, close the connection) may wait on the broker */
const STOP_STEP_MS = 3000;

export interface TapOptions {
  amqpUrl: string;
  /** the profile's TLS files, for an amqps:// URL with a private CA or a client certificate */
  tls?: TlsFiles;
  exchange: string;
  /** the request keys bound for good ('#' on a topic exchange sees every message on it) */
  requestKeys: readonly string[];
  /** most messages the tap queue holds before the broker drops the oldest (a slow watcher must not grow the broker's memory) */
  maxLength?: number;
  /** longest wait between two tries to come back after a lost connection (default 5 s) */
  maxReconnectDelayMs?: number;
}

export type TapStatus =
  | { state: 'reconnecting'; since: number; attempt: number; reason: string }
  /** back on a new tap queue; nothing published from blindFrom to blindUntil was seen */
  | { state: 'on'; queue: string; resumed: true; blindFrom: number; blindUntil: number };

export interface TapEvents {
  message: [ObservedMessage];
  /** the broker refused the tap (its channel closed, the connection still up): the tap is over */
  lost: [reason: string];
  /** a lost connection and the tries to come back (a broker restart) */
  status: [TapStatus];
}

export class Tap extends EventEmitter<TapEvents> {
  private connection: ChannelModel | undefined;
  private channel: Channel | undefined;
  private queueName: string | undefined;
  private readonly replyBindings = new Set<string>();
  /** reply keys whose bind was asked and not yet confirmed (see bindPending) */
  private readonly binding = new Map<string, object>();
  private stopping = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped: Promise<'deleted' | 'cut'> | undefined;
  /** the current connection's queue is declared, bound and consumed */
  private live = false;
  /** binds and unbinds in order, one at a time, so an unbind never overtakes its bind */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: TapOptions) {
    super();
  }

  get queue(): string | undefined {
    return this.queueName;
  }

  /** Reply keys need no binding of their own when '#' is bound, nor when they are request keys (unbinding would cut those): a key that does is bound only once its request is seen. */
  needsBinding(key: string): boolean {
    return !this.options.requestKeys.includes('#') && !this.options.requestKeys.includes(key) && !/[*#]/.test(key);
  }

  /** Connects, declares the tap queue and binds the request keys; on a lost connection it comes back by itself (see `resume`). */
  async start(): Promise<string> {
    return this.open();
  }

  /** One connection's worth of tap: a fresh server-named queue, the request keys and every reply key still awaited bound to it. */
  private async open(): Promise<string> {
    const connection = await connectAmqp(amqpConnectOptions(this.options.amqpUrl, 30), { timeout: AMQP_CONNECT_TIMEOUT_MS, ...tlsSocketOptions(this.options.tls) });
    if (this.stopping) {
      await connection.close().catch(() => undefined);
      throw new Error('the tap was stopped while it connected');
    }
    this.connection = connection;
    let connectionGone = false;
    connection.on('error', () => undefined);
    connection.on('close', (err?: Error) => {
      connectionGone = true;
      if (this.stopping || this.connection !== connection) return;
      // Only a tap that was fully up resumes: a try that fails half-way is the resume loop's (or start's) to handle.
      const wasLive = this.live;
      this.live = false;
      this.connection = undefined;
      this.channel = undefined;
      if (wasLive) void this.resume(err?.message ?? 'the AMQP connection closed');
    });
    const openChannel = async (): Promise<Channel> => {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      // A refused bind (permissions) closes the channel, not the connection: the tap is over. A channel closed because its
      // connection went is the connection's business (amqplib closes the channels first, then says the connection closed).
      channel.on('close', () => {
        setImmediate(() => {
          if (!this.stopping && !connectionGone && this.channel === channel) this.emit('lost', 'the broker closed the tap channel (a bind refused?)');
        });
      });
      this.channel = channel;
      return channel;
    };
    let channel = await openChannel();
    try {
      await channel.checkExchange(this.options.exchange);
    } catch (err) {
      // The exchange is not there (404): said as such, not as amqplib's "Operation failed: ExchangeDeclare".
      if ((err as { code?: number }).code !== 404) throw err;
      const vhost = amqpConnectOptions(this.options.amqpUrl, 0).vhost ?? '/';
      throw new BridgeError('not-found', `The exchange "${this.options.exchange}" does not exist in vhost "${vhost}", so there is nothing to tap: the MQTT plugin publishes to its mqtt.exchange (amq.topic unless configured; amq.direct in BridgeScope's sandbox). Check --exchange, and the vhost in the AMQP URL.`);
    }
    const options = { exclusive: true, autoDelete: true, durable: false, arguments: { 'x-max-length': this.options.maxLength ?? 100_000, 'x-overflow': 'drop-head' } };
    let queue: string;
    try {
      // A name of its own (not the broker's amq.gen-*), so every other check and verdict can leave it out.
      ({ queue } = await channel.assertQueue(`${WATCH_TAP_QUEUE_PREFIX}${randomUUID()}`, options));
    } catch (err) {
      // A user allowed to configure only server-named queues (permission "^amq\.gen-.*", a common least privilege) is
      // refused that name (403, the channel closed): the tap takes a server-named queue, which checks cannot tell apart.
      if ((err as { code?: number }).code !== 403 || connectionGone || this.stopping) throw err;
      this.channel = undefined;
      channel = await openChannel();
      ({ queue } = await channel.assertQueue('', options));
    }
    this.queueName = queue;
    for (const key of this.options.requestKeys) await channel.bindQueue(queue, this.options.exchange, key);
    for (const key of this.replyBindings) await channel.bindQueue(queue, this.options.exchange, key);
    await channel.consume(queue, (message) => message && this.onMessage(message), { noAck: true, exclusive: true });
    this.live = true;
    return queue;
  }

  /**
   * The connection went (a broker restart, a network cut): the broker has deleted the exclusive queue with it, so every
   * try makes a new one, until one works or `stop` is called. Messages published meanwhile are not seen: the status says
   * when the gap began and ended.
   */
  private async resume(reason: string): Promise<void> {
    const since = Date.now();
    this.chain = Promise.resolve();
    for (let attempt = 1; !this.stopping; attempt += 1) {
      this.emit('status', { state: 'reconnecting', since, attempt, reason });
      const delay = Math.min(this.options.maxReconnectDelayMs ?? 5000, 250 * 2 ** (attempt - 1));
      await new Promise((resolve) => {
        this.retryTimer = setTimeout(resolve, delay);
      });
      this.retryTimer = undefined;
      if (this.stopping) return;
      try {
        const queue = await this.open();
        this.emit('status', { state: 'on', queue, resumed: true, blindFrom: since, blindUntil: Date.now() });
        return;
      } catch (err) {
        reason = (err as Error)?.message ?? String(err);
        // A half-made connection from this try must not linger.
        const half = this.connection;
        this.connection = undefined;
        this.channel = undefined;
        await half?.close().catch(() => undefined);
      }
    }
  }

  private onMessage(message: ConsumeMessage): void {
    const { properties, fields } = message;
    const observed: ObservedMessage = { at: Date.now(), exchange: fields.exchange, routingKey: fields.routingKey, body: message.content };
    if (typeof properties.correlationId === 'string') observed.correlationId = properties.correlationId;
    if (typeof properties.replyTo === 'string') observed.replyTo = properties.replyTo;
    if (properties.headers) observed.headers = properties.headers as Record<string, unknown>;
    observed.persistent = persistentMessage(properties.deliveryMode, observed.headers);
    this.emit('message', observed);
  }

  /** Starts receiving the replies on `key` (no-op when a request binding already covers it). */
  watchKey(key: string): void {
    if (!this.needsBinding(key) || this.replyBindings.has(key)) return;
    this.replyBindings.add(key);
    // Done (or not done: no channel, refused) once the chain has passed it (it never rejects); a later bind of the same
    // key (after an unwatch) is its own.
    const token = {};
    this.binding.set(key, token);
    this.enqueue(() => this.channel!.bindQueue(this.queueName!, this.options.exchange, key));
    void this.chain.then(() => {
      if (this.binding.get(key) === token) this.binding.delete(key);
    });
  }

  /**
   * Whether `key`'s bind was asked and the broker has not confirmed it yet: a reply on it meanwhile is not routed here.
   * Binds are made one after another, each a round trip to the broker (about 1 ms): a device's second request on a new
   * reply topic may be answered before its bind is in place.
   */
  bindPending(key: string): boolean {
    return this.binding.has(key);
  }

  unwatchKey(key: string): void {
    if (!this.replyBindings.delete(key)) return;
    this.enqueue(() => this.channel!.unbindQueue(this.queueName!, this.options.exchange, key));
  }

  /** Reply keys bound right now (for tests and the summary). */
  get boundReplyKeys(): number {
    return this.replyBindings.size;
  }

  /** Resolves when every bind and unbind asked so far is done. */
  settled(): Promise<unknown> {
    return this.chain;
  }

  private enqueue(work: () => Promise<unknown>): void {
    this.chain = this.chain.then(() => (this.channel && !this.stopping ? work() : undefined)).catch(() => undefined);
  }

  /**
   * Deletes the tap queue (its bindings go with it) and closes the connection, each given STOP_STEP_MS; safe to call
   * twice. A broker that does not answer in time gets its socket cut: it deletes an exclusive queue with its connection.
   */
  async stop(): Promise<'deleted' | 'cut'> {
    if (this.stopped) return this.stopped;
    this.stopping = true;
    clearTimeout(this.retryTimer);
    this.stopped = (async () => {
      const { channel, connection, queueName } = this;
      const deleted = channel && queueName ? await withDeadline(channel.deleteQueue(queueName).then(() => true, () => false), STOP_STEP_MS) : { done: true, value: true };
      const closed = connection ? await withDeadline(connection.close().catch(() => undefined), STOP_STEP_MS) : { done: true };
      // With an error, so amqplib sees its socket fail and stops its heartbeat timers (a plain destroy keeps them, and the process, alive).
      if (!closed.done) (connection as unknown as { connection?: { stream?: { destroy?: (err: Error) => void } } }).connection?.stream?.destroy?.(new Error('the broker did not answer the close'));
      // A queue not confirmed deleted on a connection that closed is gone too; only a cut connection leaves it to the broker.
      return deleted.done || closed.done ? 'deleted' : 'cut';
    })();
    return this.stopped;
  }
}
