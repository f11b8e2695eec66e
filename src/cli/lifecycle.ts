/** How a long-running command stops: the first signal starts a bounded cleanup, repeats never cut it short, a third deliberate one forces the exit. */
import { constants as osConstants } from 'node:os';
import { withDeadline } from '../shared/deadline';
import { printable } from './run';

/** SIGPIPE stands for a reader that closed stdout or stderr (EPIPE): there is nobody left to serve. */
export type StopSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'SIGPIPE';

/** One thing to undo on the way out, named so a user can be told what was left when it could not be done. */
export interface CleanupTask {
  what: string;
  run: () => Promise<unknown>;
}

export interface StopOptions {
  /** how long the whole cleanup may take before the command gives up on what is left (default 20 s; capped at what a timer holds) */
  boundMs?: number;
  /** signals closer together than this count as one (a terminal's Ctrl-C reaches every process of the group, and npm forwards it again); default $BRIDGESCOPE_SIGNAL_ECHO_MS or 750 */
  echoWindowMs?: number;
  /** one line for the user (default: stderr, made printable) */
  write?: (line: string) => void;
  /** ends the process; tests replace it */
  exit?: (code: number) => void;
  signals?: readonly StopSignal[];
  /** the streams whose closing (EPIPE, EIO) stops the command; default stdout and stderr */
  outputs?: readonly NodeJS.WritableStream[];
}

/** `failed` names the tasks that threw; a command with failed tasks exits 1. */
export type CleanupOutcome = { state: 'clean'; failed: string[] } | { state: 'timed-out'; leftUndone: string[]; failed: string[] };

const DEFAULT_ECHO_WINDOW_MS = 750;

/** The exit code of a process ended by `signal`, as a shell reports it (130 for SIGINT, 143 for SIGTERM). */
export function signalExitCode(signal: StopSignal): number {
  return 128 + (osConstants.signals[signal] ?? 0);
}

function echoWindowFromEnv(): number {
  const fromEnv = Number(process.env.BRIDGESCOPE_SIGNAL_ECHO_MS);
  return process.env.BRIDGESCOPE_SIGNAL_ECHO_MS !== undefined && Number.isFinite(fromEnv) && fromEnv >= 0 ? fromEnv : DEFAULT_ECHO_WINDOW_MS;
}

/** Streams whose reader went away: every later write to them is dropped (Node would throw or emit again). */
const closedOutputs = new WeakSet<NodeJS.WritableStream>();
/** The StopSignals told when an output closes; the 'error' listener on each stream stays for the process's life. */
const outputWatchers = new Set<(signal: StopSignal) => void>();
const guardedOutputs = new WeakSet<NodeJS.WritableStream>();

function dropWrites(stream: NodeJS.WritableStream): void {
  if (closedOutputs.has(stream)) return;
  closedOutputs.add(stream);
  // Replaced on the stream itself, so every writer in the process (not only this module) stops writing to it.
  stream.write = ((...args: unknown[]): boolean => {
    const callback = args.find((arg): arg is () => void => typeof arg === 'function');
    callback?.();
    return true;
  }) as NodeJS.WritableStream['write'];
}

/** Makes a closed stdout or stderr harmless for the whole process (main.ts calls it first); StopSignals also turns it into a stop. */
export function guardOutputs(streams: readonly NodeJS.WritableStream[] = [process.stdout, process.stderr]): void {
  for (const stream of streams) guardOutput(stream);
}

