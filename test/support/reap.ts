/** Test brokers whose test run was killed (no teardown) are stopped by the next run, so they never pile up. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { isProcessAlive } from '../../src/core/processes';

const OWNER_FILE = 'owner.pid';
export const TEST_BROKER_PREFIXES = ['bridgescope-test-', 'bridgescope-faults-', 'bridgescope-own-'];

/** Marks a test broker's folder with the pid of the process that owns it. */
export async function claimTestBroker(dir: string): Promise<void> {
  await writeFile(join(dir, OWNER_FILE), String(process.pid));
}

export async function reapOrphanedTestBrokers(): Promise<string[]> {
  const reaped: string[] = [];
  for (const name of await readdir(tmpdir())) {
    if (!TEST_BROKER_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
    const dir = join(tmpdir(), name);
    const owner = Number(await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => 'NaN'));
    if (Number.isInteger(owner) && isProcessAlive(owner)) continue;
    // A folder without an owner yet may belong to a run that is just starting: leave the young ones alone.
    if (!Number.isInteger(owner) && Date.now() - (await stat(dir)).mtimeMs < 120_000) continue;
    await stopSandbox(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
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
