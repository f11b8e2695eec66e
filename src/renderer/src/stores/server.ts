/** The embedded RPC server: its settings form and start/stop; its live state comes with the app state. */
import { defineStore } from 'pinia';
import { computed, reactive } from 'vue';
import type { ServerSettings } from '../../../shared/contract';
import { useClient } from '../injection';
import { useBusy } from './use-busy';
import { useAppStore } from './app';
import { DEFAULT_SERVER_SETTINGS } from '../../../shared/defaults';

export const useServerStore = defineStore('server', () => {
  const client = useClient();
  const app = useAppStore();
  const settings = reactive<ServerSettings>({ ...DEFAULT_SERVER_SETTINGS });
  const { active: busy, error, run } = useBusy();
  const view = computed(() => app.state?.server);
  // A server waiting for its broker to come back is still running as far as the user is concerned: it can be stopped.
  const running = computed(() => view.value?.state === 'running' || view.value?.state === 'reconnecting');

  async function start(): Promise<void> {
    await run(() => client.invoke('server.start', { ...settings }), 'Starting the server');
  }

  /** Whether the form differs from what the running server was started with: then Apply restarts it with the form. */
  const changed = computed(() => {
    const running = view.value?.settings;
    if (!running) return false;
    const keys = new Set([...Object.keys(running), ...Object.keys(settings)]) as Set<keyof ServerSettings>;
    return [...keys].some((key) => (running[key] ?? undefined) !== (settings[key] ?? undefined));
  });

  /** Restarts the running server with the form's settings (a new handler, more workers): one click, no stop-edit-start. */
  async function apply(): Promise<void> {
    await run(() => client.invoke('server.start', { ...settings }), 'Restarting the server');
  }

  async function stop(): Promise<void> {
    await run(() => client.invoke('server.stop', {}), 'Stopping the server');
  }

  return { settings, error, busy, view, running, changed, start, apply, stop };
});
