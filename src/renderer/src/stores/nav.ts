/** Which panel is shown, and the one way across panels: opening an RPC in the Trace panel. */
import { defineStore } from 'pinia';
import { ref } from 'vue';
import { useTraceStore } from './trace';

export type Tab = 'connections' | 'server' | 'compose' | 'bindings' | 'trace' | 'load';

export const useNavStore = defineStore('nav', () => {
  const trace = useTraceStore();
  const tab = ref<Tab>('connections');

  /** Shows the Trace panel with `rpcId` selected (and listed, even if the search or the filter hid it). */
  function openInTrace(rpcId: string): void {
    trace.reveal(rpcId);
    tab.value = 'trace';
  }

  return { tab, openInTrace };
});
