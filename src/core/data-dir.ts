/** Where `bridgescope ui` keeps what lasts between runs (history, templates, its token and port), and that token and port. */
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { mkdir, readFile, realpath, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { BridgeError } from './errors';
import { foreignWriter, readOwnFile, writeFileWhole } from './json-file';
import { isProcessAlive } from './processes';

/** $XDG_CONFIG_HOME/bridgescope, else ~/.config/bridgescope. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.trim() !== '' ? env.XDG_CONFIG_HOME : join(homedir(), '.config');
  return join(base, 'bridgescope');
}

export const UI_IDENTITY_FILE = 'ui-host.json';

/** The browser host's token and port, kept so a restarted `bridgescope ui` answers the page that is already open. */
export interface UiIdentity {
  token: string;
  port?: number;
}

const identitySchema = z.object({
  token: z.string().regex(/^[A-Za-z0-9_-]{32,}$/),
  port: z.number().int().min(1).max(65_535).optional(),
});

export function newToken(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * The kept token and port, or a fresh token when there is none, it is unreadable, or `rotate` asks for a new one (the port
 * stays); `problem` is the sentence about a token file that could not be read.
 */
export async function readUiIdentity(dir: string, rotate: boolean): Promise<{ identity: UiIdentity; fresh: boolean; problem?: string }> {
  const file = join(dir, UI_IDENTITY_FILE);
  let kept: UiIdentity | undefined;
  let problem: string | undefined;
  const read = await readOwnFile(file, SMALL_FILE_LIMIT_BYTES);
  if (read.kind === 'refused') problem = `The token file ${file} ${read.why}: a new token is made, and the URL changes.`;
  else if (read.kind === 'text') {
    try {
      const parsed = identitySchema.safeParse(JSON.parse(read.text));
      if (parsed.success) kept = parsed.data;
    } catch {
      // Not JSON: a new token below.
    }
  }
  if (kept && !rotate) return { identity: kept, fresh: false };
  return { identity: { token: newToken(), ...(kept?.port !== undefined ? { port: kept.port } : {}) }, fresh: true, ...(problem ? { problem } : {}) };
}

/** Written whole (temp + rename), readable by its owner only: the token opens the inspector. */
export async function writeUiIdentity(dir: string, identity: UiIdentity): Promise<void> {
  await writeFileWhole(join(dir, UI_IDENTITY_FILE), JSON.stringify(identity));
}

export const UI_LOCK_FILE = 'ui.lock';

/** The token and lock files are a few dozen bytes. */
const SMALL_FILE_LIMIT_BYTES = 4096;

/** The files of a data dir, each of which steers what `bridgescope ui` does or serves. */
const DATA_DIR_FILES = [UI_IDENTITY_FILE, UI_LOCK_FILE, 'workspace.json', 'profiles.json'] as const;

const WHY_IT_MATTERS = 'so another user could take over this inspector and run code as you';

/**
 * Makes the data dir (mode 0700) when it is missing, and refuses (one sentence) one that another user could write: the dir
 * itself, the files in it (a link: its target), and every folder above it (writable by others only with the sticky bit, as
 * /tmp; else owned by this user or root). Anyone who can write there can plant the token and drive this inspector. Gives
 * the dir's real path.
 */
export async function checkDataDir(dir: string): Promise<string> {
  if (process.getuid === undefined) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return realpath(dir);
  }
  const uid = process.getuid();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const real = await realpath(dir);
  const refuse = (what: string, fix: string): never => {
    throw new BridgeError('bad-input', `${what}, ${WHY_IT_MATTERS}: ${fix}give --data-dir a folder of your own.`);
  };
  const own = await stat(real);
  if (!own.isDirectory()) refuse(`The data dir ${dir} is not a folder`, '');
  if (own.uid !== uid) refuse(`The data dir ${dir} belongs to another user (uid ${own.uid})`, '');
  if ((own.mode & 0o022) !== 0) refuse(`The data dir ${dir} can be written by other users (mode 0${(own.mode & 0o777).toString(8)})`, `run chmod 700 ${dir}, or `);
  for (let parent = dirname(real); ; parent = dirname(parent)) {
    const stats = await stat(parent);
    if (stats.uid !== uid && stats.uid !== 0) refuse(`${parent}, a folder above the data dir, belongs to another user (uid ${stats.uid})`, '');
    if ((stats.mode & 0o022) !== 0 && (stats.mode & 0o1000) === 0) {
      refuse(`${parent}, a folder above the data dir, can be written by other users (mode 0${(stats.mode & 0o777).toString(8)})`, `run chmod go-w ${parent}, or `);
    }
    if (dirname(parent) === parent) break;
  }
  for (const name of DATA_DIR_FILES) {
    const file = join(dir, name);
    let stats;
    try {
      stats = await stat(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Missing, or a link to nothing: nothing to read.
      if (code === 'ENOENT') continue;
      throw err;
    }
    const foreign = foreignWriter(stats);
    if (foreign === undefined) continue;
    const fix = foreign.startsWith('belongs') ? 'delete it (or chown it to yourself), or ' : `run chmod 600 ${file}, or `;
    refuse(`${file} in the data dir ${foreign}`, fix);
  }
  return real;
}

/** What the lock says: which process holds the dir, since when (so a pid reused by another process is told apart), for what. */
interface LockRecord {
  pid: number;
  /** Linux: the process's start time (field 22 of /proc/<pid>/stat, in clock ticks since boot) */
  startTime?: string;
  command: 'ui';
  /** the data dir's real path */
  dataDir: string;
}

const lockSchema = z.object({ pid: z.number().int(), startTime: z.string().optional(), command: z.literal('ui'), dataDir: z.string() });

/** When `pid` started (Linux), or undefined where that cannot be known. */
async function startTimeOf(pid: number): Promise<string | undefined> {
  const read = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (read === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses: the fields after it start after its last ')', at field 3.
  return read.slice(read.lastIndexOf(')') + 2).split(' ')[22 - 3];
}

/**
 * The pid of the live `bridgescope ui` that holds the lock on `realDir`, or undefined for a lock to take over: its process
 * is gone, or it is another process now (another start time), or the lock was made for another dir (copied with it).
 */
async function lockHolder(text: string, realDir: string): Promise<number | undefined> {
  let record: LockRecord | undefined;
  try {
    const parsed = lockSchema.safeParse(JSON.parse(text));
    if (parsed.success) record = parsed.data;
  } catch {
    // Not JSON: a bare pid, as BridgeScope wrote it before the lock said more.
  }
  if (record === undefined) {
    const pid = Number.parseInt(text.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isProcessAlive(pid)) return undefined;
    // Where the command line can be read, only a bridgescope ui holds it (not any node process that got the pid).
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
    if (cmdline === undefined) return pid;
    const args = cmdline.split('\0');
    return args.some((arg) => /bridgescope/i.test(arg)) && args.includes('ui') ? pid : undefined;
  }
  const { pid } = record;
  if (pid <= 0 || pid === process.pid || record.dataDir !== realDir || !isProcessAlive(pid)) return undefined;
  if (record.startTime !== undefined) {
    const now = await startTimeOf(pid);
    if (now !== undefined && now !== record.startTime) return undefined;
  }
  return pid;
}

/**
 * Takes the data dir for this `bridgescope ui`: two runs on one dir would each rewrite its history, templates and profiles
 * whole, the last writer erasing the other's. Refused (one sentence) while another live run holds it; a lock left by a
 * run that was killed (its process gone, or its pid since given to another process) is taken over. The lock goes when the
 * process exits; the returned release gives it back earlier.
 */
export async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const realDir = await realpath(dir);
  const file = join(dir, UI_LOCK_FILE);
  const startTime = await startTimeOf(process.pid);
  const record: LockRecord = { pid: process.pid, ...(startTime !== undefined ? { startTime } : {}), command: 'ui', dataDir: realDir };
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      await writeFile(file, JSON.stringify(record), { flag: 'wx', mode: 0o600 });
      // Whichever way the process ends (a forced exit included), the dir is given back; only a kill leaves the lock behind.
      const onExit = (): void => {
        try {
          unlinkSync(file);
        } catch {
          // already gone
        }
      };
      process.once('exit', onExit);
      return async () => {
        process.off('exit', onExit);
        await unlink(file).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // A lock that is not a small regular file of ours (a FIFO, another user's) holds nothing: taken over.
    const read = await readOwnFile(file, SMALL_FILE_LIMIT_BYTES);
    const holder = read.kind === 'text' ? await lockHolder(read.text, realDir) : undefined;
    if (holder !== undefined) {
      throw new BridgeError(
        'busy',
        `Another bridgescope ui (pid ${holder}) is using ${dir} for its history, templates, profiles and URL: open its URL, stop it first, or give this one its own --data-dir.`,
      );
    }
    // Left by a run that was killed: taken over.
    await unlink(file).catch(() => undefined);
  }
  throw new BridgeError('busy', `The data dir ${dir} is being taken by another bridgescope ui at this very moment: try again.`);
}
