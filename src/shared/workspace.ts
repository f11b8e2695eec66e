/** What lasts between runs: Compose's history and templates, and the file that carries profiles and templates to another machine. */
import type { ConnectionProfile, SendRequestArgs } from './contract';
import type { VerdictCode } from './diagnosis';
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
  /** the request exactly as sent, for Replay */
  request: SendRequestArgs;
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

/** A file's bytes kept in the history (for replay) up to this size; a larger file is named there, not kept. */
export const HISTORY_FILE_BYTES = 64 * 1024;

/** The request as the history keeps it: 500 entries of 16 MiB files would hold gigabytes (replay then asks for the file). */
export function forHistory(request: SendRequestArgs): SendRequestArgs {
  if (request.payloadFormat !== 'file' || request.payloadText.length <= Math.ceil(HISTORY_FILE_BYTES / 3) * 4) return request;
  return { ...request, payloadText: '' };
}
