/** The Load panel's engine: N requests at concurrency C with the compose settings, live progress, a summary. */
import type { LoadProgress, LoadSummary } from '../../shared/contract';
import type { LinkStatus } from '../../shared/rpc';
import type { LoadRunMark } from '../../shared/trace';
import { randomUUID } from 'node:crypto';
import { percentile } from '../../shared/stats';
import { toErrorShape } from '../errors';
import type { RpcCallOptions, RpcClient } from './client';

/** Upper bounds of the latency histogram's buckets, in ms; the last bucket is open-ended. */
export const HISTOGRAM_BOUNDS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

function bucketOf(latencyMs: number): number {
  const index = HISTOGRAM_BOUNDS_MS.findIndex((bound) => latencyMs <= bound);
  return index === -1 ? HISTOGRAM_BOUNDS_MS.length : index;
}

/** A run without a single reply shows 0 ms: the summary crosses JSON, where NaN would arrive as null. */
function latencyPercentile(sorted: readonly number[], p: number): number {
  return percentile(sorted, p) ?? 0;
}

/** One throughput point of a run's series: the end of its interval, the rate over it, and (kept here only) its length. */
interface SeriesPoint {
  atMs: number;
  throughput: number;
  spanMs: number;
}

/**
 * A run's throughput series with a fixed most points, however long the run: the last `recent` intervals as they were
 * measured, and before them at most `history` points, each the time-weighted mean of the intervals it stands for
 * (neighbours are merged in pairs whenever the history fills up, so older stretches get coarser). Every progress event
 * carries it whole, so an hour-long run must not send a bigger one each second than a one-minute run.
 */
export class BoundedSeries {
  private readonly recentPoints: SeriesPoint[] = [];
  private historyPoints: SeriesPoint[] = [];

  constructor(
    private readonly recent = 240,
    private readonly history = 240,
  ) {}

  get maxPoints(): number {
    return this.recent + this.history;
  }

  push(atMs: number, throughput: number, spanMs: number): void {
    this.recentPoints.push({ atMs, throughput, spanMs });
    if (this.recentPoints.length <= this.recent) return;
    this.historyPoints.push(this.recentPoints.shift() as SeriesPoint);
    if (this.historyPoints.length > this.history) this.historyPoints = mergePairs(this.historyPoints);
  }

  points(): Array<{ atMs: number; throughput: number }> {
    const shown = (point: SeriesPoint): { atMs: number; throughput: number } => ({ atMs: point.atMs, throughput: point.throughput });
    return [...this.historyPoints.map(shown), ...this.recentPoints.map(shown)];
  }
}

/** Each two neighbours as one point over both intervals (an odd last one stays as it is). */
function mergePairs(points: readonly SeriesPoint[]): SeriesPoint[] {
  const merged: SeriesPoint[] = [];
  for (let at = 0; at < points.length; at += 2) {
    const first = points[at] as SeriesPoint;
    const second = points[at + 1];
    if (second === undefined) {
      merged.push(first);
      continue;
    }
    const spanMs = first.spanMs + second.spanMs;
    merged.push({ atMs: second.atMs, spanMs, throughput: spanMs > 0 ? (first.throughput * first.spanMs + second.throughput * second.spanMs) / spanMs : 0 });
  }
  return merged;
}

/**
 * Which requests of a load run the trace keeps, and how. One in `every` (the first, the 11th, ...) is chosen as it is
 * sent and traced in full, as is every request sent while `inFullNow` says so (the firehose runs). Each of the others
 * is held (see TraceStore.hold) without its messages (a run sends the same body every time: the chosen ones show it)
 * and kept, with its steps, if it fails (not when it was cancelled) or if it is in the run's slow tail (slower than
 * 99 % of the last 1,000 replies, once there are 100); the rest are let go. Keeping every step of every request of a
 * long run costs most of BridgeScope's own CPU per request, and evicts the run's early failures from the trace (it keeps
 * 10,000 RPCs).
 */
export class LoadTraceSample {
  private sent = 0;
  private repliedCount = 0;
  /** the last RECENT_LATENCIES replies' latencies (a ring), and the slow tail's bound worked out from them */
  private readonly recent = new Float64Array(RECENT_LATENCIES);
  private slowerThan = Number.POSITIVE_INFINITY;
  /** requests traced in full so far */
  inFull = 0;
  /** requests held and then kept (failed, or slow) so far */
  private keptHeld = 0;

