/** `--otlp URL` and `--otlp-file PATH`, the same on every command that makes spans (call, serve; watch adds them the same way). */
import type { Command } from 'commander';
import { otelExportFor, type OtelExport } from '../core/otel/export';
import { withDeadline } from '../shared/deadline';
import { warn } from './run';

export interface OtlpOptions {
  otlp?: string;
  otlpFile?: string;
}

export function addOtlpOptions(command: Command): Command {
  return command
    .option('--otlp <url>', 'export OpenTelemetry spans of each RPC over OTLP/HTTP to this collector (e.g. http://localhost:4318; a URL without a path gets /v1/traces)')
    .option('--otlp-file <path>', 'write the same spans to this file as OTLP JSON lines, to attach to a bug report');
}

/** The exporter the options ask for, or undefined: nothing is exported unless asked. */
export function otelFor(options: OtlpOptions, serviceName: string): OtelExport | undefined {
  return otelExportFor(options, serviceName);
}

/** Sends what is left, within `boundMs`, and says what could not be exported. */
export async function finishOtel(otel: OtelExport | undefined, boundMs = 7000): Promise<void> {
  if (!otel) return;
  const ended = await withDeadline(otel.shutdown(), boundMs).catch((err: unknown) => ({ done: true as const, value: [`the OpenTelemetry export failed (${(err as Error).message})`] }));
  const failures = ended.done ? ended.value : [`the OpenTelemetry export did not finish within ${boundMs} ms`];
  for (const failure of failures) warn(`${failure}.`);
}