/** A closed pipe (EPIPE) or a closed terminal (EIO) on an output stops the command; no write error ever crashes it. */
function guardOutput(stream: NodeJS.WritableStream): void {
  if (guardedOutputs.has(stream)) return;
  guardedOutputs.add(stream);
  stream.on('error', (err: NodeJS.ErrnoException) => {
    dropWrites(stream);
    const signal: StopSignal = err?.code === 'EIO' ? 'SIGHUP' : 'SIGPIPE';
    for (const watcher of [...outputWatchers]) watcher(signal);
  });
}

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
  /** the tasks not finished yet, by index: two tasks may share a name */
  private pending = new Map<number, string>();
  private cleaning = false;
  private readonly writeLine: (line: string) => void;
  private readonly exitWith: (code: number) => void;
  private readonly echoWindowMs: number;
  private readonly signals: readonly StopSignal[];
  private readonly listener = (signal: StopSignal): void => this.onSignal(signal);
  /**
   * Once a stop began, the process ends with process.exit when its work is done. Left to end by itself, Node closes its
   * handles first, the signal handlers with them, and a second Ctrl-C landing in that teardown (tens of ms on a loaded
   * machine) killed a cleanly stopped command with SIGINT (130, not 0). process.exit leaves the handlers in place.
   */
  private readonly exitWhenDone = (): void => {
    const code = Number(process.exitCode ?? 0);
    this.exitWith(Number.isInteger(code) ? code : 1);
  };
  private readonly outputClosed = (signal: StopSignal): void => this.onSignal(signal);

  constructor(private readonly options: StopOptions = {}) {
    this.writeLine = options.write ?? ((line) => process.stderr.write(`${printable(line)}\n`));
    this.exitWith = options.exit ?? ((code) => process.exit(code));
    this.echoWindowMs = options.echoWindowMs ?? echoWindowFromEnv();
    this.signals = options.signals ?? ['SIGINT', 'SIGTERM', 'SIGHUP'];
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
    for (const signal of this.signals) process.on(signal, this.listener);
    guardOutputs(options.outputs);
    outputWatchers.add(this.outputClosed);
  }

  /** One line for the user, through the writer this instance was given. */
  say(line: string): void {
    this.writeLine(line);
  }

  /** Ends the process through the exit this instance was given. */
  exit(code: number): void {
    this.exitWith(code);
  }

  /** Called for every signal; exposed for tests. */
  onSignal(signal: StopSignal, now = Date.now()): void {
    if (this.count > 0 && now - this.lastAt < this.echoWindowMs) return;
    this.count += 1;
    this.lastAt = now;
    if (this.count === 1) {
      // Only for the real exit (a test that gives its own never ends its process this way).
      if (this.options.exit === undefined) process.once('beforeExit', this.exitWhenDone);
      this.resolveStopped(signal);
      return;
    }
    const pending = [...this.pending.values()];
    if (this.count === 2) {
      const what = pending.length > 0 ? pending.join('; ') : 'finishing';
      this.say(`Still cleaning up (${what}). Press Ctrl-C once more to force the exit and leave that undone.`);
      return;
    }
    this.say(`Forced exit${pending.length > 0 ? `; left undone: ${pending.join('; ')}` : ''}.`);
    this.exit(signalExitCode(signal));
  }

  /** Runs the tasks in order, each once, under one deadline; what is still pending at the deadline is named, and what threw. */
  async cleanup(tasks: readonly CleanupTask[]): Promise<CleanupOutcome> {
    if (this.cleaning) throw new Error('cleanup already running');
    this.cleaning = true;
    this.pending = new Map(tasks.map((task, index) => [index, task.what]));
    const failed: string[] = [];
    const work = (async () => {
      for (const [index, task] of tasks.entries()) {
        try {
          await task.run();
        } catch (err) {
          failed.push(task.what);
          this.say(`warning: could not ${task.what}: ${(err as Error)?.message ?? String(err)}`);
        }
        this.pending.delete(index);
      }
    })();
    const result = await withDeadline(work, this.options.boundMs ?? 20_000);
    if (result.done) return { state: 'clean', failed: [...failed] };
    return { state: 'timed-out', leftUndone: [...this.pending.values()], failed: [...failed] };
  }

  /** What the cleanup has not finished yet. */
  get leftUndone(): readonly string[] {
    return [...this.pending.values()];
  }

  dispose(): void {
    for (const signal of this.signals) process.off(signal, this.listener);
    process.off('beforeExit', this.exitWhenDone);
    outputWatchers.delete(this.outputClosed);
  }
}

/**
 * The usual ending of a long-running command: wait for a signal, say so, run the cleanup; when it timed out or a task
 * failed, say what and exit 1 (open sockets would otherwise keep the process alive). A clean stop returns: exit 0.
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
    signals.say(`bridgescope: cleanup did not finish in time; left undone: ${outcome.leftUndone.join('; ')}.`);
    signals.exit(1);
  } else if (outcome.failed.length > 0) {
    signals.say(`bridgescope: stopped, but could not: ${outcome.failed.join('; ')}.`);
    signals.exit(1);
  }
  // The handlers stay: a late echo of the same Ctrl-C must not hit Node's default handler (they do not keep Node alive).
  return outcome;
}
