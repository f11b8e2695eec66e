/** The bindings on the chosen exchange, refreshed live while shown, and the exchange probe's verdict. */
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { BindingsView } from '../../../shared/contract';
import type { ProbeVerdict } from '../../../shared/broker';
import { useClient } from '../injection';
import { useBusy } from './use-busy';

export const useBindingsStore = defineStore('bindings', () => {
  const client = useClient();
  const exchange = ref('amq.direct');
  const view = ref<BindingsView>();
  const probe = ref<ProbeVerdict>();
  const listing = useBusy();
  const probing = useBusy();
  // One line in the panel: the listing's failure, else the probe's (a successful poll no longer wipes a probe's error).
  const error = computed(() => listing.error.value ?? probing.error.value);

  async function refresh(): Promise<void> {
    await listing.run(async () => {
      view.value = await client.invoke('broker.bindings.list', { exchange: exchange.value });
    });
  }

  async function runProbe(): Promise<void> {
    await probing.run(async () => {
      probe.value = await client.invoke('broker.probe.run', {});
    });
  }

  /** Polls while the panel is shown; returns the stop function for onScopeDispose. */
  function watchLive(intervalMs = 2000): () => void {
    void refresh();
    const timer = setInterval(() => void refresh(), intervalMs);
    return () => clearInterval(timer);
  }

  return { exchange, view, loading: listing.active, error, probe, probing: probing.active, refresh, runProbe, watchLive };
});
