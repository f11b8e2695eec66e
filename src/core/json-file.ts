/**
 * How BridgeScope keeps its own small files (profiles, history, the browser host's token and lock): read only when they are
 * regular files of this user's that nobody else can write, under a size cap; replaced whole through a temp file of its own;
 * and a file it cannot read set aside, never overwritten.
 */
import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { mkdir, open, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** The most a data-dir file may hold (the history's 500 entries with bodies of 64 KiB stay well under it). */
export const DATA_FILE_LIMIT_BYTES = 64 * 1024 * 1024;

export type OwnFile =
  | { kind: 'missing' }
  | { kind: 'text'; text: string }
  /** `why` completes "The ... file <path> ...": "is not a regular file (a FIFO)" */
  | { kind: 'refused'; why: string };

const MIB = 1024 * 1024;

function typeOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  return 'not a plain file';
}

/** What makes a file or folder one that another user could have written, or undefined when only this user could. */
export function foreignWriter(stats: Stats): string | undefined {
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid) return `belongs to another user (uid ${stats.uid})`;
  if ((stats.mode & 0o022) !== 0) return `can be written by other users (mode 0${(stats.mode & 0o777).toString(8)})`;
  return undefined;
}

/**
 * Reads one data-dir file whole, or says in a few words why not: never waits on a FIFO or a device (opened non-blocking,
 * then refused), never reads a file of another user's or one others can write, never more than `limitBytes`.
 */
export async function readOwnFile(file: string, limitBytes: number = DATA_FILE_LIMIT_BYTES): Promise<OwnFile> {
  let handle;
  try {
    // Non-blocking: a FIFO opens at once (and is refused below) instead of waiting for a writer; never a terminal of ours.
    handle = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'refused', why: `could not be read (${(err as Error).message})` };
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) return { kind: 'refused', why: `is not a regular file (${typeOf(stats)})` };
    const foreign = foreignWriter(stats);
    if (foreign) return { kind: 'refused', why: foreign };
    const tooBig = (bytes: number): OwnFile => ({
      kind: 'refused',
      why: `is ${Math.ceil(bytes / MIB)} MiB, over the ${Math.round(limitBytes / MIB)} MiB a data file may have`,
    });
    if (stats.size > limitBytes) return tooBig(stats.size);
    // One byte more than allowed tells a file that grew since its stat.
    const buffer = Buffer.alloc(Math.min(stats.size, limitBytes) + 1);
    let filled = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, null);
      if (bytesRead === 0) break;
      filled += bytesRead;
      if (filled === buffer.length) {
        if (filled > limitBytes) return tooBig(filled);
        break;
      }
    }
    return { kind: 'text', text: buffer.subarray(0, filled).toString('utf8') };
  } catch (err) {
    return { kind: 'refused', why: `could not be read (${(err as Error).message})` };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Where a write to `file` lands: the file a symbolic link points to (kept a link), else the file itself in its real folder. */
async function writeTarget(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return join(await realpath(dirname(file)), basename(file));
  }
}

/**
 * Why `writeFileWhole` will not write into a folder with these stats, or undefined when it will: others who can write the
 * folder could swap the file between the temp file and the rename (unless the sticky bit, as on /tmp, stops them).
 * `folder` is the folder's path, `target` the file's; the sentence has no final period.
 */
export function sharedFolderRefusal(stats: Stats, folder: string, target: string): string | undefined {
  const uid = process.getuid?.();
  if (uid === undefined || !((stats.uid !== uid && stats.uid !== 0) || ((stats.mode & 0o022) !== 0 && (stats.mode & 0o1000) === 0))) return undefined;
  const why = stats.uid !== uid && stats.uid !== 0 ? `a folder of another user's (uid ${stats.uid})` : `a folder other users can write (mode 0${(stats.mode & 0o777).toString(8)})`;
  return `${target} is in ${folder}, ${why}, so it is not written: run chmod go-w ${folder}, or keep the file elsewhere`;
}

/**
 * Writes through a temp file and a rename: a crash mid-write leaves the temp file, never half of `file`. A link is written
 * through (its target replaced, the link kept); the temp file is created new beside the target under a random name
 * (never a file or link already there), readable by its owner only. `makeFolder: false` writes only into a folder that
 * exists (a file the user named), never creating one.
 */
export async function writeFileWhole(file: string, text: string, { makeFolder = true }: { makeFolder?: boolean } = {}): Promise<void> {
  if (makeFolder) await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const target = await writeTarget(file);
  const refused = sharedFolderRefusal(await stat(dirname(target)), dirname(target), target);
  if (refused) throw new Error(refused);
  const temp = join(dirname(target), `${basename(target)}.${randomBytes(8).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      await handle.writeFile(text);
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/** Moves a file that cannot be read out of the way (next to it, named with the time) and gives its new path. */
export async function setFileAside(file: string, now: number): Promise<string> {
  const aside = `${file}.unreadable-${new Date(now).toISOString().replace(/[:.]/g, '-')}`;
  await rename(file, aside);
  return aside;
}

/** Runs jobs one after another, in the order given; a job that fails fails its own caller only. */
export class OneAtATime {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const done = this.tail.then(job, job);
    this.tail = done.catch(() => undefined);
    return done;
  }

  /** Waits for the jobs under way. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
