import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Handlers } from '../../src/shared/contract';
import type { TraceStep } from '../../src/shared/trace';
import type { HostFrame } from '../../src/shared/ws-frames';
import { startHost, type Host } from '../../src/host/host';

const BEHIND_BYTES = 2 * 1024 * 1024;
/** A step whose body makes each event about 256 KiB, so a page that stops reading falls behind quickly. */
const bigStep = (seq: number): TraceStep =>
  ({ rpcId: `rpc-${seq}`, seq, at: seq, source: 'client', kind: 'composed', detail: { topic: 't', qos: 1, replyTopic: 'r', replyStrategy: 'shared', bytes: 1, method: 'x'.repeat(256 * 1024) } }) as TraceStep;
const snapshotStep = { ...bigStep(999), detail: { topic: 'snapshot', qos: 1, replyTopic: 'r', replyStrategy: 'shared', bytes: 1 } } as TraceStep;

let host: Host | undefined;
let dir: string | undefined;
afterEach(async () => {
  await host?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the browser host with a page that stops reading', () => {
  it('skips trace steps for it past its limit instead of queueing them all, then sends it the whole trace again once it caught up', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bridgescope-host-'));
    await writeFile(join(dir, 'index.html'), '<!doctype html><title>t</title>');
    const handlers = { 'trace.snapshot.get': async () => ({ steps: [snapshotStep], dropped: { rpcs: 0, steps: 0 } }) } as unknown as Handlers;
    host = await startHost(handlers, { staticDir: dir, behindBytes: BEHIND_BYTES });
    const page = new WebSocket(`${host.origin.replace('http', 'ws')}/ws?token=${host.token}`, { origin: host.origin });
    await new Promise((resolve, reject) => page.once('open', resolve).once('error', reject));
    const frames: HostFrame[] = [];
    const waiters: Array<() => void> = [];
    page.on('message', (data) => {
      frames.push(JSON.parse(String(data)) as HostFrame);
      for (const wake of waiters.splice(0)) wake();
    });
    const until = async (test: () => boolean): Promise<void> => {
      while (!test()) await new Promise<void>((resolve) => waiters.push(resolve));
    };
    // The page stops reading: nothing it was sent leaves the host's queue past what the kernel takes.
    (page as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    const sent = 200;
    for (let seq = 1; seq <= sent; seq += 1) host.broadcast('trace.steps.added', { steps: [bigStep(seq)] });
    // Other events still go out: the marker comes after everything that was queued.
    host.broadcast('load.progress.changed', { count: 1, completed: 0, failed: 0, elapsedMs: 0, histogram: { boundsMs: [], counts: [] }, series: [] });
    (page as unknown as { _socket: { resume(): void } })._socket.resume();
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'load.progress.changed'));
    const stepsReceived = frames.filter((frame) => frame.type === 'event' && frame.name === 'trace.steps.added').length;
    // 200 events of 256 KiB = 50 MiB; what reached the page is what fitted under the limit (plus the kernel's buffers).
    expect(stepsReceived).toBeGreaterThan(0);
    expect(stepsReceived).toBeLessThan(sent / 2);
    // The next step finds the page caught up: instead of it, the whole trace, from which the page rebuilds.
    host.broadcast('trace.steps.added', { steps: [bigStep(sent + 1)] });
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'trace.store.reset'));
    const reset = frames.find((frame) => frame.type === 'event' && frame.name === 'trace.store.reset');
    expect(reset).toMatchObject({ payload: { steps: [expect.objectContaining({ seq: 999 })] } });
    // From then on, steps flow again.
    host.broadcast('trace.steps.added', { steps: [{ ...snapshotStep, seq: 1000 }] });
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'trace.steps.added' && frame.payload.steps[0]?.seq === 1000));
    page.close();
  });
});
