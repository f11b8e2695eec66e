import type { Verdict } from './verdict';

/** The error shape that crosses every boundary (IPC, WebSocket, CLI): a code and one sentence. */

/** What kind of failure an error is: a program branches on this (and on FAILURE_REASONS), never on the sentence. */
export const ERROR_CODES = [
  'bad-input',
  /** the command needs a broker connection and none is open */
  'not-connected',
  /** something of the kind is already running, or a cap is reached: try again later */
  'busy',
  'timeout',
  'unreachable',
  'auth',
  'not-found',
  'not-installed',
  'broker-failed',
  'unroutable',
  'cancelled',
  'too-large',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * Why a failure happened, when code and sentence alone do not say it to a program: verdicts and fall-backs read this,
 * never the sentence (a reworded sentence must not change a verdict).
 */
export const FAILURE_REASONS = [
  /** a call timed out while the MQTT link was down, and it did not come back in time */
  'link-down',
  /** the broker closed the connection before it answered the CONNECT (RabbitMQ before 3.13 does this to MQTT 5) */
  'closed-before-connack',
  /** the broker answered CONNACK "unacceptable protocol version" (0x01, MQTT 5: 0x84) */
  'protocol-version-refused',
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export interface ErrorShape {
  code: ErrorCode;
  message: string;
  /** for a program: why, when the code does not say it (FAILURE_REASONS) */
  reason?: FailureReason;
  /** for a failed RPC: its id (to open its trace) */
  rpcId?: string;
  /** for a failed RPC: where it stopped and why */
  verdict?: Verdict;
}
