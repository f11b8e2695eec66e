import { spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WORKSPACE_FILE, WorkspaceStore } from '../../src/core/workspace-file';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { readUiIdentity, writeUiIdentity } from '../../src/core/data-dir';
import { mkfifo } from '../support/fifo';

const request = { topic: 'rpc_queue', qos: 1 as const, strategy: 'per-request' as const, payloadText: '{"params":{"n":1}}', timeoutMs: 5000 };
const profile = (name: string) => ({ name, amqpUrl: 'amqp://app@broker:5672', mqttUrl: 'mqtt://broker:1883', managementUrl: 'http://broker:15672', vhost: '/', exchange: 'amq.direct' });
const KEPT_TEMPLATES = JSON.stringify({ version: 1, history: [], templates: [{ name: 'precious', request }] });
const KEPT_PROFILES = JSON.stringify([{ name: 'precious', vhost: '/', exchange: 'amq.direct', urls: { amqp: 'amqp://a@b', mqtt: 'mqtt://b', management: 'http://b' }, secrets: {} }]);

let dir = '';
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-data-files-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * Runs `script` (ES module text, with `store` bound to the module at `module`) in a child node whose reads of a mode-000
 * file fail with EACCES: when this test runs as root (root reads everything), the child loads the module as root, then
 * becomes uid 65534 (node itself may live where 65534 cannot reach, as CI's Node 24 under /root does); else as this user.
 */
function runUnprivileged(module: string, script: string): Promise<{ code: number | null; output: string }> {
  const root = process.getuid?.() === 0;
  const drop = root ? 'process.setgid(65534);\nprocess.setuid(65534);\n' : '';
  const source = `const store = await import(${JSON.stringify(pathToFileURL(module).href)});\n${drop}${script}`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], {
    cwd: join(import.meta.dirname, '..', '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => {
    child.on('error', (err) => resolve({ code: null, output: `${output}${err.message}` }));
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** Makes `dir` and its `file` (mode 000, holding `text`) belong to the user runUnprivileged runs as. */
async function unreadableFile(name: string, text: string): Promise<void> {
  await writeFile(join(dir, name), text, { mode: 0o000 });
  if (process.getuid?.() === 0) {
    await chown(dir, 65534, 65534);
    await chown(join(dir, name), 65534, 65534);
  }
}

/** Every file of the dir that holds `text` exactly. */
async function holding(text: string): Promise<string[]> {
  const names: string[] = [];
  for (const name of await readdir(dir)) if ((await readFile(join(dir, name), 'utf8').catch(() => '')) === text) names.push(name);
  return names;
}

describe('a data-dir file that cannot be read', () => {
  it('workspace.json: is set aside with one sentence and never overwritten by the next save', async () => {
    await unreadableFile(WORKSPACE_FILE, KEPT_TEMPLATES);
    const run = await runUnprivileged(
      join(import.meta.dirname, '..', '..', 'src', 'core', 'workspace-file.ts'),
      `const s = new store.WorkspaceStore({ dir: ${JSON.stringify(dir)} });
       await s.load();
       console.log('NOTICE ' + s.notice);
       await s.saveTemplate({ name: 'new', request: ${JSON.stringify(request)} });
       await s.flushed();`,
    );
    expect(run.code, run.output).toBe(0);
    expect(run.output).toMatch(/^NOTICE The history file .*workspace\.json could not be read \(.*EACCES.*\): it was kept as .*workspace\.json\.unreadable-\S+, and history and templates start empty\.$/m);
    const kept = await holding(KEPT_TEMPLATES);
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatch(/^workspace\.json\.unreadable-/);
  }, 30_000);

  it('profiles.json: is never overwritten by the next save', async () => {
    await unreadableFile('profiles.json', KEPT_PROFILES);
    const run = await runUnprivileged(
      join(import.meta.dirname, '..', '..', 'src', 'core', 'profiles.ts'),
      `const told = [];
       const s = new store.ProfileStore(store.memorySecretBox(), ${JSON.stringify(join(dir, 'profiles.json'))}, { onProblem: (t) => told.push(t) });
       await s.save(${JSON.stringify(profile('new'))});
       console.log('NOTICE ' + told.join(' | '));`,
    );
    expect(run.code, run.output).toBe(0);
    expect(run.output).toMatch(/^NOTICE The profiles file .*profiles\.json could not be read \(.*EACCES.*\)/m);
    expect(await holding(KEPT_PROFILES)).toHaveLength(1);
  }, 30_000);
});

describe('symlinks in the data dir', () => {
  it('a profiles.json that links into a dotfiles folder stays a link, and its target gets the saved profiles', async () => {
    const dotfiles = await mkdtemp(join(tmpdir(), 'bridgescope-dotfiles-'));
    try {
      const target = join(dotfiles, 'profiles.json');
      await writeFile(target, '[]', { mode: 0o600 });
      await symlink(target, join(dir, 'profiles.json'));
      await new ProfileStore(memorySecretBox(), join(dir, 'profiles.json')).save(profile('prod'));
      expect(await readlink(join(dir, 'profiles.json'))).toBe(target);
      expect((JSON.parse(await readFile(target, 'utf8')) as Array<{ name: string }>).map((kept) => kept.name)).toEqual(['prod']);
      expect(await readdir(dotfiles)).toEqual(['profiles.json']);
    } finally {
      await rm(dotfiles, { recursive: true, force: true });
    }
  });

  it('a profiles.json that links into a folder other users can write is not written there: the save fails in one sentence', async () => {
    const shared = await mkdtemp(join(tmpdir(), 'bridgescope-shared-'));
    try {
      await chmod(shared, 0o777);
      const target = join(shared, 'profiles.json');
      await writeFile(target, '[]', { mode: 0o600 });
      await symlink(target, join(dir, 'profiles.json'));
      await expect(new ProfileStore(memorySecretBox(), join(dir, 'profiles.json')).save(profile('prod'))).rejects.toThrow(
        `${target} is in ${shared}, a folder other users can write (mode 0777), so it is not written: run chmod go-w ${shared}, or keep the file elsewhere`,
      );
      expect(await readFile(target, 'utf8')).toBe('[]');
      expect(await readdir(shared)).toEqual(['profiles.json']);
    } finally {
      await rm(shared, { recursive: true, force: true });
    }
  });

  it('a planted temp file (a link to another file) is never written through', async () => {
    const victim = join(dir, 'victim.txt');
    await writeFile(victim, 'untouched');
    await symlink(victim, join(dir, `${WORKSPACE_FILE}.${process.pid}.tmp`));
    await symlink(victim, join(dir, `ui-host.json.${process.pid}.tmp`));
    const store = new WorkspaceStore({ dir });
    await store.saveTemplate({ name: 'ping', request });
    await store.flushed();
    await writeUiIdentity(dir, { token: 'a'.repeat(32), port: 4000 });
    expect(await readFile(victim, 'utf8')).toBe('untouched');
    expect((JSON.parse(await readFile(join(dir, WORKSPACE_FILE), 'utf8')) as { templates: unknown[] }).templates).toHaveLength(1);
    expect((await stat(join(dir, WORKSPACE_FILE))).mode & 0o777).toBe(0o600);
  });
});

describe('data-dir files that never end or are too big', () => {
  it('a FIFO as profiles.json is set aside with one sentence and the list answers', async () => {
    await mkfifo(join(dir, 'profiles.json'));
    const told: string[] = [];
    const store = new ProfileStore(memorySecretBox(), join(dir, 'profiles.json'), { onProblem: (sentence) => told.push(sentence) });
    expect(await store.list()).toEqual([]);
    expect(told).toEqual([expect.stringMatching(/^The profiles file .*profiles\.json is not a regular file \(a FIFO\): it was kept as .*profiles\.json\.unreadable-\S+, and saved profiles start empty\.$/)]);
  });

  it('a FIFO as workspace.json or ui-host.json is refused with one sentence, never read', async () => {
    await mkfifo(join(dir, WORKSPACE_FILE));
    await mkfifo(join(dir, 'ui-host.json'));
    const store = new WorkspaceStore({ dir });
    expect((await store.list()).notice).toMatch(/^The history file .*workspace\.json is not a regular file \(a FIFO\): it was kept as /);
    const identity = await readUiIdentity(dir, false);
    expect(identity.fresh).toBe(true);
    expect(identity.problem).toMatch(/^The token file .*ui-host\.json is not a regular file \(a FIFO\): a new token is made, and the URL changes\.$/);
  });

  it('a workspace.json over 64 MiB is set aside with one sentence, not read whole', async () => {
    const file = join(dir, WORKSPACE_FILE);
    await writeFile(file, '');
    await truncate(file, 65 * 1024 * 1024);
    const store = new WorkspaceStore({ dir });
    expect((await store.list()).notice).toMatch(/^The history file .*workspace\.json is 65 MiB, over the 64 MiB a data file may have: it was kept as /);
  });
});
