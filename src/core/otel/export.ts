/**
 * Where BridgeScope's spans go, only when the user asks: OTLP over HTTP (protobuf) to a collector (`--otlp URL`), and/or
 * an OTLP JSON file (`--otlp-file PATH`, one ExportTraceServiceRequest per line, as the Collector's file exporter writes
 * and its otlpjsonfile receiver reads). The maintained SDK and exporters do all the encoding.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import type { Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { BridgeError } from '../errors';
import { messageOf } from '../../shared/thrown';

export interface OtelExportOptions {
  /** OTLP/HTTP traces endpoint, e.g. http://localhost:4318/v1/traces (a URL without a path gets /v1/traces) */
  url?: string;
  /** OTLP JSON lines file */
  file?: string;
  /** the resource's service.name (default: bridgescope) */
  serviceName?: string;
  /** how long one export may take before it is given up (default 5 s) */
  timeoutMs?: number;
}

/** The traces endpoint for a URL as a user types it: `http://host:4318` means its /v1/traces. */
export function otlpTracesUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BridgeError('bad-input', `--otlp "${url}" is not a URL (e.g. http://localhost:4318).`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new BridgeError('bad-input', `--otlp "${url}" must be an http:// or https:// URL (OTLP over HTTP, port 4318 by default).`);
  }
  if (parsed.pathname === '/' || parsed.pathname === '') parsed.pathname = '/v1/traces';
  return parsed.toString();
}

/** Appends each batch as one OTLP JSON line; the file is created (emptied) when the exporter is. */
class OtlpJsonFileExporter implements SpanExporter {
  constructor(private readonly path: string) {
    try {
      writeFileSync(path, '');
    } catch (err) {
      throw new BridgeError('bad-input', `--otlp-file "${path}" cannot be written (${(err as Error).message}).`);
    }
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    try {
      const bytes = JsonTraceSerializer.serializeRequest(spans);
      if (bytes) appendFileSync(this.path, `${Buffer.from(bytes).toString('utf8')}\n`);
      done({ code: ExportResultCode.SUCCESS });
    } catch (err) {
      done({ code: ExportResultCode.FAILED, error: err as Error });
    }
  }

  async shutdown(): Promise<void> {}
}

/** Passes spans on to an exporter and remembers why the last export failed, so the command can say so. */
class Watched implements SpanExporter {
  failure: string | undefined;
  exported = 0;

  constructor(
    private readonly inner: SpanExporter,
    readonly where: string,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) this.exported += spans.length;
      else this.failure = `${spans.length} span(s) could not be exported to ${this.where}: ${result.error?.message ?? 'failed'}`;
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** One tracer provider for a command: its spans exported as asked; nothing is made when nothing was asked. */
export class OtelExport {
  readonly tracer: Tracer;
  private readonly provider: BasicTracerProvider;
  private readonly exporters: Watched[] = [];

  constructor(options: OtelExportOptions) {
    const timeoutMillis = options.timeoutMs ?? 5000;
    if (options.url !== undefined) {
      const url = otlpTracesUrl(options.url);
      this.exporters.push(new Watched(new OTLPTraceExporter({ url, timeoutMillis }), url));
    }
    if (options.file !== undefined) this.exporters.push(new Watched(new OtlpJsonFileExporter(options.file), options.file));
    // The processor waits a second longer than the exporter, so an export that fails is told by the exporter, with its reason.
    const processors: SpanProcessor[] = this.exporters.map((exporter) => new BatchSpanProcessor(exporter, { exportTimeoutMillis: timeoutMillis + 1000 }));
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': options.serviceName ?? 'bridgescope' }),
      spanProcessors: processors,
    });
    this.tracer = this.provider.getTracer('bridgescope');
  }

  /** Sends what is still buffered; bounded by the export timeout. */
  async flush(): Promise<void> {
    await this.provider.forceFlush();
  }

  /** Flushes and stops; resolves with why exports failed (empty when every span went where asked). */
  async shutdown(): Promise<string[]> {
    const thrown = await this.provider.shutdown().then(
      () => undefined,
      (err: unknown) => messageOf(err),
    );
    const failures = this.exporters.flatMap((exporter) => (exporter.failure !== undefined ? [exporter.failure] : []));
    if (failures.length === 0 && thrown !== undefined) failures.push(`the OpenTelemetry export to ${this.exporters.map((exporter) => exporter.where).join(' and ')} failed (${thrown})`);
    return failures;
  }

  /** where the spans go: the traces URL and/or the file */
  get destinations(): string[] {
    return this.exporters.map((exporter) => exporter.where);
  }

  /** spans exported successfully, per destination */
  get exported(): number {
    return this.exporters.reduce((sum, exporter) => sum + exporter.exported, 0);
  }
}

/** An OtelExport when `--otlp` or `--otlp-file` was given, else undefined (nothing is exported unless asked). */
export function otelExportFor(options: { otlp?: string; otlpFile?: string }, serviceName: string): OtelExport | undefined {
  if (options.otlp === undefined && options.otlpFile === undefined) return undefined;
  return new OtelExport({
    ...(options.otlp !== undefined ? { url: options.otlp } : {}),
    ...(options.otlpFile !== undefined ? { file: options.otlpFile } : {}),
    serviceName,
  });
}
