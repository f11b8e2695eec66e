/**
 * `bridgescope bench` starts a private RabbitMQ node and a process per run: Ctrl-C to its process group (what a terminal
 * sends), and a second one while it cleans up, must leave neither behind, nor the node's folder.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cliPath } from '../support/cli';
import { startGroupLeader, type GroupLeader } from '../support/processes';
import { sandboxStatus } from '../../src/core/broker/sandbox';
import { withDeadline } from '../../src/shared/deadline';

/** Whether a process runs (signal 0 asks without sending). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const leaders: GroupLeader[] = [];
const folders: string[] = [];

afterEach(async () => {
  // A test that failed before its Ctrl-C still lets the bench stop its node (a SIGKILL would leave the node running).
  for (const leader of leaders.splice(0)) {
    if (leader.child.exitCode === null && leader.child.signalCode === null) {
      leader.signalGroup('SIGINT');
      await withDeadline(leader.exited, 30_000);
    }
    await leader.kill();
  }
  for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
});

/** The processes whose command line names `text` (the node of a sandbox names its folder), from /proc. */
async function processesNaming(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (command.includes(text)) found.push(`${pid}: ${command.replaceAll('\0', ' ').slice(0, 120)}`);
  }
  return found;
}

/** The benchmark's own run processes (`bench --child`, `--watch-child`): children of `parent`, from /proc. */
async function runChildrenOf(parent: number): Promise<number[]> {
  const found: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    if (Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) !== parent) continue;
    const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (/\0--(watch-)?child\0/.test(command)) found.push(Number(pid));
  }
  return found;
}

/** `bench --quick --watch-only` as the leader of its own process group, its temporary directory (and nothing else) its own. */
async function startBench(): Promise<{ bench: GroupLeader; temporary: string }> {
  const temporary = await mkdtemp(join(tmpdir(), 'bench-stop-'));
  folders.push(temporary);
  const rabbitmq = process.env.BRIDGESCOPE_TEST_RABBITMQ?.trim() || 'system';
  const bench = startGroupLeader(process.execPath, [cliPath, 'bench', '--quick', '--watch-only', '--rabbitmq', rabbitmq, '--out', join(temporary, 'results')], {
    ...process.env,
    TMPDIR: temporary,
    // Every signal counts (no echo window): a second Ctrl-C is a second one.
    BRIDGESCOPE_SIGNAL_ECHO_MS: '0',
  });
  leaders.push(bench);
  return { bench, temporary };
}

describe('bridgescope bench stopping', () => {
  it('Ctrl-C while its sandbox node is still starting: the start is given up, the node killed, its folder gone, exit 130', async () => {
    const { bench, temporary } = await startBench();
    await bench.waitForLine(/^Starting a private sandbox broker/);
    // Its node is being started: the node's log is opened just before it is spawned (asked again at once until then).
    const starting = async (): Promise<boolean> => {
      const [sandbox] = (await readdir(temporary)).filter((name) => name.startsWith('bridgescope-bench-'));
      return sandbox !== undefined && (await readdir(join(temporary, sandbox))).includes('node.log');
    };
    while (!(await starting())) expect(bench.child.exitCode).toBeNull();
    bench.signalGroup('SIGINT');
    const { code } = await bench.exited;
    expect(code).toBe(130);
    expect(bench.lines).toContainEqual('Stopped; the benchmark wrote nothing.');
    // The node never said it runs: no run began.
    expect(bench.lines).not.toContainEqual(expect.stringMatching(/^ {2}RabbitMQ /));
    expect(bench.lines.join('\n')).not.toMatch(/Forced exit|left undone|could not|at .*\.js:\d+/);
    expect(await processesNaming(temporary)).toEqual([]);
    expect(await readdir(temporary)).toEqual([]);
  }, 120_000);

  it('SIGTERM to the bench process alone while a run goes: the cleanup ends the run processes itself, stops the node, exit 143', async () => {
    const { bench, temporary } = await startBench();
    await bench.waitForLine(/^ {2}RabbitMQ /);
    const [sandbox] = (await readdir(temporary)).filter((name) => name.startsWith('bridgescope-bench-'));
    const node = (await sandboxStatus(join(temporary, sandbox as string))) as Extract<Awaited<ReturnType<typeof sandboxStatus>>, { state: 'running' }>;
    expect(node.state).toBe('running');
    // The first run process starts once the broker is idle (a few seconds at most): asked again at once until it is there.
    let runs: number[] = [];
    while (runs.length === 0 && bench.child.exitCode === null) runs = await runChildrenOf(bench.pid);
    expect(runs.length).toBeGreaterThan(0);
    // Not the group: the run processes get no signal but the one the cleanup sends them.
    process.kill(bench.pid, 'SIGTERM');
    const { code } = await bench.exited;
    expect(code).toBe(143);
    expect(bench.lines).toContainEqual('Stopped; the benchmark wrote nothing.');
    expect(bench.lines.join('\n')).not.toMatch(/Forced exit|left undone|could not|at .*\.js:\d+/);
    expect(runs.filter(alive)).toEqual([]);
    expect(alive(node.info.pid)).toBe(false);
    expect(await processesNaming(temporary)).toEqual([]);
    expect(await readdir(temporary)).toEqual([]);
  }, 120_000);

  it('Ctrl-C to the process group, then again while it cleans up: its runs end, its sandbox node stops, its folder goes, exit 130', async () => {
    const { bench, temporary } = await startBench();
    // The node runs and the first contender and watcher processes start with the run.
    await bench.waitForLine(/^ {2}RabbitMQ /);
    const [sandbox] = (await readdir(temporary)).filter((name) => name.startsWith('bridgescope-bench-'));
    expect(sandbox).toBeDefined();
    // The node's pid as the sandbox recorded it (a node in a prepared root does not name the folder on its command line).
    const node = (await sandboxStatus(join(temporary, sandbox as string))) as Extract<Awaited<ReturnType<typeof sandboxStatus>>, { state: 'running' }>;
    expect(node.state).toBe('running');
    expect(alive(node.info.pid)).toBe(true);

    bench.signalGroup('SIGINT');
    await bench.waitForLine(/^Stopping the benchmark/);
    bench.signalGroup('SIGINT');
    const { code } = await bench.exited;

    expect(code).toBe(130);
    expect(bench.lines).toContainEqual(expect.stringMatching(/^Still cleaning up \(/));
    expect(bench.lines).toContainEqual('Stopped; the benchmark wrote nothing.');
    expect(bench.lines.join('\n')).not.toMatch(/Forced exit|left undone|at .*\.js:\d+/);
    expect(alive(node.info.pid)).toBe(false);
    expect(await processesNaming(temporary)).toEqual([]);
    expect(await readdir(temporary)).toEqual([]);
  }, 120_000);
});
