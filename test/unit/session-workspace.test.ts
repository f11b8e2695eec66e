import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { WorkspaceController } from '../../src/core/session/workspace';
import { WorkspaceStore } from '../../src/core/workspace-file';
import type { EventName, Events } from '../../src/shared/contract';
import type { RequestTemplate } from '../../src/shared/workspace';

const request = { topic: 'rpc_queue', qos: 1 as const, strategy: 'per-request' as const, payloadText: '{}', timeoutMs: 5000 };
const profile = (name: string, password = 's3cr/et') => ({
  name,
  amqpUrl: `amqp://app:${encodeURIComponent(password)}@broker:5672`,
  mqttUrl: `mqtt://app:${encodeURIComponent(password)}@broker:1883`,
  managementUrl: 'http://admin:adminpw@broker:15672',
  vhost: '/',
  exchange: 'amq.direct',
});

function controller() {
  const events: Array<{ name: EventName; payload: unknown }> = [];
  const profiles = new ProfileStore(memorySecretBox());
  const store = new WorkspaceStore();
  const workspace = new WorkspaceController({ store, profiles, emit: <E extends EventName>(name: E, payload: Events[E]) => void events.push({ name, payload }) });
  return { workspace, profiles, store, events };
}

describe('the workspace controller', () => {
  it('records a settled send with its verdict, round trip and reply, and tells every page', async () => {
    const { workspace, store, events } = controller();
    workspace.record({
      at: 5,
      request,
      rpcId: 'r1',
      replyTopic: 'reply/r1',
      verdict: { code: 'replied', hop: 'mqtt-deliver', message: 'It replied.', evidence: [] },
      outcome: { durationMs: 4.5, body: { kind: 'json', value: { pong: true } } } as never,
    });
    await store.flushed();
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    const [kept] = (await store.list()).entries;
    expect(kept).toMatchObject({ id: 'r1', rpcId: 'r1', topic: 'rpc_queue', replyTopic: 'reply/r1', qos: 1, roundTripMs: 4.5, verdict: { code: 'replied' }, replyText: '{\n  "pong": true\n}' });
    expect(events).toContainEqual({ name: 'workspace.history.changed', payload: { reason: 'added', entry: kept } });
  });

  it('exports profiles and templates without any password unless asked', async () => {
    const { workspace, profiles } = controller();
    await profiles.save(profile('prod'));
    await workspace.saveTemplate({ name: 'ping', request });
    const file = await workspace.export(false);
    expect(file).toMatchObject({ format: 'bridgescope-workspace', version: 1, includesPasswords: false, templates: [{ name: 'ping' }] });
    const text = JSON.stringify(file);
    expect(text).not.toContain('s3cr');
    expect(text).not.toContain('adminpw');
    expect(file.profiles[0]).toMatchObject({ name: 'prod', amqpUrl: 'amqp://app@broker:5672', managementUrl: 'http://admin@broker:15672' });
    const withSecrets = await workspace.export(true);
    expect(withSecrets.profiles[0]?.amqpUrl).toBe('amqp://app:s3cr%2Fet@broker:5672');
  });

  it('imports by name: says what it added, replaced and refused (with why), and keeps the good items', async () => {
    const source = controller();
    await source.profiles.save(profile('prod'));
    await source.profiles.save(profile('staging'));
    await source.workspace.saveTemplate({ name: 'ping', request });
    const file = await source.workspace.export(true);
    file.profiles.push({ ...profile('broken'), amqpUrl: '' });
    const target = controller();
    await target.profiles.save(profile('prod', 'old'));
    const report = await target.workspace.import(JSON.parse(JSON.stringify(file)));
    expect(report.profiles).toEqual({ added: ['staging'], replaced: ['prod'], refused: [{ name: 'broken', reason: 'amqpUrl: The AMQP URL cannot be empty.' }] });
    expect(report.templates).toEqual({ added: ['ping'], replaced: [], refused: [] });
    expect((await target.profiles.get('prod')).amqpUrl).toBe('amqp://app:s3cr%2Fet@broker:5672');
  });

  it('re-importing an export without passwords keeps the passwords already saved for unchanged URLs', async () => {
    const { workspace, profiles } = controller();
    await profiles.save(profile('prod'));
    const file = await workspace.export(false);
    (file.profiles[0] as { mqttUrl: string }).mqttUrl = 'mqtt://app@other-broker:1883';
    await workspace.import(file);
    const kept = await profiles.get('prod');
    expect(kept.amqpUrl).toBe('amqp://app:s3cr%2Fet@broker:5672');
    expect(kept.managementUrl).toBe('http://admin:adminpw@broker:15672');
    // A URL that changed is taken as imported: no old password is put on another broker.
    expect(kept.mqttUrl).toBe('mqtt://app@other-broker:1883');
  });

  it('refuses a file that is not a workspace whole, with one sentence, changing nothing', async () => {
    const { workspace, profiles } = controller();
    await expect(workspace.import({ format: 'bridgescope-trace', version: 2, steps: [] })).rejects.toThrow('This is not a BridgeScope profiles file (its "format" is not "bridgescope-workspace").');
    await expect(workspace.import('hello')).rejects.toThrow('This is not a BridgeScope profiles file (not a JSON object).');
    await expect(workspace.import({ format: 'bridgescope-workspace', version: 9, profiles: [profile('x')] })).rejects.toThrow(/format version this BridgeScope does not read/);
    expect(await profiles.list()).toEqual([]);
  });

  it('exports a list of URLs with every node kept, each without its password, and leaves other text fields alone', async () => {
    const { workspace, profiles } = controller();
    await profiles.save({ ...profile('cluster'), amqpUrl: 'amqp://u:p1@h1:5672, amqp://u:p2@h2:5672', mqttUrl: 'mqtt://h1:1883\nmqtt://d:p3@h2:1883', mqttClientId: 'dev:1@lab', username: 'me', password: 'field-pw' });
    const [exported] = (await workspace.export(false)).profiles;
    expect(exported).toEqual({ ...profile('cluster'), amqpUrl: 'amqp://u@h1:5672, amqp://u@h2:5672', mqttUrl: 'mqtt://h1:1883\nmqtt://d@h2:1883', managementUrl: 'http://admin@broker:15672', mqttClientId: 'dev:1@lab', username: 'me' });
  });

  it('re-importing its own export without passwords keeps the saved password field too, unless the profile changed', async () => {
    const { workspace, profiles } = controller();
    await profiles.save({ ...profile('prod'), username: 'me', password: 'field-pw' });
    await profiles.save({ ...profile('edited'), username: 'me', password: 'field-pw' });
    const file = await workspace.export(false);
    (file.profiles[1] as { vhost: string }).vhost = '/other';
    await workspace.import(JSON.parse(JSON.stringify(file)));
    expect(await profiles.get('prod')).toEqual({ ...profile('prod'), username: 'me', password: 'field-pw' });
    // Another vhost is another target: the old password is not put on it.
    expect((await profiles.get('edited')).password).toBeUndefined();
  });

  it('applies nothing of an import whose profiles cannot be written, and says so', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bridgescope-import-'));
    try {
      const file = join(dir, 'profiles.json');
      const profiles = new ProfileStore(memorySecretBox(), file);
      await profiles.save(profile('prod', 'old'));
      const store = new WorkspaceStore();
      const workspace = new WorkspaceController({ store, profiles, emit: () => undefined });
      await rm(file);
      await mkdir(join(file, 'in-the-way'), { recursive: true });
      const source = controller();
      await source.profiles.save(profile('prod'));
      await source.profiles.save(profile('staging'));
      await source.workspace.saveTemplate({ name: 'ping', request });
      await expect(workspace.import(await source.workspace.export(true))).rejects.toThrow(/^Nothing was imported: the profiles could not be saved \(/);
      expect((await profiles.list()).map((summary) => summary.name)).toEqual(['prod']);
      expect((await profiles.get('prod')).amqpUrl).toBe('amqp://app:old@broker:5672');
      expect(await store.listTemplates()).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('saves the templates of an import in one write, all or none, and says exactly what was applied when they cannot be saved', async () => {
    class FailingWrite extends WorkspaceStore {
      override async saveTemplates(): Promise<RequestTemplate[]> {
        throw new Error('disk full');
      }
    }
    const profiles = new ProfileStore(memorySecretBox());
    const events: EventName[] = [];
    const store = new FailingWrite();
    const workspace = new WorkspaceController({ store, profiles, emit: (name) => void events.push(name) });
    const file = { format: 'bridgescope-workspace', version: 1, profiles: [profile('prod')], templates: [{ name: 'a', request }, { name: 'b', request }, { name: 'c', request }] };
    await expect(workspace.import(file)).rejects.toThrow('The templates were not imported (disk full): the profiles "prod" were saved; none of the 3 templates was.');
    expect(await store.listTemplates()).toEqual([]);
    expect(events).toEqual([]);
  });

  it('imports 100,000 templates into its file in one write', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bridgescope-import-many-'));
    try {
      class OneAtATimeRefused extends WorkspaceStore {
        override saveTemplate(): Promise<RequestTemplate[]> {
          throw new Error('an import saves its templates together, never one write per template');
        }
      }
      const store = new OneAtATimeRefused({ dir });
      await store.saveTemplates([{ name: 't5', request: { ...request, topic: 'before' } }]);
      const workspace = new WorkspaceController({ store, profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
      const templates = Array.from({ length: 100_000 }, (_, index) => ({ name: `t${index}`, request }));
      const report = await workspace.import({ format: 'bridgescope-workspace', version: 1, profiles: [], templates });
      expect(report.templates.added).toHaveLength(99_999);
      expect(report.templates.replaced).toEqual(['t5']);
      await store.flushed();
      const next = await new WorkspaceStore({ dir }).listTemplates();
      expect(next).toHaveLength(100_000);
      expect(next[0]).toEqual({ name: 't5', request });
      expect(next.at(-1)?.name).toBe('t99999');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
