import { mount } from '@vue/test-utils';
import { createPinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import type { TraceStep } from '../../src/shared/trace';
import TraceTimeline from '../../src/renderer/src/components/trace/TraceTimeline.vue';
import ComposePanel from '../../src/renderer/src/components/compose/ComposePanel.vue';
import { clientKey } from '../../src/renderer/src/injection';
import { fakeClient } from './fake-client';

const steps: TraceStep[] = [
  { rpcId: 'a', seq: 1, at: 100, source: 'client', kind: 'mqtt.published', detail: { topic: 'rpc_queue', qosAsked: 2, predictedRoutingKey: 'rpc_queue' } },
  { rpcId: 'a', seq: 2, at: 103, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 2, acknowledgedAs: 1, packet: 'puback' } },
  { rpcId: 'a', seq: 3, at: 110, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/v1/2/x', replyTopic: 'reply/v1.2/x', topicMismatch: true, bytes: 4 } },
];

describe('TraceTimeline', () => {
  it('lists every step with its offset and marks the QoS downgrade and the dot pitfall', () => {
    const wrapper = mount(TraceTimeline, { props: { steps } });
    const rows = wrapper.findAll('[data-testid=trace-step]');
    expect(rows.map((row) => row.attributes('data-kind'))).toEqual(['mqtt.published', 'mqtt.acknowledged', 'mqtt.reply.received']);
    expect(rows[2]?.text()).toContain('+10 ms');
    expect(rows[2]?.text()).toContain('dot pitfall');
    expect(rows.map((row) => row.classes('warn'))).toEqual([false, true, true]);
  });
});

describe('ComposePanel', () => {
  function mountPanel() {
    // The mapping is computed in the renderer: the backend is never asked for it.
    const client = fakeClient({});
    return mount(ComposePanel, { global: { plugins: [createPinia()], provide: { [clientKey as symbol]: client } } });
  }

  it('shows a JSON error under the payload and disables Send', async () => {
    const wrapper = mountPanel();
    await wrapper.find('[data-testid=compose-payload]').setValue('{"a": ');
    expect(wrapper.find('[data-testid=compose-payload-error]').text()).toMatch(/Not valid JSON/);
    expect(wrapper.find('[data-testid=compose-send]').attributes('disabled')).toBeDefined();
  });

  it('explains the reply topic mapping live', async () => {
    const wrapper = mountPanel();
    await wrapper.find('[data-testid=compose-reply-topic]').setValue('reply/v1.2/x');
    expect(wrapper.find('[data-testid=compose-reply-mapping]').text()).toContain('reply/v1/2/x');
    expect(wrapper.find('[data-testid=compose-reply-mapping]').text()).toMatch(/Level "v1\.2" contains "\."/);
  });
});
