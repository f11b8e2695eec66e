import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cliPath, runCli } from '../support/cli';
import { mkfifo } from '../support/fifo';
import { startProcess, type Running } from '../support/processes';

const running: Running[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const ui of running.splice(0)) await ui.stop();
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** `bridgescope ui` with no broker at all, on `dataDir`. */
function ui(dataDir: string): Running {
  const started = startProcess('env', ['-u', 'BRIDGESCOPE_AMQP_URL', process.execPath, cliPath, 'ui', '--no-sandbox', '--data-dir', dataDir]);
  running.push(started);
  return started;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-ui-data-dir-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const PLANTED = JSON.stringify({ token: 'planted-by-someone-else-0123456789abcdef', port: 45999 });
/** Another user (uid 65534) owns what this test gives it; the test runs as root, which may chown. */
const OTHER = 65534;

describe('`ui` without the built page', () => {
  it('says in one sentence that the page is not built and how to build it, exits 1, and starts nothing', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'bridgescope-no-renderer-'));
    try {
      const result = await runCli(['ui', '--no-sandbox', '--static', empty, '--data-dir', join(empty, 'data')], { env: { BRIDGESCOPE_AMQP_URL: '' } });
      expect(result.code).toBe(1);
      expect(result.stdout).not.toMatch(/BridgeScope is ready/);
      expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^bridgescope: the inspector's page is not built \(.*index\.html is missing\): run `npm run build` once/)]);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});

describe('a data dir other users can reach', () => {
  it('refuses a data dir that other users can write, in one sentence, without using its token', async () => {
    const dataDir = join(await tempDir(), 'shared');
    await mkdir(dataDir);
    await chmod(dataDir, 0o777);
    await writeFile(join(dataDir, 'ui-host.json'), PLANTED, { mode: 0o600 });
    const started = ui(dataDir);
    expect(await started.exited).toBe(2);
    expect(started.lines.join('\n')).not.toContain('planted-by-someone-else');
    expect(started.lines).toContain(
      `bridgescope: The data dir ${dataDir} can be written by other users (mode 0777), so another user could take over this inspector and run code as you: run chmod 700 ${dataDir}, or give --data-dir a folder of your own.`,
    );
  }, 30_000);

  it('refuses a data dir, or a file in it, that belongs to another user', async () => {
    const theirs = join(await tempDir(), 'theirs');
    await mkdir(theirs, { mode: 0o700 });
    await chown(theirs, OTHER, OTHER);
    const first = ui(theirs);
    expect(await first.exited).toBe(2);
    expect(first.lines).toContain(`bridgescope: The data dir ${theirs} belongs to another user (uid ${OTHER}), so another user could take over this inspector and run code as you: give --data-dir a folder of your own.`);

    const mine = await tempDir();
    await writeFile(join(mine, 'ui-host.json'), PLANTED, { mode: 0o600 });
    await chown(join(mine, 'ui-host.json'), OTHER, OTHER);
    const second = ui(mine);
    expect(await second.exited).toBe(2);
    expect(second.lines.join('\n')).not.toContain('planted-by-someone-else');
    expect(second.lines).toContain(
      `bridgescope: ${join(mine, 'ui-host.json')} in the data dir belongs to another user (uid ${OTHER}), so another user could take over this inspector and run code as you: delete it (or chown it to yourself), or give --data-dir a folder of your own.`,
    );

    await rm(join(mine, 'ui-host.json'));
    await writeFile(join(mine, 'workspace.json'), '{}', { mode: 0o666 });
    await chmod(join(mine, 'workspace.json'), 0o666);
    const third = ui(mine);
    expect(await third.exited).toBe(2);
    expect(third.lines).toContain(
      `bridgescope: ${join(mine, 'workspace.json')} in the data dir can be written by other users (mode 0666), so another user could take over this inspector and run code as you: run chmod 600 ${join(mine, 'workspace.json')}, or give --data-dir a folder of your own.`,
    );
  }, 30_000);

  it('makes a new data dir readable by its owner only', async () => {
    const dataDir = join(await tempDir(), 'new', 'bridgescope');
    const started = ui(dataDir);
    await started.waitForLine(/BridgeScope is ready: http/);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dataDir, 'ui-host.json'))).mode & 0o777).toBe(0o600);
  }, 30_000);
});

describe('data-dir files that never end', () => {
  it('starts with a FIFO as its lock, token file and history file, saying so, instead of waiting on them', async () => {
    const dataDir = await tempDir();
    for (const name of ['ui.lock', 'ui-host.json', 'workspace.json']) await mkfifo(join(dataDir, name));
    const started = ui(dataDir);
    await started.waitForLine(/BridgeScope is ready: http/);
    expect(started.lines).toContainEqual(expect.stringMatching(/^warning: The history file .*workspace\.json is not a regular file \(a FIFO\): it was kept as .*, and history and templates start empty\.$/));
    expect(started.lines).toContainEqual(expect.stringMatching(/^warning: The token file .*ui-host\.json is not a regular file \(a FIFO\): a new token is made, and the URL changes\.$/));
  }, 30_000);
});

describe('a lock left behind', () => {
  /**
   * A node process that has nothing to do with BridgeScope and runs until killed, returned once it runs its own code:
   * before that its /proc cmdline is still its parent's, and its start time (in 10 ms ticks) can equal that of the ui
   * started right after it, which made the lock look still held (seen on the 4.x passes of issue 22, 3 of 4 runs).
   */
  async function unrelatedNode(): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['-e', 'process.stdout.write("running\\n"); setInterval(() => {}, 1000)'], { stdio: ['ignore', 'pipe', 'ignore'] });
    cleanups.push(async () => {
      child.kill('SIGKILL');
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`the unrelated node process exited (${code}) before it ran`)));
    });
    return child;
  }

  it('is taken over when its pid now belongs to an unrelated node process', async () => {
    const dataDir = await tempDir();
    const other = await unrelatedNode();
    // As an older BridgeScope left it (a bare pid) ...
    await writeFile(join(dataDir, 'ui.lock'), `${other.pid}\n`, { mode: 0o600 });
    const first = ui(dataDir);
    await first.waitForLine(/BridgeScope is ready: http/);
    const lock = JSON.parse(await readFile(join(dataDir, 'ui.lock'), 'utf8')) as { pid: number; startTime: string; command: string; dataDir: string };
    expect(lock).toMatchObject({ pid: first.child.pid, command: 'ui', dataDir });
    expect(lock.startTime).toMatch(/^\d+$/);
    first.child.kill('SIGKILL');
    await first.exited;
    // ... and as this one leaves it when killed, its pid since taken by another process (another start time).
    await writeFile(join(dataDir, 'ui.lock'), JSON.stringify({ ...lock, pid: other.pid }), { mode: 0o600 });
    const second = ui(dataDir);
    await second.waitForLine(/BridgeScope is ready: http/);
    expect(other.exitCode).toBeNull();
  }, 30_000);
});
