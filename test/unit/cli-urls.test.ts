import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveUrl, resolveUrls } from '../../src/cli/urls';
import { forgetGivenUrls, noteGivenUrls } from '../../src/cli/given-urls';

/*
 * The command line takes each broker URL from its flag, then BRIDGESCOPE_*_URL, then the running sandbox. Once a command
 * names another broker for one protocol, the sandbox must not answer for the others: the MQTT and management URLs follow
 * the AMQP URL's host, and any other missing one is asked for.
 */

const sandbox = { amqp: 'amqp://guest:guest@127.0.0.1:45672', mqtt: 'mqtt://guest:guest@127.0.0.1:41883', management: 'http://guest:guest@127.0.0.1:45673' };
const ENV = ['BRIDGESCOPE_SANDBOX_DIR', 'BRIDGESCOPE_AMQP_URL', 'BRIDGESCOPE_MQTT_URL', 'BRIDGESCOPE_MANAGEMENT_URL'] as const;
const saved = Object.fromEntries(ENV.map((name) => [name, process.env[name]]));
let dir = '';
let stderr: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'bridgescope-urls-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  for (const name of ENV) delete process.env[name];
  process.env.BRIDGESCOPE_SANDBOX_DIR = dir;
  rmSync(join(dir, 'sandbox.json'), { force: true });
  forgetGivenUrls();
  stderr = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr.push(String(chunk));
    return true;
  });
});

afterEach(() => {
  vi.restoreAllMocks();
  for (const name of ENV) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
});

const sandboxRunning = (): void => writeFileSync(join(dir, 'sandbox.json'), JSON.stringify({ urls: sandbox }));
/** What commander hands an action: the options object (then the command). */
const command = (options: Record<string, unknown>): void => noteGivenUrls([options, {}]);

describe('broker URLs on the command line', () => {
  it('take the sandbox for every protocol when none is given', () => {
    sandboxRunning();
    command({});
    expect([resolveUrl('amqp', undefined), resolveUrl('mqtt', undefined), resolveUrl('management', undefined)]).toEqual([sandbox.amqp, sandbox.mqtt, sandbox.management]);
    expect(stderr).toEqual([]);
  });

  it('take the sandbox for the others when --amqp is the sandbox itself (localhost or 127.0.0.1)', () => {
    sandboxRunning();
    command({ amqp: 'amqp://guest:guest@localhost:45672' });
    expect(resolveUrl('mqtt', undefined)).toBe(sandbox.mqtt);
    expect(resolveUrl('management', undefined)).toBe(sandbox.management);
  });

  it('follow --amqp to another broker, never the running sandbox, and say so once on stderr without the password', () => {
    sandboxRunning();
    command({ amqp: 'amqp://ops:s3cret@broker.example:5672/' });
    expect(resolveUrl('mqtt', undefined)).toBe('mqtt://ops:s3cret@broker.example:1883');
    expect(resolveUrl('mqtt', undefined)).toBe('mqtt://ops:s3cret@broker.example:1883');
    expect(resolveUrl('management', undefined)).toBe('http://ops:s3cret@broker.example:15672');
    expect(stderr).toHaveLength(2);
    expect(stderr.join('')).toContain('no MQTT URL given: using mqtt://ops:***@broker.example:1883 (the host of --amqp');
    expect(stderr.join('')).not.toContain('s3cret');
  });

  it('follow BRIDGESCOPE_AMQP_URL (amqps: the TLS ports), a cluster node by node, and a vhost in the MQTT user name', () => {
    process.env.BRIDGESCOPE_AMQP_URL = 'amqps://a.example/prod, amqps://b.example/prod';
    command({});
    expect(resolveUrls('mqtt', undefined)).toEqual(['mqtts://prod%3Aguest:guest@a.example:8883', 'mqtts://prod%3Aguest:guest@b.example:8883']);
    expect(resolveUrls('management', undefined)).toEqual(['https://guest:guest@a.example:15671', 'https://guest:guest@b.example:15671']);
    expect(stderr.join('')).toContain('the host of BRIDGESCOPE_AMQP_URL');
  });

  it('ask for the AMQP URL in one sentence when only --mqtt names another broker', () => {
    sandboxRunning();
    command({ mqtt: 'mqtt://dev:pw@devices.example:1883' });
    expect(() => resolveUrl('amqp', undefined)).toThrow(
      'No AMQP URL for the broker --mqtt names (mqtt://dev:***@devices.example:1883): pass --amqp or set BRIDGESCOPE_AMQP_URL (the running sandbox broker is another broker).',
    );
    expect(() => resolveUrl('management', undefined)).toThrow(/^No management URL for the broker --mqtt names/);
  });

  it('keep a flag or variable given for the protocol itself', () => {
    sandboxRunning();
    process.env.BRIDGESCOPE_MQTT_URL = 'mqtt://127.0.0.1:1999';
    command({ amqp: 'amqp://broker.example' });
    expect(resolveUrl('mqtt', undefined)).toBe('mqtt://127.0.0.1:1999');
    expect(resolveUrl('management', 'http://admin:pw@broker.example:8080')).toBe('http://admin:pw@broker.example:8080');
    expect(stderr).toEqual([]);
  });

  it('say the sandbox is not running (unreachable: exit 4) when it ran here before, and ask for a URL when there never was one', () => {
    command({});
    expect(() => resolveUrl('mqtt', undefined)).toThrow(expect.objectContaining({ code: 'unreachable', message: `No MQTT URL: the sandbox broker (${dir}) is not running; start it with \`bridgescope broker start\`, or pass --mqtt or set BRIDGESCOPE_MQTT_URL.` }));
    process.env.BRIDGESCOPE_SANDBOX_DIR = join(dir, 'never-started');
    expect(() => resolveUrl('amqp', undefined)).toThrow(expect.objectContaining({ code: 'bad-input', message: 'No AMQP URL: pass --amqp, set BRIDGESCOPE_AMQP_URL, or start the sandbox broker with `bridgescope broker start` (one started with --dir elsewhere: set BRIDGESCOPE_SANDBOX_DIR to its folder).' }));
  });

  it('forget the flags of the command before', () => {
    sandboxRunning();
    command({ amqp: 'amqp://broker.example' });
    forgetGivenUrls();
    command({});
    expect(resolveUrl('mqtt', undefined)).toBe(sandbox.mqtt);
  });
});
