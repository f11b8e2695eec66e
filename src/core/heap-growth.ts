/**
 * How far V8 lets the heap of a long-running host (the `ui` host, the app's main process) grow past what is live. Under a stream of steps (the `ui` host with
 * the app's load run and the firehose on), V8's defaults let the old generation grow to about 4x what is live before a
 * full collection and the young generation to 128 MiB: measured over a 2-minute stream, about 78 MiB live in an RSS of
 * 500-750 MiB, still growing after the trace's caps were full (docs/PERFORMANCE.md). Two flags V8 reads as it goes, so
 * setting them at run time holds:
 * - the old generation grows by at most HEAP_GROWING_PERCENT past what the last full collection found live (more
 *   frequent, concurrent, full collections);
 * - the young generation stops growing once it reaches YOUNG_CAP_MIB (more frequent scavenges; measured, the host also
 *   went faster: 373 against 276-298 RPC/s through the page, its working set fitting the CPU's caches better).
 * Neither is a ceiling: a large trace import still gets all the memory it needs.
 */
import v8 from 'node:v8';
import { PerformanceObserver } from 'node:perf_hooks';

export const HEAP_GROWING_PERCENT = 25;
/** The young generation stops growing at this size, or at most one doubling past it (see `tightenHeapGrowth`). */
export const YOUNG_CAP_MIB = 16;

function youngGenerationBytes(): number {
  return v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
}

export function tightenHeapGrowth(percent = Number(process.env.BRIDGESCOPE_HEAP_GROWING_PERCENT ?? HEAP_GROWING_PERCENT)): void {
  if (!Number.isFinite(percent) || percent <= 0) return;
  v8.setFlagsFromString(`--heap-growing-percent=${Math.round(percent)}`);
  const capped = (): boolean => {
    if (youngGenerationBytes() < YOUNG_CAP_MIB * 1024 * 1024) return false;
    v8.setFlagsFromString('--semi-space-growth-factor=1');
    return true;
  };
  if (capped()) return;
  // The young generation grows (doubling) at a collection: looked at after each one, until it reaches the cap. The
  // observer runs a little after the collection, so a burst may take it one doubling past the cap.
  const observer = new PerformanceObserver((_list, self) => {
    if (capped()) self.disconnect();
  });
  observer.observe({ entryTypes: ['gc'] });
}
