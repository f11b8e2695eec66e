/**
 * Verdicts for the RPCs the app did not send (another team's devices and workers), from the Trace panel's firehose. Its
 * publishes go through a Watcher in fed mode, the pairing and verdicts of `watch --mode firehose`, and each RPC the trace
 * holds under its request's id with no step of the app's own client gets that verdict as its `rpc.diagnosed` step: in the
 * list, in the detail and in the export, as the app's own RPCs do. Before, such an RPC stayed "pending" for good.
 */
import type { Verdict } from '../../shared/diagnosis';
import type { TraceStep } from '../../shared/trace';
import type { FirehoseEvent } from '../trace/firehose';
import type { TraceStore } from '../trace/trace-store';
import { observedFromFirehose } from '../watch/firehose-source';
import { Watcher, type WatcherOptions, type WatchLine } from '../watch/watcher';

/** How long an external request waits for its reply before it gets a verdict: the Watch panel's default timeout. */
export const EXTERNAL_TIMEOUT_MS = 5000;

/** What the firehose and the verdicts' broker facts need: the connection's URLs, vhost, exchange and TLS files. */
export type ExternalWatchOptions = Omit<WatcherOptions, 'mode' | 'requestKeys' | 'timeoutMs' | 'spans'>;

export interface ExternalVerdictsOptions {
  watch: ExternalWatchOptions;
  store: TraceStore;
  addVerdict: (rpcId: string, verdict: Verdict) => void;
  timeoutMs?: number;
}

export class ExternalVerdicts {
  private readonly watcher: Watcher;
  private readonly timeoutMs: number;

  constructor(private readonly options: ExternalVerdictsOptions) {
    this.timeoutMs = options.timeoutMs ?? EXTERNAL_TIMEOUT_MS;
    // Every publish on the exchange that reads as a request starts one (a direct exchange's keys are not patterns here).
    this.watcher = new Watcher({ ...options.watch, mode: 'fed', requestKeys: ['#'], timeoutMs: this.timeoutMs });
    this.watcher.on('line', (line) => this.settle(line));
  }

  start(): void {
    void this.watcher.start();
  }

  /** A firehose event and the step the trace made of it: publishes of RPCs the app sent are the app's to judge. */
  observe(event: FirehoseEvent, step: TraceStep | undefined): void {
    if (step !== undefined && this.ours(step.rpcId)) return;
    const message = observedFromFirehose(event, this.options.watch.exchange, Date.now());
    if (message) this.watcher.feed(message);
  }

  /** Stops the pairing's timer and waits for verdicts being worked out (each asks the broker within a bound). */
  stop(): Promise<void> {
    return this.watcher.stop();
  }

  /** Whether the app's own client sent it (its own diagnosis gives the verdict). */
  private ours(rpcId: string): boolean {
    return this.options.store.findDetail(rpcId, 'composed') !== undefined;
  }

  private settle(line: WatchLine): void {
    if (line.type !== 'pair' && line.type !== 'verdict') return;
    // Only an RPC the trace holds (the firehose joined its request by the id in its body) and the app did not send.
    if (this.options.store.keysOf(line.id) === undefined || this.ours(line.id)) return;
    if (line.type === 'verdict') {
      this.options.addVerdict(line.id, line.verdict);
      return;
    }
    const routed = line.replyRoutedQueues?.length ? `, routed to ${line.replyRoutedQueues.map((queue) => `"${queue}"`).join(', ')}` : '';
    const who = line.worker !== undefined ? ` by ${line.worker}` : '';
    this.options.addVerdict(line.id, {
      code: 'replied',
      hop: 'mqtt-deliver',
      message: `The reply to "${line.topic}" id ${line.id} was published${who} on "${line.replyKey}" ${line.rttMs} ms after the request${routed}.`,
      evidence: [`firehose: request "${line.id}" (${line.pattern}) on "${line.topic}", its reply on "${line.replyKey}" ${line.rttMs} ms later${routed}`],
    });
  }
}
