/**
 * A profile's TLS settings reach every connection the app makes, not only the MQTT client and the inspector: the embedded
 * RPC server, the firehose tracer and the management API, against the sandbox broker behind TLS with a private CA.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as connectTcp, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { TlsFiles } from '../../src/core/connection-details';
import { ManagementApi } from '../../src/core/broker/management-api';
import { RpcServer } from '../../src/core/rpc/server';
import { loadHandler, parseHandlerSpec } from '../../src/core/rpc/handlers';
import { FirehoseTracer } from '../../src/core/trace/firehose';
import { TraceStore } from '../../src/core/trace/trace-store';
import { testConnection } from '../../src/core/connection-test';
import { Session } from '../../src/core/session/session';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { dispatch } from '../../src/core/dispatch';
import type { ConnectionProfile } from '../../src/shared/contract';
import { uniqueName } from '../support/names';
import { runCli } from '../support/cli';
import { createTestVhost, type TestVhost } from '../support/vhosts';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface TlsProxy {
  port: number;
  close(): Promise<void>;
}

/** TLS ends here and the bytes go on to the broker's plain port: the broker as an amqps:// or https:// server with a private CA. */
async function tlsProxy(plainUrl: string, cert: Buffer, key: Buffer): Promise<TlsProxy> {
  const target = new URL(plainUrl);
  const sockets = new Set<Socket>();
  const server = createTlsServer({ cert, key }, (client) => {
    const upstream = connectTcp(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

let certDir = '';
let caFile = '';
let ca: Buffer;
let amqpProxy: TlsProxy;
let managementProxy: TlsProxy;
let mqttProxy: TlsProxy;

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'bridgescope-ca-'));
  const file = (name: string): string => join(certDir, name);
  const openssl = (args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  // A throwaway CA made for this run, and a server certificate for 127.0.0.1 and localhost signed by it.
  openssl([
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=BridgeScope throwaway test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', file('ca-key.pem'), '-out', file('ca.pem'),
  ]);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', file('server-key.pem'), '-out', file('server.csr')]);
  writeFileSync(file('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl([
    'x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca-key.pem'), '-CAcreateserial',
    '-days', '1', '-extfile', file('server.ext'), '-out', file('server.pem'),
  ]);
  caFile = file('ca.pem');
  ca = readFileSync(caFile);
  const cert = readFileSync(file('server.pem'));
  const key = readFileSync(file('server-key.pem'));
  amqpProxy = await tlsProxy(broker.urls.amqp, cert, key);
  managementProxy = await tlsProxy(broker.urls.management, cert, key);
  mqttProxy = await tlsProxy(broker.urls.mqtt, cert, key);
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  await Promise.all([amqpProxy?.close(), managementProxy?.close(), mqttProxy?.close()]);
  rmSync(certDir, { recursive: true, force: true });
});

const amqpsUrl = (vhost = '/'): string => `amqps://guest:guest@127.0.0.1:${amqpProxy.port}/${encodeURIComponent(vhost)}`;
const httpsUrl = (): string => `https://guest:guest@127.0.0.1:${managementProxy.port}`;
const verified = (): TlsFiles => ({ ca, rejectUnauthorized: true });
const unverified: TlsFiles = { rejectUnauthorized: false };
const NOT_VERIFIED = /^The broker at \S+ presented a certificate that could not be verified \(\w+\): give its CA file \(on the command line: --tls-ca ca\.pem\), or turn certificate verification off \(--tls-insecure\)\.$/;

async function freshVhost(): Promise<TestVhost> {
  const vhost = await createTestVhost(broker.urls, 'tls');
  cleanups.push(() => vhost.remove());
  return vhost;
}

async function rpcServer(tls: TlsFiles | undefined): Promise<RpcServer> {
  const server = new RpcServer({
    amqpUrl: amqpsUrl(),
    ...(tls ? { tls } : {}),
    exchange: 'amq.direct',
    queue: uniqueName('tls-server'),
    handler: await loadHandler(parseHandlerSpec('echo')),
  });
  cleanups.push(() => server.stop());
  return server;
}

