import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { describe, expect, it, vi } from 'vitest';
import { VERDICT_CODES, type Verdict, type VerdictCode } from '../../src/shared/diagnosis';
import type { RpcOutcome } from '../../src/shared/rpc';
import type { TraceStep } from '../../src/shared/trace';
import type { AppState } from '../../src/shared/contract';
import { BackendError } from '../../src/renderer/src/client';
import { clientKey } from '../../src/renderer/src/injection';
import { useNavStore } from '../../src/renderer/src/stores/nav';
import { useTraceViewStore } from '../../src/renderer/src/stores/trace-view';
import { useAppStore } from '../../src/renderer/src/stores/app';
import { shortRpcId, unobservedHops } from '../../src/renderer/src/verdicts';
import { summarize } from '../../src/shared/trace-summary';
import VerdictBadge from '../../src/renderer/src/components/verdict/VerdictBadge.vue';
import HopPath from '../../src/renderer/src/components/verdict/HopPath.vue';
import ComposePanel from '../../src/renderer/src/components/compose/ComposePanel.vue';
import TracePanel from '../../src/renderer/src/components/trace/TracePanel.vue';
import TraceRpcList from '../../src/renderer/src/components/trace/TraceRpcList.vue';
import App from '../../src/renderer/src/App.vue';
import { fakeClient } from './fake-client';
import { fakeWorkspace } from './fake-workspace';
import { useHistoryStore } from '../../src/renderer/src/stores/history';

const dropped: Verdict = {
  code: 'request-unroutable',
  hop: 'exchange',
  message: 'Nothing is bound on amq.direct for routing key "rpc_qeueu" (topic "rpc_qeueu"), so the broker dropped the request; bound keys, closest first: "rpc_queue": fix the topic or start a server on that queue.',
  evidence: ['client: published "rpc_qeueu" (routing key "rpc_qeueu")', 'bindings: no queue is bound on amq.direct for "rpc_qeueu"'],
};
const replied: Verdict = { code: 'replied', hop: 'mqtt-deliver', message: 'A reply to "rpc_queue" arrived on "reply/abc".', evidence: ['client: reply received on "reply/abc" after 3 ms'] };
const errorReply: Verdict = {
  code: 'replied-error',
  hop: 'server',
  message: 'The server answered "rpc_queue" with error -32601 ("Method not found"): the path works, fix the request or the handler.',
  evidence: ['server: error -32601: Method not found'],
};

const outcome = (id: string, overrides: Partial<RpcOutcome> = {}): RpcOutcome => ({
  id,
  replyTopic: `reply/${id}`,
  arrivedOn: `reply/${id}`,
  topicMismatch: false,
  body: { kind: 'json', value: { id, result: 1 } },
  result: 1,
  durationMs: 3.25,
  publishQos: { asked: 1, acknowledgedAs: 1 },
  subscriptionQos: { asked: 1, granted: 1 },
  warnings: [],
  ...overrides,
});

/** The steps the core records for one RPC, ending with its verdict. */
function stepsOf(rpcId: string, verdict: Verdict, at = 1000): TraceStep[] {
  return [
    { rpcId, seq: at, at, source: 'client', kind: 'composed', detail: { topic: 'rpc_qeueu', qos: 1, replyTopic: `reply/${rpcId}`, replyStrategy: 'per-request', bytes: 20 } },
    { rpcId, seq: at + 1, at: at + 2, source: 'client', kind: 'mqtt.published', detail: { topic: 'rpc_qeueu', qosAsked: 1, predictedRoutingKey: 'rpc_qeueu' } },
    { rpcId, seq: at + 2, at: at + 5000, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: 'No reply within 5000 ms.' } },
    { rpcId, seq: at + 3, at: at + 5040, source: 'client', kind: 'rpc.diagnosed', detail: { verdict } },
  ];
}

