/**
 * A local OTLP/HTTP endpoint for tests: takes POST /v1/traces (protobuf), decodes each request with the official OTLP
 * protobuf definitions (the OpenTelemetry JS SDK's own generated code, from its otlp-transformer) and keeps every span.
 */
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';

const require = createRequire(import.meta.url);
interface Decoder {
  decode(bytes: Uint8Array): unknown;
  toObject(message: unknown, options: Record<string, unknown>): unknown;
}
const root = require('otlp-transformer-protobuf/build/src/generated/root.js') as {
  opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: Decoder } } } } };
};
const ExportTraceServiceRequest = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** SPAN_KIND_* number: 1 internal, 2 server, 3 client, 4 producer, 5 consumer */
  kind: number;
  attributes: Record<string, unknown>;
  events: Array<{ name: string; attributes: Record<string, unknown> }>;
  status: { code?: number; message?: string };
}

interface KeyValue {
  key: string;
  value: { stringValue?: string; intValue?: number | string; boolValue?: boolean; doubleValue?: number; arrayValue?: { values?: KeyValue['value'][] } };
}

function valueOf(value: KeyValue['value']): unknown {
  if (value.arrayValue) return (value.arrayValue.values ?? []).map(valueOf);
  return value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : undefined) ?? value.boolValue ?? value.doubleValue;
}

function attributesOf(list: KeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((pair) => [pair.key, valueOf(pair.value)]));
}

/** Turns one decoded ExportTraceServiceRequest into flat spans. */
export function flatten(request: unknown): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  const resourceSpans = (request as { resourceSpans?: unknown[] }).resourceSpans ?? [];
  for (const resource of resourceSpans as Array<{ resource?: { attributes?: KeyValue[] }; scopeSpans?: Array<{ spans?: unknown[] }> }>) {
    const service = String(attributesOf(resource.resource?.attributes)['service.name'] ?? '');
    for (const scope of resource.scopeSpans ?? []) {
      for (const span of (scope.spans ?? []) as Array<Record<string, unknown>>) {
        spans.push({
          service,
          traceId: String(span.traceId ?? ''),
          spanId: String(span.spanId ?? ''),
          parentSpanId: String(span.parentSpanId ?? ''),
          name: String(span.name),
          kind: Number(span.kind ?? 0),
          attributes: attributesOf(span.attributes as KeyValue[] | undefined),
          events: ((span.events ?? []) as Array<{ name: string; attributes?: KeyValue[] }>).map((event) => ({ name: event.name, attributes: attributesOf(event.attributes) })),
          status: (span.status ?? {}) as { code?: number; message?: string },
        });
      }
    }
  }
  return spans;
}

export interface OtlpReceiver {
  url: string;
  spans: ReceivedSpan[];
  /** requests that did not decode (none expected) */
  errors: string[];
  /** resolves once `done(spans)` holds (checked on every request received) */
  until(done: (spans: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const errors: string[] = [];
  const waiters: Array<() => void> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      try {
        if (req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/x-protobuf') throw new Error(`unexpected ${req.method} ${req.url} ${req.headers['content-type']}`);
        const decoded = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(Buffer.concat(chunks)), { longs: String, bytes: String, enums: Number, defaults: false });
        // bytes as base64 by toObject: trace and span ids are compared in hex, as W3C traceparent writes them
        const hexed = JSON.parse(JSON.stringify(decoded), (key: string, value: unknown) =>
          (key === 'traceId' || key === 'spanId' || key === 'parentSpanId') && typeof value === 'string' ? Buffer.from(value, 'base64').toString('hex') : value,
        ) as unknown;
        spans.push(...flatten(hexed));
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      } catch (err) {
        errors.push((err as Error).message);
        res.writeHead(400).end();
      }
      for (const waiter of waiters.splice(0)) waiter();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const until = (done: (all: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (done(spans)) resolve(spans);
        else waiters.push(check);
      };
      check();
    });
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    errors,
    until,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
