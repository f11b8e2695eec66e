/** The Load panel: fire N requests at concurrency C with the compose settings; live progress and the summary. */
import { defineStore } from 'pinia';
import { ref, shallowRef } from 'vue';
import type { LoadProgress, LoadSummary } from '../../../shared/contract';
import { useClient } from '../injection';
import { useBusy } from './use-busy';
import { useComposeStore } from './compose';

export const useLoadStore = defineStore('load', () => {
  const client = useClient();
  const compose = useComposeStore();
  const count = ref(1000);
  const concurrency = ref(10);
  // Replaced whole on each tick (4 per second), never mutated deep: shallow refs keep it cheap.
  const progress = shallowRef<LoadProgress>();
  const summary = shallowRef<LoadSummary>();
  const { active: running, error, run } = useBusy();

  function listen(): () => void {
    return client.on('load.progress.changed', (next) => {
      progress.value = next;
    });
  }

  async function start(): Promise<void> {
    summary.value = undefined;
    progress.value = undefined;
    await run(async () => {
      summary.value = await client.invoke('load.run.start', { ...compose.snapshot(), count: count.value, concurrency: concurrency.value });
    }, 'Running');
  }

  async function cancel(): Promise<void> {
    await run(() => client.invoke('load.run.cancel', {}), 'Cancelling');
  }

  return { count, concurrency, running, progress, summary, error, listen, start, cancel };
});
