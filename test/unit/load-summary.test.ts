import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BoundedSeries, runLoad } from '../../src/core/rpc/load-engine';
import type { LoadProgress } from '../../src/shared/contract';
import type { RpcCallOptions } from '../../src/core/rpc/client';
import { BridgeError } from '../../src/core/errors';
import type { RpcClient } from '../../src/core/rpc/client';
import type { RpcOutcome } from '../../src/shared/rpc';

/** Just what runLoad uses of a client: call() and the link's status events. */
function clientAnswering(call: () => Promise<RpcOutcome>): RpcClient {
  return { call, link: new EventEmitter() } as unknown as RpcClient;
}

const run = (client: RpcClient, count: number) => runLoad(client, { count, concurrency: 2, call: {}, onProgress: () => undefined });

describe('load run summary', () => {
  it('reports 0 ms percentiles, numbers that survive JSON, when no request got a reply', async () => {
    const summary = await run(clientAnswering(() => Promise.reject(new BridgeError('timeout', 'No reply.'))), 3);
    expect(summary).toMatchObject({ completed: 0, failed: 3, errors: { timeout: 3 }, p50: 0, p95: 0, p99: 0 });
    expect(JSON.parse(JSON.stringify(summary))).toMatchObject({ p50: 0, p95: 0, p99: 0 });
  });

  it('takes ordered, finite percentiles of the latencies of the replies', async () => {
    const summary = await run(clientAnswering(() => Promise.resolve({} as RpcOutcome)), 40);
    expect(summary.completed).toBe(40);
    for (const value of [summary.p50, summary.p95, summary.p99]) expect(Number.isFinite(value) && value >= 0).toBe(true);
    expect(summary.p50).toBeLessThanOrEqual(summary.p95);
    expect(summary.p95).toBeLessThanOrEqual(summary.p99);
  });
});

describe('a load run\'s progress series', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('stays under a fixed size through an hour-long run (fake clock), the last minute at full resolution', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout', 'performance'] });
    // Requests that never answer: only the progress timer runs, every 250 ms of the fake clock.
    const client = {
      call: (options: RpcCallOptions) =>
        new Promise((_resolve, reject) => options.signal?.addEventListener('abort', () => reject(new BridgeError('cancelled', 'Cancelled.')), { once: true })),
      link: new EventEmitter(),
    } as unknown as RpcClient;
    const cancel = new AbortController();
    let last: LoadProgress | undefined;
    const running = runLoad(client, { count: 1_000_000, concurrency: 4, call: {}, signal: cancel.signal, onProgress: (progress) => (last = progress) });
    await vi.advanceTimersByTimeAsync(60 * 60 * 1000);
    const frame = JSON.stringify(last);
    expect(last?.series.length).toBeLessThanOrEqual(480);
    expect(frame.length).toBeLessThan(32 * 1024);
    // oldest first, the newest point is now, and the last 240 points are the last minute's, 250 ms apart
    const times = (last?.series ?? []).map((point) => point.atMs);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(times.at(-1)).toBe(60 * 60 * 1000);
    expect(times.at(-240)).toBe(60 * 60 * 1000 - 239 * 250);
    cancel.abort();
    await running;
  }, 60_000);

  it('keeps at most its points over 8 hours of ticks, each old point the time-weighted mean of what it stands for', () => {
    const series = new BoundedSeries(240, 240);
    let area = 0;
    for (let tick = 1; tick <= 8 * 60 * 60 * 4; tick += 1) {
      const throughput = tick % 7;
      area += throughput * 250;
      series.push(tick * 250, throughput, 250);
    }
    const points = series.points();
    expect(points.length).toBeLessThanOrEqual(series.maxPoints);
    expect(points.at(-1)?.atMs).toBe(8 * 60 * 60 * 1000);
    // The requests counted over the whole run are still the same: each point's rate times the interval it covers.
    let previous = 0;
    let counted = 0;
    for (const point of points) {
      counted += point.throughput * (point.atMs - previous);
      previous = point.atMs;
    }
    expect(counted).toBeCloseTo(area, 0);
  });
});
