/** The environment profile (`BRIDGESCOPE_AMQP_URL` and friends): a remote broker's other URLs follow its AMQP URL's host. */
import { describe, expect, it } from 'vitest';
import { profileFromEnv, siblingUrl } from '../../src/core/profiles';
import { tlsSettings } from '../../src/shared/tls-settings';

describe('the environment profile', () => {
  it('takes TLS files and verification from BRIDGESCOPE_TLS_*, as the command line does; a flag wins over its variable', () => {
    const env = { BRIDGESCOPE_AMQP_URL: 'amqps://b.example', BRIDGESCOPE_TLS_CA_FILE: '/etc/ca.pem', BRIDGESCOPE_TLS_CERT_FILE: ' /etc/dev.pem ', BRIDGESCOPE_TLS_KEY_FILE: '/etc/dev.key' };
    expect(profileFromEnv(env)?.tls).toEqual({ caFile: '/etc/ca.pem', certFile: '/etc/dev.pem', keyFile: '/etc/dev.key', verify: true });
    expect(profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'amqps://b.example', BRIDGESCOPE_TLS_VERIFY: 'false' })?.tls).toEqual({ verify: false });
    expect(profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'amqp://b.example' })?.tls).toBeUndefined();
    expect(tlsSettings({ tlsCa: 'mine.pem', tlsInsecure: true }, env)).toEqual({ caFile: 'mine.pem', certFile: '/etc/dev.pem', keyFile: '/etc/dev.key', verify: false });
    expect(tlsSettings({}, { BRIDGESCOPE_TLS_VERIFY: 'true', BRIDGESCOPE_TLS_CA_FILE: '' })).toBeUndefined();
    // --tls-verify undoes a BRIDGESCOPE_TLS_VERIFY=false left over from another broker: nothing left to set.
    expect(tlsSettings({ tlsVerify: true }, { BRIDGESCOPE_TLS_VERIFY: 'false' })).toBeUndefined();
    expect(tlsSettings({ tlsVerify: true, tlsCa: 'mine.pem' }, { BRIDGESCOPE_TLS_VERIFY: 'off' })).toEqual({ caFile: 'mine.pem', verify: true });
  });

  it('is off without an AMQP URL', () => {
    expect(profileFromEnv({})).toBeUndefined();
  });

  it('takes the MQTT and management URLs given, and says nothing about them', () => {
    const notes: string[] = [];
    const profile = profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'amqp://a:b@broker:5672', BRIDGESCOPE_MQTT_URL: 'mqtt://m:1', BRIDGESCOPE_MANAGEMENT_URL: 'http://x@m:2' }, (note) => notes.push(note));
    expect(profile).toMatchObject({ mqttUrl: 'mqtt://m:1', managementUrl: 'http://x@m:2' });
    expect(notes).toEqual([]);
  });

  it("points the URLs not given at the AMQP URL's host and user, with the plugins' default ports, and says so without the password", () => {
    const notes: string[] = [];
    const profile = profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'amqp://alice:s3cret@rabbit.example:5672/%2f' }, (note) => notes.push(note));
    expect(profile).toMatchObject({ mqttUrl: 'mqtt://alice:s3cret@rabbit.example:1883', managementUrl: 'http://alice:s3cret@rabbit.example:15672' });
    expect(notes).toEqual([
      "BRIDGESCOPE_MQTT_URL is not set: using mqtt://alice:***@rabbit.example:1883 (the AMQP URL's host and user, the MQTT plugin's default port).",
      "BRIDGESCOPE_MANAGEMENT_URL is not set: using http://alice:***@rabbit.example:15672 (the AMQP URL's host and user, the management plugin's default port).",
    ]);
  });

  it('uses the TLS ports for amqps, guest for the management API of a URL without a user, and every node of a list', () => {
    expect(siblingUrl('amqps://u:p@[::1]:5671', 'mqtt')).toBe('mqtts://u:p@[::1]:8883');
    expect(siblingUrl('amqps://u:p@[::1]:5671', 'management')).toBe('https://u:p@[::1]:15671');
    expect(siblingUrl('amqp://10.0.0.7', 'mqtt')).toBe('mqtt://10.0.0.7:1883');
    expect(siblingUrl('amqp://10.0.0.7', 'management')).toBe('http://guest:guest@10.0.0.7:15672');
    // A raw password holding @ and : stays the user-info (the host is after the last @).
    expect(siblingUrl('amqp://u:p@ss:w@host', 'mqtt')).toBe('mqtt://u:p@ss:w@host:1883');
    expect(profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'amqp://n1:5672, amqp://n2:5672' })?.mqttUrl).toBe('mqtt://n1:1883, mqtt://n2:1883');
  });

  it('puts a vhost other than "/" in the MQTT user name, as the MQTT plugin reads it: the AMQP URL\'s, or BRIDGESCOPE_VHOST', () => {
    const notes: string[] = [];
    const profile = profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'amqp://alice:s3cret@rabbit.example/prod' }, (note) => notes.push(note));
    expect(profile?.mqttUrl).toBe('mqtt://prod%3Aalice:s3cret@rabbit.example:1883');
    // The profile's vhost is the AMQP URL's too (the management API and Watch look there).
    expect(profile?.vhost).toBe('prod');
    // The management API takes the vhost from its paths, not from the user.
    expect(profile?.managementUrl).toBe('http://alice:s3cret@rabbit.example:15672');
    expect(notes[0]).toBe(
      "BRIDGESCOPE_MQTT_URL is not set: using mqtt://prod%3Aalice:***@rabbit.example:1883 (the AMQP URL's host and user, the MQTT plugin's default port; the vhost in its user name, as the MQTT plugin reads it).",
    );
    expect(profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'amqp://rabbit.example', BRIDGESCOPE_VHOST: 'team a' })?.mqttUrl).toBe('mqtt://team%20a%3Aguest:guest@rabbit.example:1883');
    expect(siblingUrl('amqp://u:p@h/%2F', 'mqtt')).toBe('mqtt://u:p@h:1883');
  });

  it('leaves out a node of a list it cannot read instead of giving up the whole list for this machine', () => {
    expect(profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'amqp://n1:5672, amqp://, amqp://n3:5672' })?.mqttUrl).toBe('mqtt://n1:1883, mqtt://n3:1883');
  });

  it('falls back to this machine when the AMQP URL has no host it can read, and says so', () => {
    const notes: string[] = [];
    expect(siblingUrl('not a url', 'mqtt')).toBeUndefined();
    expect(profileFromEnv({ BRIDGESCOPE_AMQP_URL: 'not a url' }, (note) => notes.push(note))?.mqttUrl).toBe('mqtt://127.0.0.1:1883');
    expect(notes[0]).toMatch(/^BRIDGESCOPE_MQTT_URL is not set, and the AMQP URL does not say a host: using mqtt:\/\/127\.0\.0\.1:1883\.$/);
  });
});
