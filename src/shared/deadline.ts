/** The one way to wait for something at most so long: a deadline that never overflows a timer and never outlives the wait. */
import { MAX_TIMER_MS } from './durations';

export type Deadlined<T> = { done: true; value: T } | { done: false };

/** A delay a timer really holds: past MAX_TIMER_MS Node would fire after 1 ms, so longer waits are capped there. */
export function timerMs(ms: number): number {
  return Math.min(Math.max(0, ms), MAX_TIMER_MS);
}

/** Waits for `work` or the deadline, whichever comes first; a rejection of `work` passes through, the timer is always cleared. */
export async function withDeadline<T>(work: Promise<T>, ms: number): Promise<Deadlined<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<Deadlined<T>>((resolve) => {
    timer = setTimeout(() => resolve({ done: false }), timerMs(ms));
  });
  try {
    return await Promise.race([work.then((value): Deadlined<T> => ({ done: true, value })), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
