/** A reader that closes the CLI's stdout (`| head -c 5`) stops the command cleanly: no crash, and what it changed is given back. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import amqp from 'amqplib';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { ManagementApi } from '../../src/core/broker/management-api';
import { RpcServer } from '../../src/core/rpc/server';
import { loadHandler } from '../../src/core/rpc/handlers';
import { cliPath } from '../support/cli';
import { uniqueName } from '../support/names';
import { createTestVhost, type TestVhost } from '../support/vhosts';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A vhost of the test's own, deleted after the test. */
async function freshVhost(): Promise<TestVhost> {
  const vhost = await createTestVhost(broker.urls, 'closed-pipe');
  cleanups.push(() => vhost.remove());
  return vhost;
}

describe('a CLI command whose stdout reader goes away', () => {
  it('`trace --json` stops when its reader closes the pipe, exits 0 without a crash and switches tracing back off', async () => {
    const vhost = await freshVhost();
    const child = spawn(process.execPath, [cliPath, 'trace', '--json', '--amqp', vhost.amqpUrl, '--management', broker.urls.management, '--vhost', vhost.name], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    let running = true;
    void exited.then(() => (running = false));
    cleanups.push(async () => {
      if (running) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    const stderr: string[] = [];
    const tracing = new Promise<void>((resolve) =>
      createInterface({ input: child.stderr }).on('line', (line) => {
        stderr.push(line);
        if (/^Tracing vhost/.test(line)) resolve();
      }),
    );
    await Promise.race([tracing, exited.then(() => Promise.reject(new Error(`trace exited early: ${stderr.join(' | ')}`)))]);
    expect(await vhost.api.tracing()).toBe(true);

    const connection = await amqp.connect(vhost.amqpUrl);
    cleanups.push(() => connection.close());
    const channel = await connection.createConfirmChannel();
    // As `head -c 5` does: read the first bytes, then close the read end of the pipe.
    const firstBytes = once(child.stdout, 'data').then(() => child.stdout.destroy());
    let published = 0;
    // Every message is one more line to write into the closed pipe; the loop ends when trace has gone.
    while (running && published < 10_000) {
      channel.publish('amq.direct', uniqueName('nobody'), Buffer.from('ping'));
      await channel.waitForConfirms();
      published += 1;
    }
    await firstBytes;
    const code = await exited;
    expect(stderr.join('\n')).not.toMatch(/EPIPE|Unhandled|at .*\.js:\d+/);
    expect(code).toBe(0);
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('`call --trace` whose stdout is already closed restores firehose tracing and exits 141, as a shell reports SIGPIPE', async () => {
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
    await server.start();
    cleanups.push(() => server.stop(2000));
    const child = spawn(
      process.execPath,
      [cliPath, 'call', '--trace', '--topic', server.queue, '--mqtt', broker.urls.mqtt, '--amqp', broker.urls.amqp, '--management', broker.urls.management, '{"n":1}'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // The reader is gone before anything is written: the reply itself meets the closed pipe.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'close')) as [number | null];
    expect(stderr).not.toMatch(/EPIPE|Unhandled|at .*\.js:\d+/);
    expect(stderr).toMatch(/Interrupted \(output closed\): after the reply; restoring firehose tracing/);
    expect(code).toBe(141);
    expect(await new ManagementApi(broker.urls.management, '/').tracing()).toBe(false);
  });

  it('a plain `call` whose stdout is already closed ends as the call did (0), not as interrupted: it changed nothing to restore', async () => {
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
    await server.start();
    cleanups.push(() => server.stop(2000));
    const child = spawn(process.execPath, [cliPath, 'call', '--topic', server.queue, '--mqtt', broker.urls.mqtt, '{"n":1}'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'close')) as [number | null];
    expect(stderr).not.toMatch(/EPIPE|Unhandled|Interrupted|at .*\.js:\d+/);
    expect(code).toBe(0);
  });
});
