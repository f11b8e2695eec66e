/** How a long-running command stops: the first signal starts a bounded cleanup, repeats never cut it short, a third deliberate one forces the exit. */

export type StopSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP';

/** One thing to undo on the way out, named so a user can be told what was left when it could not be done. */
export interface CleanupTask {
  what: string;
  run: () => Promise<unknown>;
}

export interface StopOptions {
  /** how long the whole cleanup may take before the command gives up on what is left (default 20 s) */
  boundMs?: number;
  /** signals closer together than this count as one (a terminal's Ctrl-C reaches every process of the group, and npm forwards it again) */
  echoWindowMs?: number;
  write?: (line: string) => void;
  /** ends the process; tests replace it */
  exit?: (code: number) => void;
  signals?: readonly StopSignal[];
}

export type CleanupOutcome = { state: 'clean' } | { state: 'timed-out'; leftUndone: string[] };

/**
 * Installs its handlers at once (so a signal that arrives before `stopped` is awaited is not lost, and no signal ever
 * reaches Node's default handler, which would exit without cleaning up) and keeps them until `dispose()`.
 */
export class StopSignals {
  /** resolves with the first stop signal */
  readonly stopped: Promise<StopSignal>;
  private resolveStopped!: (signal: StopSignal) => void;
  private count = 0;
  private lastAt = 0;
  private pending: string[] = [];
  private cleaning = false;
  private readonly write: (line: string) => void;
  private readonly exit: (code: number) => void;
  private readonly echoWindowMs: number;
  private readonly signals: readonly StopSignal[];
  private readonly listener = (signal: StopSignal): void => this.onSignal(signal);

  constructor(private readonly options: StopOptions = {}) {
    this.write = options.write ?? ((line) => process.stderr.write(`${line}\n`));
    this.exit = options.exit ?? ((code) => process.exit(code));
    this.echoWindowMs = options.echoWindowMs ?? 750;
    this.signals = options.signals ?? ['SIGINT', 'SIGTERM', 'SIGHUP'];
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
    for (const signal of this.signals) process.on(signal, this.listener);
  }

  /** Called for every signal; exposed for tests. */
  onSignal(signal: StopSignal, now = Date.now()): void {
    if (this.count > 0 && now - this.lastAt < this.echoWindowMs) return;
    this.count += 1;
    this.lastAt = now;
    if (this.count === 1) {
      this.resolveStopped(signal);
      return;
    }
    if (this.count === 2) {
      const what = this.pending.length > 0 ? this.pending.join('; ') : 'finishing';
      this.write(`Still cleaning up (${what}). Press Ctrl-C once more to force the exit and leave that undone.`);
      return;
    }
    this.write(`Forced exit${this.pending.length > 0 ? `; left undone: ${this.pending.join('; ')}` : ''}.`);
    this.exit(130);
  }

  /** Runs the tasks in order, each once, under one deadline; what is still pending at the deadline is named. */
  async cleanup(tasks: readonly CleanupTask[]): Promise<CleanupOutcome> {
    if (this.cleaning) throw new Error('cleanup already running');
    this.cleaning = true;
    this.pending = tasks.map((task) => task.what);
    const boundMs = this.options.boundMs ?? 20_000;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timed-out'>((resolve) => {
      timer = setTimeout(() => resolve('timed-out'), boundMs);
    });
    const work = (async () => {
      for (const task of tasks) {
        try {
          await task.run();
        } catch (err) {
          this.write(`warning: could not ${task.what}: ${(err as Error)?.message ?? String(err)}`);
        }
        this.pending = this.pending.filter((what) => what !== task.what);
      }
      return 'clean' as const;
    })();
    const result = await Promise.race([work, deadline]);
    clearTimeout(timer);
    if (result === 'clean') return { state: 'clean' };
    return { state: 'timed-out', leftUndone: [...this.pending] };
  }

  /** What the cleanup has not finished yet. */
  get leftUndone(): readonly string[] {
    return this.pending;
  }

  dispose(): void {
    for (const signal of this.signals) process.off(signal, this.listener);
  }
}

/**
 * The usual ending of a long-running command: wait for a signal, say so, run the cleanup, and when it times out say
 * what was left and exit 1 (open sockets would otherwise keep the process alive).
 */
export async function runUntilStopped(
  signals: StopSignals,
  announce: (signal: StopSignal) => void,
  tasks: () => readonly CleanupTask[],
): Promise<CleanupOutcome> {
  const signal = await signals.stopped;
  announce(signal);
  const outcome = await signals.cleanup(tasks());
  if (outcome.state === 'timed-out') {
    process.stderr.write(`bridgescope: cleanup did not finish in time; left undone: ${outcome.leftUndone.join('; ')}.\n`);
    process.exit(1);
  }
  // The handlers stay: a late echo of the same Ctrl-C must not hit Node's default handler (they do not keep Node alive).
  return outcome;
}
