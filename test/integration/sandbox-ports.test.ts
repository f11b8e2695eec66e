import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { runCli } from '../support/cli';
import { claimTestBroker } from '../support/reap';

/** These tests stop and start a node of their own, so the shared one keeps serving the other files. */
let dir: string;
let first: SandboxInfo;

beforeAll(async () => {
  // The bridgescope-test- prefix lets the next run reap this node if this run is killed.
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-ports-'));
  await claimTestBroker(dir);
  first = (await startSandbox({ dir, timeoutMs: 120_000 })).info;
}, 150_000);

afterAll(async () => {
  await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.destroy());
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

describe('the sandbox broker across stop and start', () => {
  it('comes back on the same node name, ports and URLs', async () => {
    expect((await stopSandbox(dir)).stopped).toBe(true);
    const again = await startSandbox({ dir, timeoutMs: 120_000 });
    expect(again.reused).toBe(false);
    expect(again.warnings).toEqual([]);
    expect(again.info.nodeName).toBe(first.nodeName);
    expect(again.info.ports).toEqual(first.ports);
    expect(again.info.urls).toEqual(first.urls);
  }, 150_000);

  it('moves only a port another process took meanwhile, and says which, to what and who holds it', async () => {
    await stopSandbox(dir);
    const squatter = await listen(first.ports.mqtt);
    try {
      const moved = await startSandbox({ dir, timeoutMs: 120_000 });
      expect(moved.info.ports.mqtt).not.toBe(first.ports.mqtt);
      expect({ ...moved.info.ports, mqtt: first.ports.mqtt }).toEqual(first.ports);
      expect(moved.info.urls.amqp).toBe(first.urls.amqp);
      expect(moved.info.urls.management).toBe(first.urls.management);
      expect(moved.warnings).toHaveLength(1);
      // the holder's command name is this test worker's process title
      expect(moved.warnings[0]).toMatch(
        new RegExp(`^The sandbox's MQTT port ${first.ports.mqtt} is taken by pid ${process.pid} \\(.+\\); it moves to ${moved.info.ports.mqtt}, so clients must use the new URL\\.$`),
      );
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  }, 150_000);

  it('`bridgescope broker start` prints the same URLs after `broker stop`, its folder given as a relative path', async () => {
    const urlLines = (stdout: string): string[] => stdout.split('\n').filter((line) => /^(AMQP|MQTT|Management) +[a-z]+:\/\//.test(line));
    const before = await runCli(['broker', 'start', '--dir', dir]);
    expect(before.code).toBe(0);
    expect(urlLines(before.stdout)).toHaveLength(3);
    // A folder other than the default: how the other commands find this broker is said.
    expect(before.stderr).toContain(`Other commands (call, watch, bindings, ui...) use this broker with BRIDGESCOPE_SANDBOX_DIR='${dir}' or its URLs above`);
    expect((await runCli(['broker', 'stop', '--dir', dir])).code).toBe(0);
    // A folder given relative to where the command runs (the node's $HOME, where Erlang writes its cookie, is made absolute).
    const after = await runCli(['broker', 'start', '--dir', basename(dir)], { cwd: dirname(dir) });
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(/^Started /);
    expect(urlLines(after.stdout)).toEqual(urlLines(before.stdout));
  }, 200_000);
});
