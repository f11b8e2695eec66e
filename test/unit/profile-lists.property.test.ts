import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memorySecretBox, ProfileStore, redactProfile, restoreSecrets, type SecretBox } from '../../src/core/profiles';
import { brokerTargets } from '../../src/core/connection-details';
import { AmqpLink } from '../../src/core/links/amqp-link';
import { MqttLink } from '../../src/core/links/mqtt-link';
import { redactUrlList, splitUrls } from '../../src/shared/url-list';
import type { ConnectionProfile } from '../../src/shared/contract';

/** What a password can hold: the characters that break URLs, separators of a list, escapes, unicode, and anything else. */
const passwordPiece = fc.oneof(
  fc.constantFrom('/', '@', ':', '#', '?', '%', ' ', ',', '\n', ', amqp://', ',mqtt://', '%2F', '%zz', 'é', '😀', '\u202e', '://'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }),
  // digits, which read as a port before a separator
  fc.stringMatching(/^[0-9]{1,5}$/),
);
const secret = fc
  .array(passwordPiece, { minLength: 1, maxLength: 6 })
  .map((pieces) => pieces.join(''))
  .filter((text) => text.trim().length >= 4);
const user = fc.stringMatching(/^[a-z][a-z0-9._-]{0,8}$/);
const node = fc.record({ user, password: secret, port: fc.integer({ min: 1024, max: 65_000 }) });
const nodes = fc.array(node, { minLength: 1, maxLength: 4 });
const separator = fc.constantFrom(',', ', ', '\n', '\r\n');

type Node = { user: string; password: string; port: number };

/** A list as a user types it with the passwords percent-encoded (the form a list can always be read in). */
const list = (scheme: string, entries: Node[], sep: string, path = '/'): string =>
  entries.map((entry) => `${scheme}://${entry.user}:${encodeURIComponent(entry.password)}@127.0.0.1:${entry.port}${path}`).join(sep);

/** Every spelling of a password that must never be shown. */
const forms = (text: string): string[] => [...new Set([text, encodeURIComponent(text), encodeURI(text)])].filter((form) => form.trim().length >= 4);

/** What the text shows whatever the passwords: the URLs, separators and *** (a password made only of those proves nothing). */
function template(entries: Node[]): string {
  const blank = entries.map((entry) => ({ ...entry, password: '' }));
  return ['amqp', 'mqtt', 'http'].flatMap((scheme) => [', ', '\n'].flatMap((sep) => [list(scheme, blank, sep), redactUrlList(list(scheme, blank, sep))])).join(' ') + ' , field-user *** "name":"cluster" vhost exchange amq.direct secretStorage os-encrypted password mqttUrl amqpUrl managementUrl username';
}

function expectNoPassword(shown: string, entries: Node[], also: string[] = []): void {
  const known = template(entries);
  for (const password of [...entries.map((entry) => entry.password), ...also]) {
    for (const form of forms(password)) {
      if (!known.includes(form)) expect(shown, `password ${JSON.stringify(password)} as ${JSON.stringify(form)}`).not.toContain(form);
    }
  }
}

