/** The embedded server's log in the Server panel (issue 26): per request the handler's outcome, and every problem; an RPC id opens it in Trace. */
import { flushPromises, mount } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import type { AppState } from '../../src/shared/contract';
import ServerPanel from '../../src/renderer/src/components/server/ServerPanel.vue';
import { clientKey } from '../../src/renderer/src/injection';
import { useAppStore } from '../../src/renderer/src/stores/app';
import { useNavStore } from '../../src/renderer/src/stores/nav';
import { useTraceViewStore } from '../../src/renderer/src/stores/trace-view';
import { useServerStore } from '../../src/renderer/src/stores/server';
import { fakeClient } from './fake-client';

const stats = { received: 2, replied: 1, failed: 1, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} };
const settings = { exchange: 'amq.direct', queue: 'rpc_queue', workers: 2, prefetch: 1, handler: 'echo' };

function mountWith(server: AppState['server']) {
  const pinia = createPinia();
  setActivePinia(pinia);
  const wrapper = mount(ServerPanel, { global: { plugins: [pinia], provide: { [clientKey as symbol]: fakeClient({}) } } });
  useAppStore().state = { mode: 'browser', sandbox: { state: 'stopped' }, links: { amqp: { state: 'idle' }, mqtt: { state: 'idle' } }, tracer: { state: 'off' }, server } as AppState;
  return wrapper;
}

describe('the Server panel\'s log', () => {
  it('lists the handler\'s outcome per request and the problems, newest first; a request opens in Trace', async () => {
    const wrapper = mountWith({
      state: 'running',
      settings,
      stats,
      log: [
        { at: 3, rpcId: 'r3', worker: 'w1', outcome: 'problem', text: 'The handler did not answer r3 within 30000 ms.' },
        { at: 2, rpcId: 'r2', worker: 'w2', outcome: 'error', text: 'answered with error -32601 in 5 ms' },
        { at: 1, rpcId: 'r1', worker: 'w1', outcome: 'result', text: 'answered in 2 ms' },
      ],
    });
    await flushPromises();
    const rows = wrapper.findAll('[data-testid=server-log-row]');
    expect(rows.map((row) => [row.attributes('data-outcome'), row.text().includes(row.attributes('data-rpc-id') ?? '?')])).toEqual([
      ['problem', true],
      ['error', true],
      ['result', true],
    ]);
    expect(rows[1]!.text()).toContain('answered with error -32601 in 5 ms');
    await rows[1]!.find('[data-testid=server-log-open]').trigger('click');
    expect(useNavStore().tab).toBe('trace');
    expect(useTraceViewStore().selectedId).toBe('r2');
  });

  it('says the log is empty before any request', async () => {
    const wrapper = mountWith({ state: 'running', settings, stats, log: [] });
    await flushPromises();
    expect(wrapper.find('[data-testid=server-log-empty]').exists()).toBe(true);
  });
});

describe('the Server panel while the server runs', () => {
  it('keeps the handler editable and restarts the server with it in one click (Apply), no stop-edit-start', async () => {
    const pinia = createPinia();
    setActivePinia(pinia);
    const started: unknown[] = [];
    const client = fakeClient({ 'server.start': (args) => (started.push(args), { state: 'running', settings: args, stats }) as never });
    const wrapper = mount(ServerPanel, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
    useAppStore().state = { mode: 'browser', sandbox: { state: 'stopped' }, links: { amqp: { state: 'connected', since: 1 }, mqtt: { state: 'connected', since: 1 } }, tracer: { state: 'off' }, server: { state: 'running', settings, stats } } as AppState;
    Object.assign(useServerStore().settings, settings);
    await flushPromises();
    const handler = wrapper.find<HTMLInputElement>('[data-testid=server-handler]');
    expect(handler.element.disabled).toBe(false);
    expect(wrapper.find<HTMLButtonElement>('[data-testid=server-apply]').element.disabled).toBe(true);
    await handler.setValue('fail:not-found:No such device');
    expect(wrapper.find<HTMLButtonElement>('[data-testid=server-apply]').element.disabled).toBe(false);
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ ...settings, handler: 'fail:not-found:No such device' }]);
    expect(wrapper.find('[data-testid=server-toggle]').text()).toBe('Stop server');
    expect(wrapper.findAll('#handlers option').map((option) => option.attributes('value'))).toEqual(expect.arrayContaining(['fail:not-found:No such device', './handlers/my-handler.mjs']));
  });
});
