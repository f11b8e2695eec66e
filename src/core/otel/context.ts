/**
 * W3C trace context on BridgeScope's RPCs: how a request carries it and how a worker reads it back.
 * - MQTT 5: user properties `traceparent` and `tracestate` (the W3C "Trace Context: MQTT" draft); RabbitMQ 3.13+ passes
 *   them on as AMQP headers of the same names.
 * - MQTT 3.1.1 (no properties): top-level string fields `traceparent` and `tracestate` of the JSON request body
 *   (TRACE_BODY_FIELDS). Raw bodies (--payload-file) carry none.
 * - AMQP (a reply, or a worker's own publish): headers `traceparent` and `tracestate`, as OpenTelemetry's amqplib
 *   instrumentation writes and reads them.
 */
import { ROOT_CONTEXT, trace, type Context, type SpanContext } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Mqtt5RequestOptions } from '../../shared/rpc';

export interface TraceCarrier {
  traceparent: string;
  tracestate?: string;
}

/** The body fields of an MQTT 3.1.1 request (and of nothing else): the same names and values as the W3C headers. */
export const TRACE_BODY_FIELDS = { traceparent: 'traceparent', tracestate: 'tracestate' } as const;

const propagator = new W3CTraceContextPropagator();

const setter = {
  set(carrier: Record<string, string>, key: string, value: string): void {
    carrier[key] = value;
  },
};

const getter = {
  get(carrier: Record<string, unknown>, key: string): string | undefined {
    const value = carrier[key];
    if (typeof value === 'string') return value;
    if (Buffer.isBuffer(value)) return value.toString('utf8');
    if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
    return undefined;
  },
  keys(carrier: Record<string, unknown>): string[] {
    return Object.keys(carrier);
  },
};

/** The W3C headers of a span's context (empty when the span is not sampled or invalid). */
export function carrierOf(spanContext: SpanContext): TraceCarrier | undefined {
  const out: Record<string, string> = {};
  propagator.inject(trace.setSpanContext(ROOT_CONTEXT, spanContext), out, setter);
  return out.traceparent ? (out as unknown as TraceCarrier) : undefined;
}

/** The remote context in headers or a body (anything that is not a valid traceparent is no context). */
export function contextFrom(carrier: Record<string, unknown> | undefined): Context | undefined {
  if (!carrier || typeof carrier !== 'object') return undefined;
  const context = propagator.extract(ROOT_CONTEXT, carrier, getter);
  return trace.getSpanContext(context) ? context : undefined;
}

/** The context a request came with: its AMQP headers first (MQTT 5, or an AMQP client), then its JSON body's fields. */
export function requestContext(headers: Record<string, unknown> | undefined, body: unknown): Context | undefined {
  const fromHeaders = contextFrom(headers);
  if (fromHeaders) return fromHeaders;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const record = body as Record<string, unknown>;
  return contextFrom({ traceparent: record[TRACE_BODY_FIELDS.traceparent], tracestate: record[TRACE_BODY_FIELDS.tracestate] });
}

/** What the RPC client adds to a request for its trace context: user properties on MQTT 5, body fields on 3.1.1. */
export function carryTraceContext<T extends { payload?: Record<string, unknown>; mqtt5?: Mqtt5RequestOptions; rawBody?: Uint8Array }>(
  options: T,
  carrier: TraceCarrier,
  protocolVersion: number,
): T {
  const pairs = Object.entries(carrier).filter((pair): pair is [string, string] => typeof pair[1] === 'string');
  if (protocolVersion === 5) {
    const userProperties = [...(options.mqtt5?.userProperties ?? []), ...pairs.map(([key, value]) => ({ key, value }))];
    return { ...options, mqtt5: { ...options.mqtt5, userProperties } };
  }
  if (options.rawBody) return options;
  return { ...options, payload: { ...options.payload, ...Object.fromEntries(pairs) } };
}
