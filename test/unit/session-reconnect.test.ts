/** Issue 26, item 2: a Connect replaces the links only once new ones are up; what ran before is kept or named. */
import { describe, expect, it } from 'vitest';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { fakeSessionFactories, profile } from './session-fakes';

async function busySession() {
  const fakes = fakeSessionFactories();
  const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined, sandboxDir: '/tmp/fake', factories: fakes.factories });
  await session.open(profile);
  await session.startServer({ exchange: 'amq.direct', queue: 'q', workers: 1, prefetch: 1, handler: 'echo' });
  await session.setTracing(true);
  return { session, ...fakes };
}

const other = { ...profile, name: 'other', amqpUrl: 'amqp://guest:guest@10.0.0.9:5672/', mqttUrl: 'mqtt://10.0.0.9:1883' };

describe('a Connect on a session that works', () => {
  it('refused: puts the previous links back and keeps the server and the firehose, saying so', async () => {
    const { session, connection } = await busySession();
    let connects = 0;
    const realConnect = connection.client.connect.bind(connection.client);
    connection.client.connect = async () => {
      connects += 1;
      if (connects === 1) throw new Error('The broker refused the new connection.');
      return realConnect();
    };
    await expect(session.open(other)).rejects.toThrow(
      /^The broker refused the new connection\. Still connected to 127\.0\.0\.1:1 \(AMQP\), :2 \(MQTT\), with the embedded server and the firehose running: nothing was changed\.$/,
    );
    const state = session.state();
    expect(state.profile?.name).toBe(profile.name);
    expect(state.links.mqtt.state).toBe('connected');
    expect(state.server.state).toBe('running');
    expect(state.tracer.state).toBe('on');
  });

  it('refused, and the previous links cannot come back either: stops the server and the firehose and names them', async () => {
    const { session, connection } = await busySession();
    connection.client.failConnect = new Error('Nothing answers.');
    await expect(session.open(other)).rejects.toThrow(
      /^Nothing answers\. The previous connection to 127\.0\.0\.1:1 \(AMQP\), :2 \(MQTT\) could not be reopened either \(Nothing answers\.\): stopped with it: the embedded server on q, the firehose \(tracing switched back off\)\.$/,
    );
    const state = session.state();
    expect(state.links).toEqual({ amqp: { state: 'idle' }, mqtt: { state: 'idle' } });
    expect(state.server.state).toBe('stopped');
    expect(state.tracer.state).toBe('off');
  });

  it('accepted: stops what ran for the previous broker and says what in the notice', async () => {
    const { session } = await busySession();
    const state = await session.open(other);
    expect(state.profile?.name).toBe('other');
    expect(state.server.state).toBe('stopped');
    expect(state.tracer.state).toBe('off');
    expect(state.notice).toBe(
      'Connected to 10.0.0.9:5672 (AMQP), :1883 (MQTT); stopped with the previous connection to 127.0.0.1:1 (AMQP), :2 (MQTT): the embedded server on q, the firehose (tracing switched back off).',
    );
  });
});