function mountWithPinia<C>(component: C, answers: Parameters<typeof fakeClient>[0]): { wrapper: VueWrapper; client: ReturnType<typeof fakeClient> } {
  const pinia = createPinia();
  setActivePinia(pinia);
  // No topic mapping answer: these tests are about the result, and a mapping the client cannot get is simply not shown.
  const client = fakeClient(answers);
  const wrapper = mount(component as never, { attachTo: document.body, global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
  return { wrapper, client };
}

describe('the verdict badge', () => {
  it.each(VERDICT_CODES)('shows "%s" as a word beside a colour', (code) => {
    const badge = mount(VerdictBadge, { props: { code } });
    expect(badge.text().trim()).not.toBe('');
    expect(badge.classes().some((name) => name.startsWith('tone-'))).toBe(true);
    expect(badge.attributes('title')).toContain(code);
  });

  it('paints only a real reply green: an error reply, a reply on another topic and every loss are not', () => {
    const tone = (code: VerdictCode) => mount(VerdictBadge, { props: { code } }).attributes('data-tone');
    expect(VERDICT_CODES.filter((code) => tone(code) === 'good')).toEqual(['replied']);
    const error = mount(VerdictBadge, { props: { code: 'replied-error' } });
    expect(error.text()).toBe('error reply');
    expect(error.classes()).not.toContain('tone-good');
    for (const code of ['request-unroutable', 'no-consumer', 'server-slow', 'reply-unroutable', 'not-this-broker'] as const) expect(tone(code)).toBe('bad');
  });

  it('gives every code its own word, so two verdicts never read the same', () => {
    const words = VERDICT_CODES.map((code) => mount(VerdictBadge, { props: { code } }).text());
    expect(new Set(words).size).toBe(VERDICT_CODES.length);
  });
});

describe('the hop path', () => {
  it('draws device -> exchange -> queue -> server -> exchange -> subscription -> device, stopped where the request was dropped', () => {
    const hops = mount(HopPath, { props: { verdict: dropped } }).findAll('[data-testid=verdict-hop]');
    expect(hops.map((hop) => hop.find('.hop-label').text())).toEqual(['device', 'exchange', 'queue', 'server', 'exchange', 'subscription', 'device']);
    expect(hops.map((hop) => hop.find('.hop-mark').text())).toEqual(['passed', 'stopped here', 'not reached', 'not reached', 'not reached', 'not reached', 'not reached']);
    expect(hops.map((hop) => hop.attributes('aria-current'))).toEqual([undefined, 'step', undefined, undefined, undefined, undefined, undefined]);
  });

  it('marks every hop passed for a reply', () => {
    const wrapper = mount(HopPath, { props: { verdict: replied } });
    expect(wrapper.findAll('[data-testid=verdict-hop]').map((hop) => hop.attributes('data-mark'))).toEqual(Array(7).fill('passed'));
    expect(wrapper.find('[aria-current=step]').exists()).toBe(false);
  });

  it('for a late reply that reached the device, passes every hop (none stopped it) and points at the device', () => {
    const wrapper = mount(HopPath, { props: { verdict: { code: 'late-reply', hop: 'mqtt-deliver' } } });
    expect(wrapper.findAll('[data-testid=verdict-hop]').map((hop) => hop.attributes('data-mark'))).toEqual(Array(7).fill('passed'));
    expect(wrapper.find('[aria-current=step]').attributes('data-hop')).toBe('mqtt-deliver');
  });

  it('for a late reply the client no longer waited for, passes the server (where the time went) and follows the reply as far as it went', () => {
    const marks = (verdict: Pick<Verdict, 'code' | 'hop' | 'replyReached'>) => {
      const wrapper = mount(HopPath, { props: { verdict } });
      return {
        marks: wrapper.findAll('[data-testid=verdict-hop]').map((hop) => hop.attributes('data-mark')),
        here: wrapper.find('[aria-current=step]').attributes('data-hop'),
        words: wrapper.findAll('.hop-mark').map((mark) => mark.text()),
      };
    };
    // Returned by the broker (its device's subscription was gone): the reply stopped at the exchange.
    const returned = marks({ code: 'late-reply', hop: 'server', replyReached: { hop: 'reply-exchange', stopped: true } });
    expect(returned.marks).toEqual(['passed', 'passed', 'passed', 'passed', 'stopped', 'not-reached', 'not-reached']);
    expect(returned.here).toBe('server');
    expect(returned.words.slice(3, 5)).toEqual(['here', 'stopped here']);
    // Routed to the subscription's queue, the client having stopped waiting: the device not reached.
    const routed = marks({ code: 'late-reply', hop: 'server', replyReached: { hop: 'reply-queue', stopped: false } });
    expect(routed.marks).toEqual(['passed', 'passed', 'passed', 'passed', 'passed', 'passed', 'not-reached']);
    // A verdict kept before the field: published (its branch needs it), nothing known past the exchange.
    const older = marks({ code: 'late-reply', hop: 'server' });
    expect(older.marks).toEqual(['passed', 'passed', 'passed', 'passed', 'passed', 'not-reached', 'not-reached']);
    expect(older.words[3]).toBe('here');
  });

  it("a row's id: a generated one by 8 characters, a device's own whole (T-silent and T-silent2 differ), a long one cut", () => {
    expect(shortRpcId('3f2a9c1e-77aa-4b1c-9a0e-0123456789ab')).toBe('3f2a9c1e');
    expect(shortRpcId('0123456789abcdef0123')).toBe('01234567');
    // Digits alone (a clock in microseconds) are no hex: cut to 8 they would all read alike.
    expect(shortRpcId('1767362645000123')).toBe('1767362645000123');
    expect([shortRpcId('T-silent'), shortRpcId('T-silent2')]).toEqual(['T-silent', 'T-silent2']);
    expect(shortRpcId('order-2026-12-07-000123-retry')).toBe('order-2026-12-07-00…');
    expect(shortRpcId('watch-seed-U-long-1767362645000')).toBe('U-long');
    expect(shortRpcId('watch-seed-U-long-1767362645000 (reply/dev-a)')).toBe('U-long');
  });

  it('for an error reply, passes every hop and points at the server', () => {
    const wrapper = mount(HopPath, { props: { verdict: errorReply } });
    expect(wrapper.findAll('[data-testid=verdict-hop]').map((hop) => hop.attributes('data-mark'))).toEqual(Array(7).fill('passed'));
    expect(wrapper.find('[aria-current=step]').attributes('data-hop')).toBe('server');
  });

  it('for an RPC not sent here, says which passed hops nothing observed ("not seen"), not "passed"', () => {
    // A tap watch's replied pair: the request reached the tap (its other queues not known), the reply was published and
    // routed to the tap; no delivery and no device receipt were seen.
    const tapped = summarize('watch-seed-a-1', [
      { rpcId: 'watch-seed-a-1', seq: 1, at: 1, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ["(the watch's own tap bridgescope.watch-tap.x; which other queues it reached is not known)"], leg: 'request', replyTopic: 'reply/a' } },
      { rpcId: 'watch-seed-a-1', seq: 2, at: 9, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['reply.a'], routedQueues: ["(the watch's own tap bridgescope.watch-tap.x; which other queues it reached is not known)"], leg: 'reply' } },
    ]);
    expect(unobservedHops(tapped)).toEqual(['mqtt-deliver', 'queue', 'reply-queue']);
    const wrapper = mount(HopPath, { props: { verdict: replied, unobserved: unobservedHops(tapped) } });
    expect(wrapper.findAll('[data-testid=verdict-hop]').map((hop) => hop.attributes('data-mark'))).toEqual(['passed', 'passed', 'unseen', 'passed', 'passed', 'unseen', 'unseen']);
    expect(wrapper.find('[data-hop=mqtt-deliver] .hop-mark').text()).toBe('not seen');
    // A firehose watch saw the queues: only the device's receipt is not seen. Our own RPCs: everything their steps say.
    const fire = { ...tapped, requestRoutedQueues: ['rpc_queue'], replyRoutedQueues: ['mqtt-subscription-devqos1'] };
    expect(unobservedHops(fire)).toEqual(['mqtt-deliver']);
    expect(unobservedHops({ ...fire, requestTopic: 'rpc_queue' })).toEqual([]);
    // A stopped or not-reached hop stays so: "not seen" is only for what the verdict reads as passed.
    const slow = mount(HopPath, { props: { verdict: { code: 'server-slow', hop: 'server' }, unobserved: ['queue', 'server', 'mqtt-deliver'] } });
    expect(slow.findAll('[data-testid=verdict-hop]').map((hop) => hop.attributes('data-mark'))).toEqual(['passed', 'passed', 'unseen', 'stopped', 'not-reached', 'not-reached', 'not-reached']);
  });

  it('stops at the queue for a request nobody consumes, after passing the device and the exchange', () => {
    const wrapper = mount(HopPath, { props: { verdict: { code: 'no-consumer', hop: 'queue' } } });
    expect(wrapper.findAll('[data-testid=verdict-hop]').map((hop) => hop.attributes('data-mark'))).toEqual(['passed', 'passed', 'stopped', 'not-reached', 'not-reached', 'not-reached', 'not-reached']);
  });
});

