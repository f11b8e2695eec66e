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
