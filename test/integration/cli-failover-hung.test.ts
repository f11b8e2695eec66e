/**
 * A URL list whose first node accepts TCP connections and never answers (a half-dead cluster node): every command moves
 * on to the next node after a bounded attempt, works there, and names the node it actually uses.
 */
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { RpcServer } from '../../src/core/rpc/server';
import { loadHandler } from '../../src/core/rpc/handlers';
import { cliPath, runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { createTestVhost, type TestVhost } from '../support/vhosts';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A node that accepts TCP connections and never writes a byte; its port. */
async function hungNode(): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** A vhost of the test's own (tracing is per vhost), deleted afterwards. */
async function freshVhost(): Promise<TestVhost> {
  const vhost = await createTestVhost(broker.urls, 'hung-node');
  cleanups.push(() => vhost.remove());
  return vhost;
}

/** [hung, real] lists for each protocol, on the vhost (AMQP) given; the real URLs as the user typed them. */
async function lists(vhost?: TestVhost): Promise<{ amqp: string; mqtt: string; management: string; realAmqp: string; hungAmqp: string }> {
  const port = await hungNode();
  const path = vhost ? `/${encodeURIComponent(vhost.name)}` : '';
  const realAmqp = vhost ? vhost.amqpUrl : broker.urls.amqp;
  const hungAmqp = `amqp://127.0.0.1:${port}${path}`;
  return {
    amqp: `${hungAmqp},${realAmqp}`,
    mqtt: `mqtt://127.0.0.1:${port},${broker.urls.mqtt}`,
    management: `http://guest:guest@127.0.0.1:${port},${broker.urls.management}`,
    realAmqp,
    hungAmqp,
  };
}

/** A URL as a pattern of what the CLI shows of it: any (redacted) user-info, then its host, port and path. */
const shownAs = (url: string): string => `amqp://\\S*@${url.slice(url.lastIndexOf('@') + 1).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`;

/** The warning naming the node in use after nodes before it did not answer. */
const using = (url: string): RegExp => new RegExp(`Using ${shownAs(url)} \\(`);

/** Starts a long-running command; resolves its stderr lines once one matches `ready`. */
function startUntil(args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}): Promise<{ stderr: string[]; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
    return exited;
  };
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const stderr: string[] = [];
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr.push(line);
      if (ready.test(line)) resolve({ stderr, stop });
    });
    void exited.then(() => reject(new Error(`exited early: ${stderr.join(' | ')}`)));
  });
}

describe('a URL list whose first node hangs', () => {
  it('serve connects to the second node and names it, not the hung one', { timeout: 60_000 }, async () => {
    const urls = await lists();
    const serve = await startUntil(['serve', '--amqp', urls.amqp, '--queue', uniqueName('rpc_queue')], /^Serving /);
    const serving = serve.stderr.find((line) => line.startsWith('Serving ')) ?? '';
    expect(serving).toMatch(new RegExp(` at ${shownAs(urls.realAmqp)} `));
    expect(serving).not.toContain(` at ${urls.hungAmqp}`);
    expect(await serve.stop()).toBe(0);
  });

  it('call --trace moves on to the second node of every list, traces the call there and names the AMQP node it traced at', { timeout: 60_000 }, async () => {
    // The MQTT plugin publishes in vhost "/": the server, and so the trace, are there.
    const urls = await lists();
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
    await server.start();
    cleanups.push(() => server.stop(2000));
    const result = await runCli(['call', '--trace', '--topic', server.queue, '--mqtt', urls.mqtt, '--amqp', urls.amqp, '--management', urls.management, '{"n":1}']);
    expect(result.stderr).not.toMatch(/ETIMEDOUT/);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`delivered from queue ${server.queue}`);
    expect(result.stdout).toContain('Verdict: replied');
    expect(result.stderr).toMatch(using(urls.realAmqp));
  });

  it('probe moves on to the second node of every list and finds the exchange', { timeout: 60_000 }, async () => {
    const urls = await lists();
    const result = await runCli(['probe', '--mqtt', urls.mqtt, '--amqp', urls.amqp, '--management', urls.management]);
    expect(result.stdout).toContain('The MQTT plugin publishes to: amq.direct');
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(using(urls.realAmqp));
  });

  it('trace moves on to the second node and traces there, naming it', { timeout: 60_000 }, async () => {
    const vhost = await freshVhost();
    const urls = await lists(vhost);
    const trace = await startUntil(['trace', '--amqp', urls.amqp, '--management', urls.management, '--vhost', vhost.name], /^Tracing vhost/);
    expect(await vhost.api.tracing()).toBe(true);
    expect(trace.stderr.join('\n')).toMatch(using(urls.realAmqp));
    expect(await trace.stop()).toBe(0);
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('reads the lists from BRIDGESCOPE_AMQP_URL, BRIDGESCOPE_MQTT_URL and BRIDGESCOPE_MANAGEMENT_URL the same way (probe and trace)', { timeout: 60_000 }, async () => {
    const env = (urls: Awaited<ReturnType<typeof lists>>): NodeJS.ProcessEnv => ({ BRIDGESCOPE_AMQP_URL: urls.amqp, BRIDGESCOPE_MQTT_URL: urls.mqtt, BRIDGESCOPE_MANAGEMENT_URL: urls.management });
    const probeUrls = await lists();
    const probe = await runCli(['probe'], { env: env(probeUrls) });
    expect(probe.stdout).toContain('The MQTT plugin publishes to: amq.direct');
    expect(probe.stderr).toMatch(using(probeUrls.realAmqp));
    const vhost = await freshVhost();
    const traceUrls = await lists(vhost);
    const trace = await startUntil(['trace', '--vhost', vhost.name], /^Tracing vhost/, env(traceUrls));
    expect(await vhost.api.tracing()).toBe(true);
    expect(trace.stderr.join('\n')).toMatch(using(traceUrls.realAmqp));
    expect(await trace.stop()).toBe(0);
  });
});
