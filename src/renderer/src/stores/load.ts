/** The Load panel: fire N requests at concurrency C with the compose settings; live progress and the summary. */
import { defineStore } from 'pinia';
import { computed, ref, shallowRef } from 'vue';
import type { LoadProgress, LoadSummary } from '../../../shared/contract';
import { useClient } from '../injection';
import { useBusy } from './use-busy';
import { useComposeStore } from './compose';
import { useTraceViewStore } from './trace-view';
import { concurrencyProblem, countProblem, traceEveryProblem } from '../form-checks';
import { DEFAULT_LOAD_TRACE_EVERY } from '../../../shared/defaults';

export const useLoadStore = defineStore('load', () => {
  const client = useClient();
  const compose = useComposeStore();
  const trace = useTraceViewStore();
  const count = ref(1000);
  const concurrency = ref(10);
  /** one request in this many traced in full (the others kept when they fail or are slow, without their messages) */
  const traceEvery = ref(DEFAULT_LOAD_TRACE_EVERY);
  // Replaced whole on each tick (4 per second), never mutated deep: shallow refs keep it cheap.
  const progress = shallowRef<LoadProgress>();
  const summary = shallowRef<LoadSummary>();
  const { active: busy, error, run } = useBusy();
  /** a run going that this page did not start (it was reloaded, or opened, meanwhile): Cancel still ends it */
  const elsewhere = ref(false);
  const running = computed(() => busy.value || elsewhere.value);
  /** Cancel was clicked for the run in progress: its failures from now on are mostly the cancel's */
  const cancelling = ref(false);
  const countError = computed(() => countProblem(count.value as number | string));
  const concurrencyError = computed(() => concurrencyProblem(concurrency.value as number | string));
  const traceEveryError = computed(() => traceEveryProblem(traceEvery.value as number | string));
  const blocked = computed(() => compose.blocked || countError.value !== undefined || concurrencyError.value !== undefined || traceEveryError.value !== undefined);

  /** Progress and the end of runs, from now on; and what a page that opens missed: the run going, or the last one's summary. */
  function listen(): () => void {
    const off = [
      client.on('load.progress.changed', (next) => {
        progress.value = next;
        // A run another page started (or one this page started before a reload): shown as going, Cancel ends it.
        if (!busy.value) elsewhere.value = true;
      }),
      client.on('load.run.finished', (finished) => {
        elsewhere.value = false;
        cancelling.value = false;
        if (finished.summary) shown(finished.summary);
        // Another page's run (or this page's before a reload) that could not run: its sentence, not a stale summary.
        else if (finished.failed !== undefined && !busy.value) failedElsewhere(finished.failed);
      }),
    ];
    void restore();
    return () => off.forEach((stop) => stop());
  }

  async function restore(): Promise<void> {
    // This page's own run, or a summary it has, says more than the host's last.
    if (busy.value || summary.value || progress.value) return;
    const last = await client.invoke('load.run.last', {}).catch(() => undefined);
    if (!last || busy.value || summary.value) return;
    elsewhere.value = last.running;
    if (last.progress && !progress.value) progress.value = last.progress;
    if (last.summary) shown(last.summary);
    else if (last.failed !== undefined) failedElsewhere(last.failed);
  }

  /** A run this page did not start ended without a summary: its sentence where the page's own failure shows. */
  function failedElsewhere(sentence: string): void {
    summary.value = undefined;
    progress.value = undefined;
    error.value = `The last load run could not finish: ${sentence}`;
  }

  /** A run's summary, and its final counts and charts (a summary is its last progress) for a page that saw little or none of it. */
  function shown(ended: LoadSummary): void {
    summary.value = ended;
    progress.value = ended;
  }

  async function start(): Promise<void> {
    if (running.value || blocked.value) return;
    summary.value = undefined;
    progress.value = undefined;
    cancelling.value = false;
    // The trace marks the RPCs that appear while the run goes as the run's (its filter by origin).
    trace.loadActive = true;
    try {
      await run(async () => {
        summary.value = await client.invoke('load.run.start', { ...compose.snapshot(), count: count.value, concurrency: concurrency.value, traceEvery: traceEvery.value });
      }, 'Running');
    } finally {
      trace.loadActive = false;
      cancelling.value = false;
    }
  }

  async function cancel(): Promise<void> {
    cancelling.value = true;
    await run(() => client.invoke('load.run.cancel', {}), 'Cancelling');
  }

  return { count, concurrency, traceEvery, countError, concurrencyError, traceEveryError, blocked, running, cancelling, progress, summary, error, listen, start, cancel };
});
