/** Load runs of a session: one at a time, progress events, the last summaries kept for the trace export, a verdict per failed request. */
import type { LoadArgs, LoadProgress, LoadSummary } from '../../shared/contract';
import { diagnose, type Verdict } from '../../shared/diagnosis';
import type { TraceStep } from '../../shared/trace';
import { BridgeError, toErrorShape } from '../errors';
import { runLoad as runLoadEngine, type LoadOptions, type LoadTraceHold } from '../rpc/load-engine';
import { DEFAULT_LOAD_TRACE_EVERY } from '../../shared/defaults';
import type { RpcClient } from '../rpc/client';
import { blockingIssue, lintTopic, topicToRoutingKey } from '../../shared/topic-map';
import { callOptionsFromSendRequest as callOptions } from '../rpc/call-options';

export interface LoadControllerOptions {
  /** the open connection's client (throws not-connected) */
  client: () => RpcClient;
  emitProgress: (progress: LoadProgress) => void;
  steps: (rpcId: string) => TraceStep[];
  firehoseOn: () => boolean;
  /** where a run's requests' steps are held until each settles (a sample is kept: see LoadArgs.traceEvery); without it all are kept */
  trace?: LoadTraceHold;
  /** whether a firehose tracer runs (on or reconnecting): a request sent then is kept in full (default: firehoseOn) */
  firehoseRunning?: () => boolean;
  addVerdict: (rpcId: string, verdict: Verdict) => void;
  /** the engine (default: src/core/rpc/load-engine.ts) */
  run?: (client: RpcClient, options: LoadOptions) => Promise<LoadSummary>;
  /** summaries kept for the trace export (default 20) */
  keepRuns?: number;
}

/**
 * A failed request of a load run gets a verdict from its own steps only: asking the broker per request would load it
 * more than the run does. Replied ones get none (their trace already says "replied"), which keeps a big run cheap.
 */
export function stepsOnlyVerdict(rpcId: string, steps: readonly TraceStep[], firehose: boolean, args: Pick<LoadArgs, 'topic' | 'timeoutMs'>, err: unknown): Verdict {
  const failure = toErrorShape(err);
  return diagnose({
    rpcId,
    steps,
    firehose,
    request: { topic: args.topic, routingKey: topicToRoutingKey(args.topic) },
    timeoutMs: args.timeoutMs,
    failure: failure.reason ? { code: failure.code, message: failure.message, reason: failure.reason } : { code: failure.code, message: failure.message },
    remedies: 'app',
  });
}

export class LoadController {
  private running: AbortController | undefined;
  private readonly kept: LoadSummary[] = [];

  constructor(private readonly options: LoadControllerOptions) {}

  get runs(): readonly LoadSummary[] {
    return this.kept;
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
    const traceSample = trace && every > 1 ? { every, trace, inFullNow: running } : undefined;
    try {
      const summary = await (this.options.run ?? runLoadEngine)(client, {
        count: args.count,
        concurrency: args.concurrency,
        call,
        ...(traceSample ? { traceSample } : {}),
        signal: controller.signal,
        onProgress: (progress) => this.options.emitProgress(progress),
        onFailed: (rpcId, err) => {
          const steps = this.options.steps(rpcId);
          if (steps.length > 0) this.options.addVerdict(rpcId, stepsOnlyVerdict(rpcId, steps, this.options.firehoseOn(), args, err));
        },
      });
      this.kept.push(summary);
      if (this.kept.length > (this.options.keepRuns ?? 20)) this.kept.shift();
      return summary;
    } finally {
      this.running = undefined;
    }
  }

  /** Cancels the run going now; says whether there was one. */
  cancel(): boolean {
    const running = this.running;
    running?.abort();
    return running !== undefined;
  }
}
