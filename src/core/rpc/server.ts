/** The embedded RPC server: N competing workers on the shared queue, replying through the MQTT exchange. */
import { EventEmitter, once } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import { defaultEnvelopeFields, type EnvelopeFields, type LinkStatus } from '../../shared/rpc';
import type { TraceStepDraft } from '../../shared/trace';
import { BridgeError } from '../errors';
import { AmqpLink } from '../links/amqp-link';
import type { TopicMapOptions } from '../topic-map';
import { encodeReply, parseRequest, type RpcRequest } from './envelope';
import { HandlerError, type RpcHandler } from './handlers';
import { BoundedMap } from '../bounded-map';

export interface RpcServerOptions {
  amqpUrl: string;
  exchange?: string;
  queue?: string;
  workers?: number;
  prefetch?: number;
  handler: RpcHandler;
  fields?: EnvelopeFields;
  topicMap?: TopicMapOptions;
  heartbeatSeconds?: number;
  name?: string;
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
  kind: 'rejected' | 'unroutable' | 'reply-failed' | 'consumer-cancelled' | 'channel-reopened';
  worker: string;
  rpcId: string;
  message: string;
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
}

export class RpcServer extends EventEmitter<RpcServerEvents> {
  readonly exchange: string;
  readonly queue: string;
  private readonly link: AmqpLink;
  private workers: Worker[] = [];
  private readonly stopController = new AbortController();
  private draining = false;
  private model: ChannelModel | undefined;
  /** requests whose reply could not be published: a redelivery of one is rejected instead of looping */
  private readonly failedReplies = new BoundedMap<string, string>(10_000);
  private replySeq = 0;
  private idle: (() => void) | undefined;
  readonly stats: RpcServerStats = { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} };

  constructor(private readonly options: RpcServerOptions) {
    super();
    this.exchange = options.exchange ?? 'amq.direct';
    this.queue = options.queue ?? 'rpc_queue';
    const workerCount = options.workers ?? 1;
    const prefetch = options.prefetch ?? 1;
    if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 64) {
      throw new BridgeError('bad-input', 'The number of workers must be a whole number from 1 to 64.');
    }
    if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65_535) {
      throw new BridgeError('bad-input', 'The prefetch must be a whole number from 1 to 65535.');
    }
    this.link = new AmqpLink({
      url: options.amqpUrl,
      connectionName: options.name ?? `bridgescope-server ${this.queue}`,
      heartbeatSeconds: options.heartbeatSeconds,
      onConnected: (model) => this.setUp(model, workerCount, prefetch),
    });
    this.link.on('status', (status) => this.emit('status', status));
  }

  get status(): LinkStatus {
    return this.link.status;
  }

  get workerNames(): string[] {
    return this.workers.map((worker) => worker.name);
  }

  async start(): Promise<void> {
    await this.link.open();
  }

  /** Stops taking requests, lets the in-flight ones finish (up to `drainTimeoutMs`), then closes. */
  async stop(drainTimeoutMs = 10_000): Promise<void> {
    this.draining = true;
    await Promise.all(this.workers.map((worker) => worker.channel.cancel(worker.consumerTag).catch(() => undefined)));
    if (this.stats.inFlight > 0) {
      const drained = new Promise<void>((resolve) => (this.idle = resolve));
      const timer = new Promise<void>((resolve) => setTimeout(resolve, drainTimeoutMs).unref());
      await Promise.race([drained, timer]);
    }
    this.stopController.abort();
    await this.link.close();
  }

  /** Declares the durable shared queue, binds it with key = its name, and starts one consumer per worker. */
  private async setUp(model: ChannelModel, workerCount: number, prefetch: number): Promise<void> {
    const setupChannel = await model.createChannel();
    setupChannel.on('error', () => undefined);
    try {
      await setupChannel.checkExchange(this.exchange);
    } catch {
      throw new BridgeError('not-found', `The exchange "${this.exchange}" does not exist on the broker; the MQTT plugin publishes to mqtt.exchange (amq.topic unless configured).`);
    }
    const declare = await model.createChannel();
    declare.on('error', () => undefined);
    try {
      await declare.assertQueue(this.queue, { durable: true });
      await declare.bindQueue(this.queue, this.exchange, this.queue);
    } catch (err) {
      throw new BridgeError('broker-failed', `Cannot declare the queue "${this.queue}": ${(err as Error).message}`);
    }
    await declare.close().catch(() => undefined);
    await setupChannel.close().catch(() => undefined);

    this.model = model;
    const workers: Worker[] = [];
    for (let index = 0; index < workerCount; index += 1) {
      workers.push(await this.openWorker(model, `worker-${index + 1}`, prefetch));
    }
    this.workers = workers;
  }

  /** One competing consumer on its own confirm channel; a channel the broker closes is reopened, the connection kept. */
  private async openWorker(model: ChannelModel, name: string, prefetch: number): Promise<Worker> {
    const channel = await model.createConfirmChannel();
    channel.on('error', () => undefined);
    await channel.prefetch(prefetch);
    const returned = new Map<string, string>();
    channel.on('return', (message: Message) => {
      // amqplib's types omit the basic.return fields that are there at run time.
      const fields = message.fields as Message['fields'] & { replyCode?: number; replyText?: string };
      const id = message.properties.messageId as string | undefined;
      if (id) returned.set(id, `${fields.replyCode ?? ''} ${fields.replyText ?? 'returned'}`.trim());
    });
    const worker: Worker = { name, channel, consumerTag: '', returned };
    channel.on('close', () => {
      // A whole-connection loss is the link's to recover (setUp runs again): wait a moment to tell the two apart.
      setTimeout(() => {
        if (this.draining || this.model !== model || this.link.status.state !== 'connected') return;
        this.emit('problem', { kind: 'channel-reopened', worker: name, rpcId: '', message: `The broker closed ${name}'s channel; reopening it on the same connection.` });
        void this.openWorker(model, name, prefetch).then(
          (replacement) => {
            this.workers = this.workers.map((existing) => (existing === worker ? replacement : existing));
          },
          () => undefined,
        );
      }, 100).unref();
    });
    const { consumerTag } = await channel.consume(this.queue, (message) => void this.onMessage(worker, message), { noAck: false });
    worker.consumerTag = consumerTag;
    this.stats.perWorker[name] ??= 0;
    return worker;
  }

  private step(draft: TraceStepDraft): void {
    this.emit('step', draft);
  }

  private async onMessage(worker: Worker, message: ConsumeMessage | null): Promise<void> {
    if (message === null) {
      this.emit('problem', {
        kind: 'consumer-cancelled',
        worker: worker.name,
        rpcId: '',
        message: `The broker cancelled ${worker.name}'s consumer: was the queue "${this.queue}" deleted?`,
      });
      return;
    }
    this.stats.received += 1;
    this.stats.inFlight += 1;
    try {
      await this.handle(worker, message);
    } finally {
      this.stats.inFlight -= 1;
      if (this.draining && this.stats.inFlight === 0) this.idle?.();
    }
  }

  private async handle(worker: Worker, message: ConsumeMessage): Promise<void> {
    const fields = this.options.fields ?? defaultEnvelopeFields;
    const parsed = parseRequest(message.content, {
      fields,
      headers: message.properties.headers as Record<string, unknown> | undefined,
      correlationId: message.properties.correlationId as string | undefined,
      topicMap: this.options.topicMap,
    });
    const rpcId = (parsed.ok ? parsed.request.id : parsed.id) ?? `delivery-${message.fields.deliveryTag}-${randomUUID().slice(0, 8)}`;
    this.step({
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
      },
    });
    if (!parsed.ok) {
      this.stats.rejected += 1;
      safely(() => worker.channel.reject(message, false));
      this.step({
        rpcId,
        at: Date.now(),
        source: 'server',
        kind: 'request.rejected',
        detail: { worker: worker.name, reason: parsed.reason, bytes: message.content.byteLength },
      });
      this.emit('problem', { kind: 'rejected', worker: worker.name, rpcId, message: `Rejected a request without requeue: ${parsed.reason}` });
      return;
    }
    const request = parsed.request;
    const earlier = message.fields.redelivered ? this.failedReplies.get(rpcId) : undefined;
    if (earlier !== undefined) {
      this.stats.rejected += 1;
      safely(() => worker.channel.reject(message, false));
      const reason = `Its reply could not be published before (${earlier}); rejected without requeue so it does not loop.`;
      this.step({ rpcId, at: Date.now(), source: 'server', kind: 'request.rejected', detail: { worker: worker.name, reason, bytes: message.content.byteLength } });
      this.emit('problem', { kind: 'rejected', worker: worker.name, rpcId, message: `Rejected ${rpcId}: ${reason}` });
      return;
    }
    const started = performance.now();
    let reply: Buffer;
    let outcome: 'result' | 'error' = 'result';
    let errorCode: string | undefined;
    try {
      const result = await this.options.handler(request, { worker: worker.name, signal: this.stopController.signal });
      reply = encodeReply({ id: request.id, result, worker: worker.name }, fields);
    } catch (err) {
      outcome = 'error';
      errorCode = err instanceof HandlerError ? err.code : 'handler-error';
      this.stats.failed += 1;
      reply = encodeReply({ id: request.id, error: { code: errorCode, message: (err as Error).message }, worker: worker.name }, fields);
    }
    this.step({
      rpcId,
      at: Date.now(),
      source: 'server',
      kind: 'handler.finished',
      detail: { worker: worker.name, durationMs: performance.now() - started, outcome, ...(errorCode ? { errorCode } : {}) },
    });
    await this.reply(worker, message, request, rpcId, reply);
  }

  /** Publishes the reply with `mandatory`, waits for the broker's confirm, and only then acks the request. */
  private async reply(worker: Worker, message: ConsumeMessage, request: RpcRequest, rpcId: string, body: Buffer): Promise<void> {
    // Only needs to be unique on this channel, to match a basic.return to its publish.
    this.replySeq += 1;
    const messageId = `${worker.name}-${this.replySeq}`;
    const replyTopic = request.replyTopic ?? request.replyRoutingKey;
    let settle: (err: Error | undefined) => void = () => undefined;
    const confirmed = new Promise<Error | undefined>((resolve) => (settle = resolve));
    const writable = worker.channel.publish(
      this.exchange,
      request.replyRoutingKey,
      body,
      {
        mandatory: true,
        messageId,
        contentType: 'application/json',
        ...(request.correlationId ? { correlationId: request.correlationId } : {}),
      },
      (err: unknown) => settle(err ? (err as Error) : undefined),
    );
    this.step({
      rpcId,
      at: Date.now(),
      source: 'server',
      kind: 'reply.published',
      detail: { worker: worker.name, exchange: this.exchange, routingKey: request.replyRoutingKey, replyTopic, mandatory: true },
    });
    // Respect the socket's backpressure before taking more work; a closed channel settles `confirmed` instead.
    if (!writable) await Promise.race([once(worker.channel, 'drain').catch(() => undefined), confirmed]);
    const failure = await confirmed;
    if (failure) {
      // The channel is gone (the request will be redelivered) or the broker refused the reply.
      this.step({ rpcId, at: Date.now(), source: 'server', kind: 'reply.confirmed', detail: { worker: worker.name, outcome: 'nacked' } });
      this.failedReplies.set(rpcId, failure.message);
      this.emit('problem', { kind: 'reply-failed', worker: worker.name, rpcId, message: `The reply to ${rpcId} was not confirmed: ${failure.message}` });
      safely(() => worker.channel.nack(message, false, false));
      return;
    }
    const returnReason = worker.returned.get(messageId);
    worker.returned.delete(messageId);
    safely(() => worker.channel.ack(message));
    this.stats.replied += 1;
    this.stats.perWorker[worker.name] = (this.stats.perWorker[worker.name] ?? 0) + 1;
    this.step({
      rpcId,
      at: Date.now(),
      source: 'server',
      kind: 'reply.confirmed',
      detail: { worker: worker.name, outcome: returnReason ? 'returned' : 'routed', ...(returnReason ? { returnReason } : {}) },
    });
    if (returnReason) {
      this.stats.unroutable += 1;
      this.emit('problem', {
        kind: 'unroutable',
        worker: worker.name,
        rpcId,
        message: `The reply to ${rpcId} was returned as unroutable (${returnReason}): nothing is bound to "${this.exchange}" with key "${request.replyRoutingKey}" (is the device subscribed to "${replyTopic}"?).`,
      });
    }
  }
}

function safely(operation: () => void): void {
  try {
    operation();
  } catch {
    // The channel closed under us; the broker requeues unacked deliveries.
  }
}
