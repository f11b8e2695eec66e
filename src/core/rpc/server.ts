/**
 * The embedded RPC server: N competing workers on the shared queue, replying through the MQTT exchange. It coordinates
 * the pieces that are tested without a broker: queue-topology, worker-pool, ack-batcher, handler-runner, reply-publish
 * and reply-failure.
 */
import { randomUUID } from 'node:crypto';
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import { defaultEnvelopeFields, type LinkStatus } from '../../shared/rpc';
import type { TraceStepDetails } from '../../shared/trace';
import { messageOf } from '../../shared/thrown';
import { BridgeError } from '../errors';
import { AmqpLink } from '../links/amqp-link';
import { correlationLost, encodeReply, parseRequest, type ParseContext, type RpcRequest } from './envelope';
import { MAX_TIMER_MS } from './handlers';
import { amqpWire, WIRE_SOURCE } from '../trace/message-view';
import {
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_HANDLER_TIMEOUT_MS,
  DEFAULT_LIBRARY_SERVER_WORKERS,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_ABANDONED_HANDLERS,
  DEFAULT_MQTT_EXCHANGE,
  DEFAULT_PREFETCH,
  DEFAULT_REQUEST_QUEUE,
} from '../../shared/defaults';
import { declareTopology, validateQueueName } from './queue-topology';
import { channelDrained, WorkerPool, type Worker, type WorkerModel } from './worker-pool';
import { HandlerRunner, type HandlerSettled } from './handler-runner';
import type { Delivery, Settlement } from './ack-batcher';
import { classifyReplyFailure, FailedReplies, learnMaxMessageSize, type RefusedAnswer } from './reply-failure';
import { encodeHandlerReply, publishReply, replyProperties } from './reply-publish';
import type { RpcServerOptions, RpcServerStats, StopReport } from './server-types';
import { ServerEvents } from './server-events';
import { DELIVERY_ID_PREFIX } from '../trace/raw-requests';

export { validateQueueName, type QueueType } from './queue-topology';
export { SERVER_PROBLEM_KINDS, SERVER_REPLY_ERROR_CODES } from './server-types';
export type { RpcServerOptions, RpcServerStats, ServerProblem, ServerProblemKind, ServerReplyErrorCode, StopReport } from './server-types';
export { DEFAULT_MAX_MESSAGE_BYTES } from '../../shared/defaults';

