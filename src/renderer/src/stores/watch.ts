/** The Watch panel: other clients' RPCs on the broker, as the core's watcher pairs them; batches in, bounded lists out. */
import { defineStore } from 'pinia';
import { computed, ref, shallowRef } from 'vue';
import type { WatchBatch, WatchDropped, WatchRpc, WatchSettings, WatchTopicStats, WatchView } from '../../../shared/contract';
import { useClient } from '../injection';
import { useBusy } from './use-busy';
import { useNavStore } from './nav';
import { timeoutProblem } from '../form-checks';

/** verdicts the panel lists (the newest) */
export const WATCH_VERDICTS_SHOWN = 200;
/** replied pairs the panel lists (the newest), to open one in Trace */
export const WATCH_REPLIED_SHOWN = 5;
/** points per topic in the latency chart (one per batch, the newest) */
export const WATCH_SERIES_POINTS = 240;
/** topics whose latency series is kept */
export const WATCH_SERIES_TOPICS = 50;

export interface LatencyPoint {
  at: number;
  p50?: number;
  p95?: number;
  p99?: number;
  rate: number;
}

const noDrops = (): WatchDropped => ({ pending: 0, timedOut: 0, topic: 0, ui: 0 });

/** The request keys as typed: separated by commas, spaces or line breaks; duplicates once. */
export function requestKeysOf(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter((key) => key !== ''))];
}

