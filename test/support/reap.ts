/** Test brokers whose test run was killed (no teardown) are stopped by the next run, so they never pile up. */
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopSandbox } from '../../src/core/broker/sandbox';
import { isProcessAlive } from '../../src/core/processes';

const OWNER_FILE = 'owner.pid';
export const TEST_BROKER_PREFIXES = ['bridgescope-test-', 'bridgescope-faults-'];

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
