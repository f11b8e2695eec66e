/**
 * Spans for what `watch` sees of other clients' RPCs, in the trace each request carries (W3C trace context: MQTT 5 user
 * properties that RabbitMQ 3.13+ turns into AMQP headers, or the 3.1.1 body fields; context.ts). A request without a
 * context gets no span: watch never starts a trace of its own for traffic it did not send.
 * - `observe {exchange}:{routing key}` (CONSUMER, operation "receive"): the request as the broker routed it, from its
 *   publish (as watch saw it) to its reply, or to its verdict;
 * - a child `observe {exchange}:{reply key}` for the reply, at the moment it was seen, naming the worker;
 * - the verdict of a request left unanswered (or answered late) as the `bridgescope.verdict` event, as call's spans have.
 */
import { SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { Verdict } from '../../shared/diagnosis';
import { ATTR, BRIDGESCOPE, destinationName, MESSAGING_SYSTEM } from './conventions';
import { requestContext } from './context';
import { addVerdict } from './rpc-spans';

/** What a span needs of a watched request: its pattern and id (the key), its keys, and when it was published. */
export interface WatchedRef {
  pattern: string;
  topic: string;
  id: string;
  replyKey: string;
  sentAt: number;
}

export type WatchedOutcome =
  | (WatchedRef & { type: 'pair'; rttMs: number; worker?: string })
  | (WatchedRef & { type: 'verdict'; verdict: Verdict; rttMs?: number; worker?: string });

export interface WatchSpansOptions {
  exchange: string;
  /** how watch saw the messages: 'tap' or 'firehose' (the attribute bridgescope.observed_by) */
  observedBy: string;
  /** most requests followed at once (default 10,000, watch's own cap on pending requests): past it the oldest span ends */
  maxOpen?: number;
}

const key = (ref: { pattern: string; id: string; replyKey: string }): string => `${ref.pattern}:${ref.id}\n${ref.replyKey}`;

export class WatchSpans {
  /** open request spans, oldest first */
  private readonly open = new Map<string, { span: Span; context: Context }>();
  /** the contexts of requests whose span ended with a verdict: a late reply still joins their trace (bounded) */
  private readonly closed = new Map<string, Context>();
  private readonly maxOpen: number;
  /** requests seen, and those of them that carried a trace context (a span each) */
  seen = 0;
  traced = 0;

  constructor(
    private readonly tracer: Tracer,
    private readonly options: WatchSpansOptions,
  ) {
    this.maxOpen = options.maxOpen ?? 10_000;
  }

  private attributes(operationName: string, routingKey: string, ref: WatchedRef): Attributes {
    return {
      [ATTR.messagingSystem]: MESSAGING_SYSTEM,
      [ATTR.operationType]: 'receive',
      [ATTR.operationName]: operationName,
      [ATTR.destinationName]: destinationName(this.options.exchange, routingKey),
      [ATTR.routingKey]: routingKey,
      [ATTR.messageId]: ref.id,
      [ATTR.conversationId]: ref.id,
      [BRIDGESCOPE.rpcId]: ref.id,
      [BRIDGESCOPE.observedBy]: `watch (${this.options.observedBy})`,
    };
  }

  /** A request seen on the exchange: a span in its own trace when it carries one. */
  request(ref: WatchedRef, headers: Record<string, unknown> | undefined, body: Record<string, unknown> | undefined, routedQueues?: readonly string[]): void {
    this.seen += 1;
    const parent = requestContext(headers, body);
    if (!parent) return;
    this.traced += 1;
    const name = key(ref);
    this.endOpen(name, ref.sentAt);
    if (this.open.size >= this.maxOpen) {
      const [oldest] = this.open.keys();
      if (oldest !== undefined) this.endOpen(oldest, Date.now(), 'no longer followed: more requests waited at once than watch follows');
    }
    const attributes = this.attributes('publish', ref.topic, ref);
    if (routedQueues) attributes[BRIDGESCOPE.routedQueues] = [...routedQueues];
    const span = this.tracer.startSpan(`observe ${destinationName(this.options.exchange, ref.topic)}`, { kind: SpanKind.CONSUMER, startTime: ref.sentAt, attributes }, parent);
    this.open.set(name, { span, context: trace.setSpan(parent, span) });
  }

  /** A request closed: replied (a reply span under it), or given a verdict (an event), or a late reply after that verdict. */
  settle(outcome: WatchedOutcome): void {
    const name = key(outcome);
    const entry = this.open.get(name);
    const context = entry?.context ?? this.closed.get(name);
    if (!context) return;
    const replyAt = outcome.rttMs !== undefined ? outcome.sentAt + outcome.rttMs : undefined;
    if (replyAt !== undefined) {
      const attributes = this.attributes('publish', outcome.replyKey, outcome);
      if (outcome.worker !== undefined) attributes[BRIDGESCOPE.worker] = outcome.worker;
      const reply = this.tracer.startSpan(`observe ${destinationName(this.options.exchange, outcome.replyKey)}`, { kind: SpanKind.CONSUMER, startTime: replyAt, attributes }, context);
      // A late reply, whose request span already ended with its first verdict, carries the late verdict itself.
      if (!entry && outcome.type === 'verdict') markVerdict(reply, outcome.verdict);
      reply.end(replyAt);
    }
    if (!entry) {
      this.closed.delete(name);
      return;
    }
    this.open.delete(name);
    if (outcome.type === 'verdict') {
      markVerdict(entry.span, outcome.verdict);
      this.remember(name, context);
    }
    // Undetermined (a tap that could not see whether a reply came): no wait is claimed, the span ends where it began.
    const undetermined = outcome.type === 'verdict' && outcome.verdict.code === 'undetermined' && replyAt === undefined;
    entry.span.end(replyAt ?? (undetermined ? outcome.sentAt : Date.now()));
  }

  /** Ends every span still open (watch stopping): they are said to have been open still. */
  endAll(): void {
    for (const name of [...this.open.keys()]) this.endOpen(name, Date.now(), 'watch stopped before a reply or a verdict');
    this.closed.clear();
  }

  private endOpen(name: string, at: number, why?: string): void {
    const entry = this.open.get(name);
    if (!entry) return;
    this.open.delete(name);
    if (why !== undefined) entry.span.setAttribute('bridgescope.watch.unfinished', why);
    entry.span.end(at);
  }

  private remember(name: string, context: Context): void {
    this.closed.set(name, context);
    if (this.closed.size > 1_000) {
      const [oldest] = this.closed.keys();
      if (oldest !== undefined) this.closed.delete(oldest);
    }
  }
}

function markVerdict(span: Span, verdict: Verdict): void {
  addVerdict(span, verdict);
  // Not known is no error: a tap's request whose reply may have come before its bind (the verdict event says so).
  if (verdict.code === 'undetermined') return;
  span.setAttribute(ATTR.errorType, verdict.code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: verdict.message });
}
