/** Issue 27, "data you can trust": what `call`, `map`, `probe` and `serve` do with input that is hostile, unbounded or wrong. */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createInterface } from 'node:readline';
import { cliPath, runCli, type CliResult } from '../support/cli';
import { uniqueName } from '../support/names';
import { startFakeMqttBroker } from '../support/fake-mqtt-broker';
import { mqttPluginWarning } from '../../src/cli/commands/rpc';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-untrusted-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The CLI with stdin a pipe this test never closes (a writer that went quiet). */
function runWithOpenStdin(args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    cleanups.push(async () => {
      child.stdin.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
  });
}

// Nothing is ever connected to: every refusal comes before the MQTT connection.
const nowhere = ['--mqtt', 'mqtt://127.0.0.1:1'];

describe('call: payload sources are bounded', () => {
  it('refuses --payload-file /dev/zero (raw and hex) at once with exit 2 and one sentence, reading nothing', async () => {
    for (const format of [[], ['--payload-format', 'hex']]) {
      const result = await runCli(['call', ...nowhere, '--payload-file', '/dev/zero', ...format]);
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(
        'bridgescope: --payload-file /dev/zero is not a regular file (a FIFO, a device or a folder), so it could block or never end; pipe its bytes into PAYLOAD - instead.\n',
      );
    }
  });

  it('refuses a FIFO nobody writes at once, instead of waiting past --timeout', async () => {
    const fifo = join(await scratch(), 'body.fifo');
    execFileSync('mkfifo', [fifo]);
    const result = await runCli(['call', ...nowhere, '--timeout', '1000', '--payload-file', fifo]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^bridgescope: --payload-file .*body\.fifo is not a regular file/);
  }, 15_000);

  it('refuses a file over 16 MiB (17 MiB, sparse) and stdin over 16 MiB, the cap Compose has, with exit 2', async () => {
    const big = join(await scratch(), 'big.bin');
    await writeFile(big, '');
    await truncate(big, 17 * 1024 * 1024);
    const fromFile = await runCli(['call', ...nowhere, '--payload-file', big]);
    expect(fromFile.code).toBe(2);
    expect(fromFile.stderr).toBe(`bridgescope: --payload-file ${big} is larger than 16 MiB, the most \`call\` reads (16 MiB of body, as Compose); nothing was sent.\n`);
    const fromStdin = await runCli(['call', ...nowhere, '--payload-format', 'text', '-'], { input: Buffer.alloc(17 * 1024 * 1024, 0x61) });
    expect(fromStdin.code).toBe(2);
    expect(fromStdin.stderr).toBe('bridgescope: PAYLOAD - (stdin) is larger than 16 MiB, the most `call` reads (16 MiB of body, as Compose); nothing was sent.\n');
    // 34 MiB of hex text is within what is read, but spells 17 MiB of body
    const hex = join(await scratch(), 'big.hex');
    await writeFile(hex, Buffer.alloc(34 * 1024 * 1024, 0x61));
    const fromHex = await runCli(['call', ...nowhere, '--payload-format', 'hex', '--payload-file', hex]);
    expect(fromHex.code).toBe(2);
    expect(fromHex.stderr).toBe(`bridgescope: --payload-file ${hex} spells 17825792 bytes of body, more than the 16 MiB \`call\` sends (as Compose); nothing was sent.\n`);
  }, 90_000);

  it('still reads a regular file and a stdin that ends (the call then goes on to connect: exit 4 here, nowhere to connect to)', async () => {
    const small = join(await scratch(), 'body.json');
    await writeFile(small, '{"params": [1, 2]}');
    const fromFile = await runCli(['call', ...nowhere, '--payload-format', 'json', '--payload-file', small]);
    const fromStdin = await runCli(['call', ...nowhere, '-'], { input: '{"params": [1, 2]}' });
    for (const result of [fromFile, fromStdin]) {
      expect(result.code).toBe(4);
      expect(result.stderr).toMatch(/^bridgescope: .*127\.0\.0\.1:1/);
    }
  }, 30_000);

  it('gives up on a stdin nobody closes after --timeout, with exit 2', async () => {
    const result = await runWithOpenStdin(['call', ...nowhere, '--timeout', '800', '-']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'bridgescope: PAYLOAD -: stdin did not end within the --timeout of 800 ms, so nothing was sent (close it, e.g. end a pipe or press Ctrl-D).\n',
    );
  }, 15_000);
});

