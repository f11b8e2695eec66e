import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { agreedVhostIfAmqp, checkGivenUrls, optionalUrls, resolveUrl, resolveUrls } from '../../src/cli/urls';
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

describe('a broker URL typed wrong', () => {
  const refusal = (message: string) => expect.objectContaining({ code: 'bad-input', message });

  it('is refused when nothing is where its host belongs, with the scheme:// form to write (a client would go to localhost)', () => {
    expect(() => resolveUrls('mqtt', 'mqtt:/127.0.0.1:22331')).toThrow(refusal('"mqtt:/127.0.0.1:22331" has no host after the scheme: write mqtt://127.0.0.1:22331 (two slashes after "mqtt:").'));
    expect(() => resolveUrls('amqp', 'amqp:/127.0.0.1')).toThrow(refusal('"amqp:/127.0.0.1" has no host after the scheme: write amqp://127.0.0.1 (two slashes after "amqp:").'));
    expect(() => resolveUrls('amqp', 'amqp:/guest:s3cret@127.0.0.1')).toThrow(refusal('"amqp:***@127.0.0.1" has no host after the scheme: write amqp://***@127.0.0.1 (two slashes after "amqp:").'));
    expect(() => resolveUrls('amqp', 'amqp:///prod')).toThrow(refusal('"amqp:///prod" has no host after "amqp://".'));
    // A cluster's second node, and a variable, as well as a flag.
    expect(() => resolveUrls('mqtt', 'mqtt://127.0.0.1:1883,mqtt:///1884')).toThrow(refusal('"mqtt:///1884" has no host after "mqtt://".'));
    process.env.BRIDGESCOPE_MQTT_URL = 'mqtt:127.0.0.1';
    expect(() => resolveUrls('mqtt', undefined)).toThrow(/"mqtt:127\.0\.0\.1" has no host after the scheme: write mqtt:\/\/127\.0\.0\.1 /);
  });

  it('is refused by its protocol\'s own parser, showing the part that holds the typo and never the password', () => {
    expect(() => resolveUrls('amqp', 'amqp//guest:s3cret@127.0.0.1:20624')).toThrow(refusal('"amqp//guest:***@127.0.0.1:20624" is not a valid AMQP URL (expected amqp://user:pass@host:5672/vhost).'));
    expect(() => resolveUrls('mqtt', 'mqtt//127.0.0.1:1883')).toThrow(/^"mqtt\/\/127\.0\.0\.1:1883" is not a valid MQTT URL/);
    expect(() => resolveUrls('management', 'http://u:pa/ss@127.0.0.1:15672')).toThrow(/is not a valid management URL/);
    // Another scheme than a broker's keeps its protocol's sentence.
    expect(() => resolveUrls('amqp', 'localhost:5672')).toThrow(/^An AMQP URL must start with amqp:\/\/ or amqps:\/\//);
  });

  it('is refused even where a URL is optional (call\'s --amqp), while a URL not given at all is no error there', () => {
    command({});
    expect(() => checkGivenUrls('amqp', 'amqp//guest:guest@127.0.0.1:20624')).toThrow(/is not a valid AMQP URL/);
    expect(() => optionalUrls('amqp', 'amqp:/127.0.0.1')).toThrow(/has no host after the scheme/);
    process.env.BRIDGESCOPE_SANDBOX_DIR = join(dir, 'never-started');
    expect(() => checkGivenUrls('amqp', undefined)).not.toThrow();
    expect(optionalUrls('amqp', undefined)).toBeUndefined();
  });
});

describe("the vhost of a command whose AMQP URL is optional (bindings, preflight)", () => {
  it("is the AMQP URL's, and a --vhost naming another is refused", () => {
    command({});
    expect(agreedVhostIfAmqp('amqp://127.0.0.1:5673/prod', undefined, 'clash')).toBe('prod');
    expect(agreedVhostIfAmqp('amqp://127.0.0.1:5673', undefined, 'clash')).toBe('/');
    expect(agreedVhostIfAmqp('amqp://127.0.0.1:5673/prod', 'prod', 'clash')).toBe('prod');
    expect(() => agreedVhostIfAmqp('amqp://127.0.0.1:5673/prod', '/', 'they clash')).toThrow(refusalOf('--vhost "/" and the AMQP URL\'s vhost "prod" differ: they clash.'));
    sandboxRunning();
    expect(agreedVhostIfAmqp(undefined, undefined, 'clash')).toBe('/');
  });

  it('is --vhost, else /, when no AMQP URL is given or found', () => {
    command({});
    process.env.BRIDGESCOPE_SANDBOX_DIR = join(dir, 'never-started');
    expect(agreedVhostIfAmqp(undefined, 'prod', 'clash')).toBe('prod');
    expect(agreedVhostIfAmqp(undefined, undefined, 'clash')).toBe('/');
  });
});

function refusalOf(start: string): RegExp {
  return new RegExp(`^${start.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`);
}
