/** The one contract between the UI and the core: every command's args and result, every event's payload. */
import type { BindingInfo, BrokerOverview, CheckLine, ProbeVerdict } from './broker';
import type { ErrorShape } from './errors';
import type { LinkStatus, RpcOutcome } from './rpc';
import type { TopicMapping } from './topic-map';
import type { TraceExport, TraceStep } from './trace';
import type { HistoryEntry, HistoryList, ImportReport, RequestTemplate, WorkspaceExport } from './workspace';
import type { ConnectionProfile } from './profile';
import type { SendRequestArgs } from './send-request';
import type { Verdict } from './verdict';

// Leaf modules of their own (the workspace needs them too, and imports nothing of the contract).
export type { ConnectionProfile, ProfileTls } from './profile';
export type { SendRequestArgs } from './send-request';

export interface SandboxView {
  /** what the node really is, checked again whenever a link drops or comes back: 'unreachable' = alive but not answering */
  state: 'stopped' | 'starting' | 'running' | 'unreachable' | 'failed';
  message?: string;
  /** said once at start, e.g. a port that had to move because another process took it */
  warnings?: string[];
  urls?: { amqp: string; mqtt: string; management: string };
  nodeName?: string;
  /** whether this app started it (and stops it on quit) */
  ownedByApp?: boolean;
}

/** One URL of a profile as `connection.test` found it; every field is for a person to read. */
export interface ConnectionTestLine {
  protocol: 'amqp' | 'mqtt' | 'management';
  /** redacted */
  url: string;
  ok: boolean;
  /** one sentence: reached and authenticated, or why not */
  sentence: string;
  /** management: the broker's version from the overview */
  brokerVersion?: string;
  /** MQTT: the protocol version the broker accepted */
  mqttVersion?: '3.1.1' | '5';
  /** for a TLS URL: whether the broker's certificate was verified ('not-verified' when verification is off) */
  tls?: 'verified' | 'not-verified';
}

/** A saved profile as listed: its URLs carry no password. */
export interface ProfileSummary extends ConnectionProfile {
  /** where its secrets are kept: the OS keychain, plain text (Linux without a keyring), or memory only */
  secretStorage: 'os-encrypted' | 'plain-text' | 'memory';
}

export interface ServerSettings {
  exchange: string;
  queue: string;
  workers: number;
  prefetch: number;
  handler: string;
  /** declare the queue as this type; unset: an existing queue is used as it is, a missing one is declared classic */
  queueType?: 'classic' | 'quorum';
}

export interface ServerView {
  /** follows the server's AMQP link: 'reconnecting' while the broker is away (message says why), 'failed' when it gave up */
  state: 'stopped' | 'starting' | 'running' | 'reconnecting' | 'stopping' | 'failed';
  message?: string;
  settings?: ServerSettings;
  stats: { received: number; replied: number; failed: number; rejected: number; unroutable: number; inFlight: number; perWorker: Record<string, number> };
  /** the server's log, newest first (the last SERVER_LOG_LINES): per request the handler's outcome, and every problem with its sentence */
  log?: ServerLogLine[];
}

/** One line of the embedded server's log: a request's handler outcome ('result', 'error') or a problem the server reported. */
export interface ServerLogLine {
  at: number;
  /** empty for a problem that concerns no one request (the event loop blocked, a channel reopened) */
  rpcId: string;
  worker: string;
  outcome: 'result' | 'error' | 'problem';
  text: string;
}

/** How many lines of its log the embedded server keeps. */
export const SERVER_LOG_LINES = 200;

/** 'off' with a reason = tracing stopped by itself (e.g. it could not resume after a broker restart) */
export type TracerView =
  | { state: 'off'; reason?: string }
  | { state: 'on'; since: number }
  | { state: 'reconnecting'; since: number; reason: string }
  | { state: 'unavailable'; reason: string };