describe('Compose shows the verdict of the last send', () => {
  it('on a dropped request: the sentence, the path stopped at the exchange, the evidence collapsed, and Open in Trace selects that RPC', async () => {
    const { wrapper } = mountWithPinia(ComposePanel, {
      'rpc.request.send': () => Promise.reject(new BackendError({ code: 'timeout', message: 'No reply within 5000 ms.', rpcId: 'rpc-dropped', verdict: dropped })),
    });
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    const verdict = wrapper.find('[data-testid=compose-verdict]');
    expect(verdict.find('[data-testid=verdict-message]').text()).toBe(dropped.message);
    expect(verdict.find('[data-testid=verdict-badge]').text()).toBe('request dropped');
    expect(verdict.find('[aria-current=step]').attributes('data-hop')).toBe('exchange');
    const evidence = verdict.find('[data-testid=verdict-evidence]');
    expect((evidence.element as HTMLDetailsElement).open).toBe(false);
    expect(evidence.findAll('li').map((line) => line.text())).toEqual(dropped.evidence);
    // No generic client sentence under the verdict (issue 26): "is a server consuming …?" contradicted "rejected".
    expect(wrapper.find('[data-testid=compose-error]').exists()).toBe(false);
    expect(wrapper.text()).not.toContain('The client said');

    await wrapper.find('[data-testid=compose-open-trace]').trigger('click');
    expect(useNavStore().tab).toBe('trace');
    expect(useTraceViewStore().selectedId).toBe('rpc-dropped');
  });

  it('on a reply: "replied" in green, with the QoS downgrade still listed as a warning', async () => {
    const downgrade = 'Asked QoS 2 for the request; RabbitMQ acknowledged it as QoS 1.';
    const { wrapper } = mountWithPinia(ComposePanel, { 'rpc.request.send': () => outcome('rpc-ok', { verdict: replied, warnings: [downgrade] }) });
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    const badge = wrapper.find('[data-testid=compose-verdict] [data-testid=verdict-badge]');
    expect([badge.text(), badge.attributes('data-tone')]).toEqual(['replied', 'good']);
    expect(wrapper.find('[data-testid=compose-warnings]').text()).toContain(downgrade);
  });

  it('on an error reply: not green, and says the server answered with an error', async () => {
    const { wrapper } = mountWithPinia(ComposePanel, {
      'rpc.request.send': () => outcome('rpc-err', { verdict: errorReply, error: { code: '-32601', message: 'Method not found' }, result: undefined }),
    });
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    const badge = wrapper.find('[data-testid=compose-verdict] [data-testid=verdict-badge]');
    expect(badge.text()).toBe('error reply');
    expect(badge.attributes('data-tone')).not.toBe('good');
  });

  it('on a reply the trace later doubts (a forged reply taken first): the Reply panel turns from "replied" to "foreign reply" with the sentence', async () => {
    const { wrapper } = mountWithPinia(ComposePanel, { 'rpc.request.send': () => outcome('rpc-spoofed', { verdict: replied, result: 'INJECTED-42', worker: 'evil-worker' }) });
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-verdict] [data-testid=verdict-badge]').text()).toBe('replied');
    const foreign: Verdict = {
      code: 'reply-foreign',
      hop: 'reply-exchange',
      message:
        'The reply taken for "rpc_queue" did not come from a consumer of the request: it was published by user "guest" on connection "127.0.0.1:54538 -> 127.0.0.1:1883", which names itself worker "evil-worker", and that connection got the request only as an MQTT subscriber of "rpc_queue". Do not trust its content. The client took it because it came first; 1 more reply to the same id came after and was not used (see the evidence).',
      evidence: ['broker: reply 2 of 2 published by user "guest" on connection "127.0.0.1:59314 -> 127.0.0.1:5672", routed to "mqtt-subscription-deviceqos1"'],
    };
    useTraceViewStore().ingest([
      { rpcId: 'rpc-spoofed', seq: 1, at: 1, source: 'client', kind: 'rpc.diagnosed', detail: { verdict: replied } },
      { rpcId: 'rpc-spoofed', seq: 2, at: 2, source: 'client', kind: 'rpc.diagnosed', detail: { verdict: foreign } },
    ]);
    await flushPromises();
    const verdict = wrapper.find('[data-testid=compose-verdict]');
    expect([verdict.find('[data-testid=verdict-badge]').text(), verdict.find('[data-testid=verdict-badge]').attributes('data-tone')]).toEqual(['foreign reply', 'bad']);
    expect(verdict.find('[data-testid=verdict-message]').text()).toBe(foreign.message);
    expect(verdict.find('[data-testid=verdict-evidence]').findAll('li').map((line) => line.text())).toEqual(foreign.evidence);
  });

  it('an error reply without a verdict (an older core) is still not a green "replied"', async () => {
    const { wrapper } = mountWithPinia(ComposePanel, { 'rpc.request.send': () => outcome('rpc-old', { error: { code: '-32000', message: 'boom' } }) });
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-verdict] [data-testid=verdict-badge]').attributes('data-code')).toBe('replied-error');
  });
});

