import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WORKSPACE_FILE, WorkspaceStore, replyTextOf } from '../../src/core/workspace-file';
import { readUiIdentity, writeUiIdentity, UI_IDENTITY_FILE } from '../../src/core/data-dir';
import { HISTORY_BODY_BYTES, forHistory, type HistoryEntry } from '../../src/shared/workspace';

const request = { topic: 'rpc_queue', qos: 1 as const, strategy: 'per-request' as const, payloadText: '{"params":{"n":1}}', timeoutMs: 5000 };

function entry(id: string, extra: Partial<HistoryEntry> = {}): HistoryEntry {
  return { id, at: 1000, topic: 'rpc_queue', qos: 1, request, rpcId: id, replyTopic: `reply/${id}`, roundTripMs: 3, verdict: { code: 'replied', message: 'It replied.' }, ...extra };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-workspace-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the workspace store', () => {
  it('keeps history and templates in its file, for the next run to read', async () => {
    const first = new WorkspaceStore({ dir });
    await first.add(entry('a'));
    await first.saveTemplate({ name: 'ping', request });
    const next = new WorkspaceStore({ dir });
    expect((await next.list()).entries.map((kept) => kept.id)).toEqual(['a']);
    expect(await next.listTemplates()).toEqual([{ name: 'ping', request }]);
    expect((await stat(join(dir, WORKSPACE_FILE))).mode & 0o777).toBe(0o600);
  });

  it('keeps the newest entries up to its bound, dropping the oldest', async () => {
    const store = new WorkspaceStore({ dir, limit: 3 });
    for (const id of ['1', '2', '3', '4', '5']) await store.add(entry(id));
    expect((await store.list()).entries.map((kept) => kept.id)).toEqual(['5', '4', '3']);
    expect((await new WorkspaceStore({ dir, limit: 3 }).list()).total).toBe(3);
  });

  it('writes whole files only: many changes at once leave one readable file with all of them and no temp file', async () => {
    const store = new WorkspaceStore({ dir });
    await Promise.all(Array.from({ length: 30 }, (_, index) => store.add(entry(String(index)))));
    await store.flushed();
    expect(await readdir(dir)).toEqual([WORKSPACE_FILE]);
    const saved = JSON.parse(await readFile(join(dir, WORKSPACE_FILE), 'utf8')) as { history: unknown[] };
    expect(saved.history).toHaveLength(30);
  });

  it('sets a corrupt file aside with one sentence and starts empty, without overwriting it', async () => {
    await writeFile(join(dir, WORKSPACE_FILE), '{"version": 1, "history": [tru');
    const store = new WorkspaceStore({ dir });
    const listed = await store.list();
    expect(listed.entries).toEqual([]);
    expect(listed.notice).toMatch(/is not JSON: it was kept as .*workspace\.json\.unreadable-.*, and history and templates start empty\.$/);
    const aside = (await readdir(dir)).find((name) => name.startsWith(`${WORKSPACE_FILE}.unreadable-`)) as string;
    expect(await readFile(join(dir, aside), 'utf8')).toBe('{"version": 1, "history": [tru');
    await store.add(entry('after'));
    expect((await store.list()).notice).toBeUndefined();
  });

  it('leaves a file from a newer BridgeScope in place, untouched, and works from memory for this run, saying so once', async () => {
    const newer = JSON.stringify({ version: 7, history: [{ id: 'kept-by-the-newer-build' }], templates: [], more: true });
    await writeFile(join(dir, WORKSPACE_FILE), newer);
    const store = new WorkspaceStore({ dir });
    const listed = await store.list();
    expect(listed.entries).toEqual([]);
    expect(listed.notice).toMatch(/^The history file .*workspace\.json was written by a newer BridgeScope \(format 7, this one reads 1\): it is left as it is, and this run keeps history and templates in memory only\.$/);
    // This run still works: what it sends is listed, and its templates are kept, in memory.
    await store.add(entry('this-run'));
    await store.saveTemplate({ name: 'ping', request });
    await store.flushed();
    expect((await store.list()).entries.map((kept) => kept.id)).toEqual(['this-run']);
    expect((await store.list()).notice).toBe(listed.notice);
    expect(await readdir(dir)).toEqual([WORKSPACE_FILE]);
    expect(await readFile(join(dir, WORKSPACE_FILE), 'utf8')).toBe(newer);
  });

  it('keeps a body up to 64 KiB in every format, and of a bigger one only its size', () => {
    const at = (payloadFormat: 'json' | 'text' | 'hex' | 'base64' | 'file', payloadText: string) => forHistory({ ...request, payloadFormat, payloadText });
    const limit = HISTORY_BODY_BYTES;
    const cases = [
      { format: 'json' as const, fits: `"${'x'.repeat(limit - 2)}"`, over: `"${'x'.repeat(limit - 1)}"`, overBytes: limit + 1 },
      // UTF-8 bytes, not characters: 'é' is two bytes.
      { format: 'text' as const, fits: 'é'.repeat(limit / 2), over: `${'é'.repeat(limit / 2)}!`, overBytes: limit + 1 },
      { format: 'hex' as const, fits: 'ab'.repeat(limit / 2), over: 'ab'.repeat(limit), overBytes: limit * 2 },
      { format: 'base64' as const, fits: 'AAAA'.repeat(limit / 4), over: 'AAAA'.repeat(limit / 2), overBytes: limit * 2 },
      // A file is measured by its bytes (it travels as base64: 4 characters for 3 bytes).
      { format: 'file' as const, fits: 'AAAA'.repeat(21845), over: 'AAAA'.repeat(21846), overBytes: 21846 * 3 },
    ];
    for (const { format, fits, over, overBytes } of cases) {
      expect(at(format, fits), format).toEqual({ request: { ...request, payloadFormat: format, payloadText: fits } });
      expect(at(format, over), format).toEqual({ request: { ...request, payloadFormat: format, payloadText: '' }, bodyNotKept: overBytes });
    }
  });

  it('trims big bodies a file kept before every body was capped, and keeps the reply text cut at 16 KiB', async () => {
    const big = { ...request, payloadFormat: 'text' as const, payloadText: 'x'.repeat(HISTORY_BODY_BYTES + 10) };
    await writeFile(join(dir, WORKSPACE_FILE), JSON.stringify({ version: 1, history: [entry('old', { request: big })], templates: [] }));
    const store = new WorkspaceStore({ dir });
    expect((await store.list()).entries[0]).toMatchObject({ id: 'old', bodyNotKept: HISTORY_BODY_BYTES + 10, request: { payloadText: '' } });
    await store.add(entry('new'));
    await store.flushed();
    expect((await stat(join(dir, WORKSPACE_FILE))).size).toBeLessThan(4096);
    expect(replyTextOf('r'.repeat(16 * 1024))).toHaveLength(16 * 1024);
    expect(replyTextOf('r'.repeat(100_000))).toBe(`${'r'.repeat(16 * 1024)}…`);
  });

  it('searches topic, reply topic, verdict word, body, reply and error, case-insensitively', async () => {
    const store = new WorkspaceStore();
    await store.add(entry('ok', { replyText: '{"result":"PONG"}' }));
    await store.add(entry('lost', { topic: 'orders/create', verdict: { code: 'request-unroutable', message: 'Nothing is bound.' }, error: 'No reply within 5000 ms.' }));
    const ids = async (search: string) => (await store.list(search)).entries.map((kept) => kept.id);
    expect(await ids('ORDERS')).toEqual(['lost']);
    expect(await ids('request dropped')).toEqual(['lost']);
    expect(await ids('pong')).toEqual(['ok']);
    expect(await ids('reply/ok')).toEqual(['ok']);
    expect(await ids('"n":1')).toEqual(['lost', 'ok']);
    expect(await ids('nothing like it')).toEqual([]);
  });

  it('deletes one entry, clears all, and keeps nothing on disk without a data dir', async () => {
    const store = new WorkspaceStore();
    await store.add(entry('a'));
    await store.add(entry('b'));
    expect(await store.delete('a')).toBe(true);
    expect(await store.delete('a')).toBe(false);
    expect(await store.clear()).toBe(1);
    expect((await store.list()).entries).toEqual([]);
    expect(store.file).toBeUndefined();
  });

  it('refuses, in one sentence and changing nothing, templates that would make its file bigger than the next run may read', async () => {
    const store = new WorkspaceStore({ dir });
    await store.saveTemplate({ name: 'kept', request });
    const before = await readFile(join(dir, WORKSPACE_FILE), 'utf8');
    const big = Array.from({ length: 65 }, (_, index) => ({ name: `big${index}`, request: { ...request, payloadText: 'x'.repeat(1024 * 1024) } }));
    await expect(store.saveTemplates(big)).rejects.toThrow(`65 templates would make ${join(dir, WORKSPACE_FILE)} 66 MiB, over the 64 MiB a data file may have.`);
    expect((await store.listTemplates()).map((template) => template.name)).toEqual(['kept']);
    expect(await readFile(join(dir, WORKSPACE_FILE), 'utf8')).toBe(before);
  });

  it('renames a template in place, refusing a name already taken', async () => {
    const store = new WorkspaceStore();
    await store.saveTemplate({ name: 'a', request });
    await store.saveTemplate({ name: 'b', request });
    expect((await store.renameTemplate('a', 'c')).map((template) => template.name)).toEqual(['c', 'b']);
    await expect(store.renameTemplate('c', 'b')).rejects.toThrow('A template named "b" already exists: delete it first or pick another name.');
    await expect(store.renameTemplate('x', 'y')).rejects.toThrow('There is no template named "x".');
    expect((await store.deleteTemplate('c')).map((template) => template.name)).toEqual(['b']);
  });
});

describe("the browser host's kept token and port", () => {
  it('reuses the kept token and port, in a file only its owner can read, and makes a new token when asked', async () => {
    const first = await readUiIdentity(dir, false);
    expect(first.fresh).toBe(true);
    await writeUiIdentity(dir, { token: first.identity.token, port: 45123 });
    expect((await stat(join(dir, UI_IDENTITY_FILE))).mode & 0o777).toBe(0o600);
    expect(await readUiIdentity(dir, false)).toEqual({ identity: { token: first.identity.token, port: 45123 }, fresh: false });
    const rotated = await readUiIdentity(dir, true);
    expect(rotated.identity.token).not.toBe(first.identity.token);
    expect(rotated.identity.port).toBe(45123);
    await writeFile(join(dir, UI_IDENTITY_FILE), 'garbage');
    expect((await readUiIdentity(dir, false)).fresh).toBe(true);
  });
});
