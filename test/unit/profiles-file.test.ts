import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import type { AppState } from '../../src/shared/contract';

const profile = (name: string) => ({ name, amqpUrl: 'amqp://app@broker:5672', mqttUrl: 'mqtt://broker:1883', managementUrl: 'http://broker:15672', vhost: '/', exchange: 'amq.direct' });
const NOW = Date.UTC(2026, 10, 26, 10, 0, 0);

let dir = '';
let file = '';
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-profiles-file-'));
  file = join(dir, 'profiles.json');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function store(told: string[] = []): ProfileStore {
  return new ProfileStore(memorySecretBox(), file, { now: () => NOW, onProblem: (sentence) => told.push(sentence) });
}

describe('the profiles file', () => {
  it('that is not JSON is kept aside, named in one sentence, and never overwritten by the next save', async () => {
    await writeFile(file, '[{"name": "prod", "vhost": ');
    const told: string[] = [];
    const profiles = store(told);
    expect(await profiles.list()).toEqual([]);
    const aside = `${file}.unreadable-2026-11-26T10-00-00-000Z`;
    expect(told).toEqual([`The profiles file ${file} is not JSON: it was kept as ${aside}, and saved profiles start empty.`]);
    expect(profiles.notice).toBe(told[0]);
    await profiles.save(profile('new'));
    expect(await readFile(aside, 'utf8')).toBe('[{"name": "prod", "vhost": ');
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject([{ name: 'new' }]);
  });

  it('holding something else than profiles never breaks the list: the readable ones load, the file is kept aside', async () => {
    const good = { name: 'prod', vhost: '/', exchange: 'amq.direct', urls: { amqp: 'amqp://h:5672', mqtt: 'mqtt://h:1883', management: 'http://h:15672' }, secrets: {} };
    await writeFile(file, JSON.stringify([{ name: 'x' }, good]));
    const profiles = store();
    expect((await profiles.list()).map((summary) => summary.name)).toEqual(['prod']);
    expect(profiles.notice).toMatch(/has 1 of 2 entries that are not saved profiles: it was kept as .*unreadable.*, and the 1 readable ones are loaded\.$/);
    expect(await readdir(dir)).toEqual(['profiles.json.unreadable-2026-11-26T10-00-00-000Z']);

    await writeFile(file, JSON.stringify({ name: 'x' }));
    const other = new ProfileStore(memorySecretBox(), file);
    expect(await other.list()).toEqual([]);
    expect(other.notice).toMatch(/is not a list of profiles/);
  });

  it('keeps every profile of saves made at the same time, each write whole', async () => {
    const profiles = store();
    const names = Array.from({ length: 25 }, (_, index) => `p${index}`);
    await Promise.all(names.map((name) => profiles.save(profile(name))));
    const written = JSON.parse(await readFile(file, 'utf8')) as Array<{ name: string }>;
    expect(written.map((entry) => entry.name).sort()).toEqual([...names].sort());
    expect(await readdir(dir)).toEqual(['profiles.json']);
    expect((await store().list()).map((summary) => summary.name).sort()).toEqual([...names].sort());
  });

  it('that cannot be written fails the save and keeps the profiles as they were', async () => {
    const profiles = store();
    await profiles.save(profile('kept'));
    // The file's place taken by a folder that is not empty: the rename onto it fails.
    await rm(file);
    await mkdir(join(file, 'in-the-way'), { recursive: true });
    await expect(profiles.saveAll([profile('kept'), profile('new')])).rejects.toThrow();
    expect((await profiles.list()).map((summary) => summary.name)).toEqual(['kept']);
    await expect(profiles.remove('kept')).rejects.toThrow();
    expect((await profiles.list()).map((summary) => summary.name)).toEqual(['kept']);
  });

  it('that was set aside is told in the app state, where the profiles are listed', async () => {
    await writeFile(file, 'not json');
    let changed: (state: AppState) => void = () => undefined;
    const told = new Promise<AppState>((resolve) => (changed = resolve));
    const session = new Session({ mode: 'browser', profiles: store(), emit: (name, payload) => name === 'app.state.changed' && changed(payload as AppState) });
    expect(await session.handlers['profile.list']({})).toEqual([]);
    expect((await told).notice).toMatch(new RegExp(`^The profiles file .*profiles\\.json is not JSON: it was kept as .*\\.unreadable-`));
    expect(session.state().notice).toBe((await told).notice);
  });
});
