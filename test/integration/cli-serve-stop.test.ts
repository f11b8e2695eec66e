/** How `serve` ends: a clean stop exits 0 whatever its drain timeout, and a closed stdout is a stop, not a crash. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { RpcClient } from '../../src/core/rpc/client';
import { cliPath } from '../support/cli';
import { uniqueName } from '../support/names';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** `serve` on a queue of its own, with its stderr lines collected and a promise of its "Serving" line. */
function startServe(args: string[]): { child: ReturnType<typeof spawn>; stderr: string[]; serving: Promise<void>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [cliPath, 'serve', '--amqp', broker.urls.amqp, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const stderr: string[] = [];
  const serving = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stderr! }).on('line', (line) => {
      stderr.push(line);
      if (/^Serving /.test(line)) resolve();
    });
    void exited.then(() => reject(new Error(`serve exited early: ${stderr.join(' | ')}`)));
  });
  return { child, stderr, serving, exited };
}

describe('bridgescope serve stopping', () => {
  it('drains and exits 0 on SIGINT with the longest --drain-timeout a timer holds', async () => {
    const serve = startServe(['--queue', uniqueName('rpc_queue'), '--drain-timeout', '2147483647']);
    await serve.serving;
    serve.child.kill('SIGINT');
    expect(await serve.exited).toBe(0);
    expect(serve.stderr.join('\n')).not.toMatch(/did not finish in time|TimeoutOverflowWarning/);
    expect(serve.stderr).toContainEqual(expect.stringMatching(/^Stopped\. received 0/));
  });

  it('stops cleanly and exits 0 when the reader of its --json output has gone', async () => {
    const queue = uniqueName('rpc_queue');
    const serve = startServe(['--queue', queue, '--json']);
    serve.child.stdout!.destroy();
    await serve.serving;
    const device = new RpcClient({ mqttUrl: broker.urls.mqtt, strategy: 'shared', clientId: uniqueName('device') });
    cleanups.push(() => device.close());
    await device.connect();
    // The request's first trace step meets the closed pipe; whether it is answered first does not matter here.
    void device.call({ topic: queue, params: { n: 1 }, timeoutMs: 10_000 }).catch(() => undefined);
    expect(await serve.exited).toBe(0);
    expect(serve.stderr.join('\n')).not.toMatch(/EPIPE|Unhandled|at .*\.js:\d+/);
    expect(serve.stderr).toContainEqual(expect.stringMatching(/^Stopped\. received 1/));
  });
});
