import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { managementRequest } from '../../src/core/broker/management-http';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { dispatch } from '../../src/core/dispatch';
import { cliPath, runCli } from '../support/cli';
import { startProcess } from '../support/processes';
import { uniqueName } from '../support/names';

const broker = inject('broker');
const admin = broker.urls.management;

/** Every spelling of a password that must never be printed. */
const forms = (secret: string): string[] => [secret, encodeURIComponent(secret), encodeURI(secret)];

/** Raw control characters, DEL, C1 and bidi controls, apart from the lines' own newlines. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** A URL of the test broker with other credentials (and optionally a vhost path). */
function withCredentials(url: string, userinfo: string, path = ''): string {
  const { protocol, host } = new URL(url);
  return `${protocol}//${userinfo}@${host}${path}`;
}

describe('a password typed raw into a broker URL', () => {
  const secret = 'pa/ss-w0rd';
  const cases: Array<[string, string[]]> = [
    ['call --mqtt', ['call', '--mqtt', `mqtt://u:${secret}@127.0.0.1:1/`, '--timeout', '1000']],
    ['serve --amqp', ['serve', '--amqp', `amqp://u:${secret}@127.0.0.1:1/`]],
    ['bindings --management', ['bindings', '--management', `http://u:${secret}@127.0.0.1:1`]],
  ];

  it.each(cases)('%s is refused in one sentence that shows no part of it', async (_label, args) => {
    const result = await runCli(args, { env: { BRIDGESCOPE_SANDBOX_DIR: '/nonexistent', BRIDGESCOPE_AMQP_URL: '', BRIDGESCOPE_MQTT_URL: '', BRIDGESCOPE_MANAGEMENT_URL: '' } });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^bridgescope: ".*" is not a valid .* URL .*percent-encode/);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    for (const form of [...forms(secret), 'pa/ss', 'w0rd']) expect(`${result.stdout}${result.stderr}`).not.toContain(form);
  });
});

describe('a broker user whose password holds / @ : # ? % a space and unicode', () => {
  const user = uniqueName('secret-user');
  const password = 'p/a@s:s#w?o%r d-€😀-%2F';
  const encoded = encodeURIComponent(password);
  const urls = {
    amqp: withCredentials(broker.urls.amqp, `${user}:${encoded}`, '/'),
    mqtt: withCredentials(broker.urls.mqtt, `${user}:${encoded}`),
    management: withCredentials(broker.urls.management, `${user}:${encoded}`),
  };
  const noSecret = (text: string): void => {
    for (const form of forms(password)) expect(text).not.toContain(form);
  };

  beforeAll(async () => {
    await managementRequest(admin, `/api/users/${encodeURIComponent(user)}`, { method: 'PUT', body: { password, tags: 'management' } });
    await managementRequest(admin, `/api/permissions/%2F/${encodeURIComponent(user)}`, { method: 'PUT', body: { configure: '.*', write: '.*', read: '.*' } });
  });
  afterAll(async () => {
    await managementRequest(admin, `/api/users/${encodeURIComponent(user)}`, { method: 'DELETE' });
  });

  it('lists bindings through percent-encoded URLs without printing the password', async () => {
    const result = await runCli(['bindings', '--management', urls.management, '--amqp', urls.amqp]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^(Bindings on|No bindings on) amq.direct/);
    noSecret(`${result.stdout}${result.stderr}`);
  });

  it('reports a wrong password as refused credentials without printing either one', async () => {
    const wrong = `${password}-wrong`;
    const result = await runCli(['bindings', '--management', withCredentials(broker.urls.management, `${user}:${encodeURIComponent(wrong)}`)]);
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/refused the credentials \(401\)/);
    noSecret(`${result.stdout}${result.stderr}`);
    for (const form of forms(wrong)) expect(result.stderr).not.toContain(form);
  });

  it('calls over MQTT with those credentials and pipes the raw reply bytes to stdout, warnings made safe on stderr', async () => {
    const queue = uniqueName('secret_rpc');
    const reply = '\u001b[31mred\u001b[0m \u202eevil\u2066 \u0085bell\u0007';
    const connection = await amqp.connect(broker.urls.amqp);
    try {
      const channel = await connection.createChannel();
      await channel.assertQueue(queue, { autoDelete: true });
      await channel.bindQueue(queue, 'amq.direct', queue);
      // A server that answers every request with raw terminal escapes and no id (matched by routing key).
      await channel.consume(queue, (message) => {
        if (!message) return;
        const replyTo = String((JSON.parse(message.content.toString()) as { reply_to: string }).reply_to);
        channel.publish('amq.direct', replyTo.replaceAll('/', '.'), Buffer.from(reply));
        channel.ack(message);
      });
      const result = await runCli(['call', '--mqtt', urls.mqtt, '--topic', queue, '--timeout', '5000', '{"ask":"\\u001b[2J"}']);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`${reply}\n`);
      expect(result.stderr).not.toMatch(UNSAFE);
      noSecret(`${result.stdout}${result.stderr}`);
    } finally {
      await connection.close();
    }
  });

  it('keeps the password out of the app state of a session connected with it, and reconnects with the redacted profile', async () => {
    const events: string[] = [];
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: (name, payload) => events.push(`${name} ${JSON.stringify(payload)}`) });
    try {
      const profile = { name: 'nasty', amqpUrl: urls.amqp, mqttUrl: urls.mqtt, managementUrl: urls.management, vhost: '/', exchange: 'amq.direct' };
      const opened = await dispatch(session.handlers, 'connection.open', { profile });
      expect(opened).toMatchObject({ ok: true, result: { links: { amqp: { state: 'connected' }, mqtt: { state: 'connected' } } } });
      const shown = opened.ok ? (opened.result as { profile: typeof profile }).profile : profile;
      expect(shown.amqpUrl).toContain(`${user}:***@`);
      const reopened = await dispatch(session.handlers, 'connection.open', { profile: shown });
      expect(reopened).toMatchObject({ ok: true, result: { links: { amqp: { state: 'connected' }, mqtt: { state: 'connected' } } } });
      const saved = await dispatch(session.handlers, 'profile.save', { profile });
      noSecret(JSON.stringify([opened, reopened, saved, await dispatch(session.handlers, 'app.state.get', {}), events]));
    } finally {
      await session.dispose();
    }
  });
});