export interface AppState {
  mode: 'electron' | 'browser';
  sandbox: SandboxView;
  profile?: ConnectionProfile;
  links: { amqp: LinkStatus; mqtt: LinkStatus };
  tracer: TracerView;
  server: ServerView;
  overview?: BrokerOverview;
  /** the MQTT client id of the app's own RPC client (its reply subscriptions are the app's) */
  mqttClientId?: string;
  /** something the user should read once about this connection, e.g. tracing a dead BridgeScope process left on */
  notice?: string;
}

/** What the pre-flight checks: the request's topic and reply; its QoS and payload too when given (the broker version's rules use them). */
export type PreflightArgs = Omit<SendRequestArgs, 'payloadText' | 'qos' | 'timeoutMs' | 'method'> & Partial<Pick<SendRequestArgs, 'qos' | 'payloadText'>>;

/** One topic's routing key, the topic it comes back as, and every finding (each says whether it blocks the topic's use). */
export type TopicMappingView = TopicMapping;

export interface BindingsView {
  exchange: string;
  exchangeType: string;
  /** each binding with its queue's consumers and, for a queue, its type and node (a quorum queue's leader) */
  bindings: Array<BindingInfo & { consumers: number | null; queueType?: string; node?: string }>;
}

export interface LoadProgress {
  count: number;
  completed: number;
  failed: number;
  elapsedMs: number;
  histogram: { boundsMs: number[]; counts: number[] };
  /** throughput (requests/s) per progress tick */
  series: Array<{ atMs: number; throughput: number }>;
}

/** What a page that opens shows of load runs: the one going now, or the last one's summary. */
export interface LoadLast {
  running: boolean;
  /** the run going now: its latest progress */
  progress?: LoadProgress;
  /** no run going: the last one's summary (none since the app started: absent) */
  summary?: LoadSummary;
  /** no run going, and the last one ended without a summary (it could not run): its one sentence */
  failed?: string;
}

export interface LoadSummary extends LoadProgress {
  cancelled: boolean;
  /** requests never sent: the run was cancelled, or the link gave up */
  notSent?: number;
  /** present when the MQTT link dropped during the run: how often, how many requests failed across a drop, and why sending stopped if it did */
  brokerAway?: { drops: number; failed: number; notSent: number; reason?: string };
  errors: Record<string, number>;
  durationMs: number;
  throughput: number;
  p50: number;
  p95: number;
  p99: number;
  finishedAt: string;
  /**
   * present when the trace kept a sample of the run (see LoadArgs.traceEvery): `inFull` requests traced in full (1 in
   * `every`), and of the others those that failed or were slow, without their messages: `kept` in all
   */
  traceSample?: { every: number; inFull: number; kept: number };
}

export interface LoadArgs extends SendRequestArgs {
  count: number;
  concurrency: number;
  /**
   * the trace keeps 1 request in `traceEvery` in full, and of the others those that fail or whose latency is rare for the
   * run, without their messages (default DEFAULT_LOAD_TRACE_EVERY; 1 keeps every request in full). Every request is kept
   * in full while the firehose is on.
   */
  traceEvery?: number;
}

/** What the Watch panel asks for: how to observe, which request keys, and when a request counts as unanswered. */
export interface WatchSettings {
  /** tap: a private queue bound to the request keys (and each reply key while awaited); firehose: the vhost's trace exchange */
  mode: 'tap' | 'firehose';
  timeoutMs: number;
  /** request routing keys to watch ('#' on a topic exchange: all) */
  requestKeys: string[];
}

export interface WatchView {
  state: 'stopped' | 'starting' | 'running' | 'stopping' | 'failed';
  /** why it failed or stopped by itself, or what stopping gave back (tracing switched off) */
  message?: string;
  settings?: WatchSettings;
  exchange?: string;
  since?: number;
  /** the tap queue's name (tap mode), or 'firehose' */
  through?: string;
}

