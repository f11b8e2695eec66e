import { createServer } from 'node:net';
import { startMosquitto } from '../support/processes';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AppState, ConnectionProfile, ConnectionTestLine } from '../../src/shared/contract';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { dispatch } from '../../src/core/dispatch';
import { managementRequest } from '../../src/core/broker/management-http';
import { uniqueName } from '../support/names';

const broker = inject('broker');
const admin = broker.urls.management;

/** A URL of the test broker on a loopback port nothing listens on. */
function onPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.port = String(port);
  return parsed.toString();
}

async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 1;
}

const user = uniqueName('profile-user');
const password = 'right-pass-€';
let dead = 1;
let session: Session;

beforeAll(async () => {
  dead = await deadPort();
  await managementRequest(admin, `/api/users/${encodeURIComponent(user)}`, { method: 'PUT', body: { password, tags: 'management' } });
  await managementRequest(admin, `/api/permissions/%2F/${encodeURIComponent(user)}`, { method: 'PUT', body: { configure: '.*', write: '.*', read: '.*' } });
  session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
});

afterAll(async () => {
  await session.dispose();
  await managementRequest(admin, `/api/users/${encodeURIComponent(user)}`, { method: 'DELETE' });
});

/** The profile of the test broker with the user name and password in fields, the URLs without credentials. */
const bare = (url: string, path = ''): string => {
  const { protocol, host } = new URL(url);
  return `${protocol}//${host}${path}`;
};

const profileWith = (overrides: Partial<ConnectionProfile> = {}): ConnectionProfile => ({
  name: 'test',
  amqpUrl: bare(broker.urls.amqp, '/'),
  mqttUrl: bare(broker.urls.mqtt),
  managementUrl: bare(broker.urls.management),
  vhost: '/',
  exchange: 'amq.direct',
  username: user,
  password,
  ...overrides,
});

async function test(profile: ConnectionProfile): Promise<ConnectionTestLine[]> {
  const reply = await dispatch(session.handlers, 'connection.test', { profile });
  if (!reply.ok) throw new Error(reply.error.message);
  return reply.result as ConnectionTestLine[];
}

