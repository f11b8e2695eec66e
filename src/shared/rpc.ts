/** Data shapes of one RPC as the user sees them: options, replies, link status. */
import type { Verdict } from './diagnosis';

export type QoS = 0 | 1 | 2;
export type ReplyStrategy = 'per-request' | 'shared';

/** Names of the request body's fields; devices that use other names can rename them. */
export interface EnvelopeFields {
  id: string;
  replyTo: string;
  method: string;
  params: string;
}

export const defaultEnvelopeFields: EnvelopeFields = { id: 'id', replyTo: 'reply_to', method: 'method', params: 'params' };

/** A reply body as received: JSON when it parses, otherwise text (the seed's server answers `done`), otherwise bytes. */
export type ReplyBody =
  | { kind: 'json'; value: unknown }
  | { kind: 'text'; text: string }
  | { kind: 'binary'; base64: string; bytes: number };

export interface RpcErrorBody {
  code: string;
  message: string;
}

export interface RpcOutcome {
  id: string;
  /** the reply topic the request asked for */
  replyTopic: string;
  /** the topic the reply really arrived on; differs from replyTopic in the dot pitfall */
  arrivedOn: string;
  topicMismatch: boolean;
  body: ReplyBody;
  result?: unknown;
  error?: RpcErrorBody;
  worker?: string;
  durationMs: number;
  /** QoS the request was published with, and how the broker acknowledged it */
  publishQos: { asked: QoS; acknowledgedAs: QoS };
  /** QoS asked and granted for the reply subscription */
  subscriptionQos: { asked: QoS; granted: QoS | 'refused' };
  warnings: string[];
  /** where the RPC stopped and why (the app and `call` always diagnose; a bare RpcClient does not) */
  verdict?: Verdict;
}

export type LinkStatus =
  | { state: 'idle' }
  | { state: 'connecting'; since: number }
  | { state: 'connected'; since: number }
  | { state: 'reconnecting'; since: number; attempt: number; lastError: string }
  | { state: 'failed'; message: string }
  | { state: 'closed' };
