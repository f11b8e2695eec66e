/** Load runs of a session: one at a time, progress events, the last summaries kept for the trace export, a verdict per failed request. */
import type { LoadArgs, LoadLast, LoadProgress, LoadSummary } from '../../shared/contract';
import { diagnose, type BrokerFacts, type DiagnosisInput, type Verdict } from '../../shared/diagnosis';
import { withDeadline } from '../../shared/deadline';
import { diagnoseWithFacts } from '../diagnosis/evidence';
import type { TraceStep } from '../../shared/trace';
import { BridgeError, toErrorShape } from '../errors';
import type { ErrorShape } from '../../shared/errors';
import { runLoad as runLoadEngine, type LoadOptions, type LoadTraceHold } from '../rpc/load-engine';
import { DEFAULT_LOAD_TRACE_EVERY } from '../../shared/defaults';
import type { RpcClient } from '../rpc/client';
import { blockingIssue, lintTopic, topicToRoutingKey } from '../../shared/topic-map';
import { callOptionsFromSendRequest as callOptions } from '../rpc/call-options';
import { lateReplyTold, REVISABLE_BY_LATE_REPLY, reviseOnLateReply, StepWatches, type OnStep } from './step-watch';

export interface LoadControllerOptions {
  /** the open connection's client (throws not-connected) */
  client: () => RpcClient;
  emitProgress: (progress: LoadProgress) => void;
  /** a run ended: its summary (none when it ended by an error); a page reloaded during the run, or another page, shows it too */
  emitFinished?: (finished: { summary?: LoadSummary; failed?: string }) => void;
  steps: (rpcId: string) => TraceStep[];
  firehoseOn: () => boolean;
  /** where a run's requests' steps are held until each settles (a sample is kept: see LoadArgs.traceEvery); without it all are kept */
  trace?: LoadTraceHold;
  /** whether a firehose tracer runs (on or reconnecting): a request sent then is kept in full (default: firehoseOn) */
  firehoseRunning?: () => boolean;
  addVerdict: (rpcId: string, verdict: Verdict) => void;
  /** every step the trace store adds from now on: a reply published after a failed request's verdict revises it */
  onStep?: OnStep;
  /** how long after a failure a late reply still revises its verdict (default 60 s) */
  lateWatchMs?: number;
  /** the engine (default: src/core/rpc/load-engine.ts) */
  run?: (client: RpcClient, options: LoadOptions) => Promise<LoadSummary>;
  /** summaries kept for the trace export (default 20) */
  keepRuns?: number;
  /**
   * the broker's facts for a request key (its bindings, its queues' consumers): a failed request's verdict reads them
   * (asked at most every FACTS_FRESH_MS for a run, however many fail); without it, a verdict rests on the steps alone
   */
  brokerFacts?: (requestKey: string) => Promise<BrokerFacts>;
}

/** How long one answer of the broker serves the verdicts of a run's failed requests (a burst of timeouts asks once). */
const FACTS_FRESH_MS = 2000;
/** How long the broker may take to answer, at most: a verdict then rests on the steps. */
const FACTS_WITHIN_MS = 6000;
/**
 * Failed requests watched for a late reply at once (each for a minute, about 1 KB): past it, a failure keeps its first
 * verdict. A run failing at 200 requests a second fills it in 25 s.
 */
const MAX_LATE_WATCHES = 5000;
/** Failures the broker cannot explain (or that are the user's): their verdict rests on the error and the steps. */
const NOT_ASKED = new Set(['cancelled', 'auth', 'unreachable', 'bad-input', 'too-large']);

/**
 * A failed request of a load run: a verdict from its own steps and, when given, the broker's facts for the run's request
 * key, asked once for a burst of failures (asking per request would load the broker more than the run does). Replied
 * ones get none (their trace already says "replied"), which keeps a big run cheap.
 */
export function loadFailureVerdict(rpcId: string, steps: readonly TraceStep[], firehose: boolean, args: Pick<LoadArgs, 'topic' | 'timeoutMs'>, failure: ErrorShape, facts?: BrokerFacts): Verdict {
  const input: DiagnosisInput = {
    rpcId,
    steps,
    firehose,
    request: { topic: args.topic, routingKey: topicToRoutingKey(args.topic) },
    timeoutMs: args.timeoutMs,
    failure: failure.reason ? { code: failure.code, message: failure.message, reason: failure.reason } : { code: failure.code, message: failure.message },
    remedies: 'app',
  };
  return facts ? diagnoseWithFacts(input, facts) : diagnose(input);
}

export class LoadController {
  private running: AbortController | undefined;
  private readonly kept: LoadSummary[] = [];
  /** how the last run ended, when it ended without a summary (it threw): a page that opens says so, not the run before */
  private lastFailed: string | undefined;
  /** the run going now: its latest progress (a page that loads mid-run starts from it) */
  private progress: LoadProgress | undefined;
  /** the broker's last answer for a request key, shared by the failures of FACTS_FRESH_MS */
  private facts: { key: string; at: number; facts: Promise<BrokerFacts | undefined> } | undefined;

  /** the failed requests whose later steps are watched (a reply published late): one store listener for them all */
  private readonly watches: StepWatches;

  constructor(private readonly options: LoadControllerOptions) {
    this.watches = new StepWatches(options.onStep, options.steps);
  }

  get runs(): readonly LoadSummary[] {
    return this.kept;
  }

