/** The core's one error class: a BridgeScope error always carries a code and a user-facing sentence. */
import type { ErrorCode, ErrorShape } from '../shared/errors';

export class BridgeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BridgeError';
    this.code = code;
  }

  toShape(): ErrorShape {
    return { code: this.code, message: this.message };
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
