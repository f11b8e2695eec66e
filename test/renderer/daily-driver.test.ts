import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AppState, BindingsView, LoadSummary, SendRequestArgs, WatchView } from '../../src/shared/contract';
import type { HistoryEntry } from '../../src/shared/workspace';
import type { CheckLine } from '../../src/shared/broker';
import type { RpcOutcome } from '../../src/shared/rpc';
import type { TraceStep } from '../../src/shared/trace';
import { clientKey } from '../../src/renderer/src/injection';
import { webSocketClient, type HostLinkState } from '../../src/renderer/src/client';
import { useAppStore } from '../../src/renderer/src/stores/app';
import { useComposeStore } from '../../src/renderer/src/stores/compose';
import { useTraceViewStore } from '../../src/renderer/src/stores/trace-view';
import { useLoadStore } from '../../src/renderer/src/stores/load';
import { useNavStore } from '../../src/renderer/src/stores/nav';
import { useWatchStore } from '../../src/renderer/src/stores/watch';
import { useBindingsStore } from '../../src/renderer/src/stores/bindings';
import { formatDelta, timelineOf } from '../../src/renderer/src/timeline';
import { histogramOptions, throughputOptions } from '../../src/renderer/src/load-charts';
import { cancelledText, loadErrorSentences, traceSampleText } from '../../src/renderer/src/load-text';
import { concurrencyProblem, countProblem, timeoutProblem } from '../../src/renderer/src/form-checks';
import { replyBindingNeed } from '../../src/renderer/src/reply-binding';
import App from '../../src/renderer/src/App.vue';
import ComposePanel from '../../src/renderer/src/components/compose/ComposePanel.vue';
import TracePanel from '../../src/renderer/src/components/trace/TracePanel.vue';
import TraceRpcList from '../../src/renderer/src/components/trace/TraceRpcList.vue';
import TraceTimeline from '../../src/renderer/src/components/trace/TraceTimeline.vue';
import TraceMapping from '../../src/renderer/src/components/trace/TraceMapping.vue';
import LoadPanel from '../../src/renderer/src/components/load/LoadPanel.vue';
import BindingsPanel from '../../src/renderer/src/components/bindings/BindingsPanel.vue';
import { fakeClient } from './fake-client';
import { fakeWorkspace } from './fake-workspace';
import { useHistoryStore } from '../../src/renderer/src/stores/history';
import { templateSummaries } from '../../src/renderer/src/template-summary';

const stats = { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} };
const connected: AppState = {
  mode: 'browser',
  sandbox: { state: 'stopped' },
  profile: { name: 'Sandbox broker', amqpUrl: 'amqp://127.0.0.1:5673', mqttUrl: 'mqtt://127.0.0.1:1884', managementUrl: 'http://127.0.0.1:15673', vhost: '/', exchange: 'amq.direct' },
  links: { amqp: { state: 'connected', since: 1 }, mqtt: { state: 'connected', since: 1 } },
  tracer: { state: 'on', since: 1 },
  server: { state: 'stopped', stats },
};

const outcome = (id: string, overrides: Partial<RpcOutcome> = {}): RpcOutcome => ({
  id,
  replyTopic: `reply/${id}`,
  arrivedOn: `reply/${id}`,
  topicMismatch: false,
  body: { kind: 'json', value: { id, result: { temperature: 21.5 }, worker: 'worker-1' } },
  result: { temperature: 21.5 },
  durationMs: 3.25,
  publishQos: { asked: 1, acknowledgedAs: 1 },
  subscriptionQos: { asked: 1, granted: 1 },
  warnings: [],
  ...overrides,
});

/** What this page's client records for one request, and what the server and (optionally) the broker add. */
function rpcSteps(rpcId: string, at: number, options: { client?: boolean; replyTopic?: string; strategy?: 'per-request' | 'shared' } = {}): TraceStep[] {
  const replyTopic = options.replyTopic ?? `reply/${rpcId}`;
  const server: TraceStep[] = [
    { rpcId, seq: at + 3, at: at + 3, source: 'server', kind: 'worker.received', detail: { worker: 'worker-1', consumerTag: 'c1', queue: 'rpc_queue', routingKey: 'rpc_queue', redelivered: false } },
    { rpcId, seq: at + 4, at: at + 4, source: 'server', kind: 'handler.finished', detail: { worker: 'worker-1', durationMs: 1, outcome: 'result' } },
  ];
  if (options.client === false) return server;
  return [
    { rpcId, seq: at, at, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic, replyStrategy: options.strategy ?? 'per-request', bytes: 61 } },
    { rpcId, seq: at + 1, at: at + 1, source: 'client', kind: 'mqtt.subscribed', detail: { topic: replyTopic, qosAsked: 1, qosGranted: 1 } },
    { rpcId, seq: at + 2, at: at + 2, source: 'client', kind: 'mqtt.published', detail: { topic: 'rpc_queue', qosAsked: 1, predictedRoutingKey: 'rpc_queue' } },
    ...server,
    { rpcId, seq: at + 5, at: at + 6, source: 'client', kind: 'mqtt.reply.received', detail: { topic: replyTopic, replyTopic, topicMismatch: false, bytes: 70 } },
  ];
}

function mountWith<C>(component: C, answers: Parameters<typeof fakeClient>[0] = {}, state?: AppState, attached = false): { wrapper: VueWrapper; client: ReturnType<typeof fakeClient> } {
  const pinia = createPinia();
  setActivePinia(pinia);
  const client = fakeClient({ 'profile.list': () => [], ...answers });
  const wrapper = mount(component as never, {
    global: { plugins: [pinia], provide: { [clientKey as symbol]: client }, stubs: { LoadCharts: true } },
    // In the document when a test reads the focus.
    ...(attached ? { attachTo: document.body } : {}),
  });
  if (state) useAppStore().state = state;
  return { wrapper, client };
}

