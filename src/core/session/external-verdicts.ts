/**
 * Verdicts for the RPCs the app did not send (another team's devices and workers), from the Trace panel's firehose. Its
 * publishes go through a Watcher in fed mode, the pairing and verdicts of `watch --mode firehose`, and each RPC the trace
 * holds with no step of the app's own client gets that verdict as its `rpc.diagnosed` step: in the list, in the detail
 * and in the export, as the app's own RPCs do. Before, such an RPC stayed "pending" for good.
 */
import type { TimeoutRemedy, Verdict } from '../../shared/diagnosis';
import type { TraceStep } from '../../shared/trace';
import { BoundedMap } from '../bounded-map';
import { publishedQos } from '../../shared/broker-qos';
import type { FirehoseEvent, FirehoseStatus } from '../trace/firehose';
import type { TraceStore } from '../trace/trace-store';
import { observedFromFirehose } from '../watch/firehose-source';
import { asRequest, whyNotRequest, type ObservedMessage } from '../watch/pairing';
import { repliedVerdict, Watcher, type WatcherOptions, type WatchLine } from '../watch/watcher';

/** How long an external request waits for its reply before it gets a verdict: the Watch panel's default timeout. */
export const EXTERNAL_TIMEOUT_MS = 5000;
/**
 * How long after that a reply still counts as a late one (and revises the verdict): the device's own timeout is not
 * known here, so a generous one; the firehose shows the reply in the trace anyway.
 */
const EXTERNAL_LATE_WINDOW_MS = 60_000;
/** Gaps in the firehose remembered (a broker restart, a lost link), to tell which verdicts they may have blinded. */
const KEPT_GAPS = 16;

/** What the firehose and the verdicts' broker facts need: the connection's URLs, vhost, exchange and TLS files. */
export type ExternalWatchOptions = Omit<WatcherOptions, 'mode' | 'requestKeys' | 'timeoutMs' | 'timeoutRemedy' | 'lateWindowMs' | 'spans'>;

export interface ExternalVerdictsOptions {
  watch: ExternalWatchOptions;
  store: TraceStore;
  addVerdict: (rpcId: string, verdict: Verdict) => void;
  timeoutMs?: number;
  /** what waited for a reply and how to wait longer, in a late reply's verdict (the Trace panel's, or `trace --timeout`) */
  timeoutRemedy?: TimeoutRemedy;
}

/** The Trace panel's wait for a reply to another's request: it has no setting of its own; `bridgescope trace --timeout` has. */
export const TRACE_PANEL_TIMEOUT_REMEDY: TimeoutRemedy = {
  name: "the Trace panel's wait",
  raise: `the Trace panel waits ${EXTERNAL_TIMEOUT_MS / 1000} s for a reply to another's request; \`bridgescope trace --timeout MS\` waits as long as you ask`,
};

/** One request as the pairing tells it from another with the same id: its reply key and the moment it was seen. */
const requestKey = (replyKey: string, id: string, sentAt: number): string => `${sentAt}\u0000${replyKey}\u0000${id}`;

export class ExternalVerdicts {
  private readonly watcher: Watcher;
  private readonly timeoutMs: number;
  /**
   * a request as the pairing names it (its reply key, its id and when it was seen: see `requestKey`) -> the trace's id for
   * it, when they differ: a correlation id the trace does not use, or an id two devices (or one device after a reboot)
   * both used, which the trace names apart (`TraceStore.rpcUnder`)
   */
  private readonly rpcIds: BoundedMap<string, string>;
  /** when the firehose was not reading (the tracer reconnecting), oldest first */
  private readonly gaps: Array<{ from: number; until?: number }> = [];
  private stopped = false;
  private names: ConnectionNames | undefined;

