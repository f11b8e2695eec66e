import { createServer, type Server } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cliPath } from '../support/cli';
import { startProcess, type Running } from '../support/processes';

const running: Running[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const ui of running.splice(0)) await ui.stop();
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** `bridgescope ui` with no broker at all (nothing to start or connect), on `dataDir`; resolves with its printed URL. */
async function startUi(dataDir: string, ...args: string[]): Promise<{ ui: Running; url: URL }> {
  const ui = startProcess('env', ['-u', 'BRIDGESCOPE_AMQP_URL', process.execPath, cliPath, 'ui', '--no-sandbox', '--data-dir', dataDir, ...args]);
  running.push(ui);
  const ready = await ui.waitForLine(/BridgeScope is ready: http/);
  return { ui, url: new URL(/(http:\/\/\S+)/.exec(ready)?.[1] as string) };
}

describe('the URL of `bridgescope ui` across runs', () => {
  it('moves to a free port with one sentence when the kept one is taken, keeping the token; --new-token replaces the token', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'bridgescope-ui-identity-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const first = await startUi(dataDir);
    const token = first.url.searchParams.get('token');
    await first.ui.stop();
    const kept = JSON.parse(await readFile(join(dataDir, 'ui-host.json'), 'utf8')) as { token: string; port: number };
    expect(kept).toEqual({ token, port: Number(first.url.port) });

    // Another process took the port meanwhile.
    const squatter: Server = createServer();
    await new Promise<void>((resolve) => squatter.listen(kept.port, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => squatter.close(resolve)));
    const second = await startUi(dataDir);
    expect(second.url.port).not.toBe(first.url.port);
    expect(second.url.searchParams.get('token')).toBe(token);
    expect(second.ui.lines).toContain(
      `warning: Port ${kept.port} of the last run is taken by another process: the inspector moved to ${second.url.port} (pages open on the old URL must be opened again).`,
    );
    await second.ui.stop();

    const third = await startUi(dataDir, '--new-token');
    expect(third.url.searchParams.get('token')).not.toBe(token);
    expect(third.url.port).toBe(second.url.port);
  }, 60_000);

  it('says in one sentence that a history file it cannot read was set aside, and still starts', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'bridgescope-ui-identity-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    await writeFile(join(dataDir, 'workspace.json'), 'not json at all');
    const { ui } = await startUi(dataDir);
    expect(ui.lines.find((line) => line.includes('workspace.json'))).toMatch(
      /^warning: The history file .*workspace\.json is not JSON: it was kept as .*workspace\.json\.unreadable-\S+, and history and templates start empty\.$/,
    );
  }, 60_000);

  it('refuses a second run on the same data dir in one sentence while the first runs, and takes over the lock of one that was killed', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'bridgescope-ui-identity-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const first = await startUi(dataDir);
    const second = startProcess('env', ['-u', 'BRIDGESCOPE_AMQP_URL', process.execPath, cliPath, 'ui', '--no-sandbox', '--data-dir', dataDir]);
    running.push(second);
    expect(await second.exited).toBe(1);
    expect(second.lines.join('\n')).toContain(`Another bridgescope ui (pid ${first.ui.child.pid}) is using ${dataDir}`);
    // The first one runs on, undisturbed.
    expect(first.ui.child.exitCode).toBeNull();
    // Killed without its cleanup: the lock stays behind, and the next run takes it over.
    first.ui.child.kill('SIGKILL');
    await first.ui.exited;
    expect(JSON.parse(await readFile(join(dataDir, 'ui.lock'), 'utf8'))).toMatchObject({ pid: first.ui.child.pid, command: 'ui', dataDir });
    const third = await startUi(dataDir);
    expect(third.url.searchParams.get('token')).toBe(first.url.searchParams.get('token'));
    await third.ui.stop();
    // A clean stop gives the data dir back.
    await expect(readFile(join(dataDir, 'ui.lock'), 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
  }, 60_000);
});