/** A history entry as the core keeps one for this outcome (the reply body as shown). */
function historyEntry(request: SendRequestArgs, replied: RpcOutcome): HistoryEntry {
  const body = replied.body;
  const replyText = body.kind === 'json' ? JSON.stringify(body.value, null, 2) : body.kind === 'text' ? body.text : body.base64;
  return { id: replied.id, rpcId: replied.id, at: 1, topic: request.topic, qos: request.qos, request, replyTopic: replied.replyTopic, roundTripMs: replied.durationMs, replyText };
}

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('when the BridgeScope host goes away', () => {
  class ClosingSocket {
    static all: ClosingSocket[] = [];
    static refuse = false;
    onopen: (() => void) | null = null;
    onmessage: ((event: { data: string }) => void) | null = null;
    onclose: (() => void) | null = null;
    onerror: (() => void) | null = null;
    constructor(readonly url: string) {
      ClosingSocket.all.push(this);
      const refuse = ClosingSocket.refuse;
      queueMicrotask(() => {
        if (refuse) {
          this.onerror?.();
          this.onclose?.();
        } else this.onopen?.();
      });
    }
    send(): void {}
    /** the host stopped: the socket closes */
    hostStopped(): void {
      this.onclose?.();
    }
  }

  it('the client says the host is down at once, keeps trying, and says it is back when a socket opens again', async () => {
    vi.useFakeTimers();
    ClosingSocket.all = [];
    ClosingSocket.refuse = false;
    const client = webSocketClient('ws://x/ws?token=t', ClosingSocket as unknown as typeof WebSocket);
    const seen: HostLinkState['state'][] = [];
    client.onHostLink((state) => seen.push(state.state));
    client.on('app.state.changed', () => undefined);
    await vi.advanceTimersByTimeAsync(0);
    ClosingSocket.refuse = true;
    ClosingSocket.all[0]!.hostStopped();
    expect(client.hostLink().state).toBe('down');
    await vi.advanceTimersByTimeAsync(1000);
    expect(ClosingSocket.all).toHaveLength(2);
    expect(client.hostLink()).toMatchObject({ state: 'down', attempts: 1 });
    ClosingSocket.refuse = false;
    await vi.advanceTimersByTimeAsync(1000);
    expect(ClosingSocket.all).toHaveLength(3);
    expect(seen).toEqual(['down', 'down', 'up']);
  });

  it('the status pills stop saying "connected", say "disconnected from BridgeScope", and the state is read again once the host is back', async () => {
    const linkListeners = new Set<(state: HostLinkState) => void>();
    let link: HostLinkState = { state: 'up' };
    const base = fakeClient({ 'app.state.get': () => connected, 'profile.list': () => [], 'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }) });
    const client = Object.assign(base, {
      hostLink: () => link,
      onHostLink: (listener: (state: HostLinkState) => void) => {
        linkListeners.add(listener);
        return () => void linkListeners.delete(listener);
      },
    });
    const setLink = (next: HostLinkState) => {
      link = next;
      linkListeners.forEach((listener) => listener(next));
    };
    const pinia = createPinia();
    setActivePinia(pinia);
    const wrapper = mount(App, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
    await flushPromises();
    expect(wrapper.find('[data-testid=status-amqp]').attributes('data-state')).toBe('connected');
    setLink({ state: 'down', since: Date.now(), attempts: 0 });
    await flushPromises();
    expect(wrapper.find('[data-testid=status-host]').text()).toBe('Disconnected from BridgeScope');
    expect(wrapper.find('[data-testid=host-down]').text()).toContain('Reconnecting by itself');
    // The token is kept in the data dir now: a restart keeps the URL (issue 26).
    expect(wrapper.find('[data-testid=host-down]').text()).not.toContain('the token changes each run');
    expect(wrapper.find('[data-testid=host-down]').text()).toContain('a restart keeps the same URL');
    expect(['amqp', 'mqtt', 'tracer'].map((pill) => wrapper.find(`[data-testid=status-${pill}]`).attributes('data-state'))).toEqual(['unknown', 'unknown', 'unknown']);
    expect(wrapper.text()).not.toMatch(/AMQP: connected/);
    const readsBefore = client.calls.filter((name) => name === 'app.state.get').length;
    setLink({ state: 'up' });
    await flushPromises();
    expect(client.calls.filter((name) => name === 'app.state.get').length).toBe(readsBefore + 1);
    expect(wrapper.find('[data-testid=status-host]').exists()).toBe(false);
    expect(wrapper.find('[data-testid=status-amqp]').attributes('data-state')).toBe('connected');
    wrapper.unmount();
  });
});

describe('the trace after the host came back', () => {
  it('reads the whole trace again and keeps the RPC the user was looking at selected', async () => {
    const linkListeners = new Set<(state: HostLinkState) => void>();
    let snapshot = rpcSteps('seen', 1000);
    const client = Object.assign(fakeClient({ 'trace.snapshot.get': () => ({ steps: snapshot, dropped: { rpcs: 0, steps: 0 } }) }), {
      hostLink: (): HostLinkState => ({ state: 'up' }),
      onHostLink: (listener: (state: HostLinkState) => void) => (linkListeners.add(listener), () => void linkListeners.delete(listener)),
    });
    const pinia = createPinia();
    setActivePinia(pinia);
    mount({ template: '<div />' }, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
    const trace = useTraceViewStore();
    await trace.start();
    trace.select('seen');
    snapshot = [...rpcSteps('seen', 1000), ...rpcSteps('while-away', 2000)];
    linkListeners.forEach((listener) => listener({ state: 'up' }));
    await flushPromises();
    expect(trace.visibleIds).toEqual(['while-away', 'seen']);
    expect(trace.selectedId).toBe('seen');
  });
});

describe('the trace after `ui` was restarted (issue 26)', () => {
  it('keeps the RPCs the page held (the restarted host starts empty), selected one included, and Export writes them too', async () => {
    const linkListeners = new Set<(state: HostLinkState) => void>();
    // seq counts from 1 again in a restarted host: its steps are numbered below the page's.
    let snapshot = rpcSteps('before', 1000);
    const client = Object.assign(
      fakeClient({
        'trace.snapshot.get': () => ({ steps: snapshot, dropped: { rpcs: 0, steps: 0 } }),
        'trace.export.create': () => ({ format: 'bridgescope-trace', version: 4, exportedAt: 'now', dropped: { rpcs: 0, steps: 0 }, steps: snapshot }) as never,
      }),
      {
        hostLink: (): HostLinkState => ({ state: 'up' }),
        onHostLink: (listener: (state: HostLinkState) => void) => (linkListeners.add(listener), () => void linkListeners.delete(listener)),
      },
    );
    const pinia = createPinia();
    setActivePinia(pinia);
    mount({ template: '<div />' }, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
    const trace = useTraceViewStore();
    await trace.start();
    trace.select('before');
    snapshot = rpcSteps('after', 1);
    linkListeners.forEach((listener) => listener({ state: 'up' }));
    await flushPromises();
    expect(trace.visibleIds).toEqual(['after', 'before']);
    expect(trace.selectedId).toBe('before');
    expect(trace.selectedSummary?.state).not.toBe('pending');
    expect(trace.keptAcrossRestart).toBe(1);
    const exported = await trace.exportTrace();
    expect(new Set(exported?.steps.map((step) => step.rpcId))).toEqual(new Set(['before', 'after']));
    // New steps of the restarted host still arrive (the mark is the host's own newest step, not the page's).
    client.emit('trace.steps.added', { steps: rpcSteps('next', 50) });
    expect(trace.visibleIds[0]).toBe('next');
  });
});

describe('the app at start-up', () => {
  it('keeps the tab the user clicked while it loaded, instead of switching to Compose', async () => {
    let answer: (state: AppState) => void = () => undefined;
    const { wrapper } = mountWith(App, {
      'app.state.get': () => new Promise<AppState>((resolve) => (answer = resolve)),
      'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }),
    });
    await wrapper.find('[data-testid=tab-load]').trigger('click');
    answer(connected);
    await flushPromises();
    expect(useNavStore().tab).toBe('load');
    expect(wrapper.find('[data-testid=tab-load]').attributes('aria-selected')).toBe('true');
    wrapper.unmount();
  });

  it('still opens Compose when a profile is connected and the user has not picked a tab', async () => {
    const { wrapper } = mountWith(App, { 'app.state.get': () => connected, 'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }) });
    await flushPromises();
    expect(useNavStore().tab).toBe('compose');
    wrapper.unmount();
  });

  it('with a firehose Watch on and the Trace firehose off, the header and the Trace panel say whose firehose is which', async () => {
    const firehoseWatch: WatchView = { state: 'running', settings: { mode: 'firehose', timeoutMs: 1000, requestKeys: ['rpc_queue'] }, exchange: 'amq.direct', since: 1, through: 'firehose' };
    const { wrapper } = mountWith(App, {
      'app.state.get': () => ({ ...connected, tracer: { state: 'off' } }),
      'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }),
      'watch.snapshot.get': () => ({ view: firehoseWatch, verdicts: [] }),
    }, { ...connected, tracer: { state: 'off' } });
    await flushPromises();
    await useWatchStore().listen();
    await flushPromises();
    expect(wrapper.find('[data-testid=status-watch-firehose]').text()).toBe('Watch: firehose');
    expect(wrapper.find('[data-testid=status-watch-tap]').exists()).toBe(false);
    // "Firehose: off" beside it read as if the vhost's tracing were off: this pill is the Trace's own.
    expect(wrapper.find('[data-testid=status-tracer]').text()).toMatch(/^Trace firehose/);
    useNavStore().show('trace');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-watch-firehose-note]').text()).toMatch(/The Watch has the vhost's firehose on for its own pairing; this panel's broker steps need its own switch/);
    wrapper.unmount();
  });

  it('sends with Ctrl+Enter right after the topic was edited', async () => {
    const sent: string[] = [];
    const { wrapper } = mountWith(App, {
      'app.state.get': () => connected,
      'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }),
      'rpc.request.send': (args) => (sent.push(args.topic), outcome('rpc-k')),
    });
    await flushPromises();
    await wrapper.find('[data-testid=compose-topic]').setValue('devices/42/rpc');
    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', ctrlKey: true }));
    await flushPromises();
    expect(sent).toEqual(['devices/42/rpc']);
    wrapper.unmount();
  });

  it('moves between tabs with the arrow keys, as a tablist', async () => {
    const { wrapper } = mountWith(App, { 'app.state.get': () => connected, 'trace.snapshot.get': () => ({ steps: [], dropped: { rpcs: 0, steps: 0 } }) });
    await flushPromises();
    await wrapper.find('[data-testid=tab-compose]').trigger('keydown', { key: 'ArrowRight' });
    expect(useNavStore().tab).toBe('bindings');
    await wrapper.find('[data-testid=tab-bindings]').trigger('keydown', { key: 'Home' });
    expect(useNavStore().tab).toBe('connections');
    wrapper.unmount();
  });
});

describe('Compose', () => {
  const failing: CheckLine[] = [{ check: 'request binding', status: 'fail', message: 'Nothing is bound for "rpc_queue".' }];

  it('drops a pre-flight FAIL once a reply proves the path works', async () => {
    const { wrapper } = mountWith(ComposePanel, { 'rpc.preflight.run': () => failing, 'rpc.request.send': () => outcome('rpc-1') }, connected);
    await flushPromises();
    await wrapper.find('[data-testid=compose-preflight]').trigger('click');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-checks]').text()).toContain('FAIL');
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-reply]').exists()).toBe(true);
    expect(wrapper.find('[data-testid=compose-checks]').exists()).toBe(false);
  });

  it('drops pre-flight results when the topic they were about changes', async () => {
    const { wrapper } = mountWith(ComposePanel, { 'rpc.preflight.run': () => failing }, connected);
    await flushPromises();
    await wrapper.find('[data-testid=compose-preflight]').trigger('click');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-checks]').exists()).toBe(true);
    await wrapper.find('[data-testid=compose-topic]').setValue('rpc_queue2');
    expect(wrapper.find('[data-testid=compose-checks]').exists()).toBe(false);
  });

  it('says what is wrong with an empty timeout next to the field, and does not send', async () => {
    const { wrapper, client } = mountWith(ComposePanel, { 'rpc.request.send': () => outcome('never') }, connected);
    await wrapper.find('[data-testid=compose-timeout]').setValue('');
    expect(wrapper.find('[data-testid=compose-timeout-error]').text()).toBe('The timeout is empty: type a whole number ms.');
    expect(wrapper.find('[data-testid=compose-send]').attributes('disabled')).toBeDefined();
    await useComposeStore().send();
    expect(client.calls).not.toContain('rpc.request.send');
  });

  it('copies the reply body, and the request as a bridgescope call command', async () => {
    const copied: string[] = [];
    Object.defineProperty(navigator, 'clipboard', { value: { writeText: async (text: string) => void copied.push(text) }, configurable: true });
    const { wrapper } = mountWith(ComposePanel, { 'rpc.request.send': () => outcome('rpc-c') }, connected);
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    await wrapper.find('[data-testid=copy-reply]').trigger('click');
    await wrapper.find('[data-testid=copy-as-call]').trigger('click');
    await flushPromises();
    expect(JSON.parse(copied[0]!)).toMatchObject({ result: { temperature: 21.5 } });
    expect(copied[1]).toBe(`bridgescope call --mqtt mqtt://127.0.0.1:1884 --timeout 5000 '{"params":{"hello":"device"}}'`);
    expect(wrapper.find('[data-testid=copy-reply]').text()).toBe('Copied');
  });

  it('renames and deletes templates', async () => {
    const workspace = fakeWorkspace();
    mountWith(ComposePanel, workspace.answers, connected);
    const history = useHistoryStore();
    await history.saveTemplate('a');
    await history.saveTemplate('b');
    await history.renameTemplate('a', 'ping');
    await history.deleteTemplate('b');
    expect(history.templates.map((template) => template.name)).toEqual(['ping']);
  });

  it('template rows say what sets each apart, and a deleted template comes back with Undo', async () => {
    const workspace = fakeWorkspace();
    const { wrapper } = mountWith(ComposePanel, workspace.answers, connected);
    const history = useHistoryStore();
    const compose = useComposeStore();
    compose.form.payloadText = '{"params": {"delay": 3}}';
    compose.form.method = 'reboot';
    await history.saveTemplate('reboot');
    compose.form.payloadText = '{}';
    compose.form.method = 'ping';
    compose.form.qos = 2;
    await history.saveTemplate('ping');
    await flushPromises();
    const what = Object.fromEntries(wrapper.findAll('[data-testid=template-row]').map((row) => [row.attributes('data-name'), row.find('[data-testid=template-what]').text()]));
    expect(what).toEqual({ reboot: 'method reboot · QoS 1 · {"params": {"delay": 3}}', ping: 'method ping · QoS 2 · {}' });
    await wrapper.find('[data-name=reboot] [data-testid=template-delete]').trigger('click');
    await flushPromises();
    expect(wrapper.find('[data-testid=template-deleted]').text()).toContain('Deleted the template "reboot".');
    await wrapper.find('[data-testid=template-undo]').trigger('click');
    await flushPromises();
    expect(history.templates.map((template) => template.name).sort()).toEqual(['ping', 'reboot']);
    expect(history.templates.find((template) => template.name === 'reboot')?.request).toMatchObject({ method: 'reboot', payloadText: '{"params": {"delay": 3}}' });
    expect(wrapper.find('[data-testid=template-deleted]').exists()).toBe(false);
  });

  it('after a send, shows the body that was published, with the id and reply_to the app added', async () => {
    const { wrapper } = mountWith(ComposePanel, { 'rpc.request.send': () => outcome('r1') }, connected);
    const compose = useComposeStore();
    await compose.send();
    const sent = JSON.stringify({ id: 'r1', reply_to: 'reply/r1', params: { hello: 'device' } });
    useTraceViewStore().ingest([
      {
        rpcId: 'r1',
        seq: 1,
        at: 1,
        source: 'client',
        kind: 'composed',
        detail: { topic: 'rpc_queue', qos: 1, replyTopic: 'reply/r1', replyStrategy: 'per-request', bytes: sent.length, wire: { protocol: 'mqtt', properties: { qos: 1 }, headers: {}, body: { bytes: sent.length, encoding: 'json', preview: sent, shown: sent.length } } },
      },
    ]);
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-sent-id]').text()).toBe('r1');
    expect(wrapper.find('[data-testid=compose-sent-reply-to]').text()).toBe('reply/r1');
    expect(JSON.parse(wrapper.find('[data-testid=compose-sent-body]').text())).toEqual({ id: 'r1', reply_to: 'reply/r1', params: { hello: 'device' } });
  });
});

describe('template summaries', () => {
  const base = { topic: 'rpc_queue', qos: 1 as const, strategy: 'per-request' as const, timeoutMs: 5000, payloadText: '{}' };
  it('one template says what was set beyond the defaults; several say only what differs between them', () => {
    expect(templateSummaries([{ ...base, method: 'reboot' }])).toEqual(['rpc_queue · method reboot · {}']);
    expect(templateSummaries([base, { ...base, topic: 'devices/d1/rpc', payloadText: 'x'.repeat(60) }])).toEqual(['rpc_queue · {}', `devices/d1/rpc · ${'x'.repeat(39)}…`]);
    expect(templateSummaries([{ ...base, payloadFormat: 'file', payloadFileName: 'f.bin' }])).toEqual(['rpc_queue · file f.bin']);
  });
});

describe('form checks', () => {
  it('gives each wrong number as a sentence with the limit', () => {
    expect(timeoutProblem('')).toBe('The timeout is empty: type a whole number ms.');
    expect(timeoutProblem(0)).toBe('The timeout must be at least 1 ms.');
    expect(timeoutProblem(600_001)).toBe('The timeout must be at most 600,000 ms.');
    expect(timeoutProblem(1.5)).toBe('The timeout must be a whole number ms.');
    expect(timeoutProblem(5000)).toBeUndefined();
    expect(countProblem(2_000_000)).toBe('The number of requests must be at most 1,000,000.');
    expect(concurrencyProblem('')).toBe('The concurrency is empty: type a whole number.');
  });
});

describe('the trace timeline', () => {
  const at = 10_000;
  const steps: TraceStep[] = [
    { rpcId: 'a', seq: 1, at, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic: 'reply/a', replyStrategy: 'per-request', bytes: 40 } },
    { rpcId: 'a', seq: 2, at: at + 2, source: 'client', kind: 'mqtt.published', detail: { topic: 'rpc_queue', qosAsked: 1, predictedRoutingKey: 'rpc_queue' } },
    { rpcId: 'a', seq: 5, at: at + 9, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request' } },
    { rpcId: 'a', seq: 3, at: at + 4, source: 'server', kind: 'worker.received', detail: { worker: 'worker-1', consumerTag: 'c', queue: 'rpc_queue', routingKey: 'rpc_queue', redelivered: false } },
    { rpcId: 'a', seq: 4, at: at + 7, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/a', replyTopic: 'reply/a', topicMismatch: false, bytes: 30 } },
  ];

  it('gives each step its delta from the step above and the total from first to last', () => {
    const timeline = timelineOf(steps);
    expect(timeline.rows.map((row) => row.delta)).toEqual([0, 2, 7, -5, 3]);
    expect(timeline.totalMs).toBe(9);
    expect(formatDelta(-5)).toBe('−5 ms');
  });

  it('shows a second reply to the same id as a warning row that says it was ignored, and who published each reply', () => {
    const publisher = { connection: '127.0.0.1:54538 -> 127.0.0.1:1883', channel: 3, user: 'guest' };
    const doubled: TraceStep[] = [
      ...steps,
      { rpcId: 'a', seq: 6, at: at + 8, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['reply.a'], routedQueues: ['q'], leg: 'reply', publisher } },
      { rpcId: 'a', seq: 7, at: at + 12, source: 'client', kind: 'mqtt.reply.ignored', detail: { topic: 'reply/a', bytes: 31, reason: 'second-reply' } },
    ];
    const rows = mount(TraceTimeline, { props: { steps: doubled } }).findAll('[data-testid=trace-step]');
    const ignored = rows.find((row) => row.attributes('data-kind') === 'mqtt.reply.ignored');
    expect(ignored?.text()).toContain('second reply received on "reply/a" (31 bytes): ignored, the call had taken the first');
    expect(ignored?.classes()).toContain('warn');
    expect(rows.find((row) => row.text().includes('published by'))?.text()).toContain('published by user "guest" on connection "127.0.0.1:54538 -> 127.0.0.1:1883" (channel 3)');
  });

  it('explains a step stamped earlier than the one above instead of leaving it unexplained', () => {
    const wrapper = mount(TraceTimeline, { props: { steps } });
    const rows = wrapper.findAll('[data-testid=trace-step]');
    expect(rows[3]!.find('[data-testid=trace-step-delta]').text()).toContain('−5 ms');
    expect(rows[3]!.find('[data-testid=trace-step-clock-note]').text()).toMatch(/Stamped 5 ms before the step above: broker steps carry the time BridgeScope read them/);
    expect(rows.filter((row) => row.find('[data-testid=trace-step-clock-note]').exists())).toHaveLength(1);
    expect(wrapper.find('[data-testid=trace-clock-note]').text()).toContain('One step carries an earlier time');
    expect(wrapper.find('[data-testid=trace-total]').text()).toBe('Total: 9 ms from the first step to the last.');
  });

  it('says the broker routed the request before its PUBACK reached the client, when that is why', () => {
    const acked: TraceStep[] = [
      steps[1]!,
      { rpcId: 'a', seq: 6, at: at + 5, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } },
      { ...steps[2]!, at: at + 3 },
    ];
    expect(timelineOf(acked).rows[2]!.clockNote).toBe(
      'Stamped 2 ms before the step above: the broker routed the request before its PUBACK reached the client, which stamps the ack on arrival. The list follows the path, not the clocks.',
    );
  });

  it('says the broker delivered the request to the server before its PUBACK reached the client, not that one clock disagrees with itself', () => {
    // In the app the client and the server share one clock: a worker's step under the ack is the ack arriving late.
    const acked: TraceStep[] = [
      steps[1]!,
      { rpcId: 'a', seq: 6, at: at + 48, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } },
      { rpcId: 'a', seq: 7, at: at + 37, source: 'server', kind: 'worker.received', detail: { worker: 'worker-1', queue: 'rpc_queue', consumerTag: 'ctag', routingKey: 'rpc_queue', redelivered: false } },
    ];
    const note = timelineOf(acked).rows[2]!.clockNote;
    expect(note).toBe(
      'Stamped 11 ms before the step above: the broker delivered the request to the server before its PUBACK reached the client, which stamps the ack on arrival. The list follows the path, not the clocks.',
    );
    expect(note).not.toMatch(/disagree/);
    expect(mount(TraceTimeline, { props: { steps: acked } }).find('[data-testid=trace-clock-note]').text()).toContain('(marked ↑): the note on the row says why.');
  });

  it('says the broker delivered the reply before its confirm reached the server, when the reply is stamped before the confirm', () => {
    const confirmed: TraceStep[] = [
      { rpcId: 'a', seq: 8, at: at + 63, source: 'server', kind: 'reply.confirmed', detail: { worker: 'worker-1', outcome: 'routed' } },
      { rpcId: 'a', seq: 9, at: at + 62, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/a', replyTopic: 'reply/a', topicMismatch: false, bytes: 93, qos: 1 } },
    ];
    expect(timelineOf(confirmed).rows[1]!.clockNote).toBe(
      'Stamped 1 ms before the step above: the broker delivered the reply to the client before its confirm reached the server, which stamps the confirm on arrival. The list follows the path, not the clocks.',
    );
  });

  it('says the client gave up first when its failure is listed below a late answer', () => {
    const late: TraceStep[] = [
      { rpcId: 'a', seq: 8, at: at + 74_000, source: 'server', kind: 'reply.confirmed', detail: { worker: 'worker-1', outcome: 'returned', returnReason: 'NO_ROUTE' } },
      { rpcId: 'a', seq: 3, at: at + 1000, source: 'client', kind: 'rpc.failed', detail: { code: 'timeout', message: 'No reply within 1000 ms.' } },
    ];
    expect(timelineOf(late).rows[1]!.clockNote).toBe(
      "Stamped 73000 ms before the step above: the client gave up then (its timeout); the server's steps above came after it, a late answer. The list follows the path, not the clocks.",
    );
  });

  it('says nothing about clocks when the times read top to bottom', () => {
    const wrapper = mount(TraceTimeline, { props: { steps: steps.filter((step) => step.source !== 'broker') } });
    expect(wrapper.find('[data-testid=trace-clock-note]').exists()).toBe(false);
  });
});

describe('the Trace panel', () => {
  it('tells Compose, load-run and external RPCs apart, and filters the list by origin', async () => {
    const { wrapper } = mountWith(ComposePanel, { 'rpc.request.send': () => outcome('from-compose') }, connected);
    const trace = useTraceViewStore();
    trace.ingest(rpcSteps('from-compose', 1000));
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    trace.loadActive = true;
    trace.ingest(rpcSteps('from-load', 2000));
    trace.loadActive = false;
    trace.ingest(rpcSteps('from-device', 3000, { client: false }));
    // A load run's last steps can come after the run's answer: still the run's.
    trace.ingest(rpcSteps('late-load', 3500));
    expect(['from-compose', 'from-load', 'from-device', 'late-load'].map((id) => trace.originOf(id))).toEqual(['compose', 'load', 'external', 'load']);
    // Read again (the host came back, or a reload): what the page knew stays, the rest is from earlier.
    trace.reset([...rpcSteps('from-compose', 1000), ...rpcSteps('from-load', 2000), ...rpcSteps('before-page', 500)]);
    expect(['from-compose', 'from-load', 'before-page'].map((id) => trace.originOf(id))).toEqual(['compose', 'load', 'earlier']);
    trace.ingest(rpcSteps('from-device', 3000, { client: false }));
    trace.origin = 'compose';
    expect(trace.visibleIds).toEqual(['from-compose']);
    trace.origin = 'external';
    expect(trace.visibleIds).toEqual(['from-device']);
  });

  it('lists each RPC with its time, round trip and origin, and the whole topic in a tooltip', async () => {
    const height = vi.spyOn(HTMLElement.prototype, 'clientHeight', 'get').mockReturnValue(400);
    const { wrapper } = mountWith(TraceRpcList, {});
    const longTopic = `reply/${'0123456789abcdef'.repeat(4)}`;
    useTraceViewStore().ingest(rpcSteps('rpc-long', new Date(2026, 0, 2, 13, 4, 5).getTime(), { replyTopic: longTopic }));
    useTraceViewStore().markComposed('rpc-long');
    await flushPromises();
    const row = wrapper.find('[data-testid=trace-row]');
    expect(row.find('[data-testid=trace-row-time]').text()).toBe('13:04:05');
    // From its publish (+2) to its reply (+6), as Compose counts a call: not from its composing, nor to its server's last step.
    expect(row.find('[data-testid=trace-row-rtt]').text()).toBe('4 ms');
    expect(row.find('[data-testid=trace-row-origin]').text()).toBe('compose');
    expect(row.find('[data-testid=trace-row-topic]').attributes('title')).toBe(`rpc_queue → ${longTopic}`);
    height.mockRestore();
  });

  it('an RPC opened from a watch reads its key, reply topic and request id, not "(broker only) → ?" and "watch-se"', async () => {
    const height = vi.spyOn(HTMLElement.prototype, 'clientHeight', 'get').mockReturnValue(400);
    const { wrapper } = mountWith(TraceRpcList, {});
    const rpcId = 'watch-seed-3f2a9c1e-77aa-4b1c-9a0e-0123456789ab-1767362645000';
    const steps: TraceStep[] = [
      { rpcId, seq: 1, at: 1000, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['(not kept by watch)'], leg: 'request', replyTopic: 'reply/dev-7' } },
    ];
    useTraceViewStore().ingest(steps);
    await flushPromises();
    const row = wrapper.find('[data-testid=trace-row]');
    expect(row.find('[data-testid=trace-row-topic]').text()).toBe('key rpc_queue → reply/dev-7');
    expect(row.find('[data-testid=trace-row-id]').text()).toBe('3f2a9c1e');
    height.mockRestore();
    const mapping = mount(TraceMapping, { props: { summary: useTraceViewStore().summary(rpcId) } });
    expect(mapping.find('[data-testid=mapping-request-topic]').text()).toBe('not sent here');
    expect(mapping.find('[data-testid=mapping-reply-topic]').text()).toBe('reply/dev-7');
    // No reply seen: the key a reply would carry, said as expected, not a "?".
    expect(mapping.find('[data-testid=mapping-reply-key]').text()).toBe('reply.dev-7 (expected)');
    expect(mapping.find('[data-testid=mapping-reply-routed]').text()).toBe('no reply seen');
  });

  it('shows the request and reply bodies of an RPC sent from Compose, and says the steps carry only sizes for others', async () => {
    const { wrapper } = mountWith(TracePanel, {}, connected);
    const compose = useComposeStore();
    const trace = useTraceViewStore();
    useHistoryStore().all = [historyEntry(compose.snapshot(), outcome('mine'))];
    trace.ingest([...rpcSteps('mine', 1000), ...rpcSteps('theirs', 2000, { client: false })]);
    trace.select('mine');
    await flushPromises();
    expect(JSON.parse(wrapper.find('[data-testid=trace-request-body]').text())).toEqual({ params: { hello: 'device' }, id: 'mine', reply_to: 'reply/mine' });
    expect(JSON.parse(wrapper.find('[data-testid=trace-reply-body]').text())).toMatchObject({ id: 'mine', result: { temperature: 21.5 } });
    trace.select('theirs');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-request-body]').exists()).toBe(false);
    expect(wrapper.find('[data-testid=trace-no-bodies]').text()).toMatch(/No body was traced for this RPC/);
  });

  it("keeps a load run's requests the run's after a reload, and says why each was kept, without messages or in full", async () => {
    const { wrapper } = mountWith(TracePanel, {}, connected);
    const trace = useTraceViewStore();
    const marked = (rpcId: string, at: number, kept: 'chosen' | 'failed' | 'slow'): TraceStep[] =>
      rpcSteps(rpcId, at).map((step) => (step.kind === 'composed' ? { ...step, detail: { ...step.detail, loadRun: { every: 10, kept } } } : step));
    // A fresh page reads the host's trace (a reload): nothing in its memory says these were the load run's.
    trace.reset([...marked('in-full', 1000, 'chosen'), ...marked('failed', 2000, 'failed'), ...marked('slow', 3000, 'slow'), ...rpcSteps('unmarked', 500)]);
    expect(['in-full', 'failed', 'slow', 'unmarked'].map((id) => trace.originOf(id))).toEqual(['load', 'load', 'load', 'earlier']);
    trace.select('failed');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-load-run]').text()).toBe(
      "This is a load run's request, kept without its messages because it failed (the run traced 1 request in 10 in full).",
    );
    expect(wrapper.find('[data-testid=trace-no-bodies]').text()).toBe('No body was kept for this RPC (request 61 bytes, reply 70 bytes): a load run keeps the messages only of the requests it traces in full (they carry the same body).');
    expect(wrapper.find('[data-testid=trace-no-bodies]').text()).not.toMatch(/bodies are kept for RPCs this app sent/);
    // A worker back after the request failed took it: that later step came whole, with its message, and is said so.
    const body = '{"id":"failed"}';
    trace.ingest([
      { rpcId: 'failed', seq: 9000, at: 9000, source: 'server', kind: 'worker.received', detail: { worker: 'worker-2', consumerTag: 'c2', queue: 'rpc_queue', routingKey: 'rpc_queue', redelivered: false, wire: { protocol: 'amqp', properties: {}, headers: {}, body: { bytes: body.length, encoding: 'json', preview: body, shown: body.length } } } },
    ]);
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-load-run]').text()).toBe(
      "This is a load run's request, kept without its messages because it failed (the run traced 1 request in 10 in full). The messages below came with steps after it was kept (a worker took it later), which are kept whole.",
    );
    trace.select('slow');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-load-run]').text()).toMatch(/because it was slow: slower than 99 % of the run's recent replies \(the run traced 1 request in 10 in full\)\.$/);
    trace.select('in-full');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-load-run]').text()).toBe("This is a load run's request, traced in full (1 in 10).");
    trace.origin = 'load';
    expect(trace.visibleIds).toEqual(['slow', 'failed', 'in-full']);
  });

  it('shows a long body cut, with Show all', async () => {
    const { wrapper } = mountWith(TracePanel, {}, connected);
    const compose = useComposeStore();
    useHistoryStore().all = [historyEntry(compose.snapshot(), outcome('big', { body: { kind: 'text', text: 'x'.repeat(5000) } }))];
    useTraceViewStore().ingest(rpcSteps('big', 1000));
    useTraceViewStore().select('big');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-reply-body]').text()).toHaveLength(2001);
    await wrapper.find('[data-testid=trace-reply-show-all]').trigger('click');
    expect(wrapper.find('[data-testid=trace-reply-body]').text()).toHaveLength(5000);
  });

  it('Import asks first when it would replace a trace (the file picker opens only from the answer), and not when there is none', async () => {
    const { wrapper } = mountWith(TracePanel, {}, connected, true);
    const picked: string[] = [];
    const input = wrapper.find<HTMLInputElement>('[data-testid=trace-import]').element;
    input.addEventListener('click', (event) => {
      event.preventDefault();
      picked.push('picker');
    });
    // Nothing to replace: straight to the file picker.
    expect(wrapper.find('[data-testid=trace-import-button]').text()).toBe('Import');
    await wrapper.find('[data-testid=trace-import-button]').trigger('click');
    expect(picked).toEqual(['picker']);
    useTraceViewStore().ingest([...rpcSteps('a', 1000), ...rpcSteps('b', 2000)]);
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-import-button]').text()).toBe('Import…');
    await wrapper.find('[data-testid=trace-import-button]').trigger('click');
    await flushPromises();
    expect(picked).toEqual(['picker']);
    expect(wrapper.find('[data-testid=trace-import-confirm]').text()).toMatch(/^Importing a file replaces the trace of 2 RPCs in the app with the file's; Export it first to keep a copy\./);
    expect(document.activeElement?.getAttribute('data-testid')).toBe('trace-import-keep');
    await wrapper.find('[data-testid=trace-import-keep]').trigger('click');
    await flushPromises();
    expect(picked).toEqual(['picker']);
    expect(wrapper.find('[data-testid=trace-import-confirm]').exists()).toBe(false);
    await wrapper.find('[data-testid=trace-import-button]').trigger('click');
    await flushPromises();
    await wrapper.find('[data-testid=trace-import-yes]').trigger('click');
    await flushPromises();
    expect(picked).toEqual(['picker', 'picker']);
    wrapper.unmount();
  });

  it('a bad import says why in a sentence and no longer shows the previous "Imported" line', async () => {
    const { wrapper } = mountWith(TracePanel, { 'trace.import.load': () => ({ steps: rpcSteps('x', 1), dropped: { rpcs: 0, steps: 0 } }) }, connected);
    const trace = useTraceViewStore();
    await trace.importTrace(JSON.stringify({ format: 'bridgescope-trace', version: 1, steps: [] }), 'good.json');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-imported]').text()).toBe('Imported 1 RPC from good.json.');
    await trace.importTrace('{"steps": 7}', 'bad.json');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-imported]').exists()).toBe(false);
    expect(wrapper.find('[data-testid=trace-import-error]').text()).toMatch(/^"bad\.json" is not a BridgeScope trace export .* Nothing was imported\. Dismiss$/);
  });

  it.each([
    ['a search', (trace: ReturnType<typeof useTraceViewStore>) => void (trace.filter = 'x')],
    ['another RPC picked', (trace: ReturnType<typeof useTraceViewStore>) => trace.select('x')],
    ['Dismiss', (trace: ReturnType<typeof useTraceViewStore>) => trace.dismissImportError()],
  ])('an old import error does not stay on screen: %s clears it', async (_what, act) => {
    const { wrapper } = mountWith(TracePanel, {}, connected);
    const trace = useTraceViewStore();
    await trace.importTrace('not json', 'bad.json');
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-import-error]').exists()).toBe(true);
    act(trace);
    await flushPromises();
    expect(wrapper.find('[data-testid=trace-import-error]').exists()).toBe(false);
  });
});

