/**
 * The embedded server's side of an RPC as spans, continuing the trace the request came with (AMQP headers
 * `traceparent`/`tracestate`, which RabbitMQ 3.13+ makes of MQTT 5 user properties, or the 3.1.1 body fields):
 * `process {exchange}:{key}` (CONSUMER) from delivery to ack, its handler, `send {exchange}:{reply key}` (PRODUCER) for
 * the reply, whose context goes on the reply as AMQP headers, and `ack`/`nack {queue}` (settle).
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { ConsumeMessage } from 'amqplib';
import type { TraceStepDraft } from '../../shared/trace';
import { BoundedMap } from '../bounded-map';
import { ATTR, BRIDGESCOPE, consumerDestinationName, destinationName, MESSAGING_SYSTEM } from './conventions';
import { carrierOf, contextFrom, requestContext, TRACE_BODY_FIELDS } from './context';

/** What RpcServer tells its tracing (RpcServerOptions.tracing). */
export interface ServerTracing {
  /** a request was delivered to a worker (before its handler runs); `body` is the parsed JSON body, when it parsed */
  received(rpcId: string, worker: string, queue: string, message: ConsumeMessage, body: unknown): void;
  /** the headers to publish the reply with: the trace context of its send span */
  replyHeaders(rpcId: string, worker: string, exchange: string, routingKey: string): Record<string, string> | undefined;
  /** the reply's body, with the same context in its fields when the request carried its own in its body (MQTT 3.1.1) */
  replyBody(rpcId: string, worker: string, exchange: string, routingKey: string, body: Buffer): Buffer;
}

interface Handling {
  process: Span;
  processContext: Context;
  handler: Span;
  send?: Span;
  /** the consumer's destination, for its settle span too */
  destination: string;
  /** the request's context came in its body fields (MQTT 3.1.1), not in headers */
  fromBody: boolean;
  ids: Attributes;
}

/** Spans of the server's requests; `step` takes the server's steps (handler finished, reply confirmed, rejected). */
export class ServerSpans implements ServerTracing {
  /** requests between delivery and settle, by worker and id; bounded (a request whose steps never come is dropped) */
  private readonly open = new BoundedMap<string, Handling>(10_000, (_, handling) => this.abandon(handling));

  constructor(private readonly tracer: Tracer) {}

  /** Never throws: tracing must not cost a request its answer (whatever the headers hold). */
  received(rpcId: string, worker: string, queue: string, message: ConsumeMessage, body: unknown): void {
    try {
      this.start(rpcId, worker, queue, message, body);
    } catch {
      // no span for this request
    }
  }

