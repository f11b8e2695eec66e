/** What lasts between runs: Compose's history and templates, and the file that carries profiles and templates to another machine. */
import type { ConnectionProfile } from './profile';
import type { SendRequestArgs } from './send-request';
import type { VerdictCode } from './verdict';
import { formatBytes, utf8Bytes } from './payload-format';
import type { QoS } from './rpc';

/** One settled Compose send, as the core recorded it (newest first in every list). */
export interface HistoryEntry {
  /** unique per entry (the RPC id when it had one) */
  id: string;
  /** when it was sent (ms since the epoch) */
  at: number;
  topic: string;
  /** the reply topic used (the generated one when the form left it empty); absent when it failed before it had one */
  replyTopic?: string;
  qos: QoS;
  /** where it stopped and why, as decided when it settled (a later revision lives in the trace) */
  verdict?: { code: VerdictCode; message: string };
  roundTripMs?: number;
  rpcId?: string;
  /** the request exactly as sent, for Replay; its body is empty when it was over HISTORY_BODY_BYTES (see `bodyNotKept`) */
  request: SendRequestArgs;
  /** the size in bytes of a body too big to keep (the file's bytes for 'file', else its text's): Replay asks for it again */
  bodyNotKept?: number;
  /** the failure's sentence, when it failed */
  error?: string;
  /** the reply body as shown (pretty JSON, text, or base64 for binary; cut at 16 KiB), searched with the rest */
  replyText?: string;
}

export interface HistoryList {
  entries: HistoryEntry[];
  /** how many entries are kept in all (before the search) */
  total: number;
  /** said once: e.g. the history file could not be read and was set aside */
  notice?: string;
}

export interface RequestTemplate {
  name: string;
  request: SendRequestArgs;
}

/** The profiles-and-templates file; profiles are carried as they are, passwords only when asked. */
export interface WorkspaceExport {
  format: 'bridgescope-workspace';
  version: 1;
  exportedAt: string;
  includesPasswords: boolean;
  profiles: ConnectionProfile[];
  templates: RequestTemplate[];
}

/** What an import did, item by item: every refused one with its reason. */
export interface ImportReport {
  profiles: { added: string[]; replaced: string[]; refused: Array<{ name: string; reason: string }> };
  templates: { added: string[]; replaced: string[]; refused: Array<{ name: string; reason: string }> };
}

/** How many history entries are kept: the oldest go first. */
export const HISTORY_LIMIT = 500;

/** A body is kept in the history (for replay) up to this size, in every format; a larger one is only measured, not kept. */
export const HISTORY_BODY_BYTES = 64 * 1024;

/** The size of a body as the history measures it: a file's bytes (it travels as base64), else the UTF-8 bytes of its text. */
export function bodyBytes(request: SendRequestArgs): number {
  const text = request.payloadText;
  if (request.payloadFormat === 'file') return Math.floor((text.replace(/[\s=]/g, '').length * 3) / 4);
  return utf8Bytes(text).byteLength;
}

/**
 * The request as the history keeps it: 500 entries of bodies up to 64 MiB would be gigabytes on disk, rewritten on every
 * send and sent whole to every page. A body over HISTORY_BODY_BYTES is left out and its size kept; Replay asks for it.
 */
export function forHistory(request: SendRequestArgs): Pick<HistoryEntry, 'request' | 'bodyNotKept'> {
  const bytes = bodyBytes(request);
  if (bytes <= HISTORY_BODY_BYTES) return { request };
  return { request: { ...request, payloadText: '' }, bodyNotKept: bytes };
}

/** Said when a replayed entry's body was not kept: the form is filled, and waits for the body. */
export function bodyNotKeptProblem(request: SendRequestArgs, bytes: number): string {
  if (request.payloadFormat === 'file') {
    const name = request.payloadFileName ? `The file ${request.payloadFileName}` : 'The file';
    return `${name} (${formatBytes(bytes)}) was too big to keep in the history: choose it again to send.`;
  }
  return `The body (${formatBytes(bytes)}) was too big to keep in the history: paste it again to send.`;
}
