import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
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
  vi.restoreAllMocks();
  await host?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function openPage(
  snapshot: () => TraceStep[] = () => [snapshotStep],
  resetPieceSteps?: number,
): Promise<{ page: WebSocket; frames: HostFrame[]; until: (test: () => boolean) => Promise<void> }> {
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-host-'));
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>t</title>');
  const handlers = { 'trace.snapshot.get': async () => ({ steps: snapshot(), dropped: { rpcs: 0, steps: 0 } }) } as unknown as Handlers;
  host = await startHost(handlers, { staticDir: dir, behindBytes: BEHIND_BYTES, ...(resetPieceSteps ? { resetPieceSteps } : {}) });
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
  return { page, frames, until };
}

const SENT = 200;
/** The page stops reading while 200 big steps are traced, then a marker event, then it reads again. */
function pauseAndFlood(page: WebSocket): void {
  // The page stops reading: nothing it was sent leaves the host's queue past what the kernel takes.
  (page as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
  for (let seq = 1; seq <= SENT; seq += 1) host!.broadcast('trace.steps.added', { steps: [bigStep(seq)] });
  // Other events still go out: the marker comes after everything that was queued.
  host!.broadcast('load.progress.changed', { count: 1, completed: 0, failed: 0, elapsedMs: 0, histogram: { boundsMs: [], counts: [] }, series: [] });
  (page as unknown as { _socket: { resume(): void } })._socket.resume();
}

describe('the browser host with a page that stops reading', () => {
  it('skips trace steps for it past its limit instead of queueing them all, then sends it the whole trace again once it caught up', async () => {
    const { page, frames, until } = await openPage();
    pauseAndFlood(page);
    const sent = SENT;
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'load.progress.changed'));
    const stepsReceived = frames.filter((frame) => frame.type === 'event' && frame.name === 'trace.steps.added').length;
    // 200 events of 256 KiB = 50 MiB; what reached the page is what fitted under the limit (plus the kernel's buffers).
    expect(stepsReceived).toBeGreaterThan(0);
    expect(stepsReceived).toBeLessThan(sent / 2);
    // Once caught up (seen by its watch or by the next step), the page is sent the whole trace, from which it rebuilds.
    host!.broadcast('trace.steps.added', { steps: [bigStep(sent + 1)] });
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'trace.store.reset'));
    const reset = frames.find((frame) => frame.type === 'event' && frame.name === 'trace.store.reset');
    expect(reset).toMatchObject({ payload: { steps: [expect.objectContaining({ seq: 999 })] } });
    // From then on, steps flow again.
    host!.broadcast('trace.steps.added', { steps: [{ ...snapshotStep, seq: 1000 }] });
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'trace.steps.added' && frame.payload.steps[0]?.seq === 1000));
    page.close();
  });

  it('sends the whole trace again as soon as the page caught up, even when no further step is traced', async () => {
    const { page, frames, until } = await openPage();
    pauseAndFlood(page);
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'load.progress.changed'));
    // Tracing went quiet after the burst: nothing else is broadcast, and still the page gets its hole filled.
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'trace.store.reset'));
    expect(frames.find((frame) => frame.type === 'event' && frame.name === 'trace.store.reset')).toMatchObject({ payload: { steps: [expect.objectContaining({ seq: 999 })] } });
    page.close();
  });

  it('sends a large trace again in pieces, then the steps traced meanwhile, each step once, and live steps after the last piece', async () => {
    // The store the host reads: 10 steps when the page caught up; 3 more are traced just after the host read them.
    const store: TraceStep[] = Array.from({ length: 10 }, (_, index) => ({ ...snapshotStep, rpcId: `r${index}`, seq: 1000 + index }));
    const meanwhile = [1010, 1011, 1012].map((seq) => ({ ...snapshotStep, rpcId: `n${seq}`, seq }));
    let reads = 0;
    const { page, frames, until } = await openPage(() => {
      const now = [...store];
      if (reads++ === 0) {
        queueMicrotask(() => {
          store.push(...meanwhile);
          host!.broadcast('trace.steps.added', { steps: meanwhile });
        });
      }
      return now;
    }, 4);
    pauseAndFlood(page);
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'load.progress.changed'));
    const pieces = (): Array<{ steps: TraceStep[]; piece?: string }> =>
      frames.flatMap((frame) => (frame.type === 'event' && frame.name === 'trace.store.reset' ? [frame.payload] : []));
    await until(() => pieces().some((piece) => piece.piece === 'last'));
    expect(reads).toBeGreaterThanOrEqual(2);
    // After the last piece, live steps flow again.
    host!.broadcast('trace.steps.added', { steps: [{ ...snapshotStep, seq: 2000 }] });
    await until(() => frames.some((frame) => frame.type === 'event' && frame.name === 'trace.steps.added' && frame.payload.steps[0]?.seq === 2000));
    const kinds = pieces().map((piece) => piece.piece);
    expect(kinds[0]).toBe('first');
    expect(kinds.at(-1)).toBe('last');
    expect(kinds.slice(1, -1).every((kind) => kind === 'middle')).toBe(true);
    expect(pieces().every((piece) => piece.steps.length <= 4)).toBe(true);
    const seqs = pieces().flatMap((piece) => piece.steps.map((step) => step.seq));
    expect(seqs).toEqual(Array.from({ length: 13 }, (_, index) => 1000 + index));
    // None of the steps traced during the catch-up went out as a live step before the last piece.
    const lastPiece = frames.findIndex((frame) => frame.type === 'event' && frame.name === 'trace.store.reset' && frame.payload.piece === 'last');
    const firstPiece = frames.findIndex((frame) => frame.type === 'event' && frame.name === 'trace.store.reset');
    expect(frames.slice(firstPiece, lastPiece).some((frame) => frame.type === 'event' && frame.name === 'trace.steps.added')).toBe(false);
    page.close();
  });

  it('stops watching a page that closed while behind, and closes promptly', async () => {
    const watches = new Set<unknown>();
    const cleared = new Set<unknown>();
    const wakeOnClear: Array<() => void> = [];
    const realSetInterval = globalThis.setInterval;
    const realClearInterval = globalThis.clearInterval;
    vi.spyOn(globalThis, 'setInterval').mockImplementation(((...args: Parameters<typeof setInterval>) => {
      const watch = realSetInterval(...args);
      watches.add(watch);
      return watch;
    }) as typeof setInterval);
    vi.spyOn(globalThis, 'clearInterval').mockImplementation(((watch: Parameters<typeof clearInterval>[0]) => {
      realClearInterval(watch);
      if (watch !== undefined) cleared.add(watch);
      for (const wake of wakeOnClear.splice(0)) wake();
    }) as typeof clearInterval);
    const { page } = await openPage();
    const watchesBefore = watches.size;
    (page as unknown as { _socket: { pause(): void } })._socket.pause();
    for (let seq = 1; seq <= 200; seq += 1) host!.broadcast('trace.steps.added', { steps: [bigStep(seq)] });
    expect(watches.size).toBe(watchesBefore + 1);
    const [watch] = [...watches].slice(-1);
    page.terminate();
    while (!cleared.has(watch)) await new Promise<void>((resolve) => wakeOnClear.push(resolve));
    const closing = host!.close();
    host = undefined;
    await closing;
  });
});
