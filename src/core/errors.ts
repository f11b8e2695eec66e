/** The core's one error class: a BridgeScope error always carries a code and a user-facing sentence. */
import type { Verdict } from '../shared/diagnosis';
import type { ErrorCode, ErrorShape, FailureReason } from '../shared/errors';
import { redactDeep } from '../shared/redact';

export interface BridgeErrorOptions {
  cause?: unknown;
  /** why, for a program (a verdict, a fall-back): never read the sentence */
  reason?: FailureReason;
  /** for a failed RPC: its id (the UI opens its trace) */
  rpcId?: string;
  /** for a failed RPC: where it stopped and why */
  verdict?: Verdict;
}

export class BridgeError extends Error {
  readonly code: ErrorCode;
  readonly rpcId: string | undefined;
  readonly verdict: Verdict | undefined;
  readonly reason: FailureReason | undefined;

  constructor(code: ErrorCode, message: string, options?: BridgeErrorOptions) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'BridgeError';
    this.code = code;
    this.rpcId = options?.rpcId;
    this.verdict = options?.verdict;
    this.reason = options?.reason;
  }

  toShape(): ErrorShape {
    return {
      code: this.code,
      message: this.message,
      ...(this.rpcId !== undefined ? { rpcId: this.rpcId } : {}),
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      // Its sentences quote broker answers and error messages: no password crosses the boundary in them either.
      ...(this.verdict !== undefined ? { verdict: redactDeep(this.verdict) } : {}),
    };
  }
}

const networkCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EAI_AGAIN']);

/** Turns anything thrown into the shape a user sees; network failures become 'unreachable'. */
export function toErrorShape(err: unknown): ErrorShape {
  if (err instanceof BridgeError) return err.toShape();
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code && networkCodes.has(code)) return { code: 'unreachable', message: err.message };
    if (err instanceof AggregateError && err.errors.length > 0) return toErrorShape(err.errors[0]);
    return { code: 'internal', message: err.message || String(err) };
  }
  return { code: 'internal', message: String(err) };
}
