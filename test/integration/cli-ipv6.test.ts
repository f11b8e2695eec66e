/**
 * A broker reached at an IPv6 address (`amqp://…@[::1]:port`): every command connects to it. The sandbox listens on
 * 127.0.0.1 only (as every helper's and CI's sandbox does, IPv6 or not), so the test puts a plain TCP forwarder on
 * [::1] in front of each of its ports: what the commands reach over IPv6 is the real sandbox broker.
 */
import { spawn } from 'node:child_process';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { RpcServer } from '../../src/core/rpc/server';
import { loadHandler } from '../../src/core/rpc/handlers';
import { cliPath, runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { createTestVhost } from '../support/vhosts';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** Listens on [::1] and forwards each connection to 127.0.0.1:port; the [::1] port. */
async function forwardFromIpv6(port: number): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((inbound) => {
    const outbound = createConnection({ host: '127.0.0.1', port });
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        sockets.delete(socket);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** The sandbox's AMQP, MQTT and management URLs at [::1]. */
async function ipv6Urls(): Promise<{ amqp: string; mqtt: string; management: string }> {
  const [amqp, mqtt, management] = await Promise.all([broker.ports.amqp, broker.ports.mqtt, broker.ports.management].map(forwardFromIpv6));
  return { amqp: `amqp://guest:guest@[::1]:${amqp}`, mqtt: `mqtt://[::1]:${mqtt}`, management: `http://guest:guest@[::1]:${management}` };
}

/** Starts a long-running command; resolves its stderr lines once one matches `ready`. */
function startUntil(args: string[], ready: RegExp): Promise<{ stderr: string[]; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const stderr: string[] = [];
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr.push(line);
      if (ready.test(line)) resolve({ stderr, stop: () => (child.kill('SIGINT'), exited) });
    });
    void exited.then(() => reject(new Error(`exited early: ${stderr.join(' | ')}`)));
  });
}

describe('a broker at an IPv6 address', () => {
  it('serve connects to amqp://…@[::1]:port and says so', async () => {
    const urls = await ipv6Urls();
    const serve = await startUntil(['serve', '--amqp', urls.amqp, '--queue', uniqueName('rpc_queue')], /^Serving /);
    expect(serve.stderr.find((line) => line.startsWith('Serving '))).toMatch(/ at amqp:\/\/\S*@\[::1\]:\d+ /);
    expect(await serve.stop()).toBe(0);
  });

  it('call --trace over [::1] gets the reply and the broker steps', async () => {
    const urls = await ipv6Urls();
    const server = new RpcServer({ amqpUrl: urls.amqp, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
    await server.start();
    cleanups.push(() => server.stop(2000));
    const result = await runCli(['call', '--trace', '--topic', server.queue, '--mqtt', urls.mqtt, '--amqp', urls.amqp, '--management', urls.management, '{"n":1}']);
    expect(result.stderr).not.toMatch(/cannot be resolved/);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`delivered from queue ${server.queue}`);
    expect(result.stdout).toContain('Verdict: replied');
  });

  it('probe over [::1] finds the exchange', async () => {
    const urls = await ipv6Urls();
    const result = await runCli(['probe', '--mqtt', urls.mqtt, '--amqp', urls.amqp, '--management', urls.management]);
    expect(result.stderr).not.toMatch(/cannot be resolved/);
    expect(result.stdout).toContain('The MQTT plugin publishes to: amq.direct');
    expect(result.code).toBe(0);
  });

  it('trace over [::1] switches tracing on, and off again on Ctrl-C', async () => {
    const urls = await ipv6Urls();
    const vhost = await createTestVhost(broker.urls, 'ipv6');
    cleanups.push(() => vhost.remove());
    const trace = await startUntil(['trace', '--amqp', `${urls.amqp}/${encodeURIComponent(vhost.name)}`, '--management', urls.management, '--vhost', vhost.name], /^Tracing vhost/);
    expect(await vhost.api.tracing()).toBe(true);
    expect(await trace.stop()).toBe(0);
    expect(await vhost.api.tracing()).toBe(false);
  });
});
