/**
 * The steps that come after a verdict: an RPC's later steps, watched by id through one store listener, and the late
 * reply that changes a failure's verdict. Compose's sends and a load run's failed requests share them.
 */
import { lateBecauseNoConsumer, type Verdict } from '../../shared/diagnosis';
import type { TraceStep, TraceStepDraft } from '../../shared/trace';

/** Every step the trace store adds from now on (returns the unsubscribe). */
export type OnStep = (listener: (step: TraceStep) => void) => () => void;

/** A failure's verdicts that a reply published later can change (a slow server, no consumer yet, a refusal). */
export const REVISABLE_BY_LATE_REPLY: ReadonlySet<Verdict['code']> = new Set<Verdict['code']>(['server-slow', 'undetermined', 'no-consumer', 'reply-refused']);

/** How long after a failure a late reply still revises its verdict, unless told otherwise. */
export const DEFAULT_LATE_WATCH_MS = 60_000;

export class StepWatches {
  /** the RPCs whose later steps are watched, by id: one store listener for them all */
  private readonly watched = new Map<string, Set<(step: TraceStep) => void>>();
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly onStep: OnStep | undefined,
    private readonly steps: (rpcId: string) => TraceStep[],
  ) {}

  /**
   * Calls `listener` with every step of `rpcId` added from now on; returns the unsubscribe (undefined when the store
   * tells no steps). Each step is looked up once, by id, however many RPCs are watched (a load run's failures, Compose's
   * sends within a minute). The steps added since `seen` was read (while its verdict was decided) came before this
   * subscription: they are handed to the listener first.
   */
  watch(rpcId: string, listener: (step: TraceStep) => void, seen?: ReadonlyArray<TraceStep | TraceStepDraft>): (() => void) | undefined {
    const onStep = this.onStep;
    if (!onStep) return undefined;
    if (seen !== undefined) {
      const known = new Set(seen.map((step) => (step as Partial<TraceStep>).seq));
      const missed = this.steps(rpcId).filter((step) => !known.has(step.seq));
      if (missed.length > 0) queueMicrotask(() => missed.forEach(listener));
    }
    let listeners = this.watched.get(rpcId);
    if (!listeners) {
      listeners = new Set();
      this.watched.set(rpcId, listeners);
    }
    listeners.add(listener);
    this.unsubscribe ??= onStep((step) => {
      const watchers = this.watched.get(step.rpcId);
      if (watchers !== undefined) for (const watcher of watchers) watcher(step);
    });
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.watched.get(rpcId) === listeners) this.watched.delete(rpcId);
      if (this.watched.size === 0) {
        this.unsubscribe?.();
        this.unsubscribe = undefined;
      }
    };
  }

  /** how many RPCs are watched now */
  get size(): number {
    return this.watched.size;
  }
}

/** Whether a verdict decided again says something new: another code, sentence or evidence. */
function saysSomethingNew(revised: Verdict, last: Verdict): boolean {
  return revised.code !== last.code || revised.message !== last.message || !sameLines(revised.evidence, last.evidence);
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, index) => line === b[index]);
}

export interface Revision {
  /** the steps the first verdict read (the ones added since are looked at too; not kept after the watch starts) */
  seen: ReadonlyArray<TraceStep | TraceStepDraft>;
  /** the steps that may change the verdict (each burst of them is decided once, after the burst) */
  tells: (step: TraceStep) => boolean;
  /** the step after which nothing more can change it (its burst is decided, then the watch ends) */
  ends?: (step: TraceStep) => boolean;
  /** the verdict again, from the RPC's steps now (no broker question: the new steps are the news) */
  decide: (steps: TraceStep[]) => Verdict | Promise<Verdict>;
  /** whether the steps are still the whole RPC (an RPC evicted from the trace comes back with later steps only) */
  whole?: (steps: TraceStep[]) => boolean;
  addVerdict: (rpcId: string, verdict: Verdict) => void;
  /** the RPC's steps now */
  steps: (rpcId: string) => TraceStep[];
  /** how long steps are waited for (default DEFAULT_LATE_WATCH_MS) */
  forMs?: number;
  /** how many new verdicts at most (each is a step of the RPC) */
  maxRevisions?: number;
}

/**
 * Decides an RPC's verdict again as the steps that may change it arrive, once per burst of them, and adds it as the
 * RPC's last step when it says something new (another code, sentence or evidence). Decisions that overtake each other
 * (an asynchronous `decide`) keep the newest. Ends at `ends`, after `maxRevisions` new verdicts, or after `forMs`.
 */