/** One request topic's live figures, as the watcher's pairing keeps them. */
export interface WatchTopicStats {
  topic: string;
  requests: number;
  replies: number;
  /** no reply seen within the timeout where one would have been seen */
  unanswered: number;
  /**
   * no reply seen, but a prompt one could not have been: a tap binds a reply key new to it only once it sees the
   * request, and a reply may come before that bind (the firehose mode sees every reply)
   */
  unseen: number;
  /** requests still within their timeout (neither replied nor decided yet) */
  waiting: number;
  /**
   * requests no longer followed because one with the same id came again before their reply or verdict (a device's retry,
   * a QoS 1 redelivery): the newer one is followed. requests = replies + unanswered + unseen + waiting + retried, unless
   * the caps let some go (the watch's `dropped` lines say so)
   */
  retried: number;
  /** messages on the key that are no request the watch can pair (not JSON, no id, no reply topic): counted, not followed */
  notRequests: number;
  /**
   * of `replies`, those the broker delivers to devices at QoS 0 though they may have subscribed at QoS 1: published non-persistent
   * (delivery_mode not 2) on RabbitMQ 3.13+; a reply lost with a dropped connection is not sent again
   */
  qos0Replies: number;
  late: number;
  /**
   * replies beyond the first to a request already answered (the same id on the same reply key): two servers took the
   * request, or one was redelivered it; a device still subscribed gets each of them
   */
  duplicates: number;
  /** requests per second over the last 10 s (or over the time watched, when shorter: `rateOverS`) */
  rate: number;
  /** the seconds `rate` is over: 10, or fewer in a watch's first 10 s */
  rateOverS: number;
  p50?: number;
  p95?: number;
  p99?: number;
  /** each worker that answered, with how many replies */
  workers: Record<string, number>;
}

/** One watched RPC that closed: a reply (`verdict` absent), or a verdict (unanswered, late, reply on the wrong key). */
export interface WatchRpc {
  /** the session's key for it (what `watch.rpc.open` takes) */
  key: string;
  pattern: 'seed' | 'mqtt5' | 'amqp';
  topic: string;
  id: string;
  replyKey: string;
  /** the reply topic the request names, for the MQTT patterns (seed, mqtt5) */
  replyTopic?: string;
  /** where the broker routed the request (a firehose watch; a tap does not know) */
  routedQueues?: string[];
  /** where the broker routed the reply (a firehose watch) */
  replyRoutedQueues?: string[];
  /** a reply to it that did not reach the device: published on another key, or dropped by the broker */
  wrongReply?: { routingKey: string; at: number; dropped?: true };
  sentAt: number;
  rttMs?: number;
  worker?: string;
  verdict?: Verdict;
  /** when the verdict on a request with no reply was given (its timeout, and the broker asked): its trace step's time */
  decidedAt?: number;
}

/** What the caps made the watch forget, by cause; `ui` counts verdicts not sent to the page (more than the batch holds). */
export interface WatchDropped {
  pending: number;
  timedOut: number;
  topic: number;
  ui: number;
  /** the last sentence the watcher said about a drop */
  last?: string;
}

/** One batch of the watch (a few per second, whatever the traffic): the figures now, and what closed since the last. */
export interface WatchBatch {
  at: number;
  stats: WatchTopicStats[];
  /** verdicts since the last batch (at most WATCH_BATCH_VERDICTS; the rest are counted in dropped.ui) */
  verdicts: WatchRpc[];
  /** the last few replied pairs since the last batch (a sample, for opening one in Trace) */
  replied: WatchRpc[];
  /** replied pairs since the last batch, all counted */
  pairs: number;
  dropped: WatchDropped;
}

/** The app's OpenTelemetry export: off unless asked (at start-up, or here for this run of the app). */
export interface OtelView {
  state: 'off' | 'on';
  /** where spans go: the OTLP/HTTP traces URL and/or the OTLP JSON file */
  destinations?: string[];
  /** start-up: BRIDGESCOPE_OTLP_URL/FILE or `ui --otlp`; app: set from the app for this run */
  source?: 'start-up' | 'app';
  /** what the export that was replaced or switched off could not send */
  message?: string;
}

/** The most verdicts one watch batch carries. */
export const WATCH_BATCH_VERDICTS = 100;

