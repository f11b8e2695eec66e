/** The Load panel: fire N requests at concurrency C with the compose settings; live progress and the summary. */
import { defineStore } from 'pinia';
import { ref, shallowRef } from 'vue';
import type { LoadProgress, LoadSummary } from '../../../shared/contract';
import { messageOf, useClient } from '../injection';
import { useComposeStore } from './compose';

export const useLoadStore = defineStore('load', () => {
  const client = useClient();
  const compose = useComposeStore();
  const count = ref(1000);
  const concurrency = ref(10);
  const running = ref(false);
  // Replaced whole on each tick (4 per second), never mutated deep: shallow refs keep it cheap.
  const progress = shallowRef<LoadProgress>();
  const summary = shallowRef<LoadSummary>();
  const error = ref<string>();

  function listen(): () => void {
    return client.on('load.progress.changed', (next) => {
      progress.value = next;
    });
  }

  async function start(): Promise<void> {
    running.value = true;
    error.value = undefined;
    summary.value = undefined;
    progress.value = undefined;
    try {
      summary.value = await client.invoke('load.run.start', { ...compose.snapshot(), count: count.value, concurrency: concurrency.value });
    } catch (err) {
      error.value = messageOf(err);
    } finally {
      running.value = false;
    }
  }

  async function cancel(): Promise<void> {
    await client.invoke('load.run.cancel', {}).catch((err: unknown) => (error.value = messageOf(err)));
  }

  return { count, concurrency, running, progress, summary, error, listen, start, cancel };
});