  constructor(
    readonly every: number,
    private readonly trace: LoadTraceHold,
    private readonly inFullNow?: () => boolean,
  ) {
    const mark = (kept: LoadRunMark['kept']): LoadRunMark => ({ every, kept });
    this.marks = { chosen: mark('chosen'), firehose: mark('firehose'), failed: mark('failed'), slow: mark('slow') };
  }

  /** requests the trace kept so far */
  get kept(): number {
    return this.inFull + this.keptHeld;
  }

  /** Why each kept request was kept, said on its composed step (one object each, shared by the run's requests). */
  private readonly marks: Readonly<Record<LoadRunMark['kept'], LoadRunMark>>;

  /**
   * A request about to be sent: traced in full (its mark, for the call's `loadRun`: chosen, or the firehose runs), or
   * held until it settles (undefined).
   */
  send(rpcId: string): LoadRunMark | undefined {
    const chosen = this.sent % this.every === 0;
    const mark = chosen ? this.marks.chosen : this.inFullNow?.() === true ? this.marks.firehose : undefined;
    this.sent += 1;
    if (mark !== undefined) {
      this.inFull += 1;
      return mark;
    }
    this.trace.hold(rpcId);
    return undefined;
  }

  /** A request replied in `latencyMs` (every one: the latencies of the run decide what is rare); a held one is settled. */
  replied(rpcId: string, held: boolean, latencyMs: number): void {
    const slow = this.noteReply(latencyMs);
    if (!held) return;
    this.trace.settle(rpcId, slow ? this.marks.slow : false);
    if (slow) this.keptHeld += 1;
  }

  /** A request failed: a held one is kept with its steps, unless it was cancelled (the user's doing, not the bridge's). */
  failed(rpcId: string, held: boolean, cancelled: boolean): void {
    if (!held) return;
    this.trace.settle(rpcId, cancelled ? false : this.marks.failed);
    if (!cancelled) this.keptHeld += 1;
  }

  /**
   * Whether a reply is in the run's slow tail: slower than the 99th percentile of the last RECENT_LATENCIES replies
   * (worked out again every RECOMPUTE_EVERY replies, once there are RARE_AFTER).
   */
  private noteReply(latencyMs: number): boolean {
    this.recent[this.repliedCount % RECENT_LATENCIES] = latencyMs;
    this.repliedCount += 1;
    if (this.repliedCount < RARE_AFTER) return false;
    if (this.repliedCount % RECOMPUTE_EVERY === 0 || this.repliedCount === RARE_AFTER) {
      const sorted = this.recent.slice(0, Math.min(this.repliedCount, RECENT_LATENCIES)).sort();
      this.slowerThan = sorted[Math.floor(sorted.length * 0.99)] ?? Number.POSITIVE_INFINITY;
    }
    return latencyMs > this.slowerThan;
  }
}

/** Replies a run has before a latency can be called slow (see LoadTraceSample). */
const RARE_AFTER = 100;
/** How many of the last replies the slow tail is read from, and how often it is read again. */
const RECENT_LATENCIES = 1000;
const RECOMPUTE_EVERY = 100;

/** Where a load run's requests' steps go: held as each is sent, kept or let go when it settles (see TraceStore.hold). */
export interface LoadTraceHold {
  hold(rpcId: string): void;
  /** kept with the mark that says why (on its composed step), or let go (false) */
  settle(rpcId: string, keep: LoadRunMark | false): void;
}

export interface LoadOptions {
  count: number;
  concurrency: number;
  call: RpcCallOptions;
  progressEveryMs?: number;
  signal?: AbortSignal;
  onProgress: (progress: LoadProgress) => void;
  /** each request that failed, by its id (e.g. to give it a verdict; its steps are kept before); must not throw */
  onFailed?: (rpcId: string, err: unknown) => void;
  /**
   * trace one request in `every` in full (and every one while `inFullNow` says so) and keep the others only when they
   * fail or are slow (see LoadTraceSample); without it, all are kept
   */
  traceSample?: { every: number; trace: LoadTraceHold; inFullNow?: () => boolean };
}

