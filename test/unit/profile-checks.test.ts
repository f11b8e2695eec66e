import { describe, expect, it } from 'vitest';
import { profileProblems } from '../../src/shared/profile-checks';
import { withCredentials } from '../../src/core/connection-details';
import type { ConnectionProfile } from '../../src/shared/contract';

const base: ConnectionProfile = { name: 'p', amqpUrl: 'amqp://h/', mqttUrl: 'mqtt://h', managementUrl: 'http://h:15672', vhost: '/', exchange: 'amq.direct' };
const messages = (overrides: Partial<ConnectionProfile>): string[] => profileProblems({ ...base, ...overrides }).map((problem) => `${problem.field}: ${problem.message}`);

describe('the sentences a profile gets before connecting', () => {
  it('has none for a plain profile', () => {
    expect(messages({})).toEqual([]);
  });

  it('names the URL of a list with the wrong scheme, and an empty list', () => {
    expect(messages({ amqpUrl: 'amqp://a/\nmqtt://b/', managementUrl: ' ' })).toEqual([
      'amqpUrl: An AMQP URL must start with amqp:// or amqps:// (URL 2 of 2).',
      'managementUrl: A management URL is needed.',
    ]);
  });

  it('asks for a fixed client id when the broker is to keep the session, and refuses characters RabbitMQ names queues with', () => {
    expect(messages({ cleanSession: false })).toEqual(['cleanSession: A session the broker keeps (clean session off) needs a fixed client id.']);
    expect(messages({ cleanSession: false, mqttClientId: 'dev-1' })).toEqual([]);
    expect(messages({ mqttClientId: 'a/b' })).toEqual(['mqttClientId: The client id cannot hold +, # or / (RabbitMQ names queues after it).']);
  });

  it('wants the user name next to a password field, and a certificate with its key', () => {
    expect(messages({ password: 'x' })).toEqual(['username: A password typed in the field needs the user name next to it.']);
    expect(messages({ mqttUrl: 'mqtts://h', tls: { certFile: '/c.pem' } })).toEqual(['tls: A client certificate needs its key file, and a key its certificate.']);
    expect(messages({ mqttUrl: 'mqtts://h', tls: { caFile: '/ca.pem', verify: false } })).toEqual([]);
  });
});

describe('the user name and password fields', () => {
  it('win over the URL, each for its own part, percent-encoded', () => {
    expect(withCredentials('amqp://old:secret@h:5672/v', 'new user', 'p@ss/word')).toBe('amqp://new%20user:p%40ss%2Fword@h:5672/v');
    expect(withCredentials('amqp://old:secret@h:5672/v', 'new', undefined)).toBe('amqp://new:secret@h:5672/v');
    expect(withCredentials('mqtt://h:1883', 'me', 'pw')).toBe('mqtt://me:pw@h:1883');
    expect(withCredentials('mqtt://h:1883', undefined, undefined)).toBe('mqtt://h:1883');
  });
});