  private start(rpcId: string, worker: string, queue: string, message: ConsumeMessage, body: unknown): void {
    const headers = message.properties.headers as Record<string, unknown> | undefined;
    const fromHeaders = contextFrom(headers);
    const fromBody = fromHeaders ? undefined : requestContext(undefined, body);
    const parent = fromHeaders ?? fromBody ?? ROOT_CONTEXT;
    const { exchange, routingKey, deliveryTag } = message.fields;
    const ids: Attributes = { [ATTR.conversationId]: rpcId, [BRIDGESCOPE.rpcId]: rpcId, [BRIDGESCOPE.worker]: worker };
    const messageId = typeof message.properties.messageId === 'string' ? message.properties.messageId : rpcId;
    const destination = consumerDestinationName(exchange, routingKey, queue);
    const process = this.tracer.startSpan(
      `process ${destination}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          [ATTR.messagingSystem]: MESSAGING_SYSTEM,
          [ATTR.operationType]: 'process',
          [ATTR.operationName]: 'process',
          [ATTR.destinationName]: destination,
          ...(routingKey !== '' ? { [ATTR.routingKey]: routingKey } : {}),
          [ATTR.consumerGroup]: queue,
          [ATTR.deliveryTag]: deliveryTag,
          [ATTR.messageId]: messageId,
          [ATTR.bodySize]: message.content.byteLength,
          [ATTR.protocolName]: 'amqp',
          [ATTR.protocolVersion]: '0.9.1',
          ...ids,
        },
      },
      parent,
    );
    const processContext = trace.setSpan(parent, process);
    const method = typeof body === 'object' && body !== null && typeof (body as { method?: unknown }).method === 'string' ? (body as { method: string }).method : undefined;
    const handler = this.tracer.startSpan(`handle ${method ?? queue}`, { kind: SpanKind.INTERNAL, attributes: ids }, processContext);
    this.open.set(key(worker, rpcId), { process, processContext, handler, destination, ids, fromBody: fromBody !== undefined });
  }

  /** Never throws: a reply goes out with or without its trace context. */
  replyHeaders(rpcId: string, worker: string, exchange: string, routingKey: string): Record<string, string> | undefined {
    try {
      return this.startReply(rpcId, worker, exchange, routingKey);
    } catch {
      return undefined;
    }
  }

  /** Never throws; a body that is not a JSON object is left as it is. */
  replyBody(rpcId: string, worker: string, exchange: string, routingKey: string, body: Buffer): Buffer {
    try {
      const handling = this.open.get(key(worker, rpcId));
      if (!handling?.fromBody) return body;
      const carrier = this.startReply(rpcId, worker, exchange, routingKey);
      const record = JSON.parse(body.toString('utf8')) as unknown;
      if (!carrier?.traceparent || typeof record !== 'object' || record === null || Array.isArray(record)) return body;
      const fields: Record<string, string> = { [TRACE_BODY_FIELDS.traceparent]: carrier.traceparent };
      if (carrier.tracestate) fields[TRACE_BODY_FIELDS.tracestate] = carrier.tracestate;
      return Buffer.from(JSON.stringify({ ...record, ...fields }));
    } catch {
      return body;
    }
  }

  /** The reply's send span (made once per request), and its context as W3C headers. */
  private startReply(rpcId: string, worker: string, exchange: string, routingKey: string): Record<string, string> | undefined {
    const handling = this.open.get(key(worker, rpcId));
    if (!handling) return undefined;
    if (handling.send) return carrierHeaders(handling.send);
    handling.send = this.tracer.startSpan(
      `publish ${destinationName(exchange, routingKey)}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          [ATTR.messagingSystem]: MESSAGING_SYSTEM,
          [ATTR.operationType]: 'send',
          [ATTR.operationName]: 'publish',
          [ATTR.destinationName]: destinationName(exchange, routingKey),
          ...(routingKey !== '' ? { [ATTR.routingKey]: routingKey } : {}),
          ...handling.ids,
        },
      },
      handling.processContext,
    );
    return carrierHeaders(handling.send);
  }

  /** The server's steps end the spans: a listener of RpcServer's 'step' events. */
  readonly step = (step: TraceStepDraft): void => {
    if (step.kind === 'handler.finished') {
      const handling = this.open.get(key(step.detail.worker, step.rpcId));
      if (!handling) return;
      if (step.detail.outcome === 'error') {
        handling.handler.setAttribute(ATTR.errorType, step.detail.errorCode ?? 'error');
        handling.handler.setStatus({ code: SpanStatusCode.ERROR, message: step.detail.errorCode ?? 'error' });
      }
      handling.handler.end(step.at);
    } else if (step.kind === 'reply.confirmed') {
      const handling = this.open.get(key(step.detail.worker, step.rpcId));
      if (!handling) return;
      this.open.delete(key(step.detail.worker, step.rpcId));
      const failed = step.detail.outcome === 'returned' ? 'unroutable' : step.detail.outcome === 'routed' ? undefined : step.detail.outcome;
      if (handling.send && failed) {
        handling.send.setAttribute(ATTR.errorType, failed);
        handling.send.setStatus({ code: SpanStatusCode.ERROR, message: step.detail.returnReason ?? failed });
      }
      handling.send?.end(step.at);
      // The ack goes once the reply is confirmed; a nacked reply's request is rejected instead.
      this.settle(handling, step.detail.outcome === 'nacked' || step.detail.outcome === 'lost' ? 'nack' : 'ack', step.at);
      if (failed) handling.process.setAttribute(ATTR.errorType, failed);
      handling.process.end(step.at);
    } else if (step.kind === 'request.rejected') {
      const handling = this.open.get(key(step.detail.worker, step.rpcId));
      if (!handling) return;
      this.open.delete(key(step.detail.worker, step.rpcId));
      handling.handler.end(step.at);
      this.settle(handling, 'nack', step.at);
      handling.process.setAttribute(ATTR.errorType, 'rejected');
      handling.process.setStatus({ code: SpanStatusCode.ERROR, message: step.detail.reason });
      handling.process.end(step.at);
    }
  };

  private settle(handling: Handling, operation: 'ack' | 'nack', at: number): void {
    const span = this.tracer.startSpan(
      `${operation} ${handling.destination}`,
      {
        kind: SpanKind.CLIENT,
        startTime: at,
        attributes: {
          [ATTR.messagingSystem]: MESSAGING_SYSTEM,
          [ATTR.operationType]: 'settle',
          [ATTR.operationName]: operation,
          [ATTR.destinationName]: handling.destination,
          ...handling.ids,
        },
      },
      handling.processContext,
    );
    span.end(at);
  }

  /** A request whose end never came (its steps were lost, or too many were open): its spans end, marked so. */
  private abandon(handling: Handling): void {
    for (const span of [handling.handler, handling.send, handling.process]) {
      span?.setAttribute(ATTR.errorType, 'abandoned');
      span?.end();
    }
  }
}

function carrierHeaders(span: Span): Record<string, string> | undefined {
  const carrier = carrierOf(span.spanContext());
  return carrier ? { ...carrier } : undefined;
}

function key(worker: string, rpcId: string): string {
  return `${worker}\u0000${rpcId}`;
}