describe('the Load panel', () => {
  const summary = (overrides: Partial<LoadSummary>): LoadSummary => ({
    count: 100,
    completed: 40,
    failed: 60,
    elapsedMs: 900,
    histogram: { boundsMs: [1, 5], counts: [30, 10, 0] },
    series: [{ atMs: 250, throughput: 40 }],
    cancelled: false,
    errors: {},
    durationMs: 900,
    throughput: 111,
    p50: 1,
    p95: 2,
    p99: 3,
    finishedAt: '2026-01-01T00:00:00.000Z',
    ...overrides,
  });

  it('a page reloaded after a run shows its summary again; one reloaded mid-run shows it going, offers Cancel, and the summary when it ends', async () => {
    const after = mountWith(LoadPanel, { 'load.run.last': () => ({ running: false, summary: summary({}) }) }, connected);
    await flushPromises();
    expect(after.wrapper.find('[data-testid=load-summary]').exists()).toBe(true);
    expect(after.wrapper.find('[data-testid=load-empty]').exists()).toBe(false);
    after.wrapper.unmount();
    const cancels: string[] = [];
    const mid = mountWith(
      LoadPanel,
      { 'load.run.last': () => ({ running: true, progress: summary({ completed: 10, failed: 0 }) }), 'load.run.cancel': () => (cancels.push('cancel'), { cancelled: true }) },
      connected,
    );
    await flushPromises();
    expect(mid.wrapper.find('[data-testid=load-run]').text()).toBe('Cancel');
    expect(mid.wrapper.find('[data-testid=load-done]').text()).toBe('10 / 100');
    await mid.wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(cancels).toEqual(['cancel']);
    mid.client.emit('load.run.finished', { summary: summary({ completed: 40, failed: 60, cancelled: true, errors: { cancelled: 60 } }) });
    await flushPromises();
    expect(mid.wrapper.find('[data-testid=load-run]').text()).toBe('Run');
    expect(mid.wrapper.find('[data-testid=load-done]').text()).toBe('40 / 100');
    expect(mid.wrapper.find('[data-testid=load-summary]').exists()).toBe(true);
  });

  it('a page reloaded after a run that could not finish says why, not the run before it as if it were the last', async () => {
    const after = mountWith(LoadPanel, { 'load.run.last': () => ({ running: false, failed: 'Connect to a broker first.' }) }, connected);
    await flushPromises();
    expect(after.wrapper.find('[data-testid=load-error]').text()).toBe('The last load run could not finish: Connect to a broker first.');
    expect(after.wrapper.find('[data-testid=load-summary]').exists()).toBe(false);
    after.wrapper.unmount();
    // A page that watched another page's run go: its end without a summary says so, and Run is offered again.
    const mid = mountWith(LoadPanel, { 'load.run.last': () => ({ running: true, progress: summary({ completed: 10, failed: 0 }) }) }, connected);
    await flushPromises();
    expect(mid.wrapper.find('[data-testid=load-run]').text()).toBe('Cancel');
    mid.client.emit('load.run.finished', { failed: 'The MQTT connection closed.' });
    await flushPromises();
    expect(mid.wrapper.find('[data-testid=load-run]').text()).toBe('Run');
    expect(mid.wrapper.find('[data-testid=load-error]').text()).toBe('The last load run could not finish: The MQTT connection closed.');
    expect(mid.wrapper.find('[data-testid=load-summary]').exists()).toBe(false);
  });

  it('shows an empty state before any run, not blank charts', () => {
    const { wrapper } = mountWith(LoadPanel, {}, connected);
    expect(wrapper.find('[data-testid=load-empty]').text()).toContain('No load run yet.');
    expect(wrapper.findComponent({ name: 'LoadCharts' }).exists()).toBe(false);
  });

  it('counts cancelled requests as cancelled, not failed, and gives the errors as sentences', async () => {
    const { wrapper } = mountWith(LoadPanel, { 'load.run.start': () => summary({ cancelled: true, failed: 15, errors: { cancelled: 10, timeout: 5 }, notSent: 45 }) }, connected);
    await useLoadStore().start();
    useLoadStore().progress = summary({ failed: 15 });
    await flushPromises();
    expect(wrapper.find('[data-testid=load-failed]').text()).toBe('5');
    expect(wrapper.find('[data-testid=load-cancelled]').text()).toBe('55');
    expect(wrapper.find('[data-testid=load-summary-cancelled]').text()).toBe('Cancelled: 10 requests in flight were cut off, 45 requests never sent.');
    expect(wrapper.find('[data-testid=load-summary-errors]').text()).toBe('5 requests got no reply within the timeout.');
    expect(wrapper.find('[data-testid=load-summary]').text()).not.toMatch(/[{}]/);
  });

  it('adds up after a cancel: done (replied or failed on their own) plus cancelled is the run\'s count (issue 26: 2,379 + 17,671 made 20,050 of 20,000)', async () => {
    const cancelledRun = summary({ count: 20000, completed: 2300, failed: 129, cancelled: true, errors: { cancelled: 50, timeout: 79 }, notSent: 17571 });
    const { wrapper } = mountWith(LoadPanel, { 'load.run.start': () => cancelledRun }, connected);
    await useLoadStore().start();
    useLoadStore().progress = cancelledRun;
    await flushPromises();
    const done = wrapper.find('[data-testid=load-done]').text();
    const cancelled = Number(wrapper.find('[data-testid=load-cancelled]').text());
    expect(done).toBe('2379 / 20000');
    expect(2379 + cancelled).toBe(20000);
  });

  it('refuses to run with an empty count and says so next to the field', async () => {
    const { wrapper, client } = mountWith(LoadPanel, { 'load.run.start': () => summary({}) }, connected);
    await wrapper.find('[data-testid=load-count]').setValue('');
    expect(wrapper.find('[data-testid=load-count-error]').text()).toBe('The number of requests is empty: type a whole number.');
    expect(wrapper.find('[data-testid=load-run]').attributes('disabled')).toBeDefined();
    await useLoadStore().start();
    expect(client.calls).not.toContain('load.run.start');
  });

  it('draws both charts from 0, with units on the axes', () => {
    expect(throughputOptions().scales?.y).toMatchObject({ beginAtZero: true, min: 0, title: { text: 'requests/s' } });
    expect(histogramOptions().scales?.y).toMatchObject({ beginAtZero: true, min: 0, title: { text: 'requests' } });
    expect(throughputOptions().scales?.x).toMatchObject({ title: { text: 'time since start (s)' } });
  });

  it('words every error code, the unknown ones too', () => {
    expect(loadErrorSentences({ unroutable: 1, weird: 2, cancelled: 4 })).toEqual(['2 requests failed (weird).', '1 request was routed nowhere by the broker (no queue bound for the request topic).']);
    expect(cancelledText({ cancelled: false, errors: {} })).toBeUndefined();
  });

  it('says what the trace kept of a run: a sample, or every request in full', () => {
    expect(traceSampleText({ completed: 4990, failed: 10, traceSample: { every: 10, inFull: 500, kept: 512 } })).toBe(
      'The trace kept 500 requests in full (1 in 10), and 12 others that failed or were slow, without their messages; 4,488 other requests were let go.',
    );
    expect(traceSampleText({ completed: 1, failed: 0, traceSample: { every: 10, inFull: 1, kept: 1 } })).toBe('The trace kept the request in full.');
    // A run that kept more than the trace holds says its earliest are gone from it.
    expect(traceSampleText({ completed: 200_000, failed: 0, traceSample: { every: 10, inFull: 20_000, kept: 20_000 } })).toBe(
      "The trace kept 20,000 requests in full (1 in 10); 180,000 other requests were let go. The trace holds its latest 10,000 RPCs: the run's earliest are gone from it (raise Trace 1 in to keep fewer).",
    );
    expect(traceSampleText({ completed: 40, failed: 0 })).toBeUndefined();
    // Every request failed (or was slow): nothing let go, and no "0 other requests were let go".
    expect(traceSampleText({ completed: 0, failed: 20, traceSample: { every: 10, inFull: 2, kept: 20 } })).toBe(
      'The trace kept 2 requests in full (1 in 10), and 18 others that failed or were slow, without their messages.',
    );
    // Trace 1 in 1, or the firehose on: every request in full.
    expect(traceSampleText({ completed: 38, failed: 2, traceSample: { every: 10, inFull: 40, kept: 40 } })).toBe('The trace kept all 40 requests in full.');
  });
});