describe('names the broker sends back', () => {
  const vhost = uniqueName('escapes');
  const vhostPath = `/api/vhosts/${encodeURIComponent(vhost)}`;
  const amqpUrl = withCredentials(broker.urls.amqp, 'guest:guest', `/${encodeURIComponent(vhost)}`);
  const marker = uniqueName('k');
  const hostile = `${marker}-\u001b[2J\u001b]0;owned\u0007-\u202eevil-\u2028`;

  beforeAll(async () => {
    await managementRequest(admin, vhostPath, { method: 'PUT', body: {} });
    await managementRequest(admin, `/api/permissions/${encodeURIComponent(vhost)}/guest`, { method: 'PUT', body: { configure: '.*', write: '.*', read: '.*' } });
    const connection = await amqp.connect(amqpUrl);
    const channel = await connection.createChannel();
    await channel.assertQueue(hostile);
    await channel.bindQueue(hostile, 'amq.direct', hostile);
    await connection.close();
  });
  afterAll(async () => {
    await managementRequest(admin, vhostPath, { method: 'DELETE' });
  });

  it('are printed by `bindings` with their control characters escaped', async () => {
    const result = await runCli(['bindings', '--management', admin, '--amqp', amqpUrl, '--vhost', vhost]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`${marker}-\\x1b[2J\\x1b]0;owned\\x07-\\u202eevil-\\u2028`);
    expect(result.stdout).not.toMatch(UNSAFE);
  });

  it('are printed by `trace` with their control characters escaped', async () => {
    const tracer = startProcess(process.execPath, [cliPath, 'trace', '--management', admin, '--amqp', amqpUrl, '--vhost', vhost]);
    try {
      await tracer.waitForLine(/^Tracing vhost/);
      const connection = await amqp.connect(amqpUrl);
      const channel = await connection.createConfirmChannel();
      channel.publish('amq.direct', hostile, Buffer.from(`{"id":"${marker}\\u001b[31m"}`));
      await channel.waitForConfirms();
      await connection.close();
      const line = await tracer.waitForLine(new RegExp(marker));
      expect(line).toContain('\\x1b[2J');
      for (const printed of tracer.lines) expect(printed).not.toMatch(UNSAFE);
    } finally {
      await tracer.stop();
    }
  });
});