describe('map: a topic pasted from a device log', () => {
  it('shows ESC, BEL and U+202E as escapes, never raw (no title set, no screen cleared, no text reversed)', async () => {
    const topic = 'plant/\u001b]0;owned\u0007/\u001b[2J/\u202emeti';
    const result = await runCli(['map', topic, '--role', 'publish']);
    for (const raw of ['\u001b', '\u0007', '\u202e']) expect(result.stdout).not.toContain(raw);
    expect(result.stdout.split('\n')[0]).toBe('topic        plant/\\x1b]0;owned\\x07/\\x1b[2J/\\u202emeti');
    expect(result.stdout).toContain('routing key  plant.\\x1b]0;owned\\x07.\\x1b[2J.\\u202emeti');
  });
});

describe('call --reply-topic', () => {
  it("refuses an empty reply topic with exit 2 and one sentence, before connecting, instead of waiting for the timeout", async () => {
    const result = await runCli(['call', ...nowhere, '--timeout', '20000', '--reply-topic', '']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      "error: option '--reply-topic <topic>' argument '' is invalid. --reply-topic cannot be empty (MQTT forbids an empty topic): give a topic, or leave the flag out for a generated reply/<uuid>.\n",
    );
  });
});

/** The URL with credentials the broker refuses. */
function withBadCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = 'guest';
  parsed.password = 'not-the-password';
  return parsed.toString();
}

describe('probe with refused credentials', () => {
  it('exits 4 (credentials refused) whichever URL is refused, and --json says the sentence once', async () => {
    const cases = [
      ['mqtt', /The broker at mqtt:\/\/.*refused the MQTT credentials\./],
      ['management', /The management API at http:\/\/.* refused the credentials \(401\)\./],
      ['amqp', /The broker at amqp:\/\/.*refused the AMQP credentials\./],
    ] as const;
    for (const [target, sentence] of cases) {
      const url = (key: 'mqtt' | 'amqp' | 'management') => (key === target ? withBadCredentials(broker.urls[key]) : broker.urls[key]);
      const args = ['probe', '--mqtt', url('mqtt'), '--amqp', url('amqp'), '--management', url('management')];
      for (const json of [[], ['--json']]) {
        const result = await runCli([...args, ...json]);
        const said = `${result.stdout}${result.stderr}`;
        expect({ target, json, code: result.code }).toEqual({ target, json, code: 4 });
        expect(said.split(new RegExp(sentence.source)).length - 1).toBe(1);
      }
    }
  }, 90_000);
});

describe('serve on a broker whose MQTT plugin does not feed the served exchange', () => {
  it('says so once at start (warning line), and keeps serving', async () => {
    const queue = uniqueName('rpc_queue');
    const child = spawn(
      process.execPath,
      [cliPath, 'serve', '--amqp', broker.urls.amqp, '--mqtt', broker.urls.mqtt, '--management', broker.urls.management, '--queue', queue, '--exchange', 'amq.topic'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    const lines: string[] = [];
    const warned = new Promise<string>((resolve) =>
      createInterface({ input: child.stderr }).on('line', (line) => {
        lines.push(line);
        if (line.startsWith('warning: ')) resolve(line);
      }),
    );
    // (the user name is hidden too: the sandbox's is its password, guest)
    expect(await warned).toMatch(
      new RegExp(`^warning: The MQTT plugin of amqp://\\*\\*\\*:\\*\\*\\*@127\\.0\\.0\\.1:${broker.ports.amqp}/? publishes to amq\\.direct \\(mqtt\\.exchange\\), but "${queue}" is served on amq\\.topic: devices' requests will not reach it \\(use --exchange amq\\.direct\\)\\.$`),
    );
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(lines.filter((line) => line.startsWith('warning: '))).toHaveLength(1);
    expect(lines.some((line) => line.startsWith('Serving '))).toBe(true);
  }, 60_000);

  it('says nothing when the plugin publishes to the served exchange, and names another broker behind the MQTT URL', async () => {
    const queue = uniqueName('rpc_queue');
    const urls = { amqpUrl: broker.urls.amqp, mqtt: broker.urls.mqtt, management: broker.urls.management, queue };
    expect(await mqttPluginWarning({ ...urls, exchange: 'amq.direct' })).toBeUndefined();
    const fake = await startFakeMqttBroker();
    cleanups.push(() => fake.close());
    expect(await mqttPluginWarning({ ...urls, mqtt: fake.url, exchange: 'amq.direct' })).toMatch(
      new RegExp(`^The MQTT broker at ${fake.url}/? accepted our message but the RabbitMQ at .* never saw it: they are not the same broker \\(is .* a Mosquitto\\?\\): devices on ${fake.url}/? cannot reach "${queue}"\\.$`),
    );
  }, 60_000);
});
