import { flushPromises, mount } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import type { AppState, LoadSummary } from '../../src/shared/contract';
import ServerPanel from '../../src/renderer/src/components/server/ServerPanel.vue';
import TracePanel from '../../src/renderer/src/components/trace/TracePanel.vue';
import LoadPanel from '../../src/renderer/src/components/load/LoadPanel.vue';
import ConnectionsPanel from '../../src/renderer/src/components/connections/ConnectionsPanel.vue';
import { clientKey } from '../../src/renderer/src/injection';
import { useAppStore } from '../../src/renderer/src/stores/app';
import { fakeClient } from './fake-client';

const stats = { received: 3, replied: 3, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} };
const settings = { exchange: 'amq.direct', queue: 'rpc_queue', workers: 2, prefetch: 1, handler: 'echo' };
const profile = { name: 'Sandbox broker', amqpUrl: 'amqp://guest:***@127.0.0.1:5673', mqttUrl: 'mqtt://127.0.0.1:1884', managementUrl: 'http://guest:***@127.0.0.1:15673', vhost: '/', exchange: 'amq.direct' };

function appState(overrides: Partial<AppState>): AppState {
  return {
    mode: 'browser',
    sandbox: { state: 'running', urls: { amqp: profile.amqpUrl, mqtt: profile.mqttUrl, management: profile.managementUrl }, nodeName: 'bridgescope-1@localhost' },
    profile,
    links: { amqp: { state: 'reconnecting', since: 1, attempt: 2, lastError: 'ECONNREFUSED' }, mqtt: { state: 'reconnecting', since: 1, attempt: 2, lastError: 'ECONNREFUSED' } },
    tracer: { state: 'off' },
    server: { state: 'stopped', stats },
    ...overrides,
  };
}

function mountWith(component: object, state: AppState, answers: Parameters<typeof fakeClient>[0] = {}) {
  const pinia = createPinia();
  setActivePinia(pinia);
  const client = fakeClient({ 'profile.list': () => [], ...answers });
  const wrapper = mount(component, {
    global: { plugins: [pinia], provide: { [clientKey as symbol]: client }, stubs: { LoadCharts: true, TraceRpcList: true, TraceTimeline: true, TraceMapping: true } },
  });
  useAppStore().state = state;
  return { wrapper, client };
}

describe('panels after the broker went away', () => {
  it('the server panel says reconnecting with the reason, and still offers to stop the server', async () => {
    const message = 'The broker connection dropped (ECONNREFUSED); reconnecting, attempt 2.';
    const { wrapper } = mountWith(ServerPanel, appState({ server: { state: 'reconnecting', message, settings, stats } }));
    await flushPromises();
    expect(wrapper.find('[data-testid=server-state]').text()).toBe('State: reconnecting');
    expect(wrapper.find('[data-testid=server-message]').text()).toBe(message);
    expect(wrapper.find('[data-testid=server-toggle]').text()).toBe('Stop server');
  });

  it('the trace panel says why tracing is off, and shows the firehose as still wanted while it reconnects', async () => {
    const off = mountWith(TracePanel, appState({ tracer: { state: 'off', reason: 'Tracing could not start: access refused.' } }));
    await flushPromises();
    expect(off.wrapper.find('[data-testid=trace-tracer-note]').text()).toBe('Tracing could not start: access refused.');
    const reconnecting = mountWith(TracePanel, appState({ tracer: { state: 'reconnecting', since: 1, reason: 'the broker connection dropped (ECONNREFUSED)' } }));
    await flushPromises();
    expect(reconnecting.wrapper.find('[data-testid=trace-tracer-note]').text()).toBe('Firehose tracing is reconnecting: the broker connection dropped (ECONNREFUSED)');
    expect((reconnecting.wrapper.find('[data-testid=trace-firehose]').element as HTMLInputElement).checked).toBe(true);
  });

  it('the load summary says how many requests failed because the broker went away', async () => {
    const summary: LoadSummary = {
      count: 100,
      completed: 90,
      failed: 10,
      elapsedMs: 1000,
      histogram: { boundsMs: [1], counts: [90, 0] },
      series: [],
      cancelled: false,
      notSent: 0,
      brokerAway: { drops: 1, failed: 10, notSent: 0 },
      errors: { timeout: 10 },
      durationMs: 1000,
      throughput: 100,
      p50: 1,
      p95: 2,
      p99: 3,
      finishedAt: new Date(0).toISOString(),
    };
    const { wrapper } = mountWith(LoadPanel, appState({}), { 'load.run.start': () => summary });
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(wrapper.find('[data-testid=load-broker-away]').text()).toBe('The broker went away once during the run: 10 requests failed because of it.');
  });

  it('the connections card shows the node stopped outside the app, with the sentence', async () => {
    const message = 'The sandbox broker is not running (it was stopped outside the app); start it again to reconnect.';
    const { wrapper } = mountWith(ConnectionsPanel, appState({ sandbox: { state: 'stopped', message, urls: { amqp: profile.amqpUrl, mqtt: profile.mqttUrl, management: profile.managementUrl } } }));
    await flushPromises();
    expect(wrapper.find('[data-testid=sandbox-state]').text()).toContain('State: stopped');
    expect(wrapper.find('[data-testid=sandbox-message]').text()).toBe(message);
    expect(wrapper.find('[data-testid=sandbox-start]').text()).toBe('Start sandbox broker');
  });
});
