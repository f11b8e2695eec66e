/** The Load panel: fire N requests at concurrency C with the compose settings; live progress and the summary. */
import { defineStore } from 'pinia';
import { computed, ref, shallowRef } from 'vue';
import type { LoadProgress, LoadSummary } from '../../../shared/contract';
import { useClient } from '../injection';
import { useBusy } from './use-busy';
import { useComposeStore } from './compose';
import { useTraceViewStore } from './trace-view';
import { concurrencyProblem, countProblem } from '../form-checks';

export const useLoadStore = defineStore('load', () => {
  const client = useClient();
  const compose = useComposeStore();
  const trace = useTraceViewStore();
  const count = ref(1000);
  const concurrency = ref(10);
  // Replaced whole on each tick (4 per second), never mutated deep: shallow refs keep it cheap.
  const progress = shallowRef<LoadProgress>();
  const summary = shallowRef<LoadSummary>();
  const { active: running, error, run } = useBusy();
  /** Cancel was clicked for the run in progress: its failures from now on are mostly the cancel's */
  const cancelling = ref(false);
  const countError = computed(() => countProblem(count.value as number | string));
  const concurrencyError = computed(() => concurrencyProblem(concurrency.value as number | string));
  const blocked = computed(() => compose.blocked || countError.value !== undefined || concurrencyError.value !== undefined);

  function listen(): () => void {
    return client.on('load.progress.changed', (next) => {
      progress.value = next;
    });
  }

  async function start(): Promise<void> {
    if (running.value || blocked.value) return;
    summary.value = undefined;
    progress.value = undefined;
    cancelling.value = false;
    // The trace marks the RPCs that appear while the run goes as the run's (its filter by origin).
    trace.loadActive = true;
    try {
      await run(async () => {
        summary.value = await client.invoke('load.run.start', { ...compose.snapshot(), count: count.value, concurrency: concurrency.value });
      }, 'Running');
    } finally {
      trace.loadActive = false;
      cancelling.value = false;
    }
  }

  async function cancel(): Promise<void> {
    cancelling.value = true;
    await run(() => client.invoke('load.run.cancel', {}), 'Cancelling');
  }

  return { count, concurrency, countError, concurrencyError, blocked, running, cancelling, progress, summary, error, listen, start, cancel };
});