describe('Test connection on the sandbox broker', () => {
  it('says each URL was reached and signed in, with the broker version and the MQTT version granted', async () => {
    const lines = await test(profileWith());
    expect(lines.map((line) => [line.protocol, line.ok])).toEqual([
      ['amqp', true],
      ['mqtt', true],
      ['management', true],
    ]);
    expect(lines[0]?.sentence).toBe(`Reached and signed in as "${user}" on vhost "/".`);
    expect(lines[1]).toMatchObject({ mqttVersion: '3.1.1', sentence: 'Reached and signed in; MQTT 3.1.1 accepted.' });
    expect(lines[2]?.brokerVersion).toMatch(/^\d+\.\d+\.\d+/);
    // One node name everywhere: the node's own (…@localhost), not RabbitMQ's default cluster name with the host's name.
    expect(lines[2]?.sentence).toMatch(new RegExp(`^Reached and signed in: RabbitMQ ${lines[2]?.brokerVersion?.replaceAll('.', '\\.')}( \\(node ${broker.nodeName.replaceAll('.', '\\.')}\\))?\\.$`));
  });

  it(`on "auto" takes MQTT 5 where the broker has it (3.13+), else falls back to 3.1.1 saying the broker refused MQTT 5 (RabbitMQ ${broker.version ?? 'unknown'})`, async () => {
    const lines = await test(profileWith({ mqttVersion: 'auto' }));
    const [major = 0, minor = 0] = (broker.version ?? '0.0').split('.').map(Number);
    const mqtt5 = major > 3 || (major === 3 && minor >= 13);
    expect(lines.find((line) => line.protocol === 'mqtt')).toMatchObject(
      mqtt5
        ? { ok: true, mqttVersion: '5', sentence: 'Reached and signed in; MQTT 5 accepted.' }
        : { ok: true, mqttVersion: '3.1.1', sentence: 'Reached and signed in; MQTT 3.1.1 accepted (the broker refused MQTT 5).' },
    );
  });

  it('gives a wrong password one sentence per protocol, and shows neither password', async () => {
    const wrong = 'wrong-pass-xyz';
    const lines = await test(profileWith({ password: wrong }));
    expect(lines.map((line) => line.ok)).toEqual([false, false, false]);
    expect(lines[0]?.sentence).toMatch(/^The broker at amqp:\/\/.*:\*\*\*@127\.0\.0\.1:\d+\/ refused the AMQP credentials\.$/);
    expect(lines[1]?.sentence).toMatch(/^The broker at mqtt:\/\/.*:\*\*\*@127\.0\.0\.1:\d+\/? refused the MQTT credentials\.$/);
    expect(lines[2]?.sentence).toMatch(/refused the credentials \(401\)/);
    expect(JSON.stringify(lines)).not.toContain(wrong);
    expect(JSON.stringify(lines)).not.toContain(password);
  });

  it('gives a dead port one sentence per URL of a list, and still answers for the live ones', async () => {
    const lines = await test(
      profileWith({
        amqpUrl: `${onPort(bare(broker.urls.amqp, '/'), dead)}\n${bare(broker.urls.amqp, '/')}`,
        mqttUrl: `${onPort(bare(broker.urls.mqtt), dead)}, ${bare(broker.urls.mqtt)}`,
        managementUrl: onPort(bare(broker.urls.management), dead),
      }),
    );
    expect(lines.map((line) => [line.protocol, line.ok])).toEqual([
      ['amqp', false],
      ['amqp', true],
      ['mqtt', false],
      ['mqtt', true],
      ['management', false],
    ]);
    expect(lines[0]?.sentence).toMatch(new RegExp(`^Nothing accepts AMQP connections at amqp://.*:${dead}/ \\(connection refused\\)\\.$`));
    expect(lines[2]?.sentence).toMatch(new RegExp(`^Nothing accepts MQTT connections at mqtt://.*:${dead}/? \\(connection refused\\)\\.$`));
    expect(lines[4]?.sentence).toMatch(new RegExp(`127\\.0\\.0\\.1:${dead}`));
  });

  it('leaves the open connection as it was: same links, same client id, still connected', async () => {
    const clientId = uniqueName('kept');
    const opened = await dispatch(session.handlers, 'connection.open', { profile: profileWith({ mqttClientId: clientId }) });
    expect(opened).toMatchObject({ ok: true, result: { links: { amqp: { state: 'connected' }, mqtt: { state: 'connected' } }, mqttClientId: clientId } });
    const before = (opened as { result: AppState }).result;
    // The same client id in the tested profile: the test's own MQTT connection must not take the open one's place.
    const lines = await test(profileWith({ mqttClientId: clientId }));
    expect(lines.every((line) => line.ok)).toBe(true);
    const after = await dispatch(session.handlers, 'app.state.get', {});
    expect(after).toMatchObject({ ok: true, result: { links: { amqp: before.links.amqp, mqtt: before.links.mqtt }, mqttClientId: clientId } });
    // The profile as the UI saw it (password ***) tests with the password the session knows.
    const shown = (after as { result: AppState }).result.profile as ConnectionProfile;
    expect(shown.password).toBe('***');
    expect((await test(shown)).every((line) => line.ok)).toBe(true);
    // Saved as shown, it keeps the real password, not the stars.
    await dispatch(session.handlers, 'profile.save', { profile: { ...shown, name: 'saved-as-shown' } });
    // A Load shows it as *** again (issue 26); an export that asks for passwords has the real one.
    const loaded = await dispatch(session.handlers, 'profile.load', { name: 'saved-as-shown' });
    expect(loaded).toMatchObject({ ok: true, result: { password: '***' } });
    const exported = await dispatch(session.handlers, 'workspace.export.create', { includePasswords: true });
    expect(JSON.stringify(exported)).toContain(`"password":"${password}"`);
    await dispatch(session.handlers, 'connection.close', {});
  });

  it('opens a profile whose first URL of each list is dead: the app fails over to the next node', async () => {
    const opened = await dispatch(session.handlers, 'connection.open', {
      profile: profileWith({
        amqpUrl: `${onPort(bare(broker.urls.amqp, '/'), dead)}, ${bare(broker.urls.amqp, '/')}`,
        mqttUrl: `${onPort(bare(broker.urls.mqtt), dead)}\n${bare(broker.urls.mqtt)}`,
      }),
    });
    expect(opened).toMatchObject({ ok: true, result: { links: { amqp: { state: 'connected' }, mqtt: { state: 'connected' } } } });
    expect(JSON.stringify(opened)).not.toContain(password);
    await dispatch(session.handlers, 'connection.close', {});
  });

  it('refuses a profile with a field problem in the sentence the form shows', async () => {
    const reply = await dispatch(session.handlers, 'connection.test', { profile: profileWith({ keepaliveSeconds: -1 }) });
    expect(reply).toMatchObject({ ok: false, error: { code: 'bad-input', message: 'connection.test: profile.keepaliveSeconds: The keepalive is a whole number of seconds from 0 (off) to 65535.' } });
  });
});

