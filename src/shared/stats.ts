/** Latency arithmetic shared by load runs and the benchmark: one definition of a percentile. */

/** The nearest-rank percentile of an ascending list; undefined for an empty list, so each caller decides what "no data" shows as. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
