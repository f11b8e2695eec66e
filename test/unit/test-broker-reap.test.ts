/**
 * The reaper a test run starts with (the integration project's global setup) stops the test brokers of killed runs, and
 * only theirs: `scripts/integration-pass.sh` starts two runs at once, so one run's reaper sees the other's folder while
 * it is being claimed.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reapOrphanedTestBrokers } from '../support/reap';

let scanned: string;
const savedTmp = process.env.TMPDIR;

beforeEach(async () => {
  scanned = await mkdtemp(join(tmpdir(), 'reap-scan-'));
  // os.tmpdir() reads TMPDIR at each call: the reaper scans this folder only.
  process.env.TMPDIR = scanned;
});

afterEach(async () => {
  if (savedTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmp;
  await rm(scanned, { recursive: true, force: true });
});

async function brokerFolder(name: string, owner: string | undefined): Promise<string> {
  const dir = join(scanned, name);
  await mkdir(dir);
  if (owner !== undefined) await writeFile(join(dir, 'owner.pid'), owner);
  return dir;
}

describe('the reaper of killed test runs\' brokers', () => {
  it('leaves a folder whose owner file is still empty (its owner is writing it), as it leaves one with no owner file yet', async () => {
    const empty = await brokerFolder('bridgescope-test-empty', '');
    const none = await brokerFolder('bridgescope-test-none', undefined);
    expect(await reapOrphanedTestBrokers()).toEqual([]);
    expect(existsSync(empty)).toBe(true);
    expect(existsSync(none)).toBe(true);
  });

  it('leaves a folder whose owner runs, and removes one whose owner is gone', async () => {
    const alive = await brokerFolder('bridgescope-test-alive', String(process.pid));
    // A pid above the kernel's largest (pid_max is at most 4194304): never a running process.
    const gone = await brokerFolder('bridgescope-test-gone', '4194305');
    expect(await reapOrphanedTestBrokers()).toEqual(['bridgescope-test-gone']);
    expect(existsSync(alive)).toBe(true);
    expect(existsSync(gone)).toBe(false);
  });
});
