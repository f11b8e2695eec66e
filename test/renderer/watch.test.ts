import type { App } from 'vue';
import { createPinia, setActivePinia } from 'pinia';
import { beforeEach, describe, expect, it } from 'vitest';
import { flushPromises, mount } from '@vue/test-utils';
import type { WatchBatch, WatchRpc, WatchView } from '../../src/shared/contract';
import type { Verdict } from '../../src/shared/diagnosis';
import { clientKey } from '../../src/renderer/src/injection';
import { requestKeysOf, useWatchStore, WATCH_SERIES_POINTS, WATCH_VERDICTS_SHOWN } from '../../src/renderer/src/stores/watch';
import { useNavStore } from '../../src/renderer/src/stores/nav';
import { useTraceViewStore } from '../../src/renderer/src/stores/trace-view';
import { useAppStore } from '../../src/renderer/src/stores/app';
import WatchPanel from '../../src/renderer/src/components/watch/WatchPanel.vue';
import { appWith, fakeClient } from './fake-client';
import { useOtelStore } from '../../src/renderer/src/stores/otel';

const noConsumer: Verdict = { code: 'no-consumer', hop: 'queue', message: 'Nobody consumes from rpc_queue.', evidence: [] };
const rpc = (key: string, extra: Partial<WatchRpc> = {}): WatchRpc => ({ key, pattern: 'seed', topic: 'rpc_queue', id: key, replyKey: `reply.${key}`, sentAt: 1000, ...extra });
const batch = (extra: Partial<WatchBatch> = {}): WatchBatch => ({
  at: 2000,
  stats: [{ topic: 'rpc_queue', requests: 10, replies: 8, unanswered: 2, unseen: 0, waiting: 0, retried: 0, notRequests: 0, qos0Replies: 0, late: 0, duplicates: 1, rate: 5, rateOverS: 10, p50: 3, p95: 9, p99: 12, workers: { w1: 5, w2: 3 } }],
  verdicts: [],
  replied: [],
  pairs: 0,
  dropped: { pending: 0, timedOut: 0, topic: 0, ui: 0 },
  ...extra,
});
const running: WatchView = { state: 'running', settings: { mode: 'tap', timeoutMs: 500, requestKeys: ['rpc_queue'] }, exchange: 'amq.direct', since: 1, through: 'amq.gen-x' };