  constructor(private readonly options: ExternalVerdictsOptions) {
    this.timeoutMs = options.timeoutMs ?? EXTERNAL_TIMEOUT_MS;
    // Every publish on the exchange that reads as a request starts one (a direct exchange's keys are not patterns here).
    this.watcher = new Watcher({
      ...options.watch,
      mode: 'fed',
      requestKeys: ['#'],
      timeoutMs: this.timeoutMs,
      lateWindowMs: EXTERNAL_LATE_WINDOW_MS,
      timeoutRemedy: options.timeoutRemedy ?? TRACE_PANEL_TIMEOUT_REMEDY,
      connectionNameOf: (connection) => this.names?.connectionNameOf(connection),
    });
    this.rpcIds = new BoundedMap(10_000);
    this.watcher.on('line', (line) => this.settle(line));
  }

  start(): void {
    void this.watcher.start();
  }

  /**
   * Where the names of the connections come from (the tracer feeding it): a verdict names the worker that took a request,
   * and the device that sent it when its steps could not (it connected after tracing began).
   */
  nameConnectionsWith(names: ConnectionNames): void {
    this.names = names;
  }

  /**
   * A firehose event and the step the trace made of it. Only events the trace joined to an RPC of another's are fed: the
   * app's own RPCs are its own diagnosis's to judge, and a publish the trace could not join (telemetry, any other
   * traffic on the exchange) would get no verdict anyway, so its body is not read again.
   */
  observe(event: FirehoseEvent, step: TraceStep | undefined): void {
    if (this.stopped || step === undefined || this.ours(step.rpcId)) return;
    // A worker taking the request: whatever the queue says later (the worker may die with it), it was consumed.
    if (step.kind === 'broker.delivered' && step.detail.leg === 'request') {
      // The trace named the worker's connection (its connection_name) when it knew it: the verdict says which worker.
      this.watcher.deliveredEvent(event, step.detail.consumer?.connectionName);
      return;
    }
    const message = observedFromFirehose(event, this.options.watch.exchange, Date.now());
    if (!message) return;
    const request = step.kind === 'broker.published' && step.detail.leg === 'request' ? asRequest(message) : undefined;
    if (request && request.id !== step.rpcId) this.rpcIds.set(requestKey(request.replyKey, request.id, message.at), step.rpcId);
    this.watcher.feed(message);
    if (!request && step.kind === 'broker.published' && step.detail.leg === 'request') this.notFollowed(step.rpcId, message);
  }

  /**
   * A message with an id that is no request (no reply topic) of an RPC whose request the trace never saw: the trace lists
   * it under its id, and without this it stayed "pending" for good (the trial's `{"id": 99}` on the request topic). Said
   * once: what it lacks, and that a device that sent it as a request gets no reply.
   */
  private notFollowed(rpcId: string, message: ObservedMessage): void {
    const store = this.options.store;
    // Its first publish is this one (a request's steps came before it otherwise), and it has no verdict yet.
    const first = store.findDetail(rpcId, 'broker.published');
    if ((first !== undefined && first.replyTopic !== undefined) || store.findDetail(rpcId, 'rpc.diagnosed') !== undefined) return;
    // Where it stopped: a worker may take it (routed to a queue) and cannot answer it; routed nowhere, at the exchange.
    const routed = message.routedQueues === undefined || message.routedQueues.length > 0;
    this.options.addVerdict(rpcId, {
      code: 'undetermined',
      hop: routed ? 'server' : 'exchange',
      message: `The message on "${message.routingKey}" with id ${rpcId} is no request the trace can follow: ${whyNotRequest(message)}. Nor is it a reply to a request seen since tracing began. If a device sent it as a request, no reply can come.`,
      evidence: [`firehose: published on "${message.routingKey}" with no reply topic the trace could read; no request with its id seen since tracing began`],
    });
  }

  /** The tracer reads the firehose (true) or not (false: reconnecting): a request waiting across a gap is not judged by it. */
  reading(reading: boolean, at = Date.now()): void {
    const last = this.gaps.at(-1);
    if (!reading && (last === undefined || last.until !== undefined)) {
      this.gaps.push({ from: at });
      if (this.gaps.length > KEPT_GAPS) this.gaps.shift();
    } else if (reading && last !== undefined && last.until === undefined) {
      last.until = at;
    }
  }

