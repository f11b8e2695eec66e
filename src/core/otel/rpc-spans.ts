/**
 * The caller's side of one RPC as spans: the device's publish (a live span, whose context the request carries), then,
 * from the recorded trace steps once the RPC settled, the broker's routing and deliveries (firehose steps), the reply's
 * delivery to the device, and the verdict as an event of the RPC's root span. The worker's own spans (process, handler,
 * the reply's send, the ack) come from the worker: BridgeScope's server makes them (server-spans.ts), and a third-party
 * worker instrumented with OpenTelemetry makes its own, in the same trace.
 *
 * Broker steps are instants: the firehose says what the broker did, not how long it took, so their spans last 0 ms at
 * the moment BridgeScope saw them.
 */
import { context as otelContext, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { Verdict } from '../../shared/diagnosis';
import type { TraceStep, TraceStepDraft } from '../../shared/trace';
import { ATTR, BRIDGESCOPE, destinationName, MESSAGING_SYSTEM } from './conventions';
import { carrierOf, contextFrom, requestContext, type TraceCarrier } from './context';

type Step = TraceStep | TraceStepDraft;

export interface RpcSpanStart {
  /** the request topic and the routing key the MQTT plugin gives it */
  topic: string;
  routingKey: string;
  /** the exchange the MQTT plugin publishes to (default amq.topic) */
  exchange: string;
  mqttVersion: 3 | 4 | 5;
  method?: string;
}

/** The end of an RPC as the caller knows it. */
export interface RpcSpanEnd {
  rpcId: string | undefined;
  steps: readonly Step[];
  verdict?: Verdict;
  /** set when the call failed: its error code */
  errorCode?: string;
}

function messagingAttributes(operationType: string | undefined, operationName: string, exchange: string, routingKey: string): Attributes {
  const attributes: Attributes = {
    [ATTR.messagingSystem]: MESSAGING_SYSTEM,
    [ATTR.operationName]: operationName,
    [ATTR.destinationName]: destinationName(exchange, routingKey),
  };
  if (operationType !== undefined) attributes[ATTR.operationType] = operationType;
  if (routingKey !== '') attributes[ATTR.routingKey] = routingKey;
  return attributes;
}

/** The headers a step's message carried, when the step kept them. */
function headersOf(step: Step | undefined): Record<string, unknown> | undefined {
  return step && 'wire' in step.detail ? step.detail.wire?.headers : undefined;
}

/** The JSON body a step kept, when it was kept whole (the 3.1.1 body field lives there). */
function bodyOf(step: Step | undefined): unknown {
  const body = step && 'wire' in step.detail ? step.detail.wire?.body : undefined;
  if (!body || body.encoding !== 'json' || body.shown < body.bytes) return undefined;
  try {
    return JSON.parse(body.preview) as unknown;
  } catch {
    return undefined;
  }
}

/** One RPC of BridgeScope's client: `begin` before the call (its carrier goes on the request), `end` once diagnosed. */
export class RpcSpans {
  private readonly root: Span;
  private readonly send: Span;
  private readonly rootContext: Context;
  readonly carrier: TraceCarrier | undefined;

  constructor(
    private readonly tracer: Tracer,
    private readonly start: RpcSpanStart,
    parent: Context = otelContext.active(),
  ) {
    const destination = destinationName(start.exchange, start.routingKey);
    this.root = tracer.startSpan(`call ${start.method ?? start.topic}`, { kind: SpanKind.INTERNAL, attributes: { [ATTR.messagingSystem]: MESSAGING_SYSTEM } }, parent);
    this.rootContext = trace.setSpan(parent, this.root);
    this.send = tracer.startSpan(
      `publish ${destination}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          ...messagingAttributes('send', 'publish', start.exchange, start.routingKey),
          [ATTR.protocolName]: 'mqtt',
          [ATTR.protocolVersion]: start.mqttVersion === 5 ? '5' : '3.1.1',
        },
      },
      this.rootContext,
    );
    this.carrier = carrierOf(this.send.spanContext());
  }

  /** Ends the RPC's spans, the steps' spans made in between; idempotent enough for a finally (a second end is ignored by the SDK). */
  end(rpc: RpcSpanEnd): void {
    const { steps } = rpc;
    const sendContext = trace.setSpan(this.rootContext, this.send);
    const ids: Attributes = {};
    if (rpc.rpcId !== undefined) {
      ids[ATTR.messageId] = rpc.rpcId;
      ids[ATTR.conversationId] = rpc.rpcId;
      ids[BRIDGESCOPE.rpcId] = rpc.rpcId;
    }
    this.root.setAttributes(ids);
    this.send.setAttributes(ids);
    const published = steps.find((step) => step.kind === 'mqtt.published');
    const acknowledged = steps.find((step) => step.kind === 'mqtt.acknowledged');
    const sent = acknowledged ?? published;
    if (!published) this.send.setAttribute(ATTR.errorType, rpc.errorCode ?? 'not-sent');
    if (!published) this.send.setStatus({ code: SpanStatusCode.ERROR, message: 'not sent' });
    this.send.end(sent ? sent.at : undefined);
    spansFromSteps(this.tracer, steps, { request: sendContext, fallback: this.rootContext, ids });
    if (rpc.verdict) addVerdict(this.root, rpc.verdict);
    if (rpc.errorCode !== undefined) {
      this.root.setAttribute(ATTR.errorType, rpc.errorCode);
      this.root.setStatus({ code: SpanStatusCode.ERROR, message: rpc.verdict?.message ?? rpc.errorCode });
    }
    const last = steps.reduce((latest, step) => Math.max(latest, step.at), 0);
    this.root.end(last > 0 ? Math.max(last, Date.now()) : undefined);
  }
}

/** The verdict of an RPC: an event with its code, the hop it stopped at and its sentence. */
export function addVerdict(span: Span, verdict: Verdict): void {
  span.addEvent(BRIDGESCOPE.verdictEvent, {
    [BRIDGESCOPE.verdictCode]: verdict.code,
    [BRIDGESCOPE.verdictHop]: verdict.hop,
    [BRIDGESCOPE.verdictMessage]: verdict.message,
  });
}

export interface StepSpanParents {
  /** the request's producer context; undefined: read from the request's own headers or body (an RPC BridgeScope did not send) */
  request?: Context;
  /** where spans go whose parent is not known (no context on the message) */
  fallback?: Context;
  ids?: Attributes;
}

/**
 * Spans for the broker's and the device's hops an RPC's steps recorded: routing and delivery of the request and of the
 * reply, and the reply's arrival at the device. Server steps are left out: the worker makes its own spans. Also the
 * hook for Watch, which sees other clients' RPCs: with no `request` parent, the request's own context (MQTT 5 user
 * properties as AMQP headers, or the 3.1.1 body field) is used, so spans join the device's trace when it propagates one.
 */
export function spansFromSteps(tracer: Tracer, steps: readonly Step[], parents: StepSpanParents = {}): void {
  const requestPublish = steps.find((step) => step.kind === 'broker.published' && step.detail.leg === 'request');
  const request = parents.request ?? requestContext(headersOf(requestPublish), bodyOf(requestPublish)) ?? parents.fallback;
  // The reply's context: the AMQP headers the worker published it with (the firehose's copy), or what it arrived with:
  // MQTT 5 user properties, or on 3.1.1 its body fields (BridgeScope's server adds them when the request had them).
  const replyPublish = steps.find((step) => step.kind === 'broker.published' && step.detail.leg === 'reply');
  const replyReceived = steps.find((step) => step.kind === 'mqtt.reply.received');
  const reply = contextFrom(headersOf(replyPublish)) ?? requestContext(headersOf(replyReceived), bodyOf(replyReceived)) ?? parents.fallback ?? request;
  const ids = parents.ids ?? {};
  const instant = (name: string, kind: SpanKind, attributes: Attributes, at: number, parent: Context | undefined): Context => {
    const span = tracer.startSpan(name, { kind, attributes: { ...attributes, ...ids }, startTime: at }, parent ?? otelContext.active());
    span.end(at);
    return trace.setSpan(parent ?? otelContext.active(), span);
  };
  const routed: Partial<Record<'request' | 'reply', Context>> = {};
  for (const step of steps) {
    if (step.kind === 'broker.published') {
      const parent = step.detail.leg === 'request' ? request : reply;
      const key = step.detail.routingKeys[0] ?? '';
      const attributes = messagingAttributes(undefined, 'route', step.detail.exchange, key);
      attributes[BRIDGESCOPE.routedQueues] = step.detail.routedQueues;
      if (step.detail.node) attributes[BRIDGESCOPE.node] = step.detail.node;
      if (step.detail.routedQueues.length === 0) attributes[ATTR.errorType] = 'unroutable';
      routed[step.detail.leg] ??= instant(`route ${destinationName(step.detail.exchange, key)}`, SpanKind.INTERNAL, attributes, step.at, parent);
    } else if (step.kind === 'broker.delivered') {
      const parent = routed[step.detail.leg] ?? (step.detail.leg === 'request' ? request : reply);
      const attributes: Attributes = {
        [ATTR.messagingSystem]: MESSAGING_SYSTEM,
        [ATTR.operationName]: 'deliver',
        [ATTR.destinationName]: step.detail.queue,
        [ATTR.consumerGroup]: step.detail.queue,
      };
      const key = step.detail.routingKeys[0];
      if (key) attributes[ATTR.routingKey] = key;
      if (step.detail.node) attributes[BRIDGESCOPE.node] = step.detail.node;
      instant(`deliver ${step.detail.queue}`, SpanKind.INTERNAL, attributes, step.at, parent);
    } else if (step.kind === 'mqtt.reply.received') {
      const attributes: Attributes = {
        [ATTR.messagingSystem]: MESSAGING_SYSTEM,
        [ATTR.operationType]: 'receive',
        [ATTR.operationName]: 'receive',
        [ATTR.destinationName]: step.detail.topic,
        [ATTR.protocolName]: 'mqtt',
        [ATTR.bodySize]: step.detail.bytes,
      };
      if (step.detail.topicMismatch) attributes[ATTR.errorType] = 'reply-on-other-topic';
      // The call waits for its reply: a receive span, CLIENT as v1.44 has it.
      instant(`receive ${step.detail.topic}`, SpanKind.CLIENT, attributes, step.at, reply);
    }
  }
}
