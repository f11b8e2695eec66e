/** `trace --export`: the path checked before anything connects, the file written as the app's Export, the verdict line. */
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BridgeError } from '../../src/core/errors';
import { TraceStore } from '../../src/core/trace/trace-store';
import { checkExportPath, exportCounts, traceExportOf, writeTraceExport, wroteSentence } from '../../src/cli/trace-export';
import { describeStep } from '../../src/shared/describe';
import type { Verdict } from '../../src/shared/diagnosis';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});
async function folder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-export-unit-'));
  dirs.push(dir);
  return dir;
}

/** The sentence a check refuses with (a bad-input BridgeError: exit 2), or undefined when it accepts. */
function refusal(file: string): string | undefined {
  try {
    checkExportPath(file);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(BridgeError);
    expect((err as BridgeError).code).toBe('bad-input');
    return (err as Error).message;
  }
}

const replied: Verdict = { code: 'replied', hop: 'mqtt-deliver', message: 'The reply to "q" id a1 was published on "reply.d" 4 ms after the request.', evidence: ['firehose: ...'] };

function storeWithOneRpc(): TraceStore {
  const store = new TraceStore();
  store.add({ rpcId: 'a1', at: 1, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['q'], routedQueues: ['q'], leg: 'request' } });
  store.add({ rpcId: 'a1', at: 2, source: 'broker', kind: 'rpc.diagnosed', detail: { verdict: replied } });
  return store;
}

describe('checkExportPath', () => {
  it('accepts a new file in a folder of ours, and gives its absolute path', async () => {
    const dir = await folder();
    expect(checkExportPath(join(dir, 'trace.json'))).toBe(join(dir, 'trace.json'));
    expect(checkExportPath('relative-trace.json')).toBe(resolve('relative-trace.json'));
  });

  it('accepts an existing file (it is replaced)', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'old.json'), '{}');
    expect(refusal(join(dir, 'old.json'))).toBeUndefined();
  });

  it('refuses, in one sentence each, a folder that does not exist, a path that is a folder, a FIFO, a file for a folder, and no name', async () => {
    const dir = await folder();
    expect(refusal('/nonexistent-dir/x.json')).toBe('--export /nonexistent-dir/x.json: the folder /nonexistent-dir does not exist; create it first or name a file in another folder.');
    expect(refusal(dir)).toBe(`--export ${dir} is a folder: name the file to write the trace to (for example ${join(dir, 'trace.json')}).`);
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    expect(refusal(join(dir, 'fifo'))).toMatch(/is not a regular file/);
    await writeFile(join(dir, 'plain'), '');
    expect(refusal(join(dir, 'plain', 'x.json'))).toBe(`--export ${join(dir, 'plain', 'x.json')}: ${join(dir, 'plain')} is not a folder, so no file can be written in it.`);
    expect(refusal('')).toMatch(/^--export takes the path/);
  });

  it('refuses a folder other users can write (without the sticky bit), as the write at the end would', async () => {
    const dir = await folder();
    const shared = join(dir, 'shared');
    await mkdir(shared);
    await chmod(shared, 0o777);
    expect(refusal(join(shared, 'x.json'))).toMatch(/^--export: .* is in .*shared, a folder other users can write \(mode 0777\), so it is not written: run chmod go-w .*\.$/);
    // With the sticky bit (as /tmp) nobody else can swap the file: accepted.
    await chmod(shared, 0o1777);
    expect(refusal(join(shared, 'x.json'))).toBeUndefined();
  });
});

describe('writeTraceExport', () => {
  it("writes the app's Export format (loadRuns included), mode 0600, that TraceStore.import reads back with the verdict", async () => {
    const dir = await folder();
    const file = join(dir, 'trace.json');
    const store = storeWithOneRpc();
    const exported = traceExportOf(store);
    expect(await writeTraceExport(file, exported)).toEqual({ rpcs: 1, steps: 2 });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    // As the app's Export writes it: two-space JSON.
    expect(text).toBe(JSON.stringify(exported, null, 2));
    expect(JSON.parse(text)).toMatchObject({ format: 'bridgescope-trace', loadRuns: [], dropped: { rpcs: 0, steps: 0 } });
    const back = TraceStore.import(JSON.parse(text));
    expect(back.steps('a1').map((step) => step.kind)).toEqual(['broker.published', 'rpc.diagnosed']);
  });

  it('replaces an existing file with a 0600 one, and leaves no temp file', async () => {
    const dir = await folder();
    const file = join(dir, 'trace.json');
    await writeFile(file, 'old', { mode: 0o644 });
    await writeTraceExport(file, traceExportOf(storeWithOneRpc()));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['trace.json']);
  });

  it('never creates a folder that went away since the start: says so in a few words', async () => {
    const dir = await folder();
    const file = join(dir, 'gone', 'trace.json');
    await expect(writeTraceExport(file, traceExportOf(storeWithOneRpc()))).rejects.toThrow(/^its folder no longer exists$/);
    await expect(stat(join(dir, 'gone'))).rejects.toThrow(/ENOENT/);
  });
});

describe('what trace prints', () => {
  it('counts RPCs and steps, in words that agree with the numbers', () => {
    expect(exportCounts({ steps: traceExportOf(storeWithOneRpc()).steps })).toEqual({ rpcs: 1, steps: 2 });
    expect(wroteSentence({ rpcs: 1, steps: 1 }, 'x.json')).toBe('Wrote 1 RPC (1 step) to x.json.');
    expect(wroteSentence({ rpcs: 3, steps: 17 }, 'x.json')).toBe('Wrote 3 RPCs (17 steps) to x.json.');
    expect(wroteSentence({ rpcs: 0, steps: 0 }, 'x.json')).toBe('Wrote 0 RPCs (0 steps) to x.json.');
  });

  it("prints a verdict with its code, the hop it arrived at or stopped at, and its own sentence", () => {
    const line = (verdict: Verdict): string => describeStep({ rpcId: 'a1', seq: 1, at: 0, source: 'broker', kind: 'rpc.diagnosed', detail: { verdict } });
    expect(line(replied)).toBe('verdict replied (arrived at mqtt-deliver): The reply to "q" id a1 was published on "reply.d" 4 ms after the request.');
    expect(line({ code: 'server-slow', hop: 'server', message: 'No reply.', evidence: [] })).toBe('verdict server-slow (stopped at server): No reply.');
    // A late reply: at the device it arrived; published after the client gave up, it was late at the server and went on.
    expect(line({ code: 'late-reply', hop: 'mqtt-deliver', message: 'Late.', evidence: [] })).toBe('verdict late-reply (arrived at mqtt-deliver): Late.');
    expect(line({ code: 'late-reply', hop: 'server', message: 'Late.', evidence: [], replyReached: { hop: 'reply-exchange', stopped: true } })).toBe(
      'verdict late-reply (late at server, the reply stopped at reply-exchange): Late.',
    );
    expect(line({ code: 'late-reply', hop: 'server', message: 'Late.', evidence: [] })).toBe('verdict late-reply (late at server, the reply reached reply-exchange): Late.');
  });
});