/** A box whose sealed form is a hash-like token, so the file proves what the store writes and not what the box returns. */
function tokenBox(): SecretBox {
  const inner = memorySecretBox();
  return { kind: 'os-encrypted', seal: (text) => `sealed-${inner.seal(text)}`, open: (sealed) => inner.open(sealed.slice('sealed-'.length)) };
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-profiles-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('a list of URLs per protocol in a profile', () => {
  it('splits back into the same URLs, whichever separator joined them', () => {
    fc.assert(
      fc.property(nodes, separator, (entries, sep) => {
        const urls = splitUrls(list('amqp', entries, sep));
        expect(urls).toEqual(entries.map((entry) => list('amqp', [entry], '')));
      }),
      { numRuns: 300 },
    );
  });

  it('shows every URL of the list with its host and user, and no password of any of them', () => {
    fc.assert(
      fc.property(nodes, separator, (entries, sep) => {
        const shown = redactUrlList(list('mqtt', entries, sep));
        expect(splitUrls(shown)).toEqual(entries.map((entry) => `mqtt://${entry.user}:***@127.0.0.1:${entry.port}/`));
        expectNoPassword(shown, entries);
      }),
      { numRuns: 300 },
    );
  });

  it('lists a saved two-node profile as two URLs, each with its user and no password', async () => {
    const store = new ProfileStore(memorySecretBox(), join(dir, 'two-nodes.json'));
    await store.save({ name: 'two', amqpUrl: 'amqp://guest:pw1@127.0.0.1:5672, amqp://guest:pw2@127.0.0.2:5672', mqttUrl: 'mqtt://127.0.0.1:1883', managementUrl: 'http://127.0.0.1:15672', vhost: '/', exchange: 'amq.direct' });
    const [summary] = await store.list();
    expect(splitUrls(summary?.amqpUrl ?? '')).toHaveLength(2);
    expect(summary?.amqpUrl).not.toMatch(/pw1|pw2/);
    expect(summary?.amqpUrl).toContain('guest');
  });

  it('never shows a raw password that reads as the end of one URL and the user of the next (fast-check found it)', () => {
    // One URL whose password is ", amqp://%zz:": split at the comma, "amqp://a:" and "amqp://%zz:@host" both parse.
    const shown = redactUrlList('amqp://a:, amqp://%zz:@127.0.0.1:1024/');
    expect(shown).toBe('amqp://a:***@127.0.0.1:1024/');
    // Its start may read as a host and port: "12" and "1234" are the start of a password, not ports (the review found them).
    expect(redactUrlList('amqp://u:12, amqp://x:@h')).toBe('amqp://u:***@h');
    expect(redactUrlList('amqp://u:1234,amqp://secret@h')).toBe('amqp://u:***@h');
    // Or a user, an empty password and a host: the password is "@0, amqp://0" (fast-check again).
    expect(redactUrlList('amqp://a:@0, amqp://0@127.0.0.1:1024/,amqp://a:0000@127.0.0.1:1024/')).toBe('amqp://a:***@127.0.0.1:1024/');
    // A cluster's lists as typed: every node with a password, or none with a login, or (as a saved profile keeps its
    // list, the passwords apart) every node with a user alone: shown as lists (the trial saw a saved list shown as one).
    expect(redactUrlList('amqp://h1:5672, amqp://h2:5672')).toBe('amqp://h1:5672, amqp://h2:5672');
    expect(redactUrlList('amqp://guest@127.0.0.1:19354, amqp://guest@127.0.0.1:19355')).toBe('amqp://guest@127.0.0.1:19354, amqp://guest@127.0.0.1:19355');
    // An empty password followed by a user alone is one URL: "@h1, amqp://x" would be its password.
    expect(redactUrlList('amqp://u:@h1, amqp://x@h2')).toBe('amqp://u:***@h2');
    // A list of two whole URLs is still shown as two.
    expect(redactUrlList('amqp://a:p@h1:5672, amqp://b:q@h2:5672')).toBe('amqp://a:***@h1:5672, amqp://b:***@h2:5672');
  });

  it('never shows a password typed raw in a list, even one holding a separator and a scheme', () => {
    fc.assert(
      fc.property(nodes, separator, (entries, sep) => {
        const raw = entries.map((entry) => `amqp://${entry.user}:${entry.password}@127.0.0.1:${entry.port}/`).join(sep);
        // Raw passwords may hold anything: what the list reads as is not decidable, but nothing of a password is shown whole.
        expectNoPassword(redactUrlList(raw), entries);
      }),
      { numRuns: 500 },
    );
  });

  it('keeps every password out of the profile as the UI gets it, out of the saved summaries and the file, and gives each back', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(nodes, nodes, separator, secret, async (amqp, mqtt, sep, field) => {
        run += 1;
        const file = join(dir, `profiles-${run}.json`);
        const profile: ConnectionProfile = {
          name: 'cluster',
          amqpUrl: list('amqp', amqp, sep),
          mqttUrl: list('mqtt', mqtt, sep),
          managementUrl: list('http', amqp, sep, ''),
          vhost: '/',
          exchange: 'amq.direct',
          username: 'field-user',
          password: field,
        };
        const store = new ProfileStore(tokenBox(), file);
        const shown = redactProfile(profile);
        const summaries = await store.save(profile);
        const written = await readFile(file, 'utf8');
        expectNoPassword(JSON.stringify([shown, summaries]), [...amqp, ...mqtt], [field]);
        expectNoPassword(written, [...amqp, ...mqtt], [field]);
        expect(shown.password).toBe('***');
        expect(splitUrls(shown.amqpUrl)).toHaveLength(amqp.length);
        expect(restoreSecrets(shown, profile)).toEqual(profile);
        // A new store on the same file opens every sealed password again, URL by URL.
        const loaded = await new ProfileStore(store['secrets'], file).get('cluster');
        expect(splitUrls(loaded.amqpUrl)).toEqual(splitUrls(profile.amqpUrl));
        expect(splitUrls(loaded.mqttUrl)).toEqual(splitUrls(profile.mqttUrl));
        expect(loaded.password).toBe(field);
      }),
      { numRuns: 150 },
    );
  });

  it('puts back the passwords of the URLs left as shown when one URL of a redacted list is edited', () => {
    fc.assert(
      fc.property(fc.array(node, { minLength: 2, maxLength: 4 }), (entries) => {
        const known = list('amqp', entries, '\n');
        const shown = splitUrls(redactUrlList(known));
        const edited = [...shown.slice(0, -1), 'amqp://new-node:5672/'].join('\n');
        const restored = splitUrls(restoreSecrets({ ...redactProfile({ name: 'p', amqpUrl: known, mqttUrl: 'mqtt://h', managementUrl: 'http://h', vhost: '/', exchange: 'x' }), amqpUrl: edited }, { name: 'p', amqpUrl: known, mqttUrl: 'mqtt://h', managementUrl: 'http://h', vhost: '/', exchange: 'x' }).amqpUrl);
        expect(restored).toEqual([...splitUrls(known).slice(0, -1), 'amqp://new-node:5672/']);
      }),
      { numRuns: 200 },
    );
  });

  it('gives the password field to every URL, winning over the one in the URL', () => {
    fc.assert(
      fc.property(nodes, secret, (entries, field) => {
        const targets = brokerTargets({ name: 'p', amqpUrl: list('amqp', entries, ','), mqttUrl: 'mqtt://h', managementUrl: 'http://h', vhost: '/', exchange: 'x', username: 'me', password: field });
        expect(targets.amqp).toEqual(entries.map((entry) => `amqp://me:${encodeURIComponent(field)}@127.0.0.1:${entry.port}/`));
      }),
      { numRuns: 200 },
    );
  });

  it('never shows a password of any URL when every node of a list refuses the connection', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(node, { minLength: 2, maxLength: 3 }), async (entries) => {
        // Ports 1-3 on loopback: nothing listens there.
        const dead = entries.map((entry, index) => ({ ...entry, port: index + 1 }));
        const [amqpFirst = '', ...amqpRest] = splitUrls(list('amqp', dead, ','));
        const amqpLink = new AmqpLink({ url: amqpFirst, fallbackUrls: amqpRest, connectionName: 't', onConnected: async () => undefined });
        const [mqttFirst = '', ...mqttRest] = splitUrls(list('mqtt', dead, ','));
        const mqttLink = new MqttLink({ url: mqttFirst, fallbackUrls: mqttRest, clientId: 'lists-test', connectTimeoutMs: 2000 });
        const statuses: string[] = [];
        amqpLink.on('status', (status) => statuses.push(JSON.stringify(status)));
        mqttLink.on('status', (status) => statuses.push(JSON.stringify(status)));
        const errors = await Promise.all([amqpLink.open().then(() => '', (err: Error) => err.message), mqttLink.open().then(() => '', (err: Error) => err.message)]);
        await Promise.all([amqpLink.close(), mqttLink.close()]);
        expect(errors[0]).toMatch(/^No node answered: /);
        expect(errors[1]).toMatch(/^No node answered: /);
        expectNoPassword(`${errors.join('\n')}\n${statuses.join('\n')}`, dead);
      }),
      { numRuns: 20 },
    );
  });

  it('opens a file saved before lists (one sealed password per kind) as it was', async () => {
    const file = join(dir, 'old-format.json');
    const box = memorySecretBox();
    const sealed = box.seal('old p@ss');
    const old = [{ name: 'old', vhost: '/', exchange: 'amq.direct', urls: { amqp: 'amqp://u@h:5672/', mqtt: 'mqtt://h:1883', management: 'http://u@h:15672' }, secrets: { amqp: sealed, management: sealed } }];
    await writeFile(file, JSON.stringify(old));
    const store = new ProfileStore(box, file);
    expect(await store.get('old')).toEqual({
      name: 'old',
      vhost: '/',
      exchange: 'amq.direct',
      amqpUrl: 'amqp://u:old%20p%40ss@h:5672/',
      mqttUrl: 'mqtt://h:1883',
      managementUrl: 'http://u:old%20p%40ss@h:15672',
    });
    expect((await store.list())[0]?.amqpUrl).toBe('amqp://u@h:5672/');
  });

  it('reads a host and port without user-info as a whole URL, so the next URL of the list is its own', async () => {
    expect(splitUrls('amqp://h1:5672, amqp://guest@h2:5672')).toEqual(['amqp://h1:5672', 'amqp://guest@h2:5672']);
    expect(splitUrls('mqtt://h1:1883/\nmqtt://u@h2:1883')).toEqual(['mqtt://h1:1883/', 'mqtt://u@h2:1883']);
    expect(splitUrls('http://[::1]:15672?x=1,http://admin@h2:15672')).toEqual(['http://[::1]:15672?x=1', 'http://admin@h2:15672']);
    expect(splitUrls('amqp://h1:5672#a, amqp://@h2:5672')).toEqual(['amqp://h1:5672#a', 'amqp://@h2:5672']);
    // Still one URL: a raw password holding a separator (no port shape before it).
    expect(splitUrls('amqp://u:a,amqp://b@host')).toEqual(['amqp://u:a,amqp://b@host']);
    // Shown, it is redacted as one URL: the same text may be `u` with the raw password `5672, amqp://guest` (a list that
    // mixes nodes with and without a login is rare; a password shown is worse than a node hidden).
    expect(redactUrlList('amqp://h1:5672, amqp://guest@h2:5672')).toBe('amqp://h1:***@h2:5672');
    // Saved in browser mode and read by the next run: the list comes back as typed, with the password of its own URL.
    const file = join(dir, 'host-port-list.json');
    const typed = { name: 'nodes', amqpUrl: 'amqp://h1:5672, amqp://guest@h2:5672', mqttUrl: 'mqtt://h1:1883\nmqtt://u:pw@h2:1883\nmqtt://d@h3:1883', managementUrl: 'http://h:15672', vhost: '/', exchange: 'amq.direct' };
    const first = new ProfileStore(memorySecretBox(), file);
    await first.save(typed);
    expect(await first.get('nodes')).toEqual(typed);
    expect(await new ProfileStore(memorySecretBox(), file).get('nodes')).toEqual({ ...typed, mqttUrl: 'mqtt://h1:1883\nmqtt://u@h2:1883\nmqtt://d@h3:1883' });
  });
});