describe('the Compose history', () => {
  it('lists time, topic, reply topic, the verdict as a word and a colour, and the round trip; a click opens the RPC in Trace', async () => {
    let next = 0;
    const answers = [
      () => outcome('rpc-1', { verdict: replied }),
      () => outcome('rpc-2', { verdict: errorReply, error: { code: '-32601', message: 'Method not found' } }),
      () => Promise.reject(new BackendError({ code: 'timeout', message: 'No reply within 5000 ms.', rpcId: 'rpc-3', verdict: dropped })),
    ];
    const workspace = fakeWorkspace();
    const { wrapper, client } = mountWithPinia(ComposePanel, { ...workspace.answers, 'rpc.request.send': workspace.recording(() => (answers[next++] as () => RpcOutcome)()) });
    workspace.connect(client);
    await useHistoryStore().start();
    for (let index = 0; index < answers.length; index += 1) {
      await wrapper.find('form').trigger('submit');
      await flushPromises();
    }
    const rows = wrapper.findAll('[data-testid=history-row]');
    expect(rows.map((row) => [row.attributes('data-rpc-id'), row.find('[data-testid=verdict-badge]').text(), row.find('[data-testid=verdict-badge]').attributes('data-tone')])).toEqual([
      ['rpc-3', 'request dropped', 'bad'],
      ['rpc-2', 'error reply', 'warn'],
      ['rpc-1', 'replied', 'good'],
    ]);
    const newest = rows[0]!.text();
    expect(newest).toMatch(/^\d\d:\d\d:\d\d/);
    expect(newest).toContain('rpc_queue');
    expect(newest).toContain('no reply');
    expect(rows[2]!.text()).toContain('reply/rpc-1');
    expect(rows[2]!.text()).toContain('3.3 ms');

    await rows[1]!.find('[data-testid=history-open]').trigger('click');
    expect(useNavStore().tab).toBe('trace');
    expect(useTraceViewStore().selectedId).toBe('rpc-2');
  });

  it('takes a verdict decided after the call from the trace, and cannot open an RPC that never got an id', async () => {
    let next = 0;
    const answers = [() => outcome('rpc-late'), () => Promise.reject(new BackendError({ code: 'not-connected', message: 'Connect to a broker first.' }))];
    const workspace = fakeWorkspace();
    const { wrapper, client } = mountWithPinia(ComposePanel, { ...workspace.answers, 'rpc.request.send': workspace.recording(() => (answers[next++] as () => RpcOutcome)()) });
    workspace.connect(client);
    await useHistoryStore().start();
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    useTraceViewStore().ingest(stepsOf('rpc-late', { ...replied, code: 'reply-on-other-topic', hop: 'mqtt-deliver' }));
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    const rows = wrapper.findAll('[data-testid=history-row]');
    expect(rows[1]!.find('[data-testid=verdict-badge]').attributes('data-code')).toBe('reply-on-other-topic');
    expect(rows[0]!.find('[data-testid=history-open]').attributes('disabled')).toBeDefined();
  });
});