export interface Commands {
  'app.state.get': { args: Record<string, never>; result: AppState };
  'broker.sandbox.start': { args: Record<string, never>; result: SandboxView };
  'broker.sandbox.stop': { args: Record<string, never>; result: SandboxView };
  'connection.open': { args: { profile: ConnectionProfile }; result: AppState };
  'connection.close': { args: Record<string, never>; result: AppState };
  /** tries every URL of a profile once, apart from the open connection (which it leaves as it is) */
  'connection.test': { args: { profile: ConnectionProfile }; result: ConnectionTestLine[] };
  'profile.list': { args: Record<string, never>; result: ProfileSummary[] };
  'profile.save': { args: { profile: ConnectionProfile }; result: ProfileSummary[] };
  'profile.delete': { args: { name: string }; result: ProfileSummary[] };
  'profile.load': { args: { name: string }; result: ConnectionProfile };
  'server.start': { args: ServerSettings; result: ServerView };
  'server.stop': { args: Record<string, never>; result: ServerView };
  'rpc.request.send': { args: SendRequestArgs; result: RpcOutcome };
  'rpc.preflight.run': { args: PreflightArgs; result: CheckLine[] };
  'topic.mapping.get': { args: { topic: string; role: 'publish' | 'reply' | 'filter' }; result: TopicMappingView };
  'broker.bindings.list': { args: { exchange: string }; result: BindingsView };
  'broker.probe.run': { args: Record<string, never>; result: ProbeVerdict };
  'trace.tracing.set': { args: { on: boolean }; result: TracerView };
  'trace.snapshot.get': { args: Record<string, never>; result: { steps: TraceStep[]; dropped: { rpcs: number; steps: number } } };
  'trace.export.create': { args: Record<string, never>; result: TraceExport };
  'trace.import.load': { args: { trace: unknown }; result: { steps: TraceStep[]; dropped: { rpcs: number; steps: number } } };
  'trace.store.clear': { args: Record<string, never>; result: { cleared: number } };
  'load.run.start': { args: LoadArgs; result: LoadSummary };
  'load.run.cancel': { args: Record<string, never>; result: { cancelled: boolean } };
  /** for a page that opens or reloads: the run going now (and its progress), else the last run's summary */
  'load.run.last': { args: Record<string, never>; result: LoadLast };
  /** Compose's history, newest first; `search` matches topic, reply topic, verdict, body and error (case-insensitive) */
  'workspace.history.list': { args: { search?: string; limit?: number }; result: HistoryList };
  'workspace.history.delete': { args: { id: string }; result: { deleted: boolean } };
  'workspace.history.clear': { args: Record<string, never>; result: { cleared: number } };
  'workspace.templates.list': { args: Record<string, never>; result: RequestTemplate[] };
  /** a template of the same name is replaced */
  'workspace.template.save': { args: { template: RequestTemplate }; result: RequestTemplate[] };
  'workspace.template.rename': { args: { from: string; to: string }; result: RequestTemplate[] };
  'workspace.template.delete': { args: { name: string }; result: RequestTemplate[] };
  /** the saved profiles and the templates as one file; passwords only when asked */
  'workspace.export.create': { args: { includePasswords: boolean }; result: WorkspaceExport };
  /** merges by name; a file that is not a BridgeScope workspace changes nothing */
  'workspace.import.load': { args: { file: unknown }; result: ImportReport };
  /** starts watching other clients' RPCs on the connection's MQTT exchange (one watch at a time); batches come as `watch.batch.added` */
  'watch.start': { args: WatchSettings; result: WatchView };
  /** stops the watch: deletes the tap queue and its bindings, or gives firehose tracing back */
  'watch.stop': { args: Record<string, never>; result: WatchView };
  /** the watch now: its view, the latest batch and the verdicts kept (for a page that opens or reloads) */
  /**
   * `verdicts`: the latest kept; `verdictsTotal`: every verdict the batches carried; `pairs`: replied pairs since the start;
   * `replied`: the latest few (a page that loads mid-watch shows what the batches gave)
   */
  'watch.snapshot.get': { args: Record<string, never>; result: { view: WatchView; batch?: WatchBatch; verdicts: WatchRpc[]; verdictsTotal?: number; pairs?: number; replied?: WatchRpc[] } };
  /** adds a watched RPC's steps to the trace (what the watch saw of it) and answers with its trace rpcId */
  'watch.rpc.open': { args: { key: string }; result: { rpcId: string } };
  'otel.export.get': { args: Record<string, never>; result: OtelView };
  /** exports spans of Compose's RPCs and servers started from now on to this OTLP/HTTP URL; null switches the export off (what is buffered is sent first) */
  'otel.export.set': { args: { url: string | null }; result: OtelView };
}

