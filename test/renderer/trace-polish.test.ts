/** The Trace panel's own consistency (issue 26): the detail follows the filters, Clear asks first, counts read right. */
import { flushPromises, mount } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import type { TraceStep } from '../../src/shared/trace';
import TracePanel from '../../src/renderer/src/components/trace/TracePanel.vue';
import { clientKey } from '../../src/renderer/src/injection';
import { useTraceViewStore } from '../../src/renderer/src/stores/trace-view';
import { fakeClient } from './fake-client';

function stepsOf(rpcId: string, topic: string, at: number): TraceStep[] {
  return [
    { rpcId, seq: at, at, source: 'client', kind: 'composed', detail: { topic, qos: 1, replyTopic: `reply/${rpcId}`, replyStrategy: 'per-request', bytes: 20 } },
    { rpcId, seq: at + 1, at: at + 2, source: 'client', kind: 'mqtt.published', detail: { topic, qosAsked: 1, predictedRoutingKey: topic } },
  ];
}

function mountPanel(answers: Parameters<typeof fakeClient>[0] = {}) {
  const pinia = createPinia();
  setActivePinia(pinia);
  const client = fakeClient(answers);
  const wrapper = mount(TracePanel, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client }, stubs: { TraceRpcList: true } } });
  return { wrapper, client };
}

describe('the Trace panel', () => {
  it('does not keep an RPC the search no longer matches in the detail pane, and shows it again when the search matches it', async () => {
    const { wrapper } = mountPanel();
    const trace = useTraceViewStore();
    trace.ingest([...stepsOf('rpc-orders', 'orders', 1000), ...stepsOf('rpc-billing', 'billing', 2000)]);
    trace.select('rpc-orders');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-selected]').text()).toContain('rpc-orders');
    trace.filter = 'billing';
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-selected]').exists()).toBe(false);
    trace.filter = '';
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-selected]').text()).toContain('rpc-orders');
  });

  it('asks before Clear, as History does: Keep clears nothing, Clear clears', async () => {
    let cleared = 0;
    const { wrapper } = mountPanel({ 'trace.store.clear': () => ({ cleared: (cleared += 1) }) });
    useTraceViewStore().ingest(stepsOf('rpc-a', 'orders', 1000));
    await flushPromises();
    await wrapper.find('[data-testid=trace-clear]').trigger('click');
    expect(cleared).toBe(0);
    expect(wrapper.find('[data-testid=trace-clear-confirm]').text()).toContain('1 RPC');
    await wrapper.find('[data-testid=trace-clear-keep]').trigger('click');
    expect(cleared).toBe(0);
    expect(wrapper.find('[data-testid=trace-clear-confirm]').exists()).toBe(false);
    await wrapper.find('[data-testid=trace-clear]').trigger('click');
    await wrapper.find('[data-testid=trace-clear-yes]').trigger('click');
    await flushPromises();
    expect(cleared).toBe(1);
  });

  it('says "1 RPC", not "1 RPCs"', async () => {
    const { wrapper } = mountPanel();
    useTraceViewStore().ingest(stepsOf('rpc-a', 'orders', 1000));
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-counts]').text()).toMatch(/^1 RPC, 2 steps/);
  });

  it('says how many of all the RPCs and steps a search shows, not the filtered RPCs beside every step', async () => {
    const { wrapper } = mountPanel();
    const trace = useTraceViewStore();
    trace.ingest([...stepsOf('rpc-a', 'orders', 1000), ...stepsOf('rpc-b', 'billing', 2000), ...stepsOf('rpc-c', 'billing', 3000)]);
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-counts]').text()).toBe('3 RPCs, 6 steps');
    trace.filter = 'orders';
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-counts]').text()).toBe('1 of 3 RPCs, 2 of 6 steps');
  });
});

describe('the Trace detail under a verdict', () => {
  it('does not repeat the client\'s generic sentence ("is a server consuming …?") as a warning', async () => {
    const { wrapper } = mountPanel();
    const trace = useTraceViewStore();
    const generic = 'No reply to rpc-r within 1000 ms on "reply/rpc-r": is a server consuming the queue bound to "orders"?';
    trace.ingest([
      ...stepsOf('rpc-r', 'orders', 1000),
      { rpcId: 'rpc-r', seq: 1100, at: 1100, source: 'server', kind: 'request.rejected', detail: { worker: 'w1', reason: 'the body is not JSON', bytes: 3 } },
      { rpcId: 'rpc-r', seq: 2000, at: 2000, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: generic } },
      { rpcId: 'rpc-r', seq: 2001, at: 2001, source: 'client', kind: 'rpc.diagnosed', detail: { verdict: { code: 'request-rejected', hop: 'server', message: 'The server rejected it.', evidence: [] } } },
    ]);
    trace.select('rpc-r');
    await flushPromises();
    const warnings = wrapper.find('[data-testid=trace-warnings]').text();
    expect(warnings).toContain('The server rejected the request: the body is not JSON');
    expect(warnings).not.toContain('is a server consuming');
  });
});
