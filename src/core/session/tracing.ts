/** The trace of a session: the step store, batched `trace.steps.added` events, the firehose tracer, import/export and verdicts. */
import type { Events, LoadSummary, TracerView } from '../../shared/contract';
import type { TraceExport, TraceStep } from '../../shared/trace';
import type { Verdict } from '../../shared/diagnosis';
import { BridgeError, toErrorShape } from '../errors';
import type { FirehoseEvent, FirehoseStatus, FirehoseTracer, TracingRelease } from '../trace/firehose';
import { ExternalVerdicts } from './external-verdicts';
import { TraceStore, type TraceStoreOptions } from '../trace/trace-store';
import { reachedUrls, type Connection } from './connection';

export interface TracingControllerOptions {
  trace?: TraceStoreOptions;
  /** how often batched trace steps are pushed to the UI (default 30 ms) */
  flushMs?: number;
  emitSteps: (payload: Events['trace.steps.added']) => void;
  emitReset: (payload: Events['trace.store.reset']) => void;
  /** a firehose tracer on this connection's vhost, feeding `store` (and `onEvent`, each event with the step made of it) */
  createTracer: (connection: Connection, store: TraceStore, onEvent?: (event: FirehoseEvent, step: TraceStep | undefined) => void) => FirehoseTracer;
  onChange: () => void;
}

/** What the trace panel shows for the tracer's own status (it reconnects and switches tracing on again by itself). */
export function tracerViewFor(status: FirehoseStatus): TracerView {
  switch (status.state) {
    case 'on':
      return { state: 'on', since: status.since };
    case 'reconnecting':
      return { state: 'reconnecting', since: status.since, reason: status.reason };
    case 'off':
      return { state: 'off' };
    case 'unavailable':
      return { state: 'unavailable', reason: status.reason };
  }
}

export interface TraceSnapshot {
  steps: TraceStep[];
  dropped: { rpcs: number; steps: number };
}

export class TracingController {
  readonly store: TraceStore;
  private tracer: FirehoseTracer | undefined;
  private detachTracer: (() => void) | undefined;
  /** the verdicts of RPCs the app did not send, from the tracer's events (see ExternalVerdicts) */
  private externals: ExternalVerdicts | undefined;
  private current: TracerView = { state: 'off' };
  private pending: TraceStep[] = [];
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: TracingControllerOptions) {
    this.store = new TraceStore(options.trace);
    this.store.on('added', (step) => this.queue(step));
  }

  get view(): TracerView {
    return this.current;
  }

  /** Whether the broker's firehose is feeding the store now (its steps then decide a verdict). */
  get firehoseOn(): boolean {
    return this.tracer !== undefined && this.current.state === 'on';
  }

  /** Whether a firehose tracer runs, feeding the store or reconnecting to (its broker steps may come for any RPC). */
  get firehoseRunning(): boolean {
    return this.tracer !== undefined;
  }

  /** Steps go to the UI in batches, never one reactive update per step. */
  private queue(step: TraceStep): void {
    this.pending.push(step);
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      const steps = this.pending;
      this.pending = [];
      if (steps.length > 0) this.options.emitSteps({ steps });
    }, this.options.flushMs ?? 30);
  }

  /** The verdict on a settled RPC, as its last step: it reaches the UI like any step and the summary carries it. */
  addVerdict(rpcId: string, verdict: Verdict, source: 'client' | 'broker' = 'client'): void {
    this.store.add({ rpcId, at: Date.now(), source, kind: 'rpc.diagnosed', detail: { verdict } });
  }

  snapshot(): TraceSnapshot {
    return { steps: this.store.allSteps(), dropped: { rpcs: this.store.droppedRpcs, steps: this.store.droppedSteps } };
  }

  export(loadRuns: readonly LoadSummary[]): TraceExport {
    return { ...this.store.export(), loadRuns: [...loadRuns] };
  }

  import(trace: unknown): TraceSnapshot {
    this.store.replaceWith(TraceStore.import(trace, this.options.trace));
    this.reset();
    return this.snapshot();
  }

  clear(): { cleared: number } {
    const cleared = this.store.clear();
    this.reset();
    return { cleared };
  }

  private reset(): void {
    this.pending = [];
    this.options.emitReset({ steps: this.store.allSteps() });
  }

  /**
   * Off: stops the tracer and gives tracing back; when that fails the view says why (tracing may still be on) and the
   * call throws, so whoever asked (the UI, a cleanup step) can tell the user. On needs `connection` (asked only then).
   */
  async set(on: boolean, connection: () => Connection): Promise<TracerView> {
    if (!on) {
      const release = await this.stopTracer();
      this.current = release?.outcome === 'failed' ? { state: 'off', reason: release.reason } : { state: 'off' };
      this.options.onChange();
      if (release?.outcome === 'failed') throw new BridgeError(release.code ?? 'internal', release.reason);
      return this.current;
    }
    if (this.tracer && (this.current.state === 'on' || this.current.state === 'reconnecting')) return this.current;
    // A tracer that ended by itself (off or unavailable after a restart) is replaced by a fresh one; it gave tracing back or it is off anyway.
    await this.stopTracer();
    const view = await this.startTracer(connection());
    this.options.onChange();
    return view;
  }

  private async stopTracer(): Promise<TracingRelease | undefined> {
    const tracer = this.tracer;
    this.tracer = undefined;
    // Its timer stops now; a verdict still being worked out (a bounded ask of the broker) is dropped, nobody waits for it.
    void this.externals?.stop();
    this.externals = undefined;
    this.detachTracer?.();
    this.detachTracer = undefined;
    return tracer?.stop();
  }

  /** Starts a tracer on `connection` and follows its status: it reconnects and resumes by itself after a broker restart. */
  private async startTracer(connection: Connection): Promise<TracerView> {
    const { profile, tls } = connection;
    const { amqpUrl, managementUrl } = reachedUrls(connection);
    const externals = amqpUrl
      ? new ExternalVerdicts({
          watch: { amqpUrl, ...(managementUrl ? { managementUrl } : {}), ...(tls ? { tls } : {}), vhost: profile.vhost, exchange: profile.exchange },
          store: this.store,
          // Not the client's step: the RPC stays another's ('external' in the list), as a watch's opened RPC does.
          addVerdict: (rpcId, verdict) => this.addVerdict(rpcId, verdict, 'broker'),
        })
      : undefined;
    const tracer = this.options.createTracer(connection, this.store, externals ? (event, step) => externals.observe(event, step) : undefined);
    externals?.nameConnectionsWith(tracer);
    const onStatus = (next: FirehoseStatus): void => {
      if (this.tracer !== tracer) return;
      this.current = tracerViewFor(next);
      if (this.externals?.followStatus(next) === false) this.externals = undefined;
      this.options.onChange();
    };
    tracer.on('status', onStatus);
    let status: FirehoseStatus;
    try {
      status = await tracer.start();
    } catch (err) {
      tracer.off('status', onStatus);
      this.current = { state: 'off', reason: `Tracing could not start: ${toErrorShape(err).message}` };
      this.options.onChange();
      throw err;
    }
    if (status.state === 'unavailable') {
      tracer.off('status', onStatus);
      this.current = { state: 'unavailable', reason: status.reason };
      return this.current;
    }
    this.tracer = tracer;
    this.externals = externals;
    externals?.start();
    this.detachTracer = () => tracer.off('status', onStatus);
    this.current = tracerViewFor(status);
    return this.current;
  }

  /** Stops the batching timer (the last batch is not sent: the session is going away). */
  dispose(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
  }
}
