/** A load run's outcome in words: each error code as a sentence, and cancelled requests apart from failed ones. */
import type { LoadSummary } from '../../shared/contract';
import { counted, formatCount } from '../../shared/describe';
import { DEFAULT_TRACE_MAX_RPCS } from '../../shared/defaults';

/** What happened to the requests of one error code, after "N request(s)". */
const WHAT: Record<string, string> = {
  timeout: 'got no reply within the timeout',
  unroutable: 'were routed nowhere by the broker (no queue bound for the request topic)',
  cancelled: 'were cancelled',
  'not-connected': 'could not be sent: there was no broker connection',
  unreachable: 'could not reach the broker',
  auth: "were refused by the broker's access control",
  'too-large': 'were larger than the broker accepts',
  'bad-input': 'were refused as invalid before sending',
  busy: 'were refused because the client was busy',
  'broker-failed': 'failed on the broker',
  'not-found': 'named something the broker does not have',
};

function requests(count: number): string {
  return counted(count, 'request');
}

/** Each failure code of a run as one sentence, most frequent first; cancelled requests are left to `cancelledText`. */
export function loadErrorSentences(errors: Record<string, number>): string[] {
  return Object.entries(errors)
    .filter(([code, count]) => code !== 'cancelled' && count > 0)
    .sort(([, a], [, b]) => b - a)
    .map(([code, count]) => {
      const what = WHAT[code] ?? `failed (${code})`;
      // "were" reads wrong for one request.
      return `${requests(count)} ${count === 1 ? what.replace(/^were /, 'was ') : what}.`;
    });
}

/** Requests that failed for a reason other than the user's cancel. */
export function failedNotCancelled(summary: Pick<LoadSummary, 'failed' | 'errors'>): number {
  return summary.failed - (summary.errors.cancelled ?? 0);
}

/** What a cancel left: the requests cut off in flight and those never sent; undefined when the run was not cancelled. */
export function cancelledText(summary: Pick<LoadSummary, 'cancelled' | 'errors' | 'notSent'>): string | undefined {
  if (!summary.cancelled) return undefined;
  const inFlight = summary.errors.cancelled ?? 0;
  const notSent = summary.notSent ?? 0;
  return `Cancelled: ${requests(inFlight)} in flight ${inFlight === 1 ? 'was' : 'were'} cut off, ${requests(notSent)} never sent.`;
}

/**
 * What the trace kept of a run, in one sentence: every request in full, or the requests traced in full, those kept
 * because they failed or were slow (without their messages), and how many it let go.
 */
export function traceSampleText(summary: Pick<LoadSummary, 'traceSample' | 'completed' | 'failed'>): string | undefined {
  const sample = summary.traceSample;
  if (!sample) return undefined;
  const held = sample.kept - sample.inFull;
  const letGo = Math.max(0, summary.completed + summary.failed - sample.kept);
  // Trace 1 in 1, or the firehose on: nothing was sampled.
  if (held === 0 && letGo === 0) return `The trace kept ${sample.inFull === 1 ? 'the request' : `all ${formatCount(sample.inFull)} requests`} in full.`;
  const kept = held > 0 ? `, and ${counted(held, 'other')} that failed or were slow, without their messages` : '';
  // The trace holds its last DEFAULT_TRACE_MAX_RPCS RPCs: a run that kept more has lost its earliest from it.
  const over = sample.kept > DEFAULT_TRACE_MAX_RPCS ? ` The trace holds its latest ${formatCount(DEFAULT_TRACE_MAX_RPCS)} RPCs: the run's earliest are gone from it (raise Trace 1 in to keep fewer).` : '';
  // Every request failed or was kept for its latency: nothing was let go, and the sentence does not say "0 other requests".
  const gone = letGo > 0 ? `; ${counted(letGo, 'other request')} ${letGo === 1 ? 'was' : 'were'} let go` : '';
  return `The trace kept ${counted(sample.inFull, 'request')} in full (1 in ${sample.every})${kept}${gone}.${over}`;
}
