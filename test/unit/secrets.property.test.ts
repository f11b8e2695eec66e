import { createServer } from 'node:net';
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { amqpConnectOptions, explainAmqpError } from '../../src/core/links/amqp-link';
import { MqttLink, validateMqttUrl } from '../../src/core/links/mqtt-link';
import { ManagementApi } from '../../src/core/broker/management-api';
import { memorySecretBox, ProfileStore, redactProfile, restoreSecrets } from '../../src/core/profiles';
import { TraceStore } from '../../src/core/trace/trace-store';
import { Session } from '../../src/core/session/session';
import { dispatch } from '../../src/core/dispatch';
import { BridgeError } from '../../src/core/errors';
import { action } from '../../src/cli/run';
import { redactUrl, unreadableUrlMessage } from '../../src/shared/redact';

/** What a password can hold: the characters that break URLs, percent signs and escapes, spaces, unicode, and anything else. */
const passwordPiece = fc.oneof(
  fc.constantFrom('/', '@', ':', '#', '?', '%', ' ', '%2F', '%40', '%zz', 'é', '€', '😀', '\u202e', '\\', '[', ']', '//', '://'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }),
);
const password = fc.array(passwordPiece, { minLength: 1, maxLength: 8 }).map((pieces) => pieces.join(''));
const username = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9._-]{0,8}$/), fc.array(passwordPiece, { minLength: 1, maxLength: 3 }).map((pieces) => pieces.join('')));

interface Credentials {
  username: string;
  password: string;
}

const credentials = fc.record({ username, password }).filter(
  // Guard against trivially short secrets or ones the text holds anyway (the user name is shown, the host is 127.0.0.1).
  ({ username: user, password: secret }) => [...secret].length >= 4 && secret.trim().length >= 4 && !user.includes(secret) && !encodeURIComponent(user).includes(secret),
);

/** The URL as a user types it (raw) and as it should be (percent-encoded). */
function urls(scheme: string, { username: user, password: secret }: Credentials, port: number, path = '/'): string[] {
  return [`${scheme}://${user}:${secret}@127.0.0.1:${port}${path}`, `${scheme}://${encodeURIComponent(user)}:${encodeURIComponent(secret)}@127.0.0.1:${port}${path}`];
}

/** Every spelling of the password that must never be printed. */
function forms(secret: string): string[] {
  return [...new Set([secret, encodeURIComponent(secret), encodeURI(secret)])];
}

/** The text (all the messages a path produced) must hold no form of the password, unless the template text itself holds it. */
function expectNoSecret(text: string, secret: string, template: string): void {
  for (const form of forms(secret)) {
    if (template.includes(form)) continue;
    expect(text, `password ${JSON.stringify(secret)} (as ${JSON.stringify(form)})`).not.toContain(form);
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

const messageOf = (err: unknown): string => (err instanceof Error ? `${err.message} ${String((err as { code?: unknown }).code ?? '')}` : String(err));

function caught(run: () => unknown): string {
  try {
    run();
    return '';
  } catch (err) {
    return messageOf(err);
  }
}

async function caughtAsync(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return '';
  } catch (err) {
    return messageOf(err);
  }
}

/** A loopback port nothing listens on (taken, then released). */
async function refusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 1;
}

let closedPort = 1;
beforeAll(async () => {
  closedPort = await refusedPort();
});

/** Text the output holds whatever the password: the URL with the password left out (the user name is shown) and ***. */
const template = (scheme: string, port: number, creds: Credentials): string => `${urls(scheme, { ...creds, password: '' }, port).join(' ')} ***`;

