/**
 * `npm test` stopped by Ctrl-C leaves no RabbitMQ node behind: once to vitest alone, twice to the whole process group
 * (what a terminal sends), or while the run's broker is still starting. A real test run (the integration project's
 * global setup, a real node) in a temporary folder of its own, stopped from outside.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { folderIds, processesSeeing } from '../support/reap';
import { startGroupLeader, type GroupLeader } from '../support/processes';

const repo = join(import.meta.dirname, '..', '..');
const vitest = join(repo, 'node_modules', 'vitest', 'vitest.mjs');
const config = join(repo, 'test', 'fixtures', 'ctrl-c', 'vitest.config.ts');

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Run {
  run: GroupLeader;
  tmp: string;
  mark: string;
}

/** A test run of the holding fixture, its temporary folder (so its brokers' folders) of its own. */
async function startRun(own: boolean): Promise<Run> {
  const tmp = await mkdtemp(join(tmpdir(), 'bridgescope-ctrl-c-'));
  const mark = join(tmp, 'brokers-up');
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp, BRIDGESCOPE_HOLD_MARK: mark, BRIDGESCOPE_HOLD_OWN: own ? '1' : '0', BRIDGESCOPE_HOLD_PARENT: String(process.pid) };
  const run = startGroupLeader(process.execPath, [vitest, 'run', '--config', config], env);
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  cleanups.push(() => run.kill());
  return { run, tmp, mark };
}

/** The folders of the run's brokers so far (the run's own and a test's own). */
async function brokerFolders(tmp: string): Promise<string[]> {
  const names = await readdir(tmp).catch(() => [] as string[]);
  return names.filter((name) => /^bridgescope-(test|own)-/.test(name)).map((name) => join(tmp, name));
}

/** After the run ended: every process in its brokers' folders ends, and the folders go, within a bounded time. */
async function expectNothingLeft(run: Run, ids: Set<string>): Promise<void> {
  const { code, signal } = await run.run.exited;
  expect(code === 0, `the stopped run exited ${code ?? signal}: ${run.run.lines.slice(-5).join(' | ')}`).toBe(false);
  await vi.waitFor(
    async () => {
      expect(await processesSeeing(ids), 'processes still running in the stopped run\'s broker folders').toEqual([]);
      // and the run's $XDG_CONFIG_HOME with them: it is inside its broker's folder
      expect(await brokerFolders(run.tmp)).toEqual([]);
    },
    { timeout: 90_000, interval: 250 },
  );
}

describe('a test run stopped by Ctrl-C leaves no RabbitMQ node running', () => {
  it('once, to vitest alone, with the run\'s broker and a test\'s own broker up', async () => {
    const run = await startRun(true);
    await vi.waitFor(() => expect(existsSync(run.mark)).toBe(true), { timeout: 240_000, interval: 100 });
    const folders = await brokerFolders(run.tmp);
    expect(folders).toHaveLength(2);
    const ids = await folderIds(folders);
    expect(await processesSeeing(ids)).not.toEqual([]);
    process.kill(run.run.pid, 'SIGINT');
    await expectNothingLeft(run, ids);
  }, 420_000);

  it('twice, to the whole process group, as a terminal sends it', async () => {
    const run = await startRun(false);
    await vi.waitFor(() => expect(existsSync(run.mark)).toBe(true), { timeout: 240_000, interval: 100 });
    const ids = await folderIds(await brokerFolders(run.tmp));
    expect(await processesSeeing(ids)).not.toEqual([]);
    run.run.signalGroup('SIGINT');
    run.run.signalGroup('SIGINT');
    await expectNothingLeft(run, ids);
  }, 420_000);

  it('once, to the whole process group, while the run\'s broker is still starting', async () => {
    const run = await startRun(false);
    // The node was spawned (its log is open) and is not ready yet (the fixture has not run).
    const folder = await vi.waitFor(
      async () => {
        const [found] = await brokerFolders(run.tmp);
        expect(found && existsSync(join(found, 'node.log'))).toBe(true);
        return found as string;
      },
      { timeout: 120_000, interval: 50 },
    );
    const ids = await folderIds([folder]);
    run.run.signalGroup('SIGINT');
    expect(existsSync(run.mark), 'the broker was ready before the Ctrl-C: this case needs it still starting').toBe(false);
    await expectNothingLeft(run, ids);
  }, 420_000);
});
