import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { findRabbitMQ, isPortFree, killRootProcesses, sandboxStatus, startSandbox, stopSandbox } from '../../src/core/broker/sandbox';
import { isProcessAlive } from '../../src/core/processes';
import { BridgeError } from '../../src/core/errors';
import { runCli } from '../support/cli';

const broker = inject('broker');
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-sandbox-test-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('sandbox broker', () => {
  it('reports the running node when started again in the same folder', async () => {
    const again = await startSandbox({ dir: broker.dir });
    expect(again.reused).toBe(true);
    expect(again.info.pid).toBe(broker.pid);
    expect(again.info.urls).toEqual(broker.urls);
  });

  it('says running for the live node', async () => {
    const status = await sandboxStatus(broker.dir);
    expect(status.state).toBe('running');
  });

  it('detects a stale record whose node died, instead of waiting on it', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'sandbox.json'), JSON.stringify({ ...broker, dir, pid: 2 ** 22 + 17 }));
    const status = await sandboxStatus(dir);
    expect(status.state).toBe('stale');
    const stop = await stopSandbox(dir);
    expect(stop).toMatchObject({ stopped: false });
    expect((await sandboxStatus(dir)).state).toBe('stopped');
  });

  it('reports a port taken meanwhile in one sentence instead of waiting forever', async () => {
    const dir = await tempDir();
    const accepted: Socket[] = [];
    const blocker: Server = createServer((socket) => accepted.push(socket));
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const socket of accepted) socket.destroy();
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    });
    const address = blocker.address();
    if (address === null || typeof address === 'string') throw new Error('no address');
    const failure = await startSandbox({ dir, ports: { amqp: address.port }, timeoutMs: 60_000 }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(BridgeError);
    expect((failure as BridgeError).code).toBe('broker-failed');
    expect((failure as BridgeError).message).toMatch(new RegExp(`port ${address.port} was taken by another process`));
    expect((await sandboxStatus(dir)).state).toBe('stopped');
  });

  it(`stops a node of the run's RabbitMQ (${broker.version ?? 'unknown'}) leaving nothing behind: no VM, no epmd of its own, no mount`, async () => {
    const dir = await tempDir();
    const { info } = await startSandbox({ dir, timeoutMs: 120_000 });
    expect(info.version).toBe(broker.version);
    expect(await stopSandbox(dir)).toMatchObject({ stopped: true });
    expect(isProcessAlive(info.pid)).toBe(false);
    if (info.root) {
      // A root's node: nothing runs there with this folder mounted any more (its mount namespaces ended with it).
      expect(await killRootProcesses(info.root, dir, 1000)).toBe(0);
      expect(await isPortFree(info.epmdPort as number)).toBe(true);
    }
  });

  it('names the install commands when RabbitMQ is not installed', () => {
    const attempt = (): string => findRabbitMQ({}, []);
    expect(attempt).toThrow(/apt-get install rabbitmq-server.*brew install rabbitmq/);
  });
});

describe('bridgescope broker (CLI)', () => {
  it('start --json on a running folder prints the same node and its three URLs', async () => {
    const result = await runCli(['broker', 'start', '--dir', broker.dir, '--json']);
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as { reused: boolean; pid: number; urls: Record<string, string> };
    expect(printed.reused).toBe(true);
    expect(printed.pid).toBe(broker.pid);
    expect(Object.keys(printed.urls).sort()).toEqual(['amqp', 'management', 'mqtt']);
  });

  it('status exits 0 when running and 1 when there is no node', async () => {
    expect((await runCli(['broker', 'status', '--dir', broker.dir])).code).toBe(0);
    const empty = await tempDir();
    const stopped = await runCli(['broker', 'status', '--dir', empty]);
    expect(stopped.code).toBe(1);
    expect(stopped.stdout).toMatch(/not running/);
  });

  it('rejects a bad flag value with exit code 2 and one line on stderr', async () => {
    const result = await runCli(['broker', 'start', '--timeout', 'soon']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });
});