describe('the embedded RPC server over amqps:// with a private CA', () => {
  it('connects with the CA, says in one sentence why not without it, and connects with verification off', async () => {
    const trusted = await rpcServer(verified());
    await trusted.start();
    expect(trusted.status.state).toBe('connected');

    const untrusting = await rpcServer(undefined);
    await expect(untrusting.start()).rejects.toThrow(NOT_VERIFIED);

    const unchecked = await rpcServer(unverified);
    await unchecked.start();
    expect(unchecked.status.state).toBe('connected');
  });
});

describe('the firehose tracer over amqps:// with a private CA', () => {
  function tracer(vhost: TestVhost, tls: TlsFiles | undefined): FirehoseTracer {
    // Its management API over https with the same settings: the tracer's two ways to the broker.
    const api = new ManagementApi(httpsUrl(), vhost.name, undefined, tls ?? verified());
    const made = new FirehoseTracer({ amqpUrl: amqpsUrl(vhost.name), ...(tls ? { tls } : {}), api, store: new TraceStore(), owner: 'tls-everywhere test' });
    cleanups.push(() => made.stop());
    return made;
  }

  it('switches tracing on with the CA, and gives it back', async () => {
    const vhost = await freshVhost();
    const trusted = tracer(vhost, verified());
    expect(await trusted.start()).toMatchObject({ state: 'on' });
    expect(await vhost.api.tracing()).toBe(true);
    await trusted.stop();
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('without the CA fails with one sentence and leaves tracing off; with verification off it traces', async () => {
    const vhost = await freshVhost();
    await expect(tracer(vhost, undefined).start()).rejects.toThrow(NOT_VERIFIED);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await tracer(vhost, unverified).start()).toMatchObject({ state: 'on' });
  });
});

describe('the management API over https:// with a private CA', () => {
  it('answers with the CA, says in one sentence why not without it, and answers with verification off', async () => {
    expect((await new ManagementApi(httpsUrl(), '/', undefined, verified()).overview()).rabbitmqVersion).toMatch(/^\d+\.\d+\.\d+/);
    await expect(new ManagementApi(httpsUrl()).overview()).rejects.toThrow(NOT_VERIFIED);
    expect((await new ManagementApi(httpsUrl(), '/', undefined, unverified).overview()).rabbitmqVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('still says a wrong password is a wrong password over https', async () => {
    const wrong = httpsUrl().replace('guest:guest', 'guest:wrong');
    await expect(new ManagementApi(wrong, '/', undefined, verified()).overview()).rejects.toThrow(/^The management API at https:\/\/127\.0\.0\.1:\d+ refused the credentials \(401\)\.$/);
  });
});

describe("a profile's CA file, from the form to every connection", () => {
  const profile = (vhost: string, tls: ConnectionProfile['tls']): ConnectionProfile => ({
    name: 'private CA',
    amqpUrl: amqpsUrl(vhost),
    // The MQTT plugin takes the vhost from a "vhost:user" user name.
    mqttUrl: broker.urls.mqtt.replace('mqtt://', `mqtt://${encodeURIComponent(`${vhost}:guest`)}:guest@`),
    managementUrl: httpsUrl(),
    vhost,
    exchange: 'amq.direct',
    ...(tls ? { tls } : {}),
  });

  it('Test connection reaches the AMQP and management URLs with the CA, and says why not without it', async () => {
    const lines = await testConnection(profile('/', { caFile }));
    expect(lines.map((line) => [line.protocol, line.ok])).toEqual([
      ['amqp', true],
      ['mqtt', true],
      ['management', true],
    ]);
    expect(lines[0]?.tls).toBe('verified');
    const without = await testConnection(profile('/', undefined));
    expect(without.filter((line) => line.protocol !== 'mqtt').map((line) => line.sentence)).toEqual([expect.stringMatching(NOT_VERIFIED), expect.stringMatching(NOT_VERIFIED)]);
  });

  it('an open connection starts its server, traces, probes and diagnoses over TLS', async () => {
    const vhost = await freshVhost();
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    cleanups.push(() => session.dispose());
    await session.open(profile(vhost.name, { caFile }));
    expect(session.state().overview?.rabbitmqVersion).toMatch(/^\d+\.\d+\.\d+/);
    const queue = uniqueName('tls_session');
    const server = await session.startServer({ exchange: 'amq.direct', queue, workers: 1, prefetch: 1, handler: 'echo' });
    expect(server.state).toBe('running');
    expect(await session.setTracing(true)).toMatchObject({ state: 'on' });
    expect(await vhost.api.tracing()).toBe(true);
    const send = (topic: string) => dispatch(session.handlers, 'rpc.request.send', { topic, qos: 1, strategy: 'shared', payloadText: '{"params": {"n": 1}}', timeoutMs: 3000 });
    expect(await send(queue)).toMatchObject({ ok: true, result: { verdict: { code: 'replied' } } });
    // The probe opens AMQP and MQTT connections of its own; the verdict asks the management API and AMQP for live counts.
    expect(await dispatch(session.handlers, 'broker.probe.run', {})).toMatchObject({ ok: true, result: { observedExchange: 'amq.direct' } });
    const unroutable = await send(`tls/${uniqueName('nobody')}`);
    expect(unroutable).toMatchObject({ ok: false, error: { verdict: { code: 'request-unroutable' } } });
    const evidence = (unroutable as { error: { verdict: { evidence: string[] } } }).error.verdict.evidence.join('\n');
    expect(evidence).not.toMatch(/not asked|could not connect|could not be verified/);
    await session.close();
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('the Watch panel starts over TLS, with a tap queue and through the firehose, and leaves the vhost as it was', async () => {
    // What this test holds is the connections: before the watch took the profile's TLS files, watch.start failed here.
    // Pairing is session-watch's test (plain AMQP). Run after this file's other tests, the tap here once paired none of
    // 10 replied requests (alone it pairs at the second): noted for the next session, not asserted.
    const vhost = await freshVhost();
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    cleanups.push(() => session.dispose());
    await session.open(profile(vhost.name, { caFile }));
    const queue = uniqueName('tls_watch');
    for (const mode of ['tap', 'firehose'] as const) {
      const started = await dispatch(session.handlers, 'watch.start', { mode, timeoutMs: 2000, requestKeys: [queue] });
      expect(started, mode).toMatchObject({ ok: true, result: { state: 'running' } });
      if (mode === 'firehose') expect(await vhost.api.tracing()).toBe(true);
      expect(await dispatch(session.handlers, 'watch.stop', {}), mode).toMatchObject({ ok: true });
    }
    expect(await vhost.api.tracing()).toBe(false);
    expect((await vhost.api.queues()).filter((item) => item.name.startsWith('bridgescope.watch-tap.'))).toEqual([]);
  }, 120_000);
});

describe('the command line over TLS with a private CA (--tls-ca, --tls-insecure, BRIDGESCOPE_TLS_*)', () => {
  const mqttsUrl = (): string => `mqtts://127.0.0.1:${mqttProxy.port}`;
  const plainEnv = { BRIDGESCOPE_TLS_CA_FILE: '', BRIDGESCOPE_TLS_CERT_FILE: '', BRIDGESCOPE_TLS_KEY_FILE: '', BRIDGESCOPE_TLS_VERIFY: '' };

  it('call --trace reaches a server through mqtts://, traces through amqps:// and asks https://, all with --tls-ca', async () => {
    const queue = uniqueName('tls_cli');
    const server = new RpcServer({ amqpUrl: amqpsUrl(), tls: verified(), exchange: 'amq.direct', queue, handler: await loadHandler(parseHandlerSpec('echo')) });
    cleanups.push(() => server.stop());
    await server.start();
    const args = ['call', '--mqtt', mqttsUrl(), '--amqp', amqpsUrl(), '--management', httpsUrl(), '--topic', queue, '--trace', '--json', '--timeout', '5000', '{"n": 1}'];
    const result = await runCli([...args, '--tls-ca', caFile], { env: plainEnv });
    expect(result.code, result.stderr).toBe(0);
    const printed = JSON.parse(result.stdout) as { verdict: { code: string }; trace: Array<{ kind: string; detail: { leg?: string } }> };
    expect(printed.verdict.code).toBe('replied');
    // The firehose's copies came over amqps:// (the tracer) after tracing was switched on over https:// (the management API).
    expect(printed.trace.filter((step) => step.kind === 'broker.delivered').map((step) => step.detail.leg)).toEqual(['request', 'reply']);
    // Without the CA: one sentence naming the flags, exit 4, nothing sent.
    const refused = await runCli(args, { env: plainEnv });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/could not be verified \(\w+\): give its CA file \(on the command line: --tls-ca ca\.pem\), or turn certificate verification off \(--tls-insecure\)\./);
  });

  it('bindings over https:// takes the CA from BRIDGESCOPE_TLS_CA_FILE, or no verification from --tls-insecure', async () => {
    const args = ['bindings', '--management', httpsUrl(), '--amqp', amqpsUrl(), '--json'];
    const fromEnv = await runCli(args, { env: { ...plainEnv, BRIDGESCOPE_TLS_CA_FILE: caFile } });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    expect(Array.isArray(JSON.parse(fromEnv.stdout))).toBe(true);
    const insecure = await runCli([...args, '--tls-insecure'], { env: plainEnv });
    expect(insecure.code, insecure.stderr).toBe(0);
    expect((await runCli(args, { env: plainEnv })).code).toBe(4);
    // BRIDGESCOPE_TLS_VERIFY=false left over from another broker: --tls-verify verifies after all (no CA: refused, exit 4).
    const notVerifying = { ...plainEnv, BRIDGESCOPE_TLS_VERIFY: 'false' };
    expect((await runCli(args, { env: notVerifying })).code).toBe(0);
    const verified = await runCli([...args, '--tls-verify'], { env: notVerifying });
    expect(verified.code).toBe(4);
    expect(verified.stderr).toMatch(/could not be verified/);
    const both = await runCli([...args, '--tls-verify', '--tls-insecure'], { env: plainEnv });
    expect({ code: both.code, stderr: both.stderr.trim() }).toEqual({ code: 2, stderr: "bridgescope: Give --tls-verify or --tls-insecure, not both: one verifies the broker's certificate, the other does not." });
  });

  it('BRIDGESCOPE_TLS_* left over from another broker does not fail a command whose URLs are all plain; with a TLS URL it is read', async () => {
    const stale = { ...plainEnv, BRIDGESCOPE_TLS_CA_FILE: join(certDir, 'gone.pem') };
    const plain = await runCli(['bindings', '--management', broker.urls.management, '--amqp', broker.urls.amqp, '--json'], { env: stale });
    expect(plain.code, plain.stderr).toBe(0);
    expect(Array.isArray(JSON.parse(plain.stdout))).toBe(true);
    // The same variable with an https:// URL: the sentence, exit 2, as for the flag.
    const secure = await runCli(['bindings', '--management', httpsUrl(), '--amqp', broker.urls.amqp, '--json'], { env: stale });
    expect(secure.code).toBe(2);
    expect(secure.stderr.trim()).toBe(`bridgescope: The CA file "${join(certDir, 'gone.pem')}" cannot be read: there is no such file.`);
    // An MQTT URL over TLS in the environment is not bindings' (it has no --mqtt, it connects no MQTT): still not read.
    const mqttElsewhere = await runCli(['bindings', '--management', broker.urls.management, '--amqp', broker.urls.amqp, '--json'], { env: { ...stale, BRIDGESCOPE_MQTT_URL: 'mqtts://127.0.0.1:8883' } });
    expect(mqttElsewhere.code, mqttElsewhere.stderr).toBe(0);
    // --tls-insecure alone names no file: a stale CA variable is not read for plain URLs either.
    expect((await runCli(['bindings', '--management', broker.urls.management, '--amqp', broker.urls.amqp, '--tls-insecure'], { env: stale })).code).toBe(0);
    // Given as a flag, a file is read whatever the URLs: the user asked for it.
    expect((await runCli(['bindings', '--management', broker.urls.management, '--amqp', broker.urls.amqp, '--tls-ca', join(certDir, 'gone.pem')], { env: plainEnv })).code).toBe(2);
  });

  it('a client certificate without its key is one sentence, exit 2, before anything connects', async () => {
    const result = await runCli(['bindings', '--management', httpsUrl(), '--tls-cert', caFile], { env: plainEnv });
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe('bridgescope: A client certificate needs its key file, and a key its certificate: give --tls-cert and --tls-key together (or BRIDGESCOPE_TLS_CERT_FILE and BRIDGESCOPE_TLS_KEY_FILE).');
  });

  it('a TLS file that cannot be read is one sentence, exit 2, before anything connects', async () => {
    const result = await runCli(['bindings', '--management', httpsUrl(), '--tls-ca', join(certDir, 'missing.pem')], { env: plainEnv });
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe(`bridgescope: The CA file "${join(certDir, 'missing.pem')}" cannot be read: there is no such file.`);
  });
});
