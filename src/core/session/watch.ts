/**
 * The Watch panel's watcher (issue 23): one at a time on the open connection's MQTT exchange, its lines turned into
 * batches for the page a few times a second (whatever the request rate), bounded, and stopped with the connection.
 */
import type { WatchBatch, WatchDropped, WatchRpc, WatchSettings, WatchView } from '../../shared/contract';
import { WATCH_BATCH_VERDICTS } from '../../shared/contract';
import type { TraceStep, TraceStepDraft } from '../../shared/trace';
import { topicToRoutingKey } from '../../shared/topic-map';
import type { Verdict } from '../../shared/diagnosis';
import { BridgeError, toErrorShape } from '../errors';
import { repliedVerdict, Watcher, type WatcherOptions, type WatchLine } from '../watch/watcher';
import type { FirehoseStatus } from '../trace/firehose';
import { reachedUrls, type Connection } from './connection';

/** What the controller needs of a watcher (the real one, or a test's). */
export type WatcherLike = Pick<Watcher, 'on' | 'start' | 'stop' | 'stats' | 'releases'>;

export interface WatchControllerOptions {
  connection: () => Connection;
  emitView: (view: WatchView) => void;
  emitBatch: (batch: WatchBatch) => void;
  /** adds steps to the session's trace store (for `open`) */
  addStep: (draft: TraceStepDraft) => void;
  /**
   * The trace's own RPC for a watched request, when it has one (the firehose's, or the app's own send: the same id, sent
   * about then): `open` selects it instead of adding a copy with less in it.
   */
  traced?: (ref: { id: string; topic: string; sentAt: number; replyTopic?: string }) => string | undefined;
  /** how often a batch goes to the page (default 250 ms) */
  flushMs?: number;
  createWatcher?: (options: WatcherOptions) => WatcherLike;
}

/**
 * How far apart the trace's first sight of a request and the watch's may be and still be one request (one machine's
 * clock; a device that reuses an id later sends another).
 */
const SAME_REQUEST_MS = 2000;

/**
 * The trace's RPC for the request the watch saw (`id` on request key `topic` at `sentAt`): the one whose first step (its
 * publish, or the app's own send) was on that key about then, and for the same reply topic when both say theirs. Under
 * `id`, or under the name the trace gives an id used again (another device's, `<id> (<reply topic>)`, or a device's next
 * after it counted from 1 again, `<id> #2`: see `TraceStore.rpcUnder`).
 */
export function tracedAbout(store: { steps(rpcId: string): TraceStep[]; rpcIds(): string[] }, ref: { id: string; topic: string; sentAt: number; replyTopic?: string }): string | undefined {
  const named = (rpcId: string): boolean => rpcId.startsWith(`${ref.id} (`) || rpcId.startsWith(`${ref.id} #`);
  return [ref.id, ...store.rpcIds().filter(named)].find((rpcId) => {
    const first = store.steps(rpcId).find((step) => (step.kind === 'broker.published' && step.detail.leg === 'request') || step.kind === 'composed');
    if (first === undefined || Math.abs(first.at - ref.sentAt) > SAME_REQUEST_MS) return false;
    const key = first.kind === 'composed' ? topicToRoutingKey(first.detail.topic) : first.kind === 'broker.published' ? first.detail.routingKeys[0] : undefined;
    const replyTopic = first.kind === 'composed' || first.kind === 'broker.published' ? first.detail.replyTopic : undefined;
    return key === ref.topic && (ref.replyTopic === undefined || replyTopic === undefined || replyTopic === ref.replyTopic);
  });
}

/** closed RPCs kept for `open` (the latest) */
const KEPT_CLOSED = 2000;
/** verdicts kept for a page that opens or reloads (the latest) */
const KEPT_VERDICTS = 500;
/** replied pairs each batch carries as a sample */
const REPLIED_SAMPLE = 5;
/** how long a reply key stays bound after its last request closed (as the CLI's default) */
const KEY_LINGER_MS = 30_000;

