/**
 * `bridgescope trace --export FILE`: the trace the command gathered, written when it ends in the very format the app's
 * Trace > Export writes and its Import reads (TraceStore.export plus `loadRuns`), so the file opens in the app with its
 * verdicts. The file can hold message bodies: it is written whole (a temp file and a rename), readable by its owner only.
 * Its folder is checked as the command starts, before anything connects: a trace gathered for an hour is not lost to a
 * typo found only at the end.
 */
import { accessSync, constants, realpathSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { BridgeError } from '../core/errors';
import { sharedFolderRefusal, writeFileWhole } from '../core/json-file';
import type { TraceStore } from '../core/trace/trace-store';
import type { TraceExport } from '../shared/trace';

/** What the app's Trace > Export holds: the store's export and the load runs kept with it (the CLI runs none). */
export function traceExportOf(store: TraceStore): TraceExport {
  return { ...store.export(), loadRuns: [] };
}

const statOrUndefined = (path: string): Stats | undefined => {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
};

/**
 * Refuses, in one sentence (exit 2), a --export path the command could not write at its end: a folder that does not
 * exist, is no folder, cannot be written, or is one writeFileWhole refuses (shared with other users); a path that is a
 * folder or some other thing than a file. Returns the path to write.
 */
export function checkExportPath(file: string): string {
  if (file.trim() === '') throw new BridgeError('bad-input', '--export takes the path of the file to write the trace to, not an empty string.');
  const path = resolve(file);
  const folder = dirname(path);
  const folderStats = statOrUndefined(folder);
  if (!folderStats) throw new BridgeError('bad-input', `--export ${file}: the folder ${folder} does not exist; create it first or name a file in another folder.`);
  if (!folderStats.isDirectory()) throw new BridgeError('bad-input', `--export ${file}: ${folder} is not a folder, so no file can be written in it.`);
  try {
    accessSync(folder, constants.W_OK | constants.X_OK);
  } catch {
    throw new BridgeError('bad-input', `--export ${file}: the folder ${folder} cannot be written by this user; name a file in a folder you can write.`);
  }
  const existing = statOrUndefined(path);
  if (existing?.isDirectory()) throw new BridgeError('bad-input', `--export ${file} is a folder: name the file to write the trace to (for example ${join(file, 'trace.json')}).`);
  if (existing && !existing.isFile()) throw new BridgeError('bad-input', `--export ${file} is not a regular file (a FIFO, a device or a socket): name a plain file to write the trace to.`);
  // Where the write lands (a link's target, else the file in its folder's real path), and the same refusal it would meet.
  let target: string;
  try {
    target = existing ? realpathSync(path) : join(realpathSync(folder), basename(path));
  } catch {
    target = path;
  }
  const refused = sharedFolderRefusal(statOrUndefined(dirname(target)) ?? folderStats, dirname(target), target);
  if (refused) throw new BridgeError('bad-input', `--export: ${refused}.`);
  return path;
}

/** How many RPCs and steps an export holds. */
export function exportCounts(exported: Pick<TraceExport, 'steps'>): { rpcs: number; steps: number } {
  return { rpcs: new Set(exported.steps.map((step) => step.rpcId)).size, steps: exported.steps.length };
}

/** "Wrote 3 RPCs (17 steps) to FILE." */
export function wroteSentence(counts: { rpcs: number; steps: number }, file: string): string {
  return `Wrote ${counts.rpcs} ${counts.rpcs === 1 ? 'RPC' : 'RPCs'} (${counts.steps} ${counts.steps === 1 ? 'step' : 'steps'}) to ${file}.`;
}

/** A failed write as the end of "could not write the trace to FILE: ...": the cause in words, not an errno's. */
function writeFailure(err: unknown): string {
  const error = err as NodeJS.ErrnoException;
  switch (error?.code) {
    case 'ENOENT':
      return 'its folder no longer exists';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOSPC':
      return 'no space left on the device';
    case 'EDQUOT':
      return 'over the disk quota';
    case 'EROFS':
      return 'the file system is read-only';
    default:
      return error instanceof Error ? error.message : String(err);
  }
}

/**
 * Writes the export as the app's Export does (JSON, two-space indent), atomically and with mode 0600, into the folder
 * checked at the start (never creating one); returns what it holds. Throws the cause in a few words.
 */
export async function writeTraceExport(file: string, exported: TraceExport): Promise<{ rpcs: number; steps: number }> {
  try {
    await writeFileWhole(file, JSON.stringify(exported, null, 2), { makeFolder: false });
  } catch (err) {
    throw new Error(writeFailure(err));
  }
  return exportCounts(exported);
}