describe('the Bindings panel', () => {
  const view = (bindings: BindingsView['bindings']): BindingsView => ({ exchange: 'amq.direct', exchangeType: 'direct', bindings });
  const queueBinding = { exchange: 'amq.direct', destination: 'rpc_queue', destinationType: 'queue', bindingKey: 'rpc_queue', consumers: 2 } as BindingsView['bindings'][number];
  const replyBinding = (key: string, client = 'bridgescope-0a1b2c3d') =>
    ({ exchange: 'amq.direct', destination: `mqtt-subscription-${client}qos1`, destinationType: 'queue', bindingKey: key, mqttClientId: client, mqttQos: 1, consumers: 1 }) as BindingsView['bindings'][number];

  it("labels BridgeScope's own reply binding and highlights the one the last reply needs", async () => {
    const { wrapper } = mountWith(BindingsPanel, { 'broker.bindings.list': () => view([queueBinding, replyBinding('reply.mine'), replyBinding('sensors.x', 'device-7')]) }, connected);
    useTraceViewStore().ingest(rpcSteps('mine', 1000, { replyTopic: 'reply/mine', strategy: 'shared' }));
    useTraceViewStore().markComposed('mine');
    await flushPromises();
    const rows = wrapper.findAll('[data-testid=binding-row]');
    expect(rows.map((row) => row.attributes('data-needed'))).toEqual([undefined, 'reply', undefined]);
    expect(rows[1]!.find('[data-testid=binding-own]').text()).toBe("BridgeScope's own reply subscription (this app)");
    expect(rows[2]!.find('[data-testid=binding-own]').exists()).toBe(false);
    expect(wrapper.find('[data-testid=bindings-need]').text()).toContain('there now');
    wrapper.unmount();
  });

  it('says when a per-request reply binding that is gone was there, from the trace', async () => {
    const { wrapper } = mountWith(BindingsPanel, { 'broker.bindings.list': () => view([queueBinding]) }, connected);
    const start = new Date(2026, 0, 2, 9, 0, 1).getTime();
    useTraceViewStore().ingest(rpcSteps('gone', start));
    useTraceViewStore().markComposed('gone');
    await flushPromises();
    expect(wrapper.find('[data-testid=bindings-need-gone]').text()).toBe('gone: was there from 09:00:01 to 09:00:01');
    expect(wrapper.find('[data-testid=binding-gone-row]').text()).toContain('reply.gone');
    wrapper.unmount();
  });

  it('remembers a binding a poll saw and the next one did not', () => {
    const steps = rpcSteps('r', 5);
    expect(replyBindingNeed('r', steps)).toMatchObject({ replyKey: 'reply.r', subscribedAt: 6, endedAt: 11, pending: false });
    mountWith(BindingsPanel, {}, connected);
    const store = useBindingsStore();
    store.remember(view([replyBinding('reply.r')]), 100);
    store.remember(view([replyBinding('reply.r')]), 200);
    store.remember(view([]), 300);
    expect([...store.seen.values()]).toEqual([expect.objectContaining({ bindingKey: 'reply.r', firstSeen: 100, lastSeen: 200, goneAt: 300 })]);
  });
});
