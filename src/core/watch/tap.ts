/**
 * Watch's "tap" observation: a private exclusive server-named queue bound on the MQTT exchange to the request keys, and
 * to each reply key while a request waits on it. It publishes nothing, and the broker deletes the queue (with its
 * bindings) when the connection closes, however the process ends.
 */
import { EventEmitter } from 'node:events';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { amqpConnectOptions, AMQP_CONNECT_TIMEOUT_MS, connectAmqp } from '../links/amqp-link';
import type { ObservedMessage } from './pairing';

export interface TapOptions {
  amqpUrl: string;
  exchange: string;
  /** the request keys bound for good ('#' on a topic exchange sees every message on it) */
  requestKeys: readonly string[];
  /** most messages the tap queue holds before the broker drops the oldest (a slow watcher must not grow the broker's memory) */
  maxLength?: number;
}

export interface TapEvents {
  message: [ObservedMessage];
  /** the connection closed while tapping (broker gone or restarted): the tap is over */
  lost: [reason: string];
}

export class Tap extends EventEmitter<TapEvents> {
  private connection: ChannelModel | undefined;
  private channel: Channel | undefined;
  private queueName: string | undefined;
  private readonly replyBindings = new Set<string>();
  private stopping = false;
  /** binds and unbinds in order, one at a time, so an unbind never overtakes its bind */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: TapOptions) {
    super();
  }

  get queue(): string | undefined {
    return this.queueName;
  }

  /** Reply keys need no binding of their own when '#' is bound, nor when they are request keys (unbinding would cut those). */
  private needsBinding(key: string): boolean {
    return !this.options.requestKeys.includes('#') && !this.options.requestKeys.includes(key) && !/[*#]/.test(key);
  }

  async start(): Promise<string> {
    const connection = await connectAmqp(amqpConnectOptions(this.options.amqpUrl, 30), { timeout: AMQP_CONNECT_TIMEOUT_MS });
    this.connection = connection;
    connection.on('close', (err?: Error) => {
      if (!this.stopping) this.emit('lost', err?.message ?? 'the AMQP connection closed');
    });
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    // A refused bind (permissions) closes the channel, not the connection: the tap is over all the same.
    channel.on('close', () => {
      if (!this.stopping) this.emit('lost', 'the broker closed the tap channel (a bind refused?)');
    });
    this.channel = channel;
    await channel.checkExchange(this.options.exchange);
    const { queue } = await channel.assertQueue('', {
      exclusive: true,
      autoDelete: true,
      durable: false,
      arguments: { 'x-max-length': this.options.maxLength ?? 100_000, 'x-overflow': 'drop-head' },
    });
    this.queueName = queue;
    for (const key of this.options.requestKeys) await channel.bindQueue(queue, this.options.exchange, key);
    await channel.consume(queue, (message) => message && this.onMessage(message), { noAck: true, exclusive: true });
    return queue;
  }

  private onMessage(message: ConsumeMessage): void {
    const { properties, fields } = message;
    const observed: ObservedMessage = { at: Date.now(), exchange: fields.exchange, routingKey: fields.routingKey, body: message.content };
    if (typeof properties.correlationId === 'string') observed.correlationId = properties.correlationId;
    if (typeof properties.replyTo === 'string') observed.replyTo = properties.replyTo;
    if (properties.headers) observed.headers = properties.headers as Record<string, unknown>;
    this.emit('message', observed);
  }

  /** Starts receiving the replies on `key` (no-op when a request binding already covers it). */
  watchKey(key: string): void {
    if (!this.needsBinding(key) || this.replyBindings.has(key)) return;
    this.replyBindings.add(key);
    this.enqueue(() => this.channel!.bindQueue(this.queueName!, this.options.exchange, key));
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

  /** Deletes the tap queue (its bindings go with it) and closes the connection; safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const { channel, connection, queueName } = this;
    if (channel && queueName) await channel.deleteQueue(queueName).catch(() => undefined);
    await connection?.close().catch(() => undefined);
  }
}