describe('watch store', () => {
  let app: App;
  let client: ReturnType<typeof fakeClient>;
  let started: unknown;

  beforeEach(() => {
    started = undefined;
    client = fakeClient({
      'watch.snapshot.get': () => ({ view: { state: 'stopped' }, verdicts: [] }),
      'watch.start': (args) => {
        started = args;
        return running;
      },
      'watch.stop': () => ({ state: 'stopped' }),
      'watch.rpc.open': ({ key }) => ({ rpcId: `watch-${key}` }),
    });
    app = appWith(client);
  });

  it('reads the request keys as typed: commas, spaces or lines, each once', () => {
    expect(requestKeysOf(' rpc_queue, sensors.read\nrpc_queue  ')).toEqual(['rpc_queue', 'sensors.read']);
    expect(requestKeysOf(' , ')).toEqual([]);
  });

  it('starts with the mode, timeout and keys of the form, and refuses an empty key list with a sentence', async () => {
    app.runWithContext(() => undefined);
    const watch = useWatchStore();
    watch.keysText = '';
    expect(watch.keysError).toMatch(/at least one request key/);
    await watch.start();
    expect(started).toBeUndefined();
    watch.keysText = 'rpc_queue, b.c';
    watch.mode = 'firehose';
    watch.timeoutMs = 750;
    await watch.start();
    expect(started).toEqual({ mode: 'firehose', timeoutMs: 750, requestKeys: ['rpc_queue', 'b.c'] });
    expect(watch.running).toBe(true);
  });

  it('takes batches: the table replaced, verdicts newest first and capped with the rest counted, a latency point per topic', async () => {
    const watch = useWatchStore();
    await watch.listen();
    client.emit('watch.batch.added', batch({ verdicts: [rpc('a', { verdict: noConsumer }), rpc('b', { verdict: noConsumer })], pairs: 8, replied: [rpc('r1', { rttMs: 3 })] }));
    expect(watch.stats[0]?.workers).toEqual({ w1: 5, w2: 3 });
    expect(watch.verdicts.map((line) => line.key)).toEqual(['b', 'a']);
    expect(watch.pairs).toBe(8);
    expect(watch.replied.map((line) => line.key)).toEqual(['r1']);
    expect(watch.seriesFor('rpc_queue')).toEqual([{ at: 2000, rate: 5, p50: 3, p95: 9, p99: 12 }]);
    const many = Array.from({ length: WATCH_VERDICTS_SHOWN }, (_, index) => rpc(`m${index}`, { verdict: noConsumer }));
    client.emit('watch.batch.added', batch({ verdicts: many, dropped: { pending: 3, timedOut: 0, topic: 1, ui: 4, last: 'more than 10 requests waited' } }));
    expect(watch.verdicts).toHaveLength(WATCH_VERDICTS_SHOWN);
    expect(watch.verdicts[0]?.key).toBe(`m${WATCH_VERDICTS_SHOWN - 1}`);
    expect(watch.verdictsLetGo).toBe(2);
    expect(watch.droppedTotal).toBe(3 + 1 + 4 + 2);
  });

  it('keeps a bounded latency series per topic, whatever the number of batches', async () => {
    const watch = useWatchStore();
    await watch.listen();
    for (let index = 0; index < WATCH_SERIES_POINTS + 50; index += 1) client.emit('watch.batch.added', batch({ at: index }));
    expect(watch.seriesFor('rpc_queue')).toHaveLength(WATCH_SERIES_POINTS);
    expect(watch.seriesFor('rpc_queue')[0]?.at).toBe(50);
  });

  it('follows the view the core says, and picks up a running watch (its settings and verdicts) when the page opens', async () => {
    const snapshot = { view: running, batch: batch(), verdicts: [rpc('older', { verdict: noConsumer }), rpc('old', { verdict: noConsumer })], verdictsTotal: 1200, pairs: 8, replied: [rpc('p1'), rpc('p2')] };
    client = fakeClient({ 'watch.snapshot.get': () => snapshot });
    app = appWith(client);
    const watch = useWatchStore();
    await watch.listen();
    expect(watch.running).toBe(true);
    expect(watch.timeoutMs).toBe(500);
    expect(watch.verdicts.map((line) => line.key)).toEqual(['old', 'older']);
    // The core keeps the latest verdicts only: the count of all of them stays what the page showed before the reload.
    expect(watch.verdicts.length + watch.verdictsLetGo).toBe(1200);
    // A page that loads mid-watch shows the replied pairs and the latest replies so far (it read 0 and none).
    expect(watch.pairs).toBe(8);
    expect(watch.replied.map((line) => line.key)).toEqual(['p2', 'p1']);
    // Read again (a reconnect): replaced, not added to.
    await watch.listen();
    expect(watch.pairs).toBe(8);
    expect(watch.verdicts).toHaveLength(2);
    client.emit('watch.view.changed', { state: 'failed', message: 'The watch stopped: it lost its AMQP connection.' });
    expect(watch.running).toBe(false);
    expect(watch.view.message).toMatch(/lost its AMQP connection/);
  });

  it('opens a watched RPC in Trace once its steps arrived', async () => {
    const watch = useWatchStore();
    const trace = useTraceViewStore();
    await watch.listen();
    await trace.start().catch(() => undefined);
    const opening = watch.open(rpc('a', { verdict: noConsumer }));
    await flushPromises();
    expect(useNavStore().tab).not.toBe('trace');
    client.emit('trace.steps.added', { steps: [{ rpcId: 'watch-a', seq: 1, at: 1000, source: 'broker', kind: 'rpc.diagnosed', detail: { verdict: noConsumer } }] });
    await opening;
    expect(useNavStore().tab).toBe('trace');
    expect(trace.selectedId).toBe('watch-a');
  });
});