export async function runLoad(client: RpcClient, options: LoadOptions): Promise<LoadSummary> {
  const histogram = new Array<number>(HISTOGRAM_BOUNDS_MS.length + 1).fill(0);
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  const series = new BoundedSeries();
  let started = 0;
  let completed = 0;
  let failed = 0;
  const begin = performance.now();
  let lastTick = begin;
  let lastCompleted = 0;

  // The broker going away mid-run: count the drops, the requests that failed across one, and stop sending for good
  // when the link gave up (failed/closed) instead of failing every remaining request one by one.
  let drops = 0;
  let linkDown = false;
  let failedByOutage = 0;
  let gaveUp: string | undefined;
  const onLinkStatus = (status: LinkStatus): void => {
    if (status.state === 'connected') {
      linkDown = false;
      return;
    }
    if (!linkDown && (status.state === 'reconnecting' || status.state === 'failed' || status.state === 'closed')) {
      linkDown = true;
      drops += 1;
    }
    if (status.state === 'failed') gaveUp = status.message;
    if (status.state === 'closed') gaveUp = 'the connection was closed';
  };
  client.link.on('status', onLinkStatus);

  const progress = (): LoadProgress => ({
    count: options.count,
    completed,
    failed,
    elapsedMs: performance.now() - begin,
    histogram: { boundsMs: HISTOGRAM_BOUNDS_MS, counts: [...histogram] },
    series: series.points(),
  });
  const timer = setInterval(() => {
    const now = performance.now();
    series.push(now - begin, ((completed + failed - lastCompleted) / (now - lastTick)) * 1000, now - lastTick);
    lastTick = now;
    lastCompleted = completed + failed;
    options.onProgress(progress());
  }, options.progressEveryMs ?? 250);

  // One 'abort' listener on the run's signal for the whole run, not one per call: a signal with more than ten
  // listeners makes Node print a MaxListenersExceededWarning, and every call's own listener goes away when it settles.
  const inFlight = new Set<AbortController>();
  const cancelInFlight = (): void => {
    for (const call of inFlight) call.abort();
  };
  options.signal?.addEventListener('abort', cancelInFlight, { once: true });

  const sampling = options.traceSample;
  const sample = sampling ? new LoadTraceSample(sampling.every, sampling.trace, sampling.inFullNow) : undefined;

  const lane = async (): Promise<void> => {
    // One controller per lane, not per call: a lane's calls come one after the other (each removes its listener when it
    // settles), and an AbortController per call cost 2.3-2.5 us each here, 46 ms of a 30-s profile of the host under a load run.
    const laneController = new AbortController();
    inFlight.add(laneController);
    // One options object per lane, its id changed before each call: a call reads its options only while it runs, and
    // the lane's next call starts once it settled.
    const laneCall: RpcCallOptions = { ...options.call, signal: laneController.signal };
    while (started < options.count && !options.signal?.aborted && gaveUp === undefined) {
      started += 1;
      const t0 = performance.now();
      const dropsBefore = drops;
      const id = randomUUID();
      const mark = sample?.send(id);
      const held = sample !== undefined && mark === undefined;
      try {
        laneCall.id = id;
        laneCall.loadRun = mark;
        await client.call(laneCall);
        const latency = performance.now() - t0;
        latencies.push(latency);
        histogram[bucketOf(latency)] = (histogram[bucketOf(latency)] ?? 0) + 1;
        completed += 1;
        sample?.replied(id, held, latency);
      } catch (err) {
        const { code } = toErrorShape(err);
        // Kept before onFailed reads its steps for its verdict.
        sample?.failed(id, held, code === 'cancelled');
        errors[code] = (errors[code] ?? 0) + 1;
        failed += 1;
        if (code !== 'cancelled' && (linkDown || drops !== dropsBefore)) failedByOutage += 1;
        options.onFailed?.(id, err);
      }
    }
    inFlight.delete(laneController);
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency, options.count) }, lane));
  } finally {
    clearInterval(timer);
    options.signal?.removeEventListener('abort', cancelInFlight);
    client.link.off('status', onLinkStatus);
  }
  const durationMs = performance.now() - begin;
  const sorted = latencies.sort((a, b) => a - b);
  const final = progress();
  options.onProgress(final);
  return {
    ...final,
    cancelled: Boolean(options.signal?.aborted),
    notSent: options.count - started,
    ...(drops > 0 || gaveUp !== undefined ? { brokerAway: { drops, failed: failedByOutage, notSent: options.count - started, ...(gaveUp ? { reason: gaveUp } : {}) } } : {}),
    errors,
    durationMs,
    throughput: ((completed + failed) / durationMs) * 1000,
    p50: latencyPercentile(sorted, 50),
    p95: latencyPercentile(sorted, 95),
    p99: latencyPercentile(sorted, 99),
    finishedAt: new Date().toISOString(),
    ...(sample ? { traceSample: { every: sample.every, inFull: sample.inFull, kept: sample.kept } } : {}),
  };
}
