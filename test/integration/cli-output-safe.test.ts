/** What the CLI prints from the broker and the network reaches the terminal escaped and with no password, JSON output included. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import amqp from 'amqplib';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { cliPath } from '../support/cli';
import { uniqueName } from '../support/names';
import { createTestVhost, type TestVhost } from '../support/vhosts';
import { TracingOwnership } from '../../src/core/trace/ownership';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A vhost of the test's own, deleted after the test. */
async function freshVhost(): Promise<TestVhost> {
  const vhost = await createTestVhost(broker.urls, 'safe-output');
  cleanups.push(() => vhost.remove());
  return vhost;
}

describe('what the CLI prints', () => {
  it('`trace` never shows the escape sequence of a tracing marker left in the broker: an unreadable time is "an unknown time"', async () => {
    const vhost = await freshVhost();
    // What a dead BridgeScope process left, as the broker stores it: the marker's text is shown from the broker, never trusted.
    await new TracingOwnership().claimMarker(vhost.api, { since: '\u001b[2J2026-11-26T00:00:00Z', by: 'someone' });
    await vhost.api.setTracing(true);
    const child = spawn(process.execPath, [cliPath, 'trace', '--amqp', vhost.amqpUrl, '--management', broker.urls.management, '--vhost', vhost.name], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    let stderr = '';
    const ready = new Promise<void>((resolve) =>
      createInterface({ input: child.stderr }).on('line', (line) => {
        stderr += `${line}\n`;
        if (/^Tracing vhost/.test(line)) resolve();
      }),
    );
    await Promise.race([ready, exited.then(() => Promise.reject(new Error(`trace exited early: ${stderr}`)))]);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toContain('left on by a BridgeScope process');
    expect(stderr).not.toContain('\u001b');
    expect(stderr).toContain('(since an unknown time)');
  });

  it('`trace --json` writes a body holding a URL with its password as ***', async () => {
    const vhost = await freshVhost();
    const child = spawn(process.execPath, [cliPath, 'trace', '--json', '--amqp', vhost.amqpUrl, '--management', broker.urls.management, '--vhost', vhost.name], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    const stdout: string[] = [];
    const published = new Promise<void>((resolve) =>
      createInterface({ input: child.stdout }).on('line', (line) => {
        stdout.push(line);
        if (line.includes('"broker.publish"')) resolve();
      }),
    );
    const ready = new Promise<void>((resolve) => createInterface({ input: child.stderr }).on('line', (line) => /^Tracing vhost/.test(line) && resolve()));
    await Promise.race([ready, exited.then(() => Promise.reject(new Error('trace exited early')))]);
    const connection = await amqp.connect(vhost.amqpUrl);
    cleanups.push(() => connection.close());
    const channel = await connection.createConfirmChannel();
    channel.publish('amq.direct', uniqueName('nobody'), Buffer.from('connect to amqp://device:s3cr3t-pw@plant.example:5672 now'));
    await channel.waitForConfirms();
    await published;
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stdout.join('\n')).not.toContain('s3cr3t-pw');
    expect(stdout.join('\n')).toContain('amqp://***@plant.example');
  });
});