/** What a tap or firehose watch does not see, said in every verdict and trace it opens. */
const WATCH_SEES = 'watch: these steps are what the watch saw on the exchange (the request and the reply as published); deliveries and the worker\'s own steps are not observed';

export class WatchController {
  private watcher: WatcherLike | undefined;
  private current: WatchView = { state: 'stopped' };
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  private readonly closed = new Map<string, WatchRpc>();
  private verdicts: WatchRpc[] = [];
  private batchVerdicts: WatchRpc[] = [];
  private batchReplied: WatchRpc[] = [];
  private batchPairs = 0;
  /** every replied pair since the start, and the latest few: a page that (re)loads reads the figures the batches gave */
  private totalPairs = 0;
  /** every verdict sent to the page since the start (the controller keeps the latest KEPT_VERDICTS of them) */
  private totalVerdicts = 0;
  private recentReplied: WatchRpc[] = [];
  private dropped: WatchDropped = { pending: 0, timedOut: 0, topic: 0, ui: 0 };
  private lastBatch: WatchBatch | undefined;
  private readonly opened = new Set<string>();
  private ending: Promise<void> | undefined;

  constructor(private readonly options: WatchControllerOptions) {}

  get view(): WatchView {
    return this.current;
  }

  get active(): boolean {
    return this.watcher !== undefined;
  }

  snapshot(): { view: WatchView; batch?: WatchBatch; verdicts: WatchRpc[]; verdictsTotal: number; pairs: number; replied: WatchRpc[] } {
    return {
      view: this.current,
      ...(this.lastBatch ? { batch: this.lastBatch } : {}),
      verdicts: [...this.verdicts],
      verdictsTotal: this.totalVerdicts,
      pairs: this.totalPairs,
      replied: [...this.recentReplied],
    };
  }

  private setView(view: WatchView): void {
    this.current = view;
    this.options.emitView(view);
  }