export interface Events {
  'app.state.changed': AppState;
  /** batched: one event carries every step added since the last one */
  'trace.steps.added': { steps: TraceStep[] };
  /**
   * the whole trace again, in place of what the page holds; a large one comes in pieces ('first', then 'middle' ones,
   * then 'last'; no trace steps in between), so neither end builds it as one frame. A plain reset between them ends
   * the pieces: the page drops any that still arrive
   */
  'trace.store.reset': { steps: TraceStep[]; piece?: 'first' | 'middle' | 'last' };
  'load.progress.changed': LoadProgress;
  /** a run ended: its summary (none when it ended by an error), for every page (one reloaded during the run did not start it) */
  'load.run.finished': { summary?: LoadSummary; failed?: string };
  /** the history changed; sent before the send's own answer, so a page shows the entry with the result */
  'workspace.history.changed': { reason: 'added'; entry: HistoryEntry } | { reason: 'deleted'; id: string } | { reason: 'cleared' };
  'workspace.templates.changed': { templates: RequestTemplate[] };
  'watch.view.changed': WatchView;
  'watch.batch.added': WatchBatch;
}

export type CommandName = keyof Commands;
export type EventName = keyof Events;
export type CommandArgs<K extends CommandName> = Commands[K]['args'];
export type CommandResult<K extends CommandName> = Commands[K]['result'];

/** Every command, as a runtime list: transports refuse any name not in it. */
export const commandNames = [
  'app.state.get',
  'broker.sandbox.start',
  'broker.sandbox.stop',
  'connection.open',
  'connection.close',
  'connection.test',
  'profile.list',
  'profile.save',
  'profile.delete',
  'profile.load',
  'server.start',
  'server.stop',
  'rpc.request.send',
  'rpc.preflight.run',
  'topic.mapping.get',
  'broker.bindings.list',
  'broker.probe.run',
  'trace.tracing.set',
  'trace.snapshot.get',
  'trace.export.create',
  'trace.import.load',
  'trace.store.clear',
  'load.run.start',
  'load.run.cancel',
  'load.run.last',
  'workspace.history.list',
  'workspace.history.delete',
  'workspace.history.clear',
  'workspace.templates.list',
  'workspace.template.save',
  'workspace.template.rename',
  'workspace.template.delete',
  'workspace.export.create',
  'workspace.import.load',
  'watch.start',
  'watch.stop',
  'watch.snapshot.get',
  'watch.rpc.open',
  'otel.export.get',
  'otel.export.set',
] as const satisfies readonly CommandName[];

export const eventNames = [
  'app.state.changed',
  'trace.steps.added',
  'trace.store.reset',
  'load.progress.changed',
  'load.run.finished',
  'workspace.history.changed',
  'workspace.templates.changed',
  'watch.view.changed',
  'watch.batch.added',
] as const satisfies readonly EventName[];

/** The core's side of the contract: one async function per command. */
export type Handlers = { [K in CommandName]: (args: CommandArgs<K>) => Promise<CommandResult<K>> };

/** What crosses a transport for one invoke: a result or an error shape, never a thrown exception. */
export type InvokeReply<K extends CommandName> = { ok: true; result: CommandResult<K> } | { ok: false; error: ErrorShape };

/** The UI's view of the backend, whichever transport carries it. */
export interface BridgeClient {
  invoke<K extends CommandName>(name: K, args: CommandArgs<K>): Promise<CommandResult<K>>;
  on<E extends EventName>(name: E, listener: (payload: Events[E]) => void): () => void;
}

type MissingCommands = Exclude<CommandName, (typeof commandNames)[number]>;
/** Compile-time check that commandNames lists every command. */
export const allCommandsListed: MissingCommands extends never ? true : MissingCommands = true;