  /** What a page that opens (or reloads) shows: the run going now and its progress, else the last run's summary. */
  last(): LoadLast {
    if (this.running) return { running: true, ...(this.progress ? { progress: this.progress } : {}) };
    if (this.lastFailed !== undefined) return { running: false, failed: this.lastFailed };
    const summary = this.kept.at(-1);
    return { running: false, ...(summary ? { summary } : {}) };
  }

  /** failed requests whose late reply is waited for now */
  get watchedForLateReplies(): number {
    return this.watches.size;
  }

  async start(args: LoadArgs): Promise<LoadSummary> {
    const client = this.options.client();
    if (this.running) throw new BridgeError('busy', 'A load run is already going: cancel it or wait for it to end.');
    // Every request of a run has the same topics and body: one that cannot be sent is refused once, before any is sent.
    const call = callOptions(args);
    for (const [role, topic] of [['request', call.topic], ['reply', call.replyTopic]] as const) {
      const issue = topic === undefined ? undefined : blockingIssue(lintTopic(topic, role === 'request' ? 'publish' : 'reply'));
      if (issue) throw new BridgeError('bad-input', `The load run was not started: the ${role} topic cannot be used: ${issue.message}`);
    }
    const controller = new AbortController();
    this.running = controller;
    // While the firehose runs, every request is kept: its broker steps are what the user is looking at, and the firehose
    // joins them through the RPCs the trace holds (a request let go would come back as another's). Asked per request:
    // the firehose may be switched on during the run.
    const every = args.traceEvery ?? DEFAULT_LOAD_TRACE_EVERY;
    const trace = this.options.trace;
    const running = this.options.firehoseRunning ?? this.options.firehoseOn;
    const traceSample = trace ? { every, trace, inFullNow: running } : undefined;
    try {
      const summary = await (this.options.run ?? runLoadEngine)(client, {
        count: args.count,
        concurrency: args.concurrency,
        call,
        ...(traceSample ? { traceSample } : {}),
        signal: controller.signal,
        onProgress: (progress) => {
          this.progress = progress;
          this.options.emitProgress(progress);
        },
        onFailed: (rpcId, err) => {
          const steps = this.options.steps(rpcId);
          if (steps.length === 0) return;
          const firehose = this.options.firehoseOn();
          // The failure as a shape (no stack): a run's thousands of failures are each watched for a minute.
          const failure = toErrorShape(err);
          const facts = NOT_ASKED.has(failure.code) ? undefined : this.factsFor(topicToRoutingKey(args.topic));
          if (facts === undefined) {
            this.judged(rpcId, loadFailureVerdict(rpcId, steps, firehose, args, failure), steps, args, failure);
            return;
          }
          // The broker answers within seconds: the steps that came meanwhile (a late reply) are read with its answer.
          void facts.then((known) => {
            const now = this.options.steps(rpcId);
            this.judged(rpcId, loadFailureVerdict(rpcId, now, firehose, args, failure, known), now, args, failure);
          });
        },
      });
      this.kept.push(summary);
      if (this.kept.length > (this.options.keepRuns ?? 20)) this.kept.shift();
      this.running = undefined;
      this.lastFailed = undefined;
      this.options.emitFinished?.({ summary });
      return summary;
    } catch (err) {
      this.running = undefined;
      this.lastFailed = toErrorShape(err).message;
      this.options.emitFinished?.({ failed: this.lastFailed });
      throw err;
    } finally {
      this.running = undefined;
      this.progress = undefined;
    }
  }

  /**
   * A failed request's verdict goes in the trace; one that a reply published later can change (a worker back after the
   * request failed may still take it and reply) is decided again from the steps when that reply shows up, as for a
   * Compose send.
   */
  private judged(rpcId: string, verdict: Verdict, steps: TraceStep[], args: LoadArgs, failure: ErrorShape): void {
    this.options.addVerdict(rpcId, verdict);
    // At most MAX_LATE_WATCHES at once: a run failing by the thousand (workers down) keeps a bounded memory for a minute.
    if (!REVISABLE_BY_LATE_REPLY.has(verdict.code) || this.watches.size >= MAX_LATE_WATCHES) return;
    reviseOnLateReply(this.watches, rpcId, verdict, {
      seen: steps,
      decide: (now) => lateReplyTold(verdict, loadFailureVerdict(rpcId, now, this.options.firehoseOn(), args, failure), now, { topic: args.topic, timeoutMs: args.timeoutMs }),
      addVerdict: this.options.addVerdict,
      steps: this.options.steps,
      ...(this.options.lateWatchMs !== undefined ? { forMs: this.options.lateWatchMs } : {}),
    });
  }

  /** The broker's facts for a request key, asked at most every FACTS_FRESH_MS; undefined when not given or not answered in time. */
  private factsFor(requestKey: string): Promise<BrokerFacts | undefined> | undefined {
    const ask = this.options.brokerFacts;
    if (ask === undefined) return undefined;
    const now = Date.now();
    if (this.facts && this.facts.key === requestKey && now - this.facts.at < FACTS_FRESH_MS) return this.facts.facts;
    const facts = withDeadline(ask(requestKey), FACTS_WITHIN_MS).then(
      (answer) => (answer.done ? answer.value : undefined),
      () => undefined,
    );
    this.facts = { key: requestKey, at: now, facts };
    return facts;
  }

  /** Cancels the run going now; says whether there was one. */
  cancel(): boolean {
    const running = this.running;
    running?.abort();
    return running !== undefined;
  }
}
