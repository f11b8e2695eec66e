/** Connection state: the sandbox broker, the profile in use, the links' status, saved profiles. */
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { AppState, ConnectionProfile, ConnectionTestLine, ProfileSummary } from '../../../shared/contract';
import { useClient } from '../injection';
import { hasHostLink, type HostLinkState } from '../host-link';
import { useBusy } from './use-busy';
import { DEFAULT_MQTT_EXCHANGE, DEFAULT_VHOST } from '../../../shared/defaults';

export const useAppStore = defineStore('app', () => {
  const client = useClient();
  const state = ref<AppState>();
  const profiles = ref<ProfileSummary[]>([]);
  /** the last Test connection's lines, with the profile name they were for */
  const testResult = ref<{ profile: string; lines: ConnectionTestLine[] }>();
  // busy: the label of what runs ('Connecting'), for the Connections panel to say.
  const { label: busy, error, run: attempt } = useBusy();
  const ready = computed(() => state.value !== undefined);
  const connected = computed(() => state.value?.links.mqtt.state === 'connected' && state.value.links.amqp.state === 'connected');

  /** browser mode: whether the page still reaches `bridgescope ui`; while it does not, nothing else shown is known to be true */
  const host = ref<HostLinkState>(hasHostLink(client) ? client.hostLink() : { state: 'up' });
  const hostDown = computed(() => host.value.state === 'down');

  const run = <T>(label: string, work: () => Promise<T>): Promise<T | undefined> => attempt(work, label);

  async function load(): Promise<() => void> {
    const unsubscribe = client.on('app.state.changed', (next) => {
      state.value = next;
    });
    const refresh = () =>
      run('Loading', async () => {
        state.value = await client.invoke('app.state.get', {});
        profiles.value = await client.invoke('profile.list', {});
      });
    // Back from a host that went away: what it says now replaces what the page last heard.
    const offHost = hasHostLink(client)
      ? client.onHostLink((next) => {
          const wasDown = host.value.state === 'down';
          host.value = next;
          if (wasDown && next.state === 'up') void refresh();
        })
      : () => undefined;
    await refresh();
    return () => {
      unsubscribe();
      offHost();
    };
  }

  const startSandbox = () =>
    run('Starting the sandbox broker', async () => {
      const sandbox = await client.invoke('broker.sandbox.start', {});
      if (sandbox.urls) {
        state.value = await client.invoke('connection.open', {
          profile: { name: 'Sandbox broker', amqpUrl: sandbox.urls.amqp, mqttUrl: sandbox.urls.mqtt, managementUrl: sandbox.urls.management, vhost: DEFAULT_VHOST, exchange: DEFAULT_MQTT_EXCHANGE },
        });
      }
    });

  const connect = (profile: ConnectionProfile) =>
    run('Connecting', async () => {
      state.value = await client.invoke('connection.open', { profile });
    });

  const disconnect = () =>
    run('Disconnecting', async () => {
      state.value = await client.invoke('connection.close', {});
    });

  /** "Saved the profile X." after a save, until the next save or another profile action. */
  const profileSaved = ref<string>();
  const saveProfile = (profile: ConnectionProfile) => {
    profileSaved.value = undefined;
    return run('Saving', async () => {
      profiles.value = await client.invoke('profile.save', { profile });
      profileSaved.value = profile.name;
    });
  };

  const deleteProfile = (name: string) =>
    run('Deleting', async () => {
      profileSaved.value = undefined;
      profiles.value = await client.invoke('profile.delete', { name });
    });

  const loadProfile = (name: string) => run('Loading the profile', () => client.invoke('profile.load', { name }));

  /** Tries every URL of the profile apart from the open connection; the lines replace the last test's. */
  const testConnection = (profile: ConnectionProfile) =>
    run('Testing the connection', async () => {
      testResult.value = undefined;
      testResult.value = { profile: profile.name, lines: await client.invoke('connection.test', { profile }) };
    });

  return {
    state,
    host,
    hostDown,
    profiles,
    testResult,
    busy,
    error,
    ready,
    connected,
    load,
    startSandbox,
    connect,
    disconnect,
    saveProfile,
    profileSaved,
    deleteProfile,
    loadProfile,
    testConnection,
  };
});