describe('watch panel', () => {
  it('shows the table, the workers with counts, the verdict word and sentence, and the dropped count', async () => {
    const client = fakeClient({ 'watch.snapshot.get': () => ({ view: running, verdicts: [] }) });
    const pinia = createPinia();
    setActivePinia(pinia);
    const wrapper = mount(WatchPanel, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client }, stubs: { WatchLatencyChart: true } } });
    useAppStore().state = { profile: { name: 'p' } } as never;
    const watch = useWatchStore();
    await watch.listen();
    client.emit('watch.batch.added', batch({ verdicts: [rpc('lost-1', { verdict: noConsumer })], dropped: { pending: 2, timedOut: 0, topic: 0, ui: 0 } }));
    await flushPromises();
    expect(wrapper.find('[data-testid=watch-row]').attributes('data-topic')).toBe('rpc_queue');
    expect(wrapper.find('[data-testid=watch-workers]').text()).toContain('w1 5');
    expect(wrapper.find('[data-testid=watch-unanswered]').text()).toBe('2');
    expect(wrapper.find('[data-testid=watch-duplicates]').text()).toBe('1');
    expect(wrapper.find('[data-testid=watch-duplicates]').classes()).toContain('warn');
    const verdict = wrapper.find('[data-testid=watch-verdict]');
    expect(verdict.find('[data-testid=verdict-badge]').text()).toBe('no consumer');
    expect(verdict.find('[data-testid=watch-verdict-sentence]').text()).toBe('Nobody consumes from rpc_queue.');
    // Its reply topic beside its id: devices count their ids from 1, so "id 1" alone may be any device's.
    expect(verdict.find('[data-testid=watch-reply-topic]').text()).toBe('reply.lost-1');
    expect(wrapper.find('[data-testid=watch-dropped]').text()).toBe('2');
    expect(wrapper.find('[data-testid=watch-toggle]').text()).toBe('Stop');
    expect(wrapper.find('[data-testid=watch-qos0-detail]').exists()).toBe(false);
    // Replies published non-persistent: said in words, not only as "3 at QoS 0" under Replied (the trial).
    const [line] = batch().stats;
    client.emit('watch.batch.added', batch({ stats: [{ ...(line as NonNullable<typeof line>), qos0Replies: 3 }] }));
    await flushPromises();
    expect(wrapper.find('[data-testid=watch-qos0-replies]').text()).toBe('3 at QoS 0');
    expect(wrapper.find('[data-testid=watch-qos0-detail]').text()).toMatch(/^Replies to requests on "rpc_queue" were published non-persistent .* RabbitMQ 3\.13\+ delivers them to devices at QoS 0 .*\(delivery_mode 2\)\.$/);
  });
});

describe('OpenTelemetry setting', () => {
  it('is off by default, refuses a URL that is not http(s) with one sentence, and sends a good one to the core', async () => {
    const asked: Array<string | null> = [];
    const client = fakeClient({
      'otel.export.get': () => ({ state: 'off' }),
      'otel.export.set': ({ url }) => {
        asked.push(url);
        return url === null ? { state: 'off' } : { state: 'on', destinations: [`${url}/v1/traces`], source: 'app' };
      },
    });
    appWith(client);
    const otel = useOtelStore();
    await otel.load();
    expect(otel.view.state).toBe('off');
    otel.urlText = 'localhost:4318';
    await otel.apply();
    expect(otel.urlError).toMatch(/http:\/\/ or https:\/\//);
    expect(asked).toEqual([]);
    otel.urlText = ' http://127.0.0.1:4318 ';
    await otel.apply();
    expect(otel.view).toMatchObject({ state: 'on', destinations: ['http://127.0.0.1:4318/v1/traces'] });
    await otel.off();
    expect(asked).toEqual(['http://127.0.0.1:4318', null]);
    expect(otel.view.state).toBe('off');
  });
});