  /**
   * Follows the tracer feeding it: other teams' RPCs are judged only by what the firehose saw, so a gap (reconnecting)
   * blinds the verdicts of the requests waiting through it, and an end (off, unavailable) stops them. Returns false once
   * it stopped.
   */
  followStatus(status: FirehoseStatus): boolean {
    if (status.state === 'reconnecting') this.reading(false);
    else if (status.state === 'on') this.reading(true);
    else {
      void this.stop().catch(() => undefined);
      return false;
    }
    return true;
  }

  /** Stops the pairing's timer; a verdict still being worked out is dropped (the tracer it came from is gone). */
  stop(): Promise<void> {
    this.stopped = true;
    return this.watcher.stop();
  }

  /** Whether the app's own client sent it (its own diagnosis gives the verdict). */
  private ours(rpcId: string): boolean {
    return this.options.store.findDetail(rpcId, 'composed') !== undefined;
  }

  private settle(line: WatchLine): void {
    if (this.stopped || (line.type !== 'pair' && line.type !== 'verdict')) return;
    const rpcId = this.rpcIds.get(requestKey(line.replyKey, line.id, line.sentAt)) ?? line.id;
    // Only an RPC the trace still holds (not cleared, not evicted) and the app did not send.
    if (this.options.store.keysOf(rpcId) === undefined || this.ours(rpcId)) return;
    if (line.type === 'pair') {
      this.options.addVerdict(rpcId, this.withDevice(rpcId, repliedVerdict(line, 'firehose')));
      return;
    }
    // No reply seen while the firehose was down for part of its wait: not "server slow", not known.
    const until = line.sentAt + this.timeoutMs;
    const gap = line.rttMs === undefined && line.wrongReply === undefined ? this.gaps.find((one) => one.from < until && (one.until === undefined || one.until > line.sentAt)) : undefined;
    if (gap) {
      const when = `from ${new Date(gap.from).toISOString()}${gap.until !== undefined ? ` to ${new Date(gap.until).toISOString()}` : ''}`;
      this.options.addVerdict(rpcId, {
        code: 'undetermined',
        hop: line.verdict.hop,
        message: `No reply to "${line.topic}" id ${line.id} was seen within ${this.timeoutMs} ms, but the firehose was not read ${when} (the broker or the link restarted): a reply in that gap was not seen.`,
        evidence: [`firehose: not read ${when}`, ...line.verdict.evidence],
      });
      return;
    }
    this.options.addVerdict(rpcId, this.withDevice(rpcId, line.verdict));
  }

  /**
   * The verdict, naming the device that sent the request when its request step could not: the device connected after
   * tracing began, so the management API named its connection only after that publish (a replied RPC is named by its
   * reply's delivery; an unanswered one had no later event to carry the name).
   */
  private withDevice(rpcId: string, verdict: Verdict): Verdict {
    const published = this.options.store.findDetail(rpcId, 'broker.published');
    const publisher = published?.leg === 'request' ? published.publisher : undefined;
    if (publisher === undefined || publisher.mqttClientId !== undefined) return verdict;
    const device = this.names?.mqttClientIdOf?.(publisher.connection);
    if (device === undefined) return verdict;
    const qos = publishedQos({ ...published, publisher: { ...publisher, mqttClientId: device } } as NonNullable<typeof published>);
    const line = `broker: the request was published${qos !== undefined ? ` at QoS ${qos}` : ''} by MQTT client "${device}" (connection "${publisher.connection}", named by the management API after that publish)`;
    return { ...verdict, device, evidence: [...verdict.evidence, line] };
  }
}

/** The names the firehose's tracer knows for connections (FirehoseTracer). */
export interface ConnectionNames {
  connectionNameOf(connection: string): string | undefined;
  mqttClientIdOf?(connection: string): string | undefined;
}