  async start(settings: WatchSettings): Promise<WatchView> {
    if (this.watcher || this.current.state === 'starting' || this.current.state === 'stopping') {
      throw new BridgeError('bad-input', 'A watch is already running: stop it before starting another.');
    }
    const connection = this.options.connection();
    const { profile, tls } = connection;
    // The node the app's own AMQP link is on (a failover list's current one), with the profile's TLS files.
    const { amqpUrl, managementUrl } = reachedUrls(connection);
    if (!amqpUrl) throw new BridgeError('bad-input', 'The connection has no AMQP URL to watch through.');
    if (settings.mode === 'firehose' && !managementUrl) {
      throw new BridgeError('bad-input', 'The firehose mode needs the profile\'s management URL (it switches tracing on through the management API).');
    }
    const requestKeys = [...new Set(settings.requestKeys.map((key) => key.trim()))];
    const create = this.options.createWatcher ?? ((options: WatcherOptions) => new Watcher(options));
    const watcher = create({
      mode: settings.mode,
      amqpUrl,
      ...(tls ? { tls } : {}),
      ...(managementUrl ? { managementUrl } : {}),
      vhost: profile.vhost,
      exchange: profile.exchange,
      requestKeys,
      timeoutMs: settings.timeoutMs,
      keyLingerMs: KEY_LINGER_MS,
    });
    this.reset();
    this.watcher = watcher;
    const shown: WatchSettings = { ...settings, requestKeys };
    this.setView({ state: 'starting', settings: shown, exchange: profile.exchange });
    watcher.on('line', (line) => this.onLine(line));
    watcher.on('lost', (reason) => {
      if (this.watcher !== watcher) return;
      void this.end(`The watch stopped: the broker refused its tap queue (${reason}).`, 'failed');
    });
    // A lost connection (a broker restart) is not the end: the tap reconnects on a new queue with the same bindings.
    watcher.on('tapStatus', (status) => {
      if (this.watcher !== watcher || this.current.state !== 'running') return;
      if (status.state === 'reconnecting') {
        this.setView({ ...this.current, message: `The tap lost its AMQP connection (${status.reason}); reconnecting (attempt ${status.attempt}). Requests published meanwhile are not seen.` });
      } else {
        const unseenS = Math.round((status.blindUntil - status.blindFrom) / 1000);
        this.setView({ ...this.current, through: status.queue, message: `The tap is back on a new queue after about ${unseenS} s unseen; what was published in that gap was not seen.` });
      }
    });
    // The firehose's link lost (a broker restart): it reads again once the broker is back (tracing switched on again), blind
    // meanwhile; the panel says so, as `watch` does on the terminal.
    let lostAt: number | undefined;
    watcher.on('status', (status) => {
      if (this.watcher !== watcher || this.current.state !== 'running') return;
      if (status.state === 'reconnecting') {
        lostAt ??= status.since;
        this.setView({ ...this.current, message: `Paused: the firehose lost the broker (${status.reason}); reconnecting (attempt ${status.attempt}). Requests published meanwhile are not seen.` });
      } else if (status.state === 'unavailable') {
        // The firehose gave up (the broker did not come back in time, or refused tracing): the watch is over, and says why.
        void this.end(`The watch stopped: ${status.reason}`, 'failed');
      } else if (status.state === 'on' && status.resumed) {
        const unseenS = lostAt !== undefined ? Math.max(0, Math.round((Date.now() - lostAt) / 1000)) : undefined;
        lostAt = undefined;
        const restarted = status.turnedOnByUs ? ' (tracing switched on again: a broker restart resets it)' : '';
        this.setView({ ...this.current, message: `Resumed: the firehose reads again${restarted}${unseenS !== undefined ? ` after about ${unseenS} s unseen` : ''}; what was published in that gap was not seen.` });
      }
    });
    let started: string | FirehoseStatus;
    try {
      started = await watcher.start();
    } catch (err) {
      await this.end(`The watch could not start: ${toErrorShape(err).message}`, 'failed');
      throw err;
    }
    if (typeof started !== 'string' && started.state === 'unavailable') {
      await this.end(`The watch could not start: ${started.reason}`, 'failed');
      throw new BridgeError(started.code ?? 'internal', started.reason);
    }
    if (this.watcher !== watcher) return this.current;
    const flushMs = this.options.flushMs ?? 250;
    this.timer = setInterval(() => this.flush(), flushMs);
    this.timer.unref();
    this.setView({ state: 'running', settings: shown, exchange: profile.exchange, since: Date.now(), through: typeof started === 'string' ? started : 'firehose' });
    return this.current;
  }

  /** Stops the watch (the tap queue and its bindings deleted, or tracing given back); a no-op when none runs. */
  async stop(): Promise<WatchView> {
    if (!this.watcher && !this.ending) return this.current;
    await this.end(undefined, 'stopped');
    return this.current;
  }

  /** One ending at a time: a Stop while the tap is being lost (or twice) waits for the same one. */
  private end(message: string | undefined, state: 'stopped' | 'failed'): Promise<void> {
    this.ending ??= this.ended(message, state).finally(() => (this.ending = undefined));
    return this.ending;
  }

  private async ended(message: string | undefined, state: 'stopped' | 'failed'): Promise<void> {
    const watcher = this.watcher;
    if (!watcher) return;
    clearInterval(this.timer);
    this.timer = undefined;
    const settings = this.current.settings;
    const exchange = this.current.exchange;
    const kept = { ...(settings ? { settings } : {}), ...(exchange !== undefined ? { exchange } : {}) };
    this.setView({ state: 'stopping', ...kept });
    let said = message;
    try {
      await watcher.stop();
      for (const release of watcher.releases) {
        if (release.outcome === 'failed') said = `${said ? `${said} ` : ''}Tracing could not be given back: ${release.reason}`;
      }
      if (said === undefined && watcher.releases.some((release) => release.outcome === 'switched-off')) said = 'Stopped: firehose tracing switched back off.';
    } catch (err) {
      said = `${said ? `${said} ` : ''}Stopping the watch failed: ${toErrorShape(err).message}`;
      state = 'failed';
    } finally {
      this.watcher = undefined;
    }
    this.flush();
    this.setView({ state, ...kept, ...(said !== undefined ? { message: said } : {}) });
  }