describe('the Trace panel', () => {
  function appState(): AppState {
    return {
      mode: 'browser',
      sandbox: { state: 'stopped' },
      links: { amqp: { state: 'idle' }, mqtt: { state: 'idle' } },
      tracer: { state: 'off' },
      server: { state: 'stopped', stats: { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} } },
    } as AppState;
  }

  it('starts the detail with the verdict, before the steps, and does not list rpc.diagnosed as a step', async () => {
    const { wrapper } = mountWithPinia(TracePanel, { 'trace.snapshot.get': () => ({ steps: stepsOf('rpc-a', dropped), dropped: { rpcs: 0, steps: 0 } }) });
    useAppStore().state = appState();
    await useTraceViewStore().start();
    useTraceViewStore().select('rpc-a');
    await flushPromises();
    const html = wrapper.html();
    expect(html.indexOf('data-testid="trace-verdict"')).toBeGreaterThan(-1);
    expect(html.indexOf('data-testid="trace-verdict"')).toBeLessThan(html.indexOf('data-testid="trace-timeline"'));
    expect(wrapper.find('[data-testid=trace-verdict] [data-testid=verdict-message]').text()).toBe(dropped.message);
    expect(wrapper.find('[data-testid=trace-verdict] [data-testid=verdict-evidence]').findAll('li')).toHaveLength(2);
    expect(wrapper.findAll('[data-testid=trace-step]').map((step) => step.attributes('data-kind'))).toEqual(['composed', 'mqtt.published', 'rpc.failed']);
  });

  it('shows each RPC\'s verdict in the list as a word and a colour', async () => {
    // The list is virtual: it draws the rows that fit its height, which happy-dom does not lay out.
    const height = vi.spyOn(HTMLElement.prototype, 'clientHeight', 'get').mockReturnValue(400);
    const { wrapper } = mountWithPinia(TraceRpcList, {});
    const trace = useTraceViewStore();
    trace.ingest([...stepsOf('rpc-a', dropped, 1000), ...stepsOf('rpc-b', errorReply, 2000)]);
    await flushPromises();
    const rows = wrapper.findAll('[data-testid=trace-row]');
    expect(rows.map((row) => [row.attributes('data-rpc-id'), row.find('[data-testid=verdict-badge]').text(), row.find('[data-testid=verdict-badge]').attributes('data-tone')])).toEqual([
      ['rpc-b', 'error reply', 'warn'],
      ['rpc-a', 'request dropped', 'bad'],
    ]);
    height.mockRestore();
  });

  it('Open in Trace shows an RPC the search had hidden', () => {
    mountWithPinia(TracePanel, {});
    const trace = useTraceViewStore();
    trace.ingest([...stepsOf('rpc-a', dropped, 1000), ...stepsOf('rpc-b', replied, 2000)]);
    trace.filter = 'rpc-b';
    expect(trace.visibleIds).toEqual(['rpc-b']);
    useNavStore().openInTrace('rpc-a');
    expect(trace.visibleIds).toContain('rpc-a');
    expect(trace.selectedId).toBe('rpc-a');
  });

  it('Open in Trace keeps the search for an RPC whose steps have not arrived yet', () => {
    mountWithPinia(TracePanel, {});
    const trace = useTraceViewStore();
    trace.ingest(stepsOf('rpc-b', replied));
    trace.filter = 'rpc-b';
    useNavStore().openInTrace('rpc-not-yet');
    expect(trace.filter).toBe('rpc-b');
    expect(trace.selectedId).toBe('rpc-not-yet');
    expect(useNavStore().tab).toBe('trace');
  });
});

