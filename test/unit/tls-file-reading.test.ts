/**
 * A profile's TLS fields may point anywhere (a profile can be imported): a device, a pipe nobody writes, a huge file.
 * Each gets one sentence naming the field, at once, and the process keeps serving meanwhile. Run in a child process:
 * a read that blocked would freeze the test runner itself.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tlsFailure } from '../../src/core/connection-details';

const connectionTest = join(import.meta.dirname, '..', '..', 'src', 'core', 'connection-test.ts');
const dir = mkdtempSync(join(tmpdir(), 'bridgescope-tls-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  sentences: string[];
  elapsedMs: number;
  /** the longest the child's event loop went without running a 10-ms timer while the files were read */
  longestStallMs: number;
}

/**
 * "Test connection" on an amqps:// profile with these TLS fields, in a child process that ticks a 10-ms timer
 * meanwhile; killed (and the test failed) when it has not answered within `limitMs`.
 */
function testConnectionIn(tls: Record<string, string>, limitMs = 5000): Promise<Outcome> {
  const script = `
    const { testConnection } = await import(${JSON.stringify(connectionTest)});
    let last = performance.now(); let longest = 0;
    const tick = setInterval(() => { const now = performance.now(); longest = Math.max(longest, now - last); last = now; }, 10);
    const start = performance.now();
    const lines = await testConnection({ name: 'p', amqpUrl: 'amqps://127.0.0.1:1', mqttUrl: 'mqtts://127.0.0.1:1', managementUrl: 'https://127.0.0.1:1', vhost: '/', tls: ${JSON.stringify(tls)} });
    const elapsedMs = performance.now() - start;
    longest = Math.max(longest, performance.now() - last);
    clearInterval(tick);
    process.stdout.write(JSON.stringify({ sentences: [...new Set(lines.map((line) => line.sentence))], elapsedMs, longestStallMs: longest }));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') reject(new Error(`no answer within ${limitMs} ms (the read blocked the process)`));
      else if (code !== 0) reject(new Error(`the child failed (${code}): ${stderr}`));
      else resolve(JSON.parse(stdout) as Outcome);
    });
  });
}

describe('TLS files a profile points at', () => {
  it('refuses /dev/zero as the CA file with one sentence, at once, the process responsive meanwhile', async () => {
    const outcome = await testConnectionIn({ caFile: '/dev/zero' });
    expect(outcome.sentences).toEqual(['The CA file "/dev/zero" cannot be read: it is not a regular file (a device, a pipe or a socket).']);
    expect(outcome.elapsedMs).toBeLessThan(1000);
    expect(outcome.longestStallMs).toBeLessThan(500);
  });

  it('refuses a pipe nobody writes to as the client certificate, at once, the process responsive meanwhile', async () => {
    const fifo = join(dir, 'cert.fifo');
    execFileSync('mkfifo', [fifo]);
    const key = join(dir, 'key.pem');
    writeFileSync(key, '-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n');
    const outcome = await testConnectionIn({ certFile: fifo, keyFile: key });
    expect(outcome.sentences).toEqual([`The client certificate file "${fifo}" cannot be read: it is not a regular file (a device, a pipe or a socket).`]);
    expect(outcome.elapsedMs).toBeLessThan(1000);
    expect(outcome.longestStallMs).toBeLessThan(500);
  });

  it('refuses a 300 MB (sparse) client key with the size and the 1 MiB cap, without reading it', async () => {
    const big = join(dir, 'key.pem');
    writeFileSync(big, '');
    truncateSync(big, 300 * 1000 * 1000);
    const outcome = await testConnectionIn({ keyFile: big, certFile: '/etc/hostname' });
    expect(outcome.sentences).toEqual([`The client key file "${big}" cannot be read: it holds 286.1 MiB, more than the 1 MiB a certificate or key file may hold.`]);
    expect(outcome.elapsedMs).toBeLessThan(1000);
    expect(outcome.longestStallMs).toBeLessThan(500);
  });

  it('still reads a real PEM file', async () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n');
    const outcome = await testConnectionIn({ caFile: ca });
    // Read (no sentence about the file): what is left is each URL's own answer.
    expect(outcome.sentences.some((sentence) => sentence.includes(ca))).toBe(false);
  });
});

describe('a TLS failure, in one sentence', () => {
  it('says a broker that asks for a client certificate asks for one (mutual TLS), naming the flags, not that the port may not speak TLS', () => {
    const refused = Object.assign(new Error('error:0A00045C:SSL routines::tlsv13 alert certificate required'), { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' });
    expect(tlsFailure(refused, 'amqps://b.example:5671')).toMatchObject({
      code: 'auth',
      message: 'The broker at amqps://b.example:5671 asks for a client certificate it trusts and refused the handshake (ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED): give your client certificate and its key (on the command line: --tls-cert and --tls-key).',
    });
    const unverified = Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    expect(tlsFailure(unverified, 'amqps://b.example:5671')?.message).toMatch(/presented a certificate that could not be verified/);
  });
});
