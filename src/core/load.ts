/** The Load panel's engine: N requests at concurrency C with the compose settings, live progress, a summary. */
import type { LoadProgress, LoadSummary } from '../shared/contract';
import { toErrorShape } from './errors';
import type { RpcCallOptions, RpcClient } from './rpc/client';

/** Upper bounds of the latency histogram's buckets, in ms; the last bucket is open-ended. */
export const HISTOGRAM_BOUNDS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

function bucketOf(latencyMs: number): number {
  const index = HISTOGRAM_BOUNDS_MS.findIndex((bound) => latencyMs <= bound);
  return index === -1 ? HISTOGRAM_BOUNDS_MS.length : index;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

export interface LoadOptions {
  count: number;
  concurrency: number;
  call: RpcCallOptions;
  progressEveryMs?: number;
  signal?: AbortSignal;
  onProgress: (progress: LoadProgress) => void;
}

export async function runLoad(client: RpcClient, options: LoadOptions): Promise<LoadSummary> {
  const histogram = new Array<number>(HISTOGRAM_BOUNDS_MS.length + 1).fill(0);
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  const series: Array<{ atMs: number; throughput: number }> = [];
  let started = 0;
  let completed = 0;
  let failed = 0;
  const begin = performance.now();
  let lastTick = begin;
  let lastCompleted = 0;

  const progress = (): LoadProgress => ({
    count: options.count,
    completed,
    failed,
    elapsedMs: performance.now() - begin,
    histogram: { boundsMs: HISTOGRAM_BOUNDS_MS, counts: [...histogram] },
    series: [...series],
  });
  const timer = setInterval(() => {
    const now = performance.now();
    series.push({ atMs: now - begin, throughput: ((completed + failed - lastCompleted) / (now - lastTick)) * 1000 });
    lastTick = now;
    lastCompleted = completed + failed;
    options.onProgress(progress());
  }, options.progressEveryMs ?? 250);

  const lane = async (): Promise<void> => {
    while (started < options.count && !options.signal?.aborted) {
      started += 1;
      const t0 = performance.now();
      try {
        await client.call({ ...options.call, ...(options.signal ? { signal: options.signal } : {}) });
        const latency = performance.now() - t0;
        latencies.push(latency);
        histogram[bucketOf(latency)] = (histogram[bucketOf(latency)] ?? 0) + 1;
        completed += 1;
      } catch (err) {
        const { code } = toErrorShape(err);
        errors[code] = (errors[code] ?? 0) + 1;
        failed += 1;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency, options.count) }, lane));
  } finally {
    clearInterval(timer);
  }
  const durationMs = performance.now() - begin;
  const sorted = latencies.sort((a, b) => a - b);
  const final = progress();
  options.onProgress(final);
  return {
    ...final,
    cancelled: Boolean(options.signal?.aborted),
    errors,
    durationMs,
    throughput: ((completed + failed) / durationMs) * 1000,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    finishedAt: new Date().toISOString(),
  };
}
