/** The trace as the inspector shows it: steps per RPC, ingested in batches, searchable, exportable. */
import { defineStore } from 'pinia';
import { computed, ref, shallowRef, watch } from 'vue';
import {
  PreviewBudget,
  previewSize,
  stepPhase,
  TRACE_BODY_BUDGET_BYTES,
  TRACE_EXPORT_FORMAT,
  withoutPreview,
  type RpcTraceSummary,
  type TraceExport,
  type TraceStep,
} from '../../../shared/trace';
import { summarize } from '../../../shared/trace-summary';
import { messageOf, useClient } from '../injection';
import { hasHostLink } from '../host-link';
import { useBusy } from './use-busy';
import { useAppStore } from './app';

export const MAX_RPCS_SHOWN = 20_000;
/** batches of steps shown at once before the page shows them together (see showBatch) */
export const BATCH_SHOW_BURST = 12;
/** how often a stream's batches are shown, once the burst is spent */
export const BATCH_SHOWS_PER_SECOND = 5;

/**
 * Where an RPC came from: sent from Compose, by a load run of this page, by this app's client before the page saw it
 * (a reload or an import), or by someone else (only the server or the broker saw it).
 */
export type RpcOrigin = 'compose' | 'load' | 'earlier' | 'external';

export const useTraceViewStore = defineStore('trace', () => {
  const client = useClient();
  const app = useAppStore();
  // Plain containers, not reactive: a `version` bump re-renders what depends on them (at most a few a second, see showBatch).
  const byRpc = new Map<string, TraceStep[]>();
  const haystacks = new Map<string, string>();
  const summaries = new Map<string, RpcTraceSummary>();
  let order: string[] = [];
  const version = ref(0);
  /** the page keeps body previews within the same budget as the host: older ones are dropped, their sizes and headers kept */
  const bodies = new PreviewBudget(TRACE_BODY_BUDGET_BYTES);
  const dropPreview = (rpcId: string, seq: number): number => {
    const list = byRpc.get(rpcId);
    const index = list ? list.findIndex((step) => step.seq === seq) : -1;
    if (!list || index < 0) return 0;
    const step = list[index] as TraceStep;
    list[index] = withoutPreview(step);
    return previewSize(step);
  };
  /** what the page shows of the counts (set when a batch is shown); the counts themselves are kept as batches come */
  const totalSteps = ref(0);
  const droppedRpcs = ref(0);
  let stepCount = 0;
  let droppedCount = 0;
  const selectedId = ref<string>();
  const filter = ref('');
  /** all RPCs, only those with warnings, or only those that ended without a reply */
  const show = ref<'all' | 'warnings' | 'failed'>('all');
  // One error line for the panel's actions (snapshot, firehose, export, import, clear); reset as useBusy says.
  const { error, run } = useBusy();
  const lastImport = shallowRef<{ rpcs: number; file?: string }>();
  /**
   * Why the last import failed: its own line, gone as soon as the user does something else with the trace (another
   * import, Export, Clear, a search or filter, another RPC picked) or dismisses it, so an old failure never sits on screen.
   */
  const importError = ref<string>();
  /** which RPCs to list by where they came from */
  const origin = ref<'all' | RpcOrigin>('all');
  // A search or filter is the user moving on: an old import failure goes. It is read over every step that came so far,
  // so a show still waiting is made now (the counts then match the list).
  watch([filter, show, origin], () => {
    importError.value = undefined;
    if (showTimer !== undefined) showAll();
  });
  /** set by the Load panel while its run goes: RPCs first seen then are the run's */
  const loadActive = ref(false);
  const composeIds = new Set<string>();
  const loadIds = new Set<string>();
  const ourIds = new Set<string>();
  /** set by Compose while its send waits for the answer */
  const composePending = ref(false);
  const composePendingIds = new Set<string>();
  /** RPCs of this app's client that were in the trace before this page saw them come (a reload, an import) */
  const earlierIds = new Set<string>();

  /**
   * The newest step of the last snapshot. A snapshot read while steps were still on their way (a reconnect, a resync after
   * the page fell behind) already holds them: when their event arrives next, they are not counted twice.
   */
  let snapshotSeq = 0;
  /** the newest step the host sent this page (a restarted host counts from 1 again: its snapshot is then below it) */
  let hostSeq = 0;
  /** steps of RPCs the page held when `ui` was restarted (the new host does not have them): kept, and written by Export */
  let keptSteps: TraceStep[] = [];
  const keptAcrossRestart = ref(0);

  function ingest(steps: TraceStep[], show = true): void {
    let kept = 0;
    for (const step of steps) {
      if (snapshotSeq > 0 && step.seq <= snapshotSeq) continue;
      kept += 1;
      if (step.seq > hostSeq) hostSeq = step.seq;
      let list = byRpc.get(step.rpcId);
      if (!list) {
        list = [];
        byRpc.set(step.rpcId, list);
        order.push(step.rpcId);
        if (loadActive.value) loadIds.add(step.rpcId);
        else if (composePending.value) composePendingIds.add(step.rpcId);
      }
      // This page's client publishes Compose's and the load run's requests; an RPC it never published is someone else's.
      if (step.source === 'client') ourIds.add(step.rpcId);
      // A load run's request says so on its composed step: it stays the run's after a reload (it is not "earlier").
      if (step.kind === 'composed' && step.detail.loadRun !== undefined) loadIds.add(step.rpcId);
      list.push(step);
      bodies.note(step, dropPreview);
      haystacks.delete(step.rpcId);
      summaries.delete(step.rpcId);
    }
    stepCount += kept;
    if (order.length > MAX_RPCS_SHOWN) {
      const excess = order.length - MAX_RPCS_SHOWN;
      for (const id of order.slice(0, excess)) {
        stepCount -= byRpc.get(id)?.length ?? 0;
        bodies.forget(id);
        byRpc.delete(id);
        haystacks.delete(id);
        summaries.delete(id);
        loadIds.delete(id);
        ourIds.delete(id);
        composePendingIds.delete(id);
        earlierIds.delete(id);
      }
      order = order.slice(excess);
      droppedCount += excess;
    }
    if (show) showBatch();
  }

  /**
   * The host sends a batch every 30 ms under a stream; each `version` bump has Vue patch the list, the counts and the
   * chart, and the browser lay them out again: under a load run, more than a frame's work each on a slow machine, so the
   * page fell behind the host. Batches are shown as a bucket of BATCH_SHOW_BURST shows allows, refilled at
   * BATCH_SHOWS_PER_SECOND: a Compose send or a short burst shows at once, batch by batch; a stream's batches show
   * together, that many times a second (their steps are in the store already, unread until then). A reset shows at once.
   */
  let showTokens = BATCH_SHOW_BURST;
  let tokensAt = 0;
  let showTimer: ReturnType<typeof setTimeout> | undefined;
  function showNow(): void {
    showTimer = undefined;
    totalSteps.value = stepCount;
    droppedRpcs.value = droppedCount;
    version.value += 1;
  }
  /** Shows what came so far now, a show still waiting included (a reset, Compose's RPC, a filter, the store's stop). */
  function showAll(): void {
    clearTimeout(showTimer);
    showNow();
  }
  function showBatch(): void {
    if (showTimer !== undefined) return;
    const now = performance.now();
    showTokens = Math.min(BATCH_SHOW_BURST, showTokens + ((now - tokensAt) * BATCH_SHOWS_PER_SECOND) / 1000);
    tokensAt = now;
    if (showTokens >= 1) {
      showTokens -= 1;
      showNow();
      return;
    }
    showTimer = setTimeout(() => {
      showTokens = 0;
      tokensAt = performance.now();
      showNow();
    }, ((1 - showTokens) * 1000) / BATCH_SHOWS_PER_SECOND);
  }

  /** The page's trace becomes `steps` (the host's); `kept` (RPCs from before a restart of the host) go first, as older. */
  function reset(steps: TraceStep[], kept: TraceStep[] = []): void {
    byRpc.clear();
    bodies.clear();
    haystacks.clear();
    summaries.clear();
    // Where an RPC came from is kept across a reset (the same host read again); one this page never saw is from earlier.
    const known = new Set([...order, ...composeIds]);
    order = [];
    stepCount = 0;
    droppedCount = 0;
    // The RPC being looked at stays selected when the new trace still holds it (a reconnect, a resync).
    const keepSelected = selectedId.value;
    selectedId.value = undefined;
    const wasLoading = loadActive.value;
    loadActive.value = false;
    snapshotSeq = 0;
    keptSteps = kept;
    ingest(kept, false);
    keptAcrossRestart.value = new Set(kept.map((step) => step.rpcId)).size;
    ingest(steps, false);
    // A restarted host counts from 1 again: the snapshot's own newest step is the mark.
    snapshotSeq = steps.reduce((newest, step) => Math.max(newest, step.seq), 0);
    hostSeq = snapshotSeq;
    loadActive.value = wasLoading;
    for (const id of order) if (!known.has(id) && !loadIds.has(id)) earlierIds.add(id);
    if (keepSelected !== undefined && byRpc.has(keepSelected)) selectedId.value = keepSelected;
    // A reset (the whole trace read again) is shown at once, whatever the batches before it.
    showAll();
  }

  /** The newest step of the pieces of a reset so far (a reset in pieces sets its mark with the last one). */
  let piecesSeq = 0;
  let selectedAcrossPieces: string | undefined;
  /** a reset in pieces is under way (its 'first' came, its 'last' not yet) */
  let piecesActive = false;
  /**
   * A reset the host sends in pieces: the first clears as a whole reset does, the others add; the mark that drops the
   * steps the reset repeats is set by the last, once every piece was read.
   */
  function resetPiece(steps: TraceStep[], piece?: 'first' | 'middle' | 'last'): void {
    if (piece === undefined) {
      // A plain reset (a Clear, an import) ends a reset in pieces: its later pieces, still on their way, are dropped.
      piecesActive = false;
      reset(steps);
      return;
    }
    if (piece !== 'first' && !piecesActive) return;
    if (piece === 'first') {
      piecesActive = true;
      selectedAcrossPieces = selectedId.value;
      reset(steps);
      snapshotSeq = 0;
      piecesSeq = 0;
    } else {
      ingest(steps);
    }
    // The RPC being looked at stays selected when a later piece holds it.
    if (selectedId.value === undefined && selectedAcrossPieces !== undefined && byRpc.has(selectedAcrossPieces)) selectedId.value = selectedAcrossPieces;
    piecesSeq = steps.reduce((newest, step) => Math.max(newest, step.seq), piecesSeq);
    if (piece === 'last') {
      piecesActive = false;
      selectedAcrossPieces = undefined;
      snapshotSeq = piecesSeq;
      hostSeq = piecesSeq;
      showAll();
    }
  }

  function summary(rpcId: string): RpcTraceSummary {
    let cached = summaries.get(rpcId);
    if (!cached) {
      cached = summarize(rpcId, stepsOf(rpcId));
      summaries.set(rpcId, cached);
    }
    return cached;
  }

  /**
   * Compose claims its RPC once the call returned; until then, one of our client's RPCs is Compose's while a Compose send is
   * pending and no load run goes. Otherwise it is a load run's: its last steps can arrive after the run's answer.
   */
  function originOf(rpcId: string): RpcOrigin {
    if (composeIds.has(rpcId)) return 'compose';
    if (!ourIds.has(rpcId)) return 'external';
    if (earlierIds.has(rpcId)) return 'earlier';
    return !loadIds.has(rpcId) && composePendingIds.has(rpcId) ? 'compose' : 'load';
  }

  /** The newest RPC from `from`, if any. */
  function newestFrom(from: RpcOrigin): string | undefined {
    void version.value;
    for (let index = order.length - 1; index >= 0; index -= 1) {
      const id = order[index] as string;
      if (originOf(id) === from) return id;
    }
    return undefined;
  }

  function markComposed(rpcId: string): void {
    composeIds.add(rpcId);
    showAll();
  }

  function stepsOf(rpcId: string): TraceStep[] {
    return [...(byRpc.get(rpcId) ?? [])].sort((a, b) => stepPhase(a) - stepPhase(b) || a.seq - b.seq);
  }

  function haystack(rpcId: string): string {
    let text = haystacks.get(rpcId);
    if (text === undefined) {
      text = `${rpcId} ${JSON.stringify(byRpc.get(rpcId) ?? [])}`.toLowerCase();
      haystacks.set(rpcId, text);
    }
    return text;
  }

  /** Newest first; filtered by a case-insensitive search over everything an RPC's steps say. */
  const visibleIds = computed(() => {
    void version.value;
    const needle = filter.value.trim().toLowerCase();
    let ids = needle === '' ? order : order.filter((id) => haystack(id).includes(needle));
    if (show.value === 'warnings') ids = ids.filter((id) => summary(id).warnings.length > 0);
    if (show.value === 'failed') ids = ids.filter((id) => ['failed', 'rejected'].includes(summary(id).state));
    if (origin.value !== 'all') ids = ids.filter((id) => originOf(id) === origin.value);
    return [...ids].reverse();
  });

  /**
   * The RPC the detail pane shows: the selected one while the list shows it; one the search or filters hide is not shown
   * (it stays selected, and comes back when they match it again). One whose steps have not come yet is shown (Open in Trace).
   */
  const shownId = computed(() => {
    void version.value;
    const id = selectedId.value;
    if (id === undefined) return undefined;
    return !byRpc.has(id) || visibleIds.value.includes(id) ? id : undefined;
  });
  const selectedSteps = computed(() => {
    void version.value;
    return shownId.value ? stepsOf(shownId.value) : [];
  });
  const selectedSummary = computed(() => {
    void version.value;
    return shownId.value ? summary(shownId.value) : undefined;
  });
  /** every RPC the page holds, whatever the filters */
  const rpcCount = computed(() => {
    void version.value;
    return order.length;
  });
  /** the steps of the RPCs the search and filters show (all of them when nothing filters) */
  const visibleSteps = computed(() => {
    const ids = visibleIds.value;
    if (ids.length === order.length) return totalSteps.value;
    let steps = 0;
    for (const id of ids) steps += byRpc.get(id)?.length ?? 0;
    return steps;
  });

  async function start(): Promise<() => void> {
    const offAdded = client.on('trace.steps.added', ({ steps }) => ingest(steps));
    const offReset = client.on('trace.store.reset', ({ steps, piece }) => resetPiece(steps, piece));
    const load = (afterHostDown = false) =>
      run(async () => {
        const { steps } = await client.invoke('trace.snapshot.get', {});
        // Read again after the host came back: the RPC the user was looking at stays selected (reset keeps it). A host
        // that was restarted holds none of what the page showed (its steps count from 1 again): those RPCs are kept on
        // the page, not wiped (History's "Open in Trace" still finds them settled, and Export writes them).
        const newest = steps.reduce((max, step) => Math.max(max, step.seq), 0);
        if (afterHostDown && newest < hostSeq) {
          const inSnapshot = new Set(steps.map((step) => step.rpcId));
          const kept = order.filter((id) => !inSnapshot.has(id)).flatMap((id) => byRpc.get(id) ?? []);
          reset(steps, kept);
        } else {
          reset(steps);
        }
      }, 'Loading the trace');
    // Steps sent while the page could not reach the host are lost to it: read the whole trace again once it is back.
    const offHost = hasHostLink(client)
      ? client.onHostLink((next) => {
          if (next.state === 'up') void load(true);
        })
      : () => undefined;
    await load();
    return () => {
      offAdded();
      offReset();
      offHost();
      // What came before the stop is shown, not left waiting for the next start.
      if (showTimer !== undefined) showAll();
    };
  }

  async function setTracing(on: boolean): Promise<void> {
    await run(async () => {
      const view = await client.invoke('trace.tracing.set', { on });
      if (view.state === 'unavailable') throw new Error(view.reason);
    }, on ? 'Turning the firehose on' : 'Turning the firehose off');
  }

  // Still asked for while it reconnects after a broker restart; the panel says why it is not on.
  const tracing = computed(() => app.state?.tracer.state === 'on' || app.state?.tracer.state === 'reconnecting');
  const tracerNote = computed(() => {
    const tracer = app.state?.tracer;
    if (tracer?.state === 'reconnecting') return `Firehose tracing is reconnecting: ${tracer.reason}`;
    if (tracer?.state === 'off' && tracer.reason) return tracer.reason;
    return undefined;
  });

  /** The host's export, with the RPCs kept on the page across a restart of the host (older, so first). */
  function exportTrace(): Promise<TraceExport | undefined> {
    importError.value = undefined;
    return run(async () => {
      const exported = await client.invoke('trace.export.create', {});
      return keptSteps.length === 0 ? exported : { ...exported, steps: [...keptSteps, ...exported.steps] };
    }, 'Exporting');
  }

  async function importTrace(text: string, file?: string): Promise<void> {
    // The line under the toolbar is about this import only: a failure never sits next to the previous success.
    lastImport.value = undefined;
    importError.value = undefined;
    const named = file ? `"${file}"` : 'That file';
    const failed = await run(async () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw new Error(`${named} is not JSON (${messageOf(err)}), so it is not a BridgeScope trace export.`);
      }
      if (typeof parsed !== 'object' || parsed === null || (parsed as { format?: unknown }).format !== TRACE_EXPORT_FORMAT) {
        throw new Error(`${named} is not a BridgeScope trace export (those are JSON files made by Export, with "format": "${TRACE_EXPORT_FORMAT}"). Nothing was imported.`);
      }
      let result;
      try {
        result = await client.invoke('trace.import.load', { trace: parsed });
      } catch (err) {
        throw new Error(`${named} could not be imported, the trace shown is unchanged. ${messageOf(err)}`);
      }
      lastImport.value = { rpcs: new Set(result.steps.map((step) => step.rpcId)).size, ...(file ? { file } : {}) };
      return false;
    }, 'Importing');
    // The panel's shared error line would keep it until the next action settles: the import's failure has a line of its own.
    if (failed === undefined && error.value !== undefined) {
      importError.value = error.value;
      error.value = undefined;
    }
  }

  async function clear(): Promise<void> {
    lastImport.value = undefined;
    importError.value = undefined;
    await run(() => client.invoke('trace.store.clear', {}), 'Clearing');
  }

  function select(rpcId: string | undefined): void {
    if (rpcId !== selectedId.value) importError.value = undefined;
    selectedId.value = rpcId;
  }

  /** Selects `rpcId` and clears a search or filter that hides it from the list (not for an RPC whose steps have not come yet). */
  function reveal(rpcId: string): void {
    if (byRpc.has(rpcId) && !visibleIds.value.includes(rpcId)) {
      filter.value = '';
      show.value = 'all';
      origin.value = 'all';
    }
    select(rpcId);
  }

  return {
    version,
    totalSteps,
    rpcCount,
    visibleSteps,
    keptAcrossRestart,
    droppedRpcs,
    selectedId,
    filter,
    show,
    origin,
    loadActive,
    composePending,
    error,
    importError,
    dismissImportError: () => void (importError.value = undefined),
    lastImport,
    originOf,
    newestFrom,
    markComposed,
    stepsOf,
    visibleIds,
    selectedSteps,
    selectedSummary,
    tracing,
    tracerNote,
    ingest,
    reset,
    summary,
    start,
    setTracing,
    exportTrace,
    importTrace,
    clear,
    select,
    reveal,
  };
});