export const useWatchStore = defineStore('watch', () => {
  const client = useClient();
  const nav = useNavStore();
  const mode = ref<WatchSettings['mode']>('tap');
  const timeoutMs = ref<number | string>(5000);
  const keysText = ref('rpc_queue');
  const view = shallowRef<WatchView>({ state: 'stopped' });
  const stats = shallowRef<WatchTopicStats[]>([]);
  /** newest first */
  const verdicts = shallowRef<WatchRpc[]>([]);
  /** newest first */
  const replied = shallowRef<WatchRpc[]>([]);
  const pairs = ref(0);
  const dropped = shallowRef<WatchDropped>(noDrops());
  /** verdicts the page let go past WATCH_VERDICTS_SHOWN (the core still counted them in the table) */
  const verdictsLetGo = ref(0);
  /** per topic: p50/p95/p99 and rate at each batch; plain (not reactive), `version` says when it changed */
  const series = new Map<string, LatencyPoint[]>();
  const version = ref(0);
  const chartTopic = ref<string>();
  const { active: busy, error, run } = useBusy();
  /** watched RPCs already added to the trace (a second open does not wait for steps) */
  const opened = new Set<string>();

  const timeoutError = computed(() => timeoutProblem(timeoutMs.value));
  const keysError = computed(() => {
    const keys = requestKeysOf(keysText.value);
    if (keys.length === 0) return 'Name at least one request key (the routing key requests are published with, e.g. rpc_queue; "#" on a topic exchange for all).';
    if (keys.length > 100) return 'At most 100 request keys.';
    const long = keys.find((key) => key.length > 255);
    return long ? `The request key "${long.slice(0, 40)}…" is longer than 255 characters, the most a routing key holds.` : undefined;
  });
  const running = computed(() => view.value.state === 'running' || view.value.state === 'starting');
  const droppedTotal = computed(() => dropped.value.pending + dropped.value.timedOut + dropped.value.topic + dropped.value.ui + verdictsLetGo.value);
  /** the topic the chart shows: the one picked, else the busiest */
  const shownTopic = computed(() => {
    const picked = chartTopic.value;
    if (picked !== undefined && stats.value.some((line) => line.topic === picked)) return picked;
    return [...stats.value].sort((a, b) => b.requests - a.requests)[0]?.topic;
  });

  function clear(): void {
    stats.value = [];
    verdicts.value = [];
    replied.value = [];
    pairs.value = 0;
    dropped.value = noDrops();
    verdictsLetGo.value = 0;
    series.clear();
    opened.clear();
    version.value += 1;
  }

  /** One batch from the core: replaces the figures, prepends what closed, one reactive update each. */
  function ingest(batch: WatchBatch): void {
    stats.value = batch.stats;
    dropped.value = batch.dropped;
    pairs.value += batch.pairs;
    if (batch.verdicts.length > 0) {
      const next = [...[...batch.verdicts].reverse(), ...verdicts.value];
      if (next.length > WATCH_VERDICTS_SHOWN) verdictsLetGo.value += next.length - WATCH_VERDICTS_SHOWN;
      verdicts.value = next.slice(0, WATCH_VERDICTS_SHOWN);
    }
    if (batch.replied.length > 0) replied.value = [...[...batch.replied].reverse(), ...replied.value].slice(0, WATCH_REPLIED_SHOWN);
    for (const line of batch.stats) {
      let points = series.get(line.topic);
      if (!points) {
        if (series.size >= WATCH_SERIES_TOPICS) continue;
        points = [];
        series.set(line.topic, points);
      }
      const point: LatencyPoint = { at: batch.at, rate: line.rate };
      if (line.p50 !== undefined) point.p50 = line.p50;
      if (line.p95 !== undefined) point.p95 = line.p95;
      if (line.p99 !== undefined) point.p99 = line.p99;
      points.push(point);
      if (points.length > WATCH_SERIES_POINTS) points.splice(0, points.length - WATCH_SERIES_POINTS);
    }
    version.value += 1;
  }

  function seriesFor(topic: string | undefined): readonly LatencyPoint[] {
    return topic === undefined ? [] : (series.get(topic) ?? []);
  }

  /** Follows the core's watch (view and batches); reads what it has now first. Returns the unsubscribe. */
  async function listen(): Promise<() => void> {
    const stops = [
      client.on('watch.view.changed', (next) => {
        view.value = next;
      }),
      client.on('watch.batch.added', ingest),
    ];
    try {
      const now = await client.invoke('watch.snapshot.get', {});
      view.value = now.view;
      if (now.view.settings) {
        mode.value = now.view.settings.mode;
        timeoutMs.value = now.view.settings.timeoutMs;
        keysText.value = now.view.settings.requestKeys.join(', ');
      }
      if (now.batch) {
        // The snapshot holds every batch sent so far, those this page already took included: its lists and count replace
        // the page's instead of adding to them.
        ingest({ ...now.batch, verdicts: [], replied: [], pairs: 0 });
        pairs.value = now.pairs ?? 0;
        verdicts.value = [...now.verdicts].reverse().slice(0, WATCH_VERDICTS_SHOWN);
        // The core keeps the latest verdicts only: the ones before them count as let go, as on the page that saw them.
        verdictsLetGo.value = Math.max(0, (now.verdictsTotal ?? now.verdicts.length) - verdicts.value.length);
        replied.value = [...(now.replied ?? [])].reverse().slice(0, WATCH_REPLIED_SHOWN);
      }
    } catch {
      // An older core without the watch: the panel says so when Start fails.
    }
    return () => stops.forEach((stop) => stop());
  }

  async function start(): Promise<void> {
    if (running.value || timeoutError.value || keysError.value) return;
    clear();
    await run(async () => {
      view.value = await client.invoke('watch.start', { mode: mode.value, timeoutMs: Number(timeoutMs.value), requestKeys: requestKeysOf(keysText.value) });
    }, 'Starting');
  }

  async function stop(): Promise<void> {
    await run(async () => {
      view.value = await client.invoke('watch.stop', {});
    }, 'Stopping');
  }

  /** Opens one watched RPC in the Trace panel, with the steps the watch saw. */
  async function open(rpc: WatchRpc): Promise<void> {
    await run(async () => {
      // Trace reveals an RPC it holds even when its search hides it: wait (briefly) for the steps the core adds to arrive.
      let arrived: () => void = () => undefined;
      const expected = new Promise<void>((resolve) => (arrived = resolve));
      let wanted: string | undefined;
      const stop = client.on('trace.steps.added', ({ steps }) => {
        if (wanted !== undefined && steps.some((step) => step.rpcId === wanted)) arrived();
      });
      try {
        const { rpcId } = await client.invoke('watch.rpc.open', { key: rpc.key });
        wanted = rpcId;
        if (!opened.has(rpcId)) await Promise.race([expected, new Promise((resolve) => setTimeout(resolve, 1000))]);
        opened.add(rpcId);
        nav.openInTrace(rpcId);
      } finally {
        stop();
      }
    }, 'Opening');
  }

  return {
    mode,
    timeoutMs,
    keysText,
    view,
    stats,
    verdicts,
    replied,
    pairs,
    dropped,
    verdictsLetGo,
    droppedTotal,
    version,
    chartTopic,
    shownTopic,
    busy,
    error,
    timeoutError,
    keysError,
    running,
    ingest,
    seriesFor,
    listen,
    start,
    stop,
    open,
  };
});
