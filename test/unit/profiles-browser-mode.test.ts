import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('saved profiles in browser mode (passwords in memory only)', () => {
  it('last across a restart of bridgescope ui without their passwords, which never reach the file', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bridgescope-profiles-'));
    const file = join(dir, 'profiles.json');
    const profile = {
      name: 'staging',
      amqpUrl: 'amqp://ops:s3cret-amqp@10.0.0.1:5672, amqp://ops:s3cret-amqp@10.0.0.2:5672',
      mqttUrl: 'mqtt://10.0.0.1:1883',
      managementUrl: 'http://ops:s3cret-http@10.0.0.1:15672',
      vhost: '/',
      exchange: 'amq.direct',
      username: 'device',
      password: 's3cret-field',
    };
    const first = new ProfileStore(memorySecretBox(), file);
    await first.save(profile);
    // the same run still connects with every password
    expect(await first.get('staging')).toMatchObject({ amqpUrl: profile.amqpUrl, managementUrl: profile.managementUrl, password: 's3cret-field' });
    expect(await readFile(file, 'utf8')).not.toMatch(/s3cret/);
    // the next run: the profile is there, the passwords are not (typed again), and no empty password stands in for them
    const next = await new ProfileStore(memorySecretBox(), file).get('staging');
    expect(next).toMatchObject({ name: 'staging', amqpUrl: 'amqp://ops@10.0.0.1:5672, amqp://ops@10.0.0.2:5672', managementUrl: 'http://ops@10.0.0.1:15672', username: 'device' });
    expect(next.password).toBeUndefined();
  });
});
