/** The embedded RPC server: its settings form and start/stop; its live state comes with the app state. */
import { defineStore } from 'pinia';
import { computed, reactive, ref } from 'vue';
import type { ServerSettings } from '../../../shared/contract';
import { messageOf, useClient } from '../injection';
import { useAppStore } from './app';

export const useServerStore = defineStore('server', () => {
  const client = useClient();
  const app = useAppStore();
  const settings = reactive<ServerSettings>({ exchange: 'amq.direct', queue: 'rpc_queue', workers: 2, prefetch: 1, handler: 'echo' });
  const error = ref<string>();
  const busy = ref(false);
  const view = computed(() => app.state?.server);
  // A server waiting for its broker to come back is still running as far as the user is concerned: it can be stopped.
  const running = computed(() => view.value?.state === 'running' || view.value?.state === 'reconnecting');

  async function start(): Promise<void> {
    busy.value = true;
    error.value = undefined;
    try {
      await client.invoke('server.start', { ...settings });
    } catch (err) {
      error.value = messageOf(err);
    } finally {
      busy.value = false;
    }
  }

  async function stop(): Promise<void> {
    busy.value = true;
    try {
      await client.invoke('server.stop', {});
    } catch (err) {
      error.value = messageOf(err);
    } finally {
      busy.value = false;
    }
  }

  return { settings, error, busy, view, running, start, stop };
});
