/** The error shape that crosses every boundary (IPC, WebSocket, CLI): a code and one sentence. */

export type ErrorCode =
  | 'bad-input'
  | 'timeout'
  | 'unreachable'
  | 'auth'
  | 'not-found'
  | 'not-installed'
  | 'broker-failed'
  | 'unroutable'
  | 'cancelled'
  | 'too-large'
  | 'internal';

export interface ErrorShape {
  code: ErrorCode;
  message: string;
}

export function isErrorShape(value: unknown): value is ErrorShape {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { code?: unknown }).code === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}
