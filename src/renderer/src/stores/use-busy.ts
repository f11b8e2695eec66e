/** The busy/error pattern every store shares: what is running, and the one sentence of the last failure. */
import { computed, ref, type ComputedRef, type Ref } from 'vue';
import { messageOf } from '../injection';

export interface Busy {
  /** the label of the newest attempt still running; undefined when nothing runs */
  label: Ref<string | undefined>;
  /** whether any attempt is running */
  active: ComputedRef<boolean>;
  /** the last failure's sentence, until the next attempt settles */
  error: Ref<string | undefined>;
  /** Runs `work`; resolves to its result, or to undefined after recording its failure in `error` (it never rejects). */
  run<T>(work: () => Promise<T>, label?: string): Promise<T | undefined>;
}

/**
 * The reset rule, the same in every store: an error stays until the next attempt settles. That attempt's
 * success clears it and its failure replaces it; it is not blanked while the attempt runs, so a polled view
 * does not flicker and a retried action keeps saying what went wrong until it knows better.
 */
export function useBusy(): Busy {
  const label = ref<string>();
  const error = ref<string>();
  const running = ref(0);

  async function run<T>(work: () => Promise<T>, name = 'Working'): Promise<T | undefined> {
    running.value += 1;
    label.value = name;
    try {
      const result = await work();
      error.value = undefined;
      return result;
    } catch (err) {
      error.value = messageOf(err);
      return undefined;
    } finally {
      running.value -= 1;
      if (running.value === 0) label.value = undefined;
    }
  }

  return { label, active: computed(() => running.value > 0), error, run };
}
