/** The bindings on the chosen exchange, refreshed live while shown, and the exchange probe's verdict. */
import { defineStore } from 'pinia';
import { ref } from 'vue';
import type { BindingsView } from '../../../shared/contract';
import type { ProbeVerdict } from '../../../shared/broker';
import { messageOf, useClient } from '../injection';

export const useBindingsStore = defineStore('bindings', () => {
  const client = useClient();
  const exchange = ref('amq.direct');
  const view = ref<BindingsView>();
  const loading = ref(false);
  const error = ref<string>();
  const probe = ref<ProbeVerdict>();
  const probing = ref(false);

  async function refresh(): Promise<void> {
    loading.value = true;
    try {
      view.value = await client.invoke('broker.bindings.list', { exchange: exchange.value });
      error.value = undefined;
    } catch (err) {
      error.value = messageOf(err);
    } finally {
      loading.value = false;
    }
  }

  async function runProbe(): Promise<void> {
    probing.value = true;
    try {
      probe.value = await client.invoke('broker.probe.run', {});
    } catch (err) {
      error.value = messageOf(err);
    } finally {
      probing.value = false;
    }
  }

  /** Polls while the panel is shown; returns the stop function for onScopeDispose. */
  function watchLive(intervalMs = 2000): () => void {
    void refresh();
    const timer = setInterval(() => void refresh(), intervalMs);
    return () => clearInterval(timer);
  }

  return { exchange, view, loading, error, probe, probing, refresh, runProbe, watchLive };
});