describe('Test connection with the MQTT URL on another broker (issue 26)', () => {
  let mosquitto: Awaited<ReturnType<typeof startMosquitto>> | undefined;
  let mosquittoUrl = '';

  beforeAll(async () => {
    mosquitto = await startMosquitto(await deadPort());
    mosquittoUrl = mosquitto.url;
  });

  afterAll(async () => {
    await mosquitto?.stop();
  });

  it('fails the MQTT line when the RabbitMQ of the AMQP URL never saw the test client (MQTT 3.1.1, as probe asks)', async () => {
    const lines = await test(profileWith({ mqttUrl: mosquittoUrl }));
    const mqtt = lines.find((line) => line.protocol === 'mqtt');
    expect(mqtt).toMatchObject({ ok: false, mqttVersion: '3.1.1' });
    expect(mqtt?.sentence).toMatch(/^An MQTT broker answered and accepted MQTT 3\.1\.1, but the RabbitMQ at amqp:\/\/[^:]+:\*\*\*@127\.0\.0\.1:\d+\/ never saw this client: they are not the same broker \(is mqtt:\/\/[^:]+:\*\*\*@127\.0\.0\.1:\d+ a Mosquitto\?\)\.$/);
    expect(mqtt?.sentence).not.toContain(password);
    expect(lines.filter((line) => line.protocol !== 'mqtt').every((line) => line.ok)).toBe(true);
  });

  it('fails an MQTT 5 acceptance next to a RabbitMQ without MQTT 5, when the AMQP URL cannot be asked', async () => {
    const lines = await test(profileWith({ mqttUrl: mosquittoUrl, mqttVersion: 5, amqpUrl: onPort(bare(broker.urls.amqp, '/'), dead) }));
    const mqtt = lines.find((line) => line.protocol === 'mqtt');
    const management = lines.find((line) => line.protocol === 'management');
    expect(management).toMatchObject({ ok: true });
    // From 3.13 RabbitMQ has MQTT 5 and nothing contradicts the acceptance (the AMQP side, which would tell, is dead here).
    if (!/^3\.(1[0-2]|[0-9])\./.test(management?.brokerVersion ?? '')) {
      expect(mqtt).toMatchObject({ ok: true, mqttVersion: '5' });
      return;
    }
    expect(mqtt).toMatchObject({ ok: false, mqttVersion: '5' });
    expect(mqtt?.sentence).toMatch(/^An MQTT broker answered and accepted MQTT 5, but RabbitMQ 3\.\d+\.\d+ \(its management API at .*\) has no MQTT 5: the MQTT URL reaches another broker \(a Mosquitto\?\)\.$/);
  });
});
