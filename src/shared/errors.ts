import type { Verdict } from './verdict';

/** The error shape that crosses every boundary (IPC, WebSocket, CLI): a code and one sentence. */

export type ErrorCode =
  | 'bad-input'
  /** the command needs a broker connection and none is open */
  | 'not-connected'
  /** something of the kind is already running, or a cap is reached: try again later */
  | 'busy'
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
  /** for a failed RPC: its id (to open its trace) */
  rpcId?: string;
  /** for a failed RPC: where it stopped and why */
  verdict?: Verdict;
}
