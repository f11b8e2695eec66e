/**
 * The steps that come after a verdict: an RPC's later steps, watched by id through one store listener, and the late
 * reply that changes a failure's verdict. Compose's sends and a load run's failed requests share them.
 */
import type { Verdict } from '../../shared/diagnosis';
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

export interface LateReplyRevision {
  /** the steps the first verdict read (the ones added since are looked at too) */
  seen: ReadonlyArray<TraceStep | TraceStepDraft>;
  /** the verdict again, from the RPC's steps now (no broker question: the late reply is the news) */
  decide: (steps: TraceStep[]) => Verdict | Promise<Verdict>;
  addVerdict: (rpcId: string, verdict: Verdict) => void;
  /** the RPC's steps now */
  steps: (rpcId: string) => TraceStep[];
  /** how long a late reply is waited for (default DEFAULT_LATE_WATCH_MS) */
  forMs?: number;
}

/** The steps that say a reply was published after all, or what became of it (the server's confirm: routed, returned). */
function tellsOfLateReply(step: TraceStep): boolean {
  return step.kind === 'reply.published' || step.kind === 'reply.confirmed' || (step.kind === 'broker.published' && step.detail.leg === 'reply');
}

/**
 * A slow server's reply is often published after the client gave up and the verdict was given (`server-slow`, `no
 * consumer` while the workers were away): when the server's or the broker's record of that reply arrives, the verdict
 * is decided again from the steps alone and added as the RPC's last step when it changes, so Trace and History show
 * what really happened; the server's confirm (the reply routed, or returned because nobody was subscribed any more)
 * decides it once more and ends the watch. A burst of steps is decided once, after the burst.
 */
export function reviseOnLateReply(watches: StepWatches, rpcId: string, first: Verdict, revision: LateReplyRevision): void {
  let last = first;
  let done = false;
  let scheduled = false;
  let confirmed = false;
  const finish = (): void => {
    done = true;
    clearTimeout(timer);
    unsubscribe?.();
  };
  const decide = (): void => {
    scheduled = false;
    if (done) return;
    const ending = confirmed;
    void Promise.resolve()
      .then(() => revision.decide(revision.steps(rpcId)))
      .then((revised) => {
        if (done) return;
        if (revised.code !== last.code) {
          last = revised;
          revision.addVerdict(rpcId, revised);
        }
        if (ending) finish();
      })
      .catch(() => undefined);
  };
  const unsubscribe = watches.watch(
    rpcId,
    (step) => {
      if (done || !tellsOfLateReply(step)) return;
      if (step.kind === 'reply.confirmed') confirmed = true;
      if (scheduled) return;
      scheduled = true;
      setImmediate(decide);
    },
    revision.seen,
  );
  if (!unsubscribe) return;
  const timer = setTimeout(finish, revision.forMs ?? DEFAULT_LATE_WATCH_MS);
  timer.unref();
}
