/** The bindings on the chosen exchange, refreshed live while shown, and the exchange probe's verdict. */
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { BindingsView } from '../../../shared/contract';
import type { ProbeVerdict } from '../../../shared/broker';
import { useClient } from '../injection';
import { useBusy } from './use-busy';
import { DEFAULT_MQTT_EXCHANGE } from '../../../shared/defaults';

export interface SeenBinding {
  bindingKey: string;
  destination: string;
  mqttClientId?: string;
  /** when a poll first and last saw it, and the first poll that did not */
  firstSeen: number;
  lastSeen: number;
  goneAt?: number;
}

export const useBindingsStore = defineStore('bindings', () => {
  const client = useClient();
  const exchange = ref(DEFAULT_MQTT_EXCHANGE);
  const view = ref<BindingsView>();
  /** every binding the polls have seen on this exchange, with when: a per-request reply binding is often gone by the next look */
  const seen = ref(new Map<string, SeenBinding>());
  let seenOn: string | undefined;
  const probe = ref<ProbeVerdict>();
  const listing = useBusy();
  const probing = useBusy();
  // One line in the panel: the listing's failure, else the probe's (a successful poll no longer wipes a probe's error).
  const error = computed(() => listing.error.value ?? probing.error.value);

  async function refresh(): Promise<void> {
    await listing.run(async () => {
      const next = await client.invoke('broker.bindings.list', { exchange: exchange.value });
      remember(next, Date.now());
      view.value = next;
    });
  }

  function remember(next: BindingsView, at: number): void {
    // What was seen on another exchange says nothing about this one.
    const map = seenOn === next.exchange ? new Map(seen.value) : new Map<string, SeenBinding>();
    seenOn = next.exchange;
    const present = new Set<string>();
    for (const binding of next.bindings) {
      const key = `${binding.destination}\u0000${binding.bindingKey}`;
      present.add(key);
      const before = map.get(key);
      map.set(key, { bindingKey: binding.bindingKey, destination: binding.destination, mqttClientId: binding.mqttClientId, firstSeen: before && before.goneAt === undefined ? before.firstSeen : at, lastSeen: at });
    }
    for (const [key, binding] of map) if (!present.has(key) && binding.goneAt === undefined) map.set(key, { ...binding, goneAt: at });
    seen.value = map;
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

  return { exchange, view, seen, remember, loading: listing.active, error, probe, probing: probing.active, refresh, runProbe, watchLive };
});