export class RpcServer extends ServerEvents {
  readonly exchange: string;
  readonly queue: string;
  private readonly link: AmqpLink;
  private readonly pool: WorkerPool;
  private readonly handlers: HandlerRunner;
  private draining = false;
  /** set once the drain is over: nothing is published or acked any more, the broker requeues what is left */
  private closing = false;
  private stopping: Promise<StopReport> | undefined;
  /** requests whose reply could not be published: a redelivery of one is answered with an error, not handled again */
  private readonly failedReplies = new FailedReplies(10_000);
  /** parseRequest's context, filled anew for every request (it keeps nothing of it): one object instead of one per request */
  private readonly parseContext: ParseContext = {};
  private replySeq = 0;
  private deliverySeq = 0;
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
    const workerCount = options.workers ?? DEFAULT_LIBRARY_SERVER_WORKERS;
    const prefetch = options.prefetch ?? DEFAULT_PREFETCH;
    if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 64) {
      throw new BridgeError('bad-input', 'The number of workers must be a whole number from 1 to 64.');
    }
    if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65_535) {
      throw new BridgeError('bad-input', 'The prefetch must be a whole number from 1 to 65535.');
    }
    validateQueueName(this.queue);
    const handlerTimeoutMs = options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS;
    if (!Number.isInteger(handlerTimeoutMs) || handlerTimeoutMs < 1 || handlerTimeoutMs > MAX_TIMER_MS) {
      throw new BridgeError('bad-input', `The handler timeout must be a whole number of ms from 1 to ${MAX_TIMER_MS}.`);
    }
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.replyDeliveryMode = options.persistentReplies === false ? 1 : 2;
    this.handlers = new HandlerRunner({
      handler: options.handler,
      timeoutMs: handlerTimeoutMs,
      maxAbandoned: options.maxAbandonedHandlers ?? DEFAULT_MAX_ABANDONED_HANDLERS,
      onTimeout: (entry, message) => this.problem({ kind: 'handler-timeout', worker: entry.worker, rpcId: entry.rpcId, message }),
    });
    this.pool = new WorkerPool({
      queue: this.queue,
      prefetch,
      stopping: () => this.draining,
      connected: () => this.link.status.state === 'connected',
      deliver: (worker, message) => void this.onMessage(worker, message),
      problem: (problem) => this.problem(problem),
      channelError: (reason) => (this.maxMessageBytes = learnMaxMessageSize(reason, this.maxMessageBytes)),
      opened: (name) => (this.stats.perWorker[name] ??= 0),
      openWorker: (model, name) => this.openWorker(model, name),
    });
    this.link = new AmqpLink({
      url: options.amqpUrl,
      ...(options.fallbackAmqpUrls?.length ? { fallbackUrls: options.fallbackAmqpUrls } : {}),
      ...(options.tls ? { tls: options.tls } : {}),
      connectionName: options.name ?? `bridgescope-server ${this.queue}`,
      heartbeatSeconds: options.heartbeatSeconds,
      onConnected: (model) => this.setUp(model, workerCount),
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
    return this.handlers.ids;
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
    await this.pool.cancelAll();
    let drained = true;
    if (this.stats.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      const finished = new Promise<boolean>((resolve) => (this.idle = () => resolve(true)));
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), drainTimeoutMs)));
      drained = await Promise.race([finished, timedOut]);
      clearTimeout(timer);
    }
    const report: StopReport = { drained, ...this.handlers.report() };
    // Acks still waiting for the end of the turn go out now, before the channels close behind them.
    this.pool.flushAll();
    this.closing = true;
    await this.pool.closeAll();
    this.handlers.abortAll();
    await this.link.close();
    return report;
  }

  private async setUp(model: ChannelModel, workerCount: number): Promise<void> {
    // A reconnection while stopping must not start consuming again: checked before and after every await.
    if (this.draining) return;
    await declareTopology(model, { exchange: this.exchange, queue: this.queue, queueType: this.options.queueType });
    if (this.draining) return;
    await this.pool.start(model, workerCount);
  }

  /** One worker of the pool (a method of its own: the robustness tests stand in for it to time a stop or a failure). */
  private openWorker(model: WorkerModel, name: string): Promise<Worker | undefined> {
    return this.pool.open(model, name);
  }

  private get workers(): readonly Worker[] {
    return this.pool.workers;
  }

  /** Acks (batched to the end of the turn unless stopping) or rejects a delivery once. */
  private settle(call: InboundCall, outcome: Settlement): void {
    call.worker.acks.settleDelivery(call.delivery, outcome, this.draining);
  }

  private onMessage(worker: Worker, message: ConsumeMessage | null): void {
    if (message === null) {
      const text = `The broker cancelled ${worker.name}'s consumer: was the queue "${this.queue}" deleted?`;
      this.problem({ kind: 'consumer-cancelled', worker: worker.name, rpcId: '', message: text });
      return;
    }
    this.stats.received += 1;
    this.stats.inFlight += 1;
    this.deliverySeq += 1;
    const call = new InboundCall(worker, message, worker.acks.track(message), this.deliverySeq);
    try {
      this.handle(call);
    } catch (err) {
      this.broke(call, err);
    }
  }

  /**
   * Never expected (handlers' throws are answered in handle). An unsettled delivery would hold a prefetch slot for good,
   * so it is rejected without requeue (requeued, the same bug could loop on it).
   */
  private broke(call: InboundCall, err: unknown): void {
    if (call.over) return;
    const { worker } = call;
    if (!this.closing) {
      const settledBefore = call.delivery.settled;
      if (!settledBefore) this.settle(call, 'reject');
      const fate = settledBefore ? '' : '; the request was rejected without requeue';
      this.problem({ kind: 'internal', worker: worker.name, rpcId: '', message: `Could not finish a request on ${worker.name}: ${messageOf(err)}${fate}.` });
    }
    this.end(call);
  }

  /** The request is over (replied, rejected, dropped or failed): its in-flight slot is given back, once. */
  private end(call: InboundCall): void {
    if (call.over) return;
    call.over = true;
    this.stats.inFlight -= 1;
    this.handlers.finished(call.ticket);
    if (this.draining && this.stats.inFlight === 0) this.idle?.();
  }

  /** Rejects a request without requeue, with its trace step and problem. */
  private reject(call: InboundCall, rpcId: string, reason: string, problem: string): void {
    const { worker, message } = call;
    this.stats.rejected += 1;
    this.settle(call, 'reject');
    if (this.traced) this.step({ rpcId, at: Date.now(), source: 'server', kind: 'request.rejected', detail: { worker: worker.name, reason, bytes: message.content.byteLength } });
    this.problem({ kind: 'rejected', worker: worker.name, rpcId, message: problem });
  }

  /**
   * Parses the request and runs its handler. A synchronous handler's outcome is replied to at once; only an asynchronous
   * one costs a continuation. What follows the publish is the confirm callback's (see reply).
   */
  private handle(call: InboundCall): void {
    const { worker, message } = call;
    const fields = this.options.fields ?? defaultEnvelopeFields;
    const context = this.parseContext;
    context.fields = fields;
    context.headers = message.properties.headers as Record<string, unknown> | undefined;
    context.correlationId = message.properties.correlationId as string | undefined;
    context.topicMap = this.options.topicMap;
    const parsed = parseRequest(message.content, context);
    context.headers = undefined;
    const rpcId = (parsed.ok ? parsed.request.id : parsed.id) ?? `${DELIVERY_ID_PREFIX}${message.fields.deliveryTag}-${randomUUID().slice(0, 8)}`;
    call.rpcId = rpcId;
    this.options.tracing?.received(rpcId, worker.name, this.queue, message, parsed.ok ? parsed.request.body : undefined);
    if (this.traced) {
      const { consumerTag, routingKey, redelivered } = message.fields;
      const detail = { worker: worker.name, consumerTag, queue: this.queue, routingKey, redelivered };
      const wire = amqpWire(message.properties as unknown as Record<string, unknown>, message.content);
      this.step({ rpcId, at: Date.now(), source: 'server', kind: 'worker.received', detail, [WIRE_SOURCE]: wire });
    }
    if (!parsed.ok) {
      this.reject(call, rpcId, parsed.reason, `Rejected a request without requeue: ${parsed.reason}`);
      return this.end(call);
    }
    const request = parsed.request;
    call.request = request;
    if (correlationLost(request.correlationHeader)) {
      this.problem({
        kind: 'correlation-lost',
        worker: worker.name,
        rpcId,
        message: `The request's MQTT 5 Correlation Data is not UTF-8: RabbitMQ passes such bytes as the AMQP header x-correlation-id, which amqplib reads as UTF-8 text, so the bytes are lost and the reply carries them altered (the device cannot match it). Send UTF-8 Correlation Data: it then travels as correlation_id, unchanged.`,
      });
    }
    const earlier = message.fields.redelivered ? this.failedReplies.find(rpcId, request.replyRoutingKey, message.content) : undefined;
    if (earlier !== undefined && earlier.attempts < 1) {
      // Answered from memory: the handler is not run twice. A refusal of this answer counts against the request.
      call.fromMemory = true;
      if (earlier.body !== undefined) {
        // Its reply was nacked (a queue went down or was full): the same reply goes again.
        if (this.traced) {
          const detail: TraceStepDetails['handler.finished'] = { worker: worker.name, durationMs: 0, outcome: earlier.answer?.outcome ?? 'result', keptReply: true };
          if (earlier.answer?.errorCode !== undefined) detail.errorCode = earlier.answer.errorCode;
          this.step({ rpcId, at: Date.now(), source: 'server', kind: 'handler.finished', detail });
        }
        return this.reply(call, earlier.body);
      }
      // Its reply was refused before: answer with that error.
      const reason = `${earlier.reason}; the handler was not run again.`;
      if (this.traced) this.step({ rpcId, at: Date.now(), source: 'server', kind: 'handler.finished', detail: { worker: worker.name, durationMs: 0, outcome: 'error', errorCode: earlier.code } });
      const body = encodeReply({ id: request.id, error: { code: earlier.code, message: reason }, worker: worker.name }, fields);
      this.stats.failed += 1;
      return this.reply(call, body);
    }
    if (earlier !== undefined) {
      this.failedReplies.forget(rpcId, request.replyRoutingKey);
      const reason = `Its reply could not be published before (${earlier.reason}); rejected without requeue so it does not loop.`;
      this.reject(call, rpcId, reason, `Rejected ${rpcId}: ${reason}`);
      return this.end(call);
    }
    const started = performance.now();
    const running = this.handlers.run(call.ticket, rpcId, worker.name, request);
    if (!(running instanceof Promise)) return this.handled(call, running, started);
    running.then(
      (settled) => {
        try {
          this.handled(call, settled, started);
        } catch (err) {
          this.broke(call, err);
        }
      },
      (err: unknown) => this.broke(call, err),
    );
  }

  /** The handler's outcome (or its error) is encoded and replied. */
  private handled(call: InboundCall, settled: HandlerSettled, started: number): void {
    const { worker, request, rpcId } = call;
    const fields = this.options.fields ?? defaultEnvelopeFields;
    const { body, error, tooLargeBytes } = encodeHandlerReply(settled, request, worker.name, fields, this.maxMessageBytes);
    if (error) call.errorCode = error.code;
    if (tooLargeBytes !== undefined) {
      const text = `The reply to ${rpcId} is ${tooLargeBytes} bytes, over the broker's max_message_size (${this.maxMessageBytes}); answered with a reply-too-large error instead.`;
      this.problem({ kind: 'reply-too-large', worker: worker.name, rpcId, message: text });
    }
    // A handler cancelled by the stop is not a failure: its request goes back to the queue unanswered.
    if (error && !this.closing) this.stats.failed += 1;
    if (this.traced) {
      const detail: TraceStepDetails['handler.finished'] = { worker: worker.name, durationMs: performance.now() - started, outcome: error ? 'error' : 'result' };
      if (error) detail.errorCode = error.code;
      this.step({ rpcId, at: Date.now(), source: 'server', kind: 'handler.finished', detail });
    }
    this.reply(call, body);
  }

  /**
   * Publishes the reply with `mandatory`; the broker's confirm then acks the request (see confirmed). No promise per
   * reply: the confirm callback drives the ack and the bookkeeping.
   */
  private reply(call: InboundCall, body: Buffer): void {
    const { worker, request, rpcId } = call;
    call.body = body;
    if (this.closing) {
      const text = `The handler of ${rpcId} ended after the drain was over; its reply was dropped and the broker put the request back on the queue.`;
      this.problem({ kind: 'late-handler', worker: worker.name, rpcId, message: text });
      return this.end(call);
    }
    const { exchange } = this;
    const routingKey = request.replyRoutingKey;
    // OpenTelemetry: a request that carried its trace context in its body (MQTT 3.1.1) gets the reply's there too.
    body = this.options.tracing?.replyBody(rpcId, worker.name, exchange, routingKey, body) ?? body;
    call.bodyBytes = body.byteLength;
    // Only needs to be unique on this channel, to match a basic.return to its publish.
    this.replySeq += 1;
    const messageId = `${worker.name}-${this.replySeq}`;
    call.messageId = messageId;
    const traceHeaders = this.options.tracing?.replyHeaders(rpcId, worker.name, exchange, routingKey);
    const published = publishReply(worker.channel, exchange, request, messageId, this.replyDeliveryMode, body, traceHeaders, (failure) => this.confirmed(call, failure));
    if (this.traced) {
      const detail = { worker: worker.name, exchange, routingKey, replyTopic: request.replyTopic ?? routingKey, mandatory: true };
      const properties = replyProperties(request, messageId, this.replyDeliveryMode);
      this.step({ rpcId, at: Date.now(), source: 'server', kind: 'reply.published', detail, [WIRE_SOURCE]: amqpWire(properties, body) });
    }
    // The publish threw: the channel is gone (the broker requeues the request), as a failed confirm says.
    if (published instanceof Error) return this.confirmed(call, published);
    // Respect the socket's backpressure: every reply waiting on a full channel shares its one 'drain' listener. The
    // request is over only at its confirm, which comes after the drain or instead of it (a closed channel).
    if (!published) void channelDrained(worker);
  }

  /** The broker's confirm of a reply: only now is its request acked (or rejected when the reply was not taken). */
  private confirmed(call: InboundCall, failure: Error | undefined): void {
    if (call.over) return;
    try {
      if (failure) this.notConfirmed(call, failure);
      else this.routedOrReturned(call);
    } catch (err) {
      this.broke(call, err);
      return;
    }
    this.end(call);
  }

  /** The channel is gone (the request will be redelivered) or the broker refused the reply. */
  private notConfirmed(call: InboundCall, failure: Error): void {
    const { worker, rpcId, request, message } = call;
    const verdict = classifyReplyFailure({
      failureMessage: failure.message,
      closeReason: worker.closeReason,
      bodyBytes: call.bodyBytes,
      maxMessageBytes: this.maxMessageBytes,
      blamedBefore: worker.blamed === true,
    });
    // A nack is the broker's refusal; any other failure is amqplib's for a channel that closed before the confirm.
    const outcome = verdict.nacked ? 'nacked' : 'lost';
    if (this.traced) this.step({ rpcId, at: Date.now(), source: 'server', kind: 'reply.confirmed', detail: { worker: worker.name, outcome } });
    this.maxMessageBytes = verdict.maxMessageBytes;
    if (verdict.blamed) worker.blamed = true;
    const refusal = verdict.remember;
    const text = `The reply to ${rpcId} was not confirmed: ${verdict.reason}`;
    if (refusal !== undefined && call.fromMemory) {
      // Answered from memory and refused again: rejected for good (a third answer would likely go the same way). A
      // refusal that closed the channel loses this reject too: its redelivery is rejected then, by what is remembered.
      this.failedReplies.remember(rpcId, request.replyRoutingKey, refusal, message.content, { again: true });
      if (outcome === 'nacked' && !this.closing) {
        this.reject(call, rpcId, `its reply was refused twice (${verdict.reason})`, `${text}, for the second time: the request is rejected without requeue so it does not loop.`);
        return;
      }
    }
    // A nacked reply goes again when its request comes back: put back on the queue now, unless it already came back
    // once (a redelivery the server kept nothing of is not requeued: nothing may loop if memory was lost meanwhile).
    let requeue = refusal?.resend === true && !call.fromMemory && !message.fields.redelivered;
    if (refusal !== undefined && !call.fromMemory) {
      const refused: RefusedAnswer = { again: false };
      if (requeue && call.body !== undefined) {
        refused.body = call.body;
        refused.answer = call.errorCode !== undefined ? { outcome: 'error', errorCode: call.errorCode } : { outcome: 'result' };
      }
      const kept = this.failedReplies.remember(rpcId, request.replyRoutingKey, refusal, message.content, refused).body !== undefined;
      requeue = requeue && kept;
    }
    if (!this.closing) {
      const kind = verdict.tooLarge ? 'reply-too-large' : 'reply-failed';
      const next = requeue ? '; the request goes back to the queue and the same reply is published again when it comes back' : '';
      this.problem({ kind, worker: worker.name, rpcId, message: `${text}${next}` });
    }
    this.settle(call, requeue ? 'requeue' : 'reject');
  }

  /** Confirmed: the request is acked; a reply the broker returned (basic.return came before the confirm) is unroutable. */
  private routedOrReturned(call: InboundCall): void {
    const { worker, rpcId, messageId } = call;
    // An answer from memory that the broker took: nothing of the request needs keeping any more.
    if (call.fromMemory) this.failedReplies.forget(rpcId, call.request.replyRoutingKey);
    const returnReason = worker.returned.size > 0 ? worker.returned.get(messageId) : undefined;
    if (returnReason !== undefined) worker.returned.delete(messageId);
    // Even while closing: an ack that still precedes the channel.close saves a duplicate; a later one is refused harmlessly.
    this.settle(call, 'ack');
    this.stats.replied += 1;
    this.stats.perWorker[worker.name] = (this.stats.perWorker[worker.name] ?? 0) + 1;
    if (this.traced) {
      const detail: TraceStepDetails['reply.confirmed'] = { worker: worker.name, outcome: returnReason ? 'returned' : 'routed' };
      if (returnReason) detail.returnReason = returnReason;
      this.step({ rpcId, at: Date.now(), source: 'server', kind: 'reply.confirmed', detail });
    }
    if (returnReason) {
      this.stats.unroutable += 1;
      const { exchange } = this;
      const routingKey = call.request.replyRoutingKey;
      const text = `The reply to ${rpcId} was returned as unroutable (${returnReason}): nothing is bound to "${exchange}" with key "${routingKey}" (is the device subscribed to "${call.request.replyTopic ?? routingKey}"?).`;
      this.problem({ kind: 'unroutable', worker: worker.name, rpcId, message: text });
    }
  }
}

/** One request on its way through the server, from its delivery to its ack: what its callbacks share (no async frames). */
class InboundCall {
  rpcId = '';
  request!: RpcRequest;
  messageId = '';
  /** the reply as the handler made it (before any trace context went in): kept to publish again if the broker nacks it */
  body: Buffer | undefined;
  /** the handler's error code, when it answered with an error */
  errorCode: string | undefined;
  /** answered from what was kept of an earlier refused reply, without running the handler */
  fromMemory = false;
  bodyBytes = 0;
  /** its in-flight slot was given back: a late callback (a confirm after an internal failure) does nothing more */
  over = false;

  constructor(
    readonly worker: Worker,
    readonly message: ConsumeMessage,
    readonly delivery: Delivery<ConsumeMessage>,
    readonly ticket: number,
  ) {}
}
