import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import { defineComponent } from 'vue';
import type { TraceMessage, TraceStep } from '../../src/shared/trace';
import { clientKey } from '../../src/renderer/src/injection';
import { useTraceViewStore } from '../../src/renderer/src/stores/trace-view';
import TraceBodies from '../../src/renderer/src/components/trace/TraceBodies.vue';
import TraceTimeline from '../../src/renderer/src/components/trace/TraceTimeline.vue';
import { fakeClient } from './fake-client';

const json = (value: unknown): TraceMessage['body'] => {
  const text = JSON.stringify(value);
  return { bytes: text.length, encoding: 'json', preview: text, shown: text.length };
};

/** An RPC someone else sent (no Compose history): only the broker's and the server's steps, with the messages they saw. */
function externalRpc(rpcId: string, replyBody: TraceMessage['body']): TraceStep[] {
  const requestWire: TraceMessage = {
    protocol: 'amqp',
    properties: { delivery_mode: 2, correlation_id: rpcId },
    headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false },
    body: json({ id: rpcId, reply_to: `reply/${rpcId}`, params: { n: 1 } }),
  };
  return [
    { rpcId, seq: 1, at: 1, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.topic', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request', wire: requestWire } },
    { rpcId, seq: 2, at: 2, source: 'server', kind: 'worker.received', detail: { worker: 'w1', consumerTag: 'c', queue: 'rpc_queue', routingKey: 'rpc_queue', redelivered: false } },
    {
      rpcId,
      seq: 3,
      at: 3,
      source: 'broker',
      kind: 'broker.published',
      detail: { exchange: 'amq.topic', routingKeys: [`reply.${rpcId}`], routedQueues: ['q'], leg: 'reply', wire: { protocol: 'amqp', properties: {}, headers: {}, body: replyBody } },
    },
  ];
}

function mountWith<C>(component: C, props: Record<string, unknown>): VueWrapper {
  setActivePinia(createPinia());
  return mount(component as never, { props: props as never, global: { provide: { [clientKey as symbol]: fakeClient({}) } } });
}

describe('bodies and headers in the trace detail', () => {
  it('shows the request and the reply of an RPC this page did not send, from what the broker saw, pretty', () => {
    const steps = externalRpc('ext', json({ id: 'ext', result: { ok: true } }));
    const wrapper = mountWith(TraceBodies, { rpcId: 'ext', steps });
    expect(JSON.parse(wrapper.find('[data-testid=trace-request-body]').text())).toEqual({ id: 'ext', reply_to: 'reply/ext', params: { n: 1 } });
    expect(wrapper.find('[data-testid=trace-request-body]').text()).toContain('\n  "id": "ext"');
    expect(wrapper.find('[data-testid=trace-request-note]').text()).toMatch(/as the broker saw it published: \d+ bytes\./);
    expect(JSON.parse(wrapper.find('[data-testid=trace-reply-body]').text())).toEqual({ id: 'ext', result: { ok: true } });
  });

  it('a cut body says how much of it is kept; a binary one is a hex dump; a long one is cut on screen with Show all', async () => {
    const cut = mountWith(TraceBodies, { rpcId: 'a', steps: externalRpc('a', { bytes: 9000, encoding: 'text', preview: 'y'.repeat(4096), shown: 4096 }) });
    expect(cut.find('[data-testid=trace-reply-note]').text()).toMatch(/9,000 bytes, first 4,096 bytes kept/);
    expect(cut.find('[data-testid=trace-reply-body]').text()).toHaveLength(2001);
    await cut.find('[data-testid=trace-reply-show-all]').trigger('click');
    expect(cut.find('[data-testid=trace-reply-body]').text()).toHaveLength(4096);
    const binary = mountWith(TraceBodies, { rpcId: 'b', steps: externalRpc('b', { bytes: 3, encoding: 'binary', preview: Buffer.from([1, 2, 255]).toString('base64'), shown: 3 }) });
    expect(binary.find('[data-testid=trace-reply-body]').text()).toMatch(/^000000 {2}01 02 ff/);
  });

  it('each step with a message has a fold with its properties, headers and body, with copy buttons', async () => {
    const steps = externalRpc('ext', json({ id: 'ext', result: 1 }));
    const wrapper = mountWith(TraceTimeline, { steps });
    const folds = wrapper.findAll('[data-testid=trace-step-wire]');
    expect(folds).toHaveLength(2);
    const first = folds[0] as (typeof folds)[number];
    expect(first.find('summary').text()).toMatch(/^Headers and body \(\d+ bytes, json\)$/);
    expect(first.find('[data-testid=trace-wire-headers]').text()).toContain('x-mqtt-publish-qos');
    expect(first.find('[data-testid=trace-wire-properties]').text()).toContain('correlation_id');
    expect(first.find('[data-testid=trace-wire-copy-body]').attributes('aria-label')).toBe('Copy broker.published message body');
    expect(first.find('[data-testid=trace-wire-copy-headers]').exists()).toBe(true);
    expect(JSON.parse(first.find('[data-testid=trace-wire-body]').text())).toMatchObject({ id: 'ext' });
  });

  it('a preview dropped for the memory budget says so and shows the size only', () => {
    const wrapper = mountWith(TraceBodies, { rpcId: 'd', steps: externalRpc('d', { bytes: 500, encoding: 'json', preview: '', shown: 0, dropped: true }) });
    expect(wrapper.find('[data-testid=trace-reply-note]').text()).toMatch(/500 bytes \(json\); its preview was dropped to keep the trace within its memory budget/);
    expect(wrapper.findAll('[data-testid=trace-bodies] button').filter((b) => b.attributes('aria-label') === 'Copy reply body')).toHaveLength(0);
  });

  it('the page keeps previews within its budget too: old ones are dropped as new steps come', async () => {
    let trace!: ReturnType<typeof useTraceViewStore>;
    mountWith(defineComponent({ setup: () => void (trace = useTraceViewStore()), render: () => null }), {});
    const big = { bytes: 4096, encoding: 'text' as const, preview: 'z'.repeat(4096), shown: 4096 };
    // 32 MiB of previews is 8192 bodies of 4 KiB; 9000 RPCs of one such body each go past it.
    const steps = Array.from({ length: 9000 }, (_, index): TraceStep => ({
      rpcId: `r${index}`,
      seq: index + 1,
      at: index,
      source: 'broker',
      kind: 'broker.delivered',
      detail: { queue: 'q', routingKeys: ['q'], redelivered: false, leg: 'request', wire: { protocol: 'amqp', properties: {}, headers: {}, body: big } },
    }));
    trace.ingest(steps);
    await flushPromises();
    const bodyOf = (id: string) => (trace.stepsOf(id)[0]?.detail as { wire: TraceMessage }).wire.body;
    expect(bodyOf('r0')).toMatchObject({ dropped: true, preview: '', bytes: 4096 });
    expect(bodyOf('r8999')).toMatchObject({ shown: 4096 });
  });
});