export function reviseAsStepsCome(watches: StepWatches, rpcId: string, first: Verdict, revision: Revision): void {
  const { tells, ends, decide, whole, addVerdict, steps } = revision;
  const maxRevisions = revision.maxRevisions ?? Number.POSITIVE_INFINITY;
  let last = first;
  let revisions = 0;
  let done = false;
  let scheduled = false;
  let ending = false;
  let asked = 0;
  let newestAnswered = 0;
  const finish = (): void => {
    done = true;
    clearTimeout(timer);
    unsubscribe?.();
  };
  const decideNow = (): void => {
    scheduled = false;
    if (done) return;
    const endsAfter = ending;
    asked += 1;
    const mine = asked;
    const now = steps(rpcId);
    if (whole !== undefined && !whole(now)) return finish();
    void Promise.resolve()
      .then(() => decide(now))
      .then((revised) => {
        if (done || mine < newestAnswered) return;
        newestAnswered = mine;
        if (saysSomethingNew(revised, last)) {
          last = revised;
          revisions += 1;
          addVerdict(rpcId, revised);
        }
        if (endsAfter || revisions >= maxRevisions) finish();
      })
      .catch(() => undefined);
  };
  const unsubscribe = watches.watch(
    rpcId,
    (step) => {
      if (done || !tells(step)) return;
      if (ends?.(step)) ending = true;
      if (scheduled) return;
      scheduled = true;
      setImmediate(decideNow);
    },
    revision.seen,
  );
  if (!unsubscribe) return;
  const timer = setTimeout(finish, revision.forMs ?? DEFAULT_LATE_WATCH_MS);
  timer.unref();
}

/** The steps that say a reply was published after all, or what became of it (the server's confirm: routed, returned). */
function tellsOfLateReply(step: TraceStep): boolean {
  return step.kind === 'reply.published' || step.kind === 'reply.confirmed' || (step.kind === 'broker.published' && step.detail.leg === 'reply');
}

/** The server's confirm that settles its reply: routed or returned (a nacked one is published again when its request comes back). */
function replySettled(step: TraceStep): boolean {
  return step.kind === 'reply.confirmed' && (step.detail.outcome === 'routed' || step.detail.outcome === 'returned');
}

/** An RPC of ours still whole in the trace: its request is there (evicted, it would come back with later steps only). */
function stillWhole(steps: TraceStep[]): boolean {
  return steps.some((step) => step.kind === 'composed');
}

/**
 * A slow server's reply is often published after the client gave up and the verdict was given (`server-slow`, `no
 * consumer` while the workers were away): when the server's or the broker's record of that reply arrives, the verdict
 * is decided again from the steps alone and added when it says something new, so Trace and History show what really
 * happened; the server's confirm (the reply routed, or returned because nobody listened any more) decides it once more
 * and ends the watch. A server that confirms nothing we see (another team's) is watched until `forMs`.
 */
export function reviseOnLateReply(
  watches: StepWatches,
  rpcId: string,
  first: Verdict,
  revision: Pick<Revision, 'seen' | 'decide' | 'addVerdict' | 'steps' | 'forMs'>,
): void {
  reviseAsStepsCome(watches, rpcId, first, { ...revision, tells: tellsOfLateReply, ends: replySettled, whole: stillWhole, maxRevisions: MAX_LATE_REVISIONS });
}

/** New verdicts at most for a failure's late reply: the reply's records, then its confirm. */
const MAX_LATE_REVISIONS = 3;

/**
 * A failed call's verdict decided again: a late reply to a request nobody consumed when the call gave up (its first
 * verdict: no consumer) says the workers came late, not that one was slow (raising the timeout is not the remedy).
 */
export function lateReplyTold(first: Verdict, revised: Verdict, steps: readonly TraceStep[], request: { topic: string; timeoutMs: number }): Verdict {
  if (first.code !== 'no-consumer' || revised.code !== 'late-reply') return revised;
  const sent = steps.find((step) => step.kind === 'composed')?.at;
  const answered = steps.find((step) => step.kind === 'reply.published' || (step.kind === 'broker.published' && step.detail.leg === 'reply'))?.at;
  const afterMs = sent !== undefined && answered !== undefined ? answered - sent : undefined;
  return lateBecauseNoConsumer(revised, { topic: request.topic, ...(afterMs !== undefined ? { afterMs } : {}), waited: 'the timeout', timeoutMs: request.timeoutMs, whoGaveUp: 'the call' });
}