  private reset(): void {
    this.closed.clear();
    this.opened.clear();
    this.verdicts = [];
    this.batchVerdicts = [];
    this.batchReplied = [];
    this.batchPairs = 0;
    this.totalPairs = 0;
    this.totalVerdicts = 0;
    this.recentReplied = [];
    this.dropped = { pending: 0, timedOut: 0, topic: 0, ui: 0 };
    this.lastBatch = undefined;
  }

  private onLine(line: WatchLine): void {
    if (line.type === 'dropped') {
      const field = line.what === 'timed-out' ? 'timedOut' : line.what === 'pending' ? 'pending' : line.what === 'topic' ? 'topic' : undefined;
      if (field) this.dropped[field] += line.count;
      this.dropped.last = line.reason;
      return;
    }
    // Counted in the topic's figures (duplicates); the request itself closed with its first reply.
    if (line.type === 'duplicate' || line.type === 'not-request' || line.type === 'qos0-replies') return;
    this.seq += 1;
    // A pair whose reply the device gets on another topic (a "." inside a level of its reply topic): a verdict to show.
    const paired = line.type === 'pair' ? repliedVerdict(line, 'watch') : undefined;
    const rpc: WatchRpc = {
      key: `w${this.seq}`,
      pattern: line.pattern,
      topic: line.topic,
      id: line.id.slice(0, 200),
      replyKey: line.replyKey,
      ...(line.replyTopic !== undefined ? { replyTopic: line.replyTopic } : {}),
      ...(line.routedQueues !== undefined ? { routedQueues: line.routedQueues } : {}),
      ...(line.replyRoutedQueues !== undefined ? { replyRoutedQueues: line.replyRoutedQueues } : {}),
      ...(line.type === 'verdict' && line.wrongReply !== undefined ? { wrongReply: line.wrongReply } : {}),
      sentAt: line.sentAt,
      ...(line.rttMs !== undefined ? { rttMs: line.rttMs } : {}),
      ...(line.worker !== undefined ? { worker: line.worker } : {}),
      ...(line.type === 'verdict' ? { verdict: line.verdict } : paired !== undefined && paired.code !== 'replied' ? { verdict: paired } : {}),
      // A reply decides at its arrival (rttMs); an unanswered request at its timeout, once the broker was asked: now.
      ...(line.type === 'verdict' && line.rttMs === undefined ? { decidedAt: Date.now() } : {}),
    };
    this.closed.set(rpc.key, rpc);
    if (this.closed.size > KEPT_CLOSED) this.closed.delete(this.closed.keys().next().value as string);
    if (line.type === 'pair' && rpc.verdict === undefined) {
      this.batchPairs += 1;
      this.batchReplied.push(rpc);
      if (this.batchReplied.length > REPLIED_SAMPLE) this.batchReplied.shift();
      return;
    }
    // Replied all the same: counted with the pairs, listed with the verdicts.
    if (line.type === 'pair') this.batchPairs += 1;
    if (this.batchVerdicts.length >= WATCH_BATCH_VERDICTS) {
      this.dropped.ui += 1;
      return;
    }
    this.batchVerdicts.push(rpc);
  }

  /** One batch to the page: the figures now and what closed since the last batch. */
  private flush(): void {
    const watcher = this.watcher;
    const stats = watcher ? watcher.stats() : (this.lastBatch?.stats ?? []);
    const batch: WatchBatch = {
      at: Date.now(),
      stats,
      verdicts: this.batchVerdicts,
      replied: this.batchReplied,
      pairs: this.batchPairs,
      dropped: { ...this.dropped },
    };
    this.verdicts.push(...this.batchVerdicts);
    if (this.verdicts.length > KEPT_VERDICTS) this.verdicts = this.verdicts.slice(-KEPT_VERDICTS);
    this.totalPairs += this.batchPairs;
    this.totalVerdicts += this.batchVerdicts.length;
    if (this.batchReplied.length > 0) this.recentReplied = [...this.recentReplied, ...this.batchReplied].slice(-REPLIED_SAMPLE);
    this.batchVerdicts = [];
    this.batchReplied = [];
    this.batchPairs = 0;
    this.lastBatch = batch;
    this.options.emitBatch(batch);
  }

