/** Which panel is shown, and the one way across panels: opening an RPC in the Trace panel. */
import { defineStore } from 'pinia';
import { ref } from 'vue';
import { useTraceViewStore } from './trace-view';

/** The panels, in the order of the tab strip (App.vue labels each; a tab without a label does not compile). */
export const TABS = ['connections', 'server', 'compose', 'bindings', 'trace', 'load', 'watch'] as const;
export type Tab = (typeof TABS)[number];

export const useNavStore = defineStore('nav', () => {
  const trace = useTraceViewStore();
  const tab = ref<Tab>('connections');
  /** whether the user (or a panel acting for them) picked the panel: the app's own start-up guess never overrides that */
  const chosen = ref(false);

  /** Shows `next` because the user asked for it. */
  function show(next: Tab): void {
    chosen.value = true;
    tab.value = next;
  }

  /** The app's guess at start-up (Compose once a profile is connected): taken only if the user has not picked a panel yet. */
  function suggest(next: Tab): void {
    if (!chosen.value) tab.value = next;
  }

  /** Shows the Trace panel with `rpcId` selected (and listed, even if the search or the filter hid it). */
  function openInTrace(rpcId: string): void {
    trace.reveal(rpcId);
    show('trace');
  }

  return { tab, chosen, show, suggest, openInTrace };
});