describe('a password in a broker URL, whatever characters it has', () => {
  it('never appears in an AMQP URL error, raw or percent-encoded', () => {
    fc.assert(
      fc.property(credentials, (creds) => {
        for (const url of urls('amqp', creds, closedPort, '/vhost')) {
          const texts = [caught(() => amqpConnectOptions(url, 10))];
          for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EOTHER']) {
            texts.push(explainAmqpError(Object.assign(new Error(`socket said ${code}`), { code }), url).message);
          }
          texts.push(explainAmqpError(new Error('ACCESS_REFUSED - Login was refused'), url).message);
          expectNoSecret(texts.join('\n'), creds.password, template('amqp', closedPort, creds));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('never appears in an MQTT URL error', () => {
    fc.assert(
      fc.property(credentials, (creds) => {
        for (const url of urls('mqtt', creds, closedPort)) expectNoSecret(caught(() => validateMqttUrl(url)), creds.password, template('mqtt', closedPort, creds));
      }),
      { numRuns: 500 },
    );
  });

  it('never appears when an MQTT link fails to connect, in the error or in its status', async () => {
    await fc.assert(
      fc.asyncProperty(credentials, async (creds) => {
        for (const url of urls('mqtt', creds, closedPort)) {
          const link = new MqttLink({ url, clientId: 'secrets-test', connectTimeoutMs: 2000 });
          const statuses: string[] = [];
          link.on('status', (status) => statuses.push(JSON.stringify(status)));
          const error = await caughtAsync(() => link.open());
          await link.close();
          expect(error).not.toBe('');
          expectNoSecret(`${error}\n${statuses.join('\n')}`, creds.password, template('mqtt', closedPort, creds));
        }
      }),
      { numRuns: 40 },
    );
  });

  it('never appears in a management API error against a refused port', async () => {
    await fc.assert(
      fc.asyncProperty(credentials, fc.constantFrom('http', 'https'), async (creds, scheme) => {
        for (const url of urls(scheme, creds, closedPort)) {
          const error = await caughtAsync(() => new ManagementApi(url).overview());
          expect(error).not.toBe('');
          expectNoSecret(error, creds.password, template(scheme, closedPort, creds));
        }
      }),
      { numRuns: 60 },
    );
  });

  it("never appears in the CLI's error line, even when a library puts the URL in its message", async () => {
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    const exitCode = process.exitCode;
    try {
      await fc.assert(
        fc.asyncProperty(credentials, async (creds) => {
          for (const [amqpUrl, mqttUrl] of [[urls('amqp', creds, closedPort)[0], urls('mqtt', creds, closedPort)[1]]] as const) {
            written.length = 0;
            await action(async (options: { amqp: string; mqtt: string }) => {
              amqpConnectOptions(options.amqp, 10);
            })({ amqp: amqpUrl ?? '', mqtt: mqttUrl ?? '' });
            await action(async (options: { amqp: string; mqtt: string }) => {
              throw new Error(`cannot use ${options.mqtt} or ${options.amqp}`);
            })({ amqp: amqpUrl ?? '', mqtt: mqttUrl ?? '' });
            expect(written.join('')).toMatch(/^bridgescope: /);
            expectNoSecret(written.join(''), creds.password, `${template('amqp', closedPort, creds)} ${template('mqtt', closedPort, creds)} cannot use or`);
          }
        }),
        { numRuns: 300 },
      );
    } finally {
      process.exitCode = exitCode;
    }
  });

  it('never appears in a profile as the UI receives it, saved or in use, and comes back when the redacted profile is sent again', async () => {
    await fc.assert(
      fc.asyncProperty(credentials, async (creds) => {
        for (const [index, amqpUrl] of urls('amqp', creds, closedPort).entries()) {
          const profile = {
            name: 'p',
            amqpUrl,
            mqttUrl: urls('mqtt', creds, closedPort)[index] ?? '',
            managementUrl: urls('http', creds, closedPort)[index] ?? '',
            vhost: '/',
            exchange: 'amq.direct',
          };
          const store = new ProfileStore(memorySecretBox());
          const shown = redactProfile(profile);
          const summaries = await store.save(profile);
          // The JSON's own words count as template text: a password "name" or "amqp" is in every profile's keys.
          const noPassword = { ...creds, password: '' };
          const keys = JSON.stringify({ name: 'p', amqpUrl: urls('amqp', noPassword, closedPort), mqttUrl: urls('mqtt', noPassword, closedPort), managementUrl: '', vhost: '/', exchange: 'amq.direct', secretStorage: 'memory' });
          expectNoSecret(JSON.stringify([shown, summaries]), creds.password, `${template('http', closedPort, creds)} ${keys}`);
          expect(restoreSecrets(shown, profile)).toEqual(profile);
          const loaded = await store.get('p');
          // The encoded form comes back exactly as it was, the typed form percent-encoded (a typed user name with `:` is ambiguous).
          if (index === 1) expect(loaded).toEqual(profile);
          else if (!creds.username.includes(':')) for (const kind of ['amqpUrl', 'mqttUrl', 'managementUrl'] as const) expect(loaded[kind]).toContain(`:${encodeURIComponent(safeDecode(creds.password))}@127.0.0.1:`);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('never appears in the app state or the error when a session fails to open a profile', async () => {
    const events: string[] = [];
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: (name, payload) => events.push(`${name} ${JSON.stringify(payload)}`) });
    try {
      await fc.assert(
        fc.asyncProperty(credentials, async (creds) => {
          for (const [index, amqpUrl] of urls('amqp', creds, closedPort).entries()) {
            const profile = { name: 'p', amqpUrl, mqttUrl: urls('mqtt', creds, closedPort)[index], managementUrl: urls('http', creds, closedPort)[index], vhost: '/', exchange: 'amq.direct' };
            const reply = await dispatch(session.handlers, 'connection.open', { profile });
            expect(reply.ok).toBe(false);
            const state = await dispatch(session.handlers, 'app.state.get', {});
            expectNoSecret(`${JSON.stringify(reply)}\n${JSON.stringify(state)}\n${events.join('\n')}`, creds.password, `${template('http', closedPort, creds)} amqp mqtt`);
          }
        }),
        { numRuns: 25 },
      );
    } finally {
      await session.dispose();
    }
  });

  it('never appears in a trace export, wherever a step carries the URL', () => {
    fc.assert(
      fc.property(credentials, (creds) => {
        const store = new TraceStore();
        for (const [index, url] of [...urls('amqp', creds, closedPort), ...urls('mqtt', creds, closedPort)].entries()) {
          const rpcId = `rpc-${index}`;
          store.add({ rpcId, at: 1000, source: 'client', kind: 'composed', detail: { topic: `t/${url}`, qos: 1, replyTopic: 'reply/x', replyStrategy: 'shared', bytes: 4 } });
          store.add({ rpcId, at: 1001, source: 'client', kind: 'rpc.failed', detail: { code: 'unreachable', message: `Cannot connect to ${url} (refused)` } });
          store.add({ rpcId, at: 1002, source: 'server', kind: 'request.rejected', detail: { worker: 'w1', reason: `body was "${url}"`, bytes: 3 } });
        }
        expectNoSecret(JSON.stringify(store.export()), creds.password, `${template('amqp', closedPort, creds)} ${template('mqtt', closedPort, creds)} t/ reply/x Cannot connect to (refused) body was`);
      }),
      { numRuns: 500 },
    );
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('a broker URL that cannot be read as typed', () => {
  it('is refused in one sentence that says to percent-encode the password', () => {
    expect(() => amqpConnectOptions('amqp://user:12/34@127.0.0.1:5672/', 10)).toThrow(BridgeError);
    expect(() => amqpConnectOptions('amqp://user:12/34@127.0.0.1:5672/', 10)).toThrow(/percent-encode/);
    expect(() => validateMqttUrl('mqtt://user:12?34@127.0.0.1:1883')).toThrow(/percent-encode/);
  });
});

describe('redactUrl', () => {
  it('keeps the user name and replaces the password of an ordinary URL by ***', () => {
    expect(redactUrl('amqp://guest:guest@127.0.0.1:5672/vh')).toBe('amqp://guest:***@127.0.0.1:5672/vh');
  });

  it('leaves a URL without a password as it is', () => {
    expect(redactUrl('mqtt://device@127.0.0.1:1883')).toBe('mqtt://device@127.0.0.1:1883');
    expect(redactUrl('http://127.0.0.1:15672')).toBe('http://127.0.0.1:15672');
  });

  it('replaces everything between :// and the last @ when the user-info is not plain', () => {
    expect(redactUrl('amqp://us/er:pa@ss@host/vh')).toBe('amqp://***@host/vh');
  });

  it('shows the mistyped scheme of a URL without :// and hides from the first : to the last @', () => {
    expect(redactUrl('amqp//guest:s3cret@127.0.0.1:20624')).toBe('amqp//guest:***@127.0.0.1:20624');
    // Read as no scheme at all, "amqp" would be the user and "/guest:s3cret" the password.
    expect(redactUrl('amqp:/guest:s3cret@127.0.0.1')).toBe('amqp:***@127.0.0.1');
    // A `://` past the first `:` is a password's, not the scheme's.
    expect(redactUrl('amqp//guest:pa://ss@host')).toBe('amqp//guest:***@host');
    expect(redactUrl('mqtt:/127.0.0.1:22331')).toBe('mqtt:/127.0.0.1:22331');
    expect(unreadableUrlMessage('amqp//guest:s3cret@127.0.0.1:20624', 'AMQP', 'amqp://user:pass@host:5672/vhost')).toBe(
      '"amqp//guest:***@127.0.0.1:20624" is not a valid AMQP URL (expected amqp://user:pass@host:5672/vhost).',
    );
  });

  it('never shows the password of a URL typed without :// after its scheme', () => {
    fc.assert(
      fc.property(credentials, fc.constantFrom('', 'amqp//', 'amqp:/', 'amqp:', 'mqtt/', 'http:'), (creds, typo) => {
        for (const url of urls('x', creds, closedPort).map((typed) => typed.replace(/^x:\/\//, typo))) {
          const template = `${typo}${creds.username}:***@127.0.0.1:${closedPort}/ ${encodeURIComponent(creds.username)}`;
          expectNoSecret(`${redactUrl(url)} ${unreadableUrlMessage(url, 'AMQP', 'amqp://host')}`, creds.password, `${template} is not a valid AMQP URL (expected amqp://host)`);
        }
      }),
      { numRuns: 500 },
    );
  });
});
