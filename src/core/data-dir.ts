/** Where `bridgescope ui` keeps what lasts between runs (history, templates, its token and port), and that token and port. */
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { BridgeError } from './errors';

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

/** The kept token and port, or a fresh token when there is none, it is unreadable, or `rotate` asks for a new one (the port stays). */
export async function readUiIdentity(dir: string, rotate: boolean): Promise<{ identity: UiIdentity; fresh: boolean }> {
  let kept: UiIdentity | undefined;
  try {
    const parsed = identitySchema.safeParse(JSON.parse(await readFile(join(dir, UI_IDENTITY_FILE), 'utf8')));
    if (parsed.success) kept = parsed.data;
  } catch {
    // None yet, or unreadable: a new token below.
  }
  if (kept && !rotate) return { identity: kept, fresh: false };
  return { identity: { token: newToken(), ...(kept?.port !== undefined ? { port: kept.port } : {}) }, fresh: true };
}

/** Written whole (temp + rename), readable by its owner only: the token opens the inspector. */
export async function writeUiIdentity(dir: string, identity: UiIdentity): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, UI_IDENTITY_FILE);
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, JSON.stringify(identity), { mode: 0o600 });
  // writeFile's mode applies only to a new file; a temp file left by a crash keeps its own.
  await chmod(temp, 0o600);
  await rename(temp, file);
}

export const UI_LOCK_FILE = 'ui.lock';

/** Whether `pid` is a live process that could be a BridgeScope (on Linux, its command line says so; elsewhere, alive is enough). */
async function holdsLock(pid: number): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive, someone else's; ESRCH: gone.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return /bridgescope|node/i.test(await readFile(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * Takes the data dir for this `bridgescope ui`: two runs on one dir would each rewrite its history, templates and profiles
 * whole, the last writer erasing the other's. Refused (one sentence) while another live run holds it; a lock left by a
 * run that was killed is taken over. The lock goes when the process exits; the returned release gives it back earlier.
 */
export async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, UI_LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
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
    const holder = Number.parseInt((await readFile(file, 'utf8').catch(() => '')).trim(), 10);
    if (await holdsLock(holder)) {
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