  /** The watched RPC as trace steps (added once) under its own rpcId: what the watch saw, and its verdict. */
  open(key: string): { rpcId: string } {
    const rpc = this.closed.get(key);
    if (!rpc) throw new BridgeError('bad-input', `The watched RPC ${key} is no longer kept (the watch keeps the last ${KEPT_CLOSED} it closed, and forgets them on a new start).`);
    const traced = this.options.traced?.({ id: rpc.id, topic: rpc.topic, sentAt: rpc.sentAt, ...(rpc.replyTopic !== undefined ? { replyTopic: rpc.replyTopic } : {}) });
    if (traced !== undefined) return { rpcId: traced };
    // With its reply key: two devices' id 1 seen in the same millisecond are two RPCs.
    const rpcId = `watch-${rpc.pattern}-${rpc.id}-${rpc.sentAt} (${rpc.replyTopic ?? rpc.replyKey})`.slice(0, 300);
    if (this.opened.has(rpcId)) return { rpcId };
    this.opened.add(rpcId);
    const exchange = this.current.exchange ?? '';
    const tapQueue = this.current.through !== undefined && this.current.through !== 'firehose' ? this.current.through : undefined;
    // The tap sees only what reached its own queue, which serves nobody (a request that reached nothing else reads
    // "request dropped" beside it); a firehose watch kept where the broker routed the request and its reply.
    // Placeholders, in brackets: never read as a queue the message reached (a tap's name there would read "only a tap took it").
    const notKnown = tapQueue ? [`(the watch's own tap ${tapQueue}; which other queues it reached is not known)`] : ['(not kept by watch)'];
    const routedQueues = rpc.routedQueues ?? notKnown;
    this.options.addStep({
      rpcId,
      at: rpc.sentAt,
      source: 'broker',
      kind: 'broker.published',
      detail: { exchange, routingKeys: [rpc.topic], routedQueues, leg: 'request', ...(rpc.replyTopic !== undefined ? { replyTopic: rpc.replyTopic } : {}) },
    });
    if (rpc.rttMs !== undefined) {
      this.options.addStep({
        rpcId,
        at: rpc.sentAt + rpc.rttMs,
        source: 'broker',
        kind: 'broker.published',
        detail: { exchange: rpc.pattern === 'amqp' ? '' : exchange, routingKeys: [rpc.replyKey], routedQueues: rpc.replyRoutedQueues ?? notKnown, leg: 'reply' },
      });
    }
    if (rpc.wrongReply !== undefined) {
      // The reply the verdict is about: on another key than the request asked for, or routed nowhere.
      this.options.addStep({
        rpcId,
        at: rpc.wrongReply.at,
        source: 'broker',
        kind: 'broker.published',
        detail: { exchange: rpc.pattern === 'amqp' ? '' : exchange, routingKeys: [rpc.wrongReply.routingKey], routedQueues: rpc.wrongReply.dropped ? [] : notKnown, leg: 'reply' },
      });
    }
    const replied = (): Verdict => {
      const seen = repliedVerdict({ ...rpc, rttMs: rpc.rttMs ?? 0 }, 'watch');
      return { ...seen, evidence: [...seen.evidence, WATCH_SEES] };
    };
    const verdict: Verdict = rpc.verdict ? { ...rpc.verdict, evidence: [...rpc.verdict.evidence, WATCH_SEES] } : replied();
    this.options.addStep({ rpcId, at: rpc.rttMs !== undefined ? rpc.sentAt + rpc.rttMs : (rpc.decidedAt ?? rpc.sentAt), source: 'broker', kind: 'rpc.diagnosed', detail: { verdict } });
    return { rpcId };
  }

  /** Stops the batching timer (the session is going away). */
  dispose(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
