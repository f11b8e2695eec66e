/** The app's quit sequence, free of Electron so it can be tested: clean up once, bounded, and never let a second quit cut it short. */
import { withDeadline } from '../shared/deadline';

export interface QuitSequenceOptions {
  /** drains the server, restores tracing, closes the links, stops a sandbox the app started */
  cleanup: () => Promise<unknown>;
  /** ends the app for real (Electron's `app.exit`) */
  exit: (code: number) => void;
  /** the cleanup's deadline (capped at what a timer holds); past it, or when the cleanup failed, the app exits 1 and says what happened */
  boundMs?: number;
  log?: (line: string) => void;
}

export interface QuitSequence {
  /** for `before-quit`: returns true when the event must be prevented (the cleanup is still running) */
  onBeforeQuit: () => boolean;
  readonly done: Promise<void> | undefined;
}

export function createQuitSequence(options: QuitSequenceOptions): QuitSequence {
  let running: Promise<void> | undefined;
  let finished = false;
  const boundMs = options.boundMs ?? 20_000;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  return {
    get done() {
      return running;
    },
    onBeforeQuit() {
      if (finished) return false;
      running ??= (async () => {
        let failed = false;
        const cleanup = options.cleanup().catch((err: unknown) => {
          failed = true;
          log(`BridgeScope: cleanup on quit failed: ${(err as Error)?.message ?? String(err)}`);
        });
        const outcome = await withDeadline(cleanup, boundMs);
        finished = true;
        if (!outcome.done) log(`BridgeScope: cleanup on quit did not finish in ${Math.round(boundMs / 1000)} s; quitting anyway.`);
        // A step that failed may have left tracing on or a broker running: the exit code says so.
        options.exit(outcome.done && !failed ? 0 : 1);
      })();
      // Every quit while the cleanup runs (a second Cmd-Q, a signal) waits for it instead of cutting it short.
      return true;
    },
  };
}
