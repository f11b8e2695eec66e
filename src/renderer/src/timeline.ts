/** One RPC's steps as the timeline lists them: in the path's order, each with its offset, the delta from the step above, and a note where the clocks disagree. */
import type { TraceStep } from '../../shared/trace';
import { clockNote, describeStep } from '../../shared/describe';

export interface TimelineRow {
  step: TraceStep;
  /** ms since the earliest step */
  offset: number;
  /** ms since the step above (0 for the first) */
  delta: number;
  text: string;
  warn: boolean;
  /** set when this step carries an earlier time than the step above: why the times do not read top to bottom */
  clockNote?: string;
}

export interface Timeline {
  rows: TimelineRow[];
  /** ms from the earliest to the latest step */
  totalMs: number;
  /** how many rows carry a time earlier than the row above */
  outOfOrder: number;
}

/** Steps come in the path's order (src/shared/trace.ts stepPhase); the verdict is a conclusion above the timeline, not a step on it. */
export function timelineOf(steps: TraceStep[]): Timeline {
  const path = steps.filter((step) => step.kind !== 'rpc.diagnosed');
  if (path.length === 0) return { rows: [], totalMs: 0, outOfOrder: 0 };
  const first = Math.min(...path.map((step) => step.at));
  const last = Math.max(...path.map((step) => step.at));
  let outOfOrder = 0;
  const rows = path.map((step, index): TimelineRow => {
    const above = path[index - 1];
    const delta = above ? step.at - above.at : 0;
    const warn =
      (step.kind === 'broker.published' && (step.detail.routedQueues.length === 0 || step.detail.matchesPrediction === false)) ||
      (step.kind === 'mqtt.reply.received' && step.detail.topicMismatch) ||
      (step.kind === 'reply.confirmed' && step.detail.outcome !== 'routed') ||
      (step.kind === 'mqtt.acknowledged' && step.detail.acknowledgedAs < step.detail.qosAsked) ||
      step.kind === 'request.rejected' ||
      step.kind === 'mqtt.reply.ignored' ||
      step.kind === 'rpc.failed';
    const row: TimelineRow = { step, offset: step.at - first, delta, text: describeStep(step), warn };
    if (above && delta < 0) {
      outOfOrder += 1;
      row.clockNote = clockNote(step, above, -delta);
    }
    return row;
  });
  return { rows, totalMs: last - first, outOfOrder };
}

/** A delta as the column shows it: +3 ms, −2 ms (a true minus sign), 0 ms. */
export function formatDelta(ms: number): string {
  if (ms === 0) return '0 ms';
  return `${ms > 0 ? '+' : '−'}${Math.abs(ms)} ms`;
}
