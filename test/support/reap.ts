/**
 * The test brokers a test run starts are stopped when it ends, however it ends: its teardown, Ctrl-C once or twice, to
 * vitest alone or to its whole process group (what a terminal sends to `npm test`), a SIGKILL. Each claimed folder has
 * a watcher (test-broker-watch.ts), detached from the run, that stops every node in it once the process that claimed
 * it is gone; and the next run stops what a watcher could not (a machine restart, a killed watcher).
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { killNode, startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { ROOT_SANDBOX_DIR } from '../../src/core/broker/installations';
import { isProcessAlive } from '../../src/core/processes';

const OWNER_FILE = 'owner.pid';
export const TEST_BROKER_PREFIXES = ['bridgescope-test-', 'bridgescope-faults-', 'bridgescope-own-', 'bridgescope-cluster-'];
const REPO = join(import.meta.dirname, '..', '..');
const WATCHER = join(import.meta.dirname, 'test-broker-watch.ts');

/**
 * Marks a test broker's folder with the pid of the process that owns it, and starts its watcher: a process of its own
 * session (a Ctrl-C to the run's group does not reach it) whose standard input is a pipe from this process, so its end
 * of input is this process's end, however it came.
 */
export async function claimTestBroker(dir: string): Promise<void> {
  await writeFile(join(dir, OWNER_FILE), String(process.pid));
  // The folder goes in its environment, not its command line: tests look for processes whose command line names a
  // broker's folder (the node's own) to see it stopped.
  const env = { ...process.env, BRIDGESCOPE_WATCHED_DIR: dir };
  const watcher = spawn(process.execPath, ['--import', 'tsx', WATCHER], { cwd: REPO, detached: true, stdio: ['pipe', 'ignore', 'ignore'], env });
  watcher.on('error', () => undefined);
  watcher.stdin?.on('error', () => undefined);
  // Neither keeps this process alive: the pipe's end is the watcher's signal.
  watcher.unref();
  (watcher.stdin as unknown as Socket | null)?.unref();
}

/**
 * Stops every RabbitMQ node in a test broker's folder (its own, or a cluster's in sub-folders), the ones whose start
 * finished (their record) and the ones still starting (RabbitMQ processes that run in the folder, or, from a prepared
 * root, have it mounted), then removes the folder. Looks again after each round of kills, for a node a surviving
 * starter (a CLI child of the dead test) started meanwhile. Bounded: about a minute at most.
 */
export async function clearTestBrokerDir(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const folders = [dir, ...entries.filter((entry) => entry.isDirectory()).map((entry) => join(dir, entry.name))];
  await Promise.all(folders.map((folder) => stopSandbox(folder, 15_000).catch(() => undefined)));
  for (let round = 0; round < 3; round += 1) {
    const left = await processesIn(folders);
    if (left.length === 0) break;
    // As a sandbox's own stop does it: SIGTERM, then SIGKILL what is still there after 10 s.
    await Promise.all(left.map((pid) => killNode(pid, 10_000)));
  }
  await rm(dir, { recursive: true, force: true });
}

/** The processes that run in one of `folders` (their working directory), or that see one mounted as a root's sandbox. */
export async function processesIn(folders: string[]): Promise<number[]> {
  return processesSeeing(await folderIds(folders));
}

/** What names a folder even once it is removed while a process still runs in it: its device and inode. */
export async function folderIds(folders: string[]): Promise<Set<string>> {
  const made = await Promise.all(folders.map((folder) => stat(folder).catch(() => undefined)));
  return new Set(made.flatMap((found) => (found ? [`${found.dev}:${found.ino}`] : [])));
}

/**
 * The processes of a prepared root that see one of the folders `wanted` names mounted as their sandbox, and the
 * RabbitMQ processes (a node's environment names it) whose working directory is one: never a shell someone opened there.
 */
export async function processesSeeing(wanted: Set<string>): Promise<number[]> {
  if (wanted.size === 0) return [];
  const found: number[] = [];
  const named = (folder: { dev: number; ino: number } | undefined): boolean => folder !== undefined && wanted.has(`${folder.dev}:${folder.ino}`);
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    if (named(await stat(`/proc/${name}/root${ROOT_SANDBOX_DIR}`).catch(() => undefined))) {
      found.push(Number(name));
      continue;
    }
    if (!named(await stat(`/proc/${name}/cwd`).catch(() => undefined))) continue;
    const environment = await readFile(`/proc/${name}/environ`, 'latin1').catch(() => '');
    if (environment.includes('RABBITMQ_NODENAME=')) found.push(Number(name));
  }
  return found;
}

export async function reapOrphanedTestBrokers(): Promise<string[]> {
  const reaped: string[] = [];
  for (const name of await readdir(tmpdir())) {
    if (!TEST_BROKER_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
    const dir = join(tmpdir(), name);
    // Read while its owner writes it, the file is empty: that is no owner yet (Number('') is 0, a pid never alive).
    const text = (await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => '')).trim();
    const owner = /^[1-9]\d*$/.test(text) ? Number(text) : Number.NaN;
    if (Number.isInteger(owner) && isProcessAlive(owner)) continue;
    // A folder without an owner yet may belong to a run that is just starting: leave the young ones alone. Gone
    // meanwhile: another run's reaper (scripts/integration-pass.sh starts two runs at once) or teardown took it.
    const made = await stat(dir).catch(() => undefined);
    if (!made || (!Number.isInteger(owner) && Date.now() - made.mtimeMs < 120_000)) continue;
    await clearTestBrokerDir(dir);
    reaped.push(name);
  }
  return reaped;
}

/**
 * A sandbox broker of a test file's own, for tests that restart, pause or stop it (the run's shared one keeps serving the
 * other files): its folder claimed, so a killed run's node is stopped by the next run.
 */
export async function startOwnTestBroker(name: string): Promise<{ dir: string; broker: SandboxInfo }> {
  const dir = await mkdtemp(join(tmpdir(), `bridgescope-${name}-`));
  await claimTestBroker(dir);
  const broker = (await startSandbox({ dir, nodeName: `${name}-${randomBytes(4).toString('hex')}@localhost`, timeoutMs: 120_000 })).info;
  return { dir, broker };
}

/** Stops an own test broker gracefully and starts it again with the same name, ports and data. */
export async function restartOwnTestBroker(dir: string, broker: SandboxInfo): Promise<SandboxInfo> {
  await stopSandbox(dir);
  return (await startSandbox({ dir, nodeName: broker.nodeName, ports: broker.ports, timeoutMs: 120_000 })).info;
}

/** Stops an own test broker and removes its folder. */
export async function removeOwnTestBroker(dir: string): Promise<void> {
  await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
}
