/** Waiting for the trace store, by its own event (no polling, no sleeps). */
import type { TraceStore } from '../../src/core/trace/trace-store';
import type { TraceStep } from '../../src/shared/trace';

/** Resolves with the first step of the store that satisfies `done`, already there or added later. */
export function waitForStep(store: TraceStore, done: (step: TraceStep) => boolean): Promise<TraceStep> {
  const seen = store.allSteps().find(done);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const onAdded = (step: TraceStep): void => {
      if (!done(step)) return;
      store.off('added', onAdded);
      resolve(step);
    };
    store.on('added', onAdded);
  });
}
