/** A URL naming a vhost the broker does not have: one sentence naming the vhost, not amqplib's handshake text. */
import amqp from 'amqplib';
import { describe, expect, inject, it } from 'vitest';
import { AMQPLIB_OPEN_ANSWERED_BY_CLOSE } from '../../src/core/links/amqp-link';
import { MqttLink } from '../../src/core/links/mqtt-link';
import { runCli } from '../support/cli';
import { uniqueName } from '../support/names';

const broker = inject('broker');

describe('a URL whose vhost does not exist', () => {
  it("amqplib still says it in the words the sentence recognises (its handshake's text)", async () => {
    const vhost = uniqueName('no-such-vhost');
    const failure = await amqp.connect(`${broker.urls.amqp}/${vhost}`).then(
      (connection) => connection.close().then(() => undefined),
      (err: Error) => err,
    );
    expect(failure?.message.startsWith(AMQPLIB_OPEN_ANSWERED_BY_CLOSE)).toBe(true);
  });

  it('serve says the vhost does not exist (or is not the user\'s), in one sentence', async () => {
    const vhost = uniqueName('no-such-vhost');
    const result = await runCli(['serve', '--amqp', `${broker.urls.amqp}/${vhost}`, '--queue', uniqueName('rpc_queue')]);
    expect(result.stderr.trim()).toBe(`bridgescope: The vhost "${vhost}" does not exist on this broker (or the user has no access to it).`);
    expect(result.code).not.toBe(0);
  });

  it('MQTT with the vhost in the user name (vhost:user, as RabbitMQ reads it) names the vhost beside the credentials', async () => {
    const vhost = uniqueName('no-such-vhost');
    const port = new URL(broker.urls.mqtt).port;
    const link = new MqttLink({ url: `mqtt://${encodeURIComponent(`${vhost}:guest`)}:guest@127.0.0.1:${port}`, clientId: uniqueName('c') });
    const failure = await link.open().then(
      () => undefined,
      (err: Error) => err,
    );
    await link.close();
    expect(failure?.message).toBe(
      `The broker at mqtt://${vhost}%3Aguest:***@127.0.0.1:${port} refused the MQTT credentials, or the vhost "${vhost}" (before the ":" of the user name) does not exist on it or is not this user's.`,
    );
  });
});