describe('the inspector', () => {
  it('switches from Compose to the Trace panel with the RPC selected when Open in Trace is clicked', async () => {
    const state = {
      mode: 'browser',
      sandbox: { state: 'stopped' },
      profile: { name: 'Sandbox broker', amqpUrl: 'amqp://127.0.0.1:5673', mqttUrl: 'mqtt://127.0.0.1:1884', managementUrl: 'http://127.0.0.1:15673', vhost: '/', exchange: 'amq.direct' },
      links: { amqp: { state: 'connected', since: 1 }, mqtt: { state: 'connected', since: 1 } },
      tracer: { state: 'off' },
      server: { state: 'stopped', stats: { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} } },
    } as AppState;
    const { wrapper, client } = mountWithPinia(App, {
      'app.state.get': () => state,
      'profile.list': () => [],
      'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }),
      'rpc.request.send': () => Promise.reject(new BackendError({ code: 'timeout', message: 'No reply within 5000 ms.', rpcId: 'rpc-x', verdict: dropped })),
    });
    await flushPromises();
    await wrapper.find('[data-testid=compose-send]').trigger('click');
    await flushPromises();
    client.emit('trace.steps.added', { steps: stepsOf('rpc-x', dropped) });
    await wrapper.find('[data-testid=compose-open-trace]').trigger('click');
    await flushPromises();
    expect(wrapper.find('[data-testid=panel-trace]').isVisible()).toBe(true);
    expect(wrapper.find('[data-testid=panel-compose]').isVisible()).toBe(false);
    expect(wrapper.find('[data-testid=tab-trace]').classes()).toContain('active');
    expect(wrapper.find('[data-testid=trace-selected]').text()).toContain('rpc-x');
    expect(wrapper.find('[data-testid=trace-verdict] [data-testid=verdict-badge]').text()).toBe('request dropped');
    wrapper.unmount();
  });
});
