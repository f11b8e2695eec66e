/** The composition root: one session holds the links, the embedded server, the tracer, and implements the contract. */
import type { ChannelModel } from 'amqplib';
import type {
  AppState,
  ConnectionProfile,
  EventName,
  Events,
  Handlers,
  LoadArgs,
  LoadSummary,
  SandboxView,
  SendRequestArgs,
  ServerSettings,
  ServerView,
  TracerView,
} from '../shared/contract';
import type { TraceStep } from '../shared/trace';
import type { LinkStatus } from '../shared/rpc';
import { defaultSandboxDir, startSandbox, stopSandbox, sandboxStatus } from './broker/sandbox';
import { ManagementApi } from './broker/management-api';
import { amqpConsumerCounter, preflight, probeMqttExchange } from './broker/checks';
import { BridgeError, toErrorShape } from './errors';
import { AmqpLink } from './links/amqp-link';
import { RpcClient, type RpcCallOptions } from './rpc/client';
import { runLoad } from './load';
import { parsePayloadText } from './rpc/envelope';
import { RpcServer } from './rpc/server';
import { loadHandler, parseHandlerSpec } from './rpc/handlers';
import { checkAbandonedTracing, FirehoseTracer, type AbandonedTracing, type FirehoseStatus, type TracingRelease } from './trace/firehose';
import { TraceStore, type TraceStoreOptions } from './trace/trace-store';
import { mapTopic } from './topic-map';
import { redactProfile, restoreSecrets, type ProfileStore } from './profiles';

export interface SessionOptions {
  mode: AppState['mode'];
  profiles: ProfileStore;
  emit: <E extends EventName>(name: E, payload: Events[E]) => void;
  sandboxDir?: string;
  trace?: TraceStoreOptions;
  /** how often batched trace steps are pushed to the UI */
  traceFlushMs?: number;
}

interface Connection {
  profile: ConnectionProfile;
  api: ManagementApi;
  client: RpcClient;
  inspector: AmqpLink;
  model: ChannelModel | undefined;
  detach: () => void;
  /** tracing a dead BridgeScope process left on this vhost: switched off when this connection closes */
  abandonedTracing?: AbandonedTracing;
}

const emptyStats = (): ServerView['stats'] => ({ received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} });

function callOptions(args: SendRequestArgs): RpcCallOptions {
  const { payload, params } = parsePayloadText(args.payloadText);
  return {
    topic: args.topic,
    qos: args.qos,
    strategy: args.strategy,
    timeoutMs: args.timeoutMs,
    ...(args.replyTopic ? { replyTopic: args.replyTopic } : {}),
    ...(args.method ? { method: args.method } : {}),
    ...(payload ? { payload } : {}),
    ...(params !== undefined ? { params } : {}),
  };
}

/** What the server panel says for a state of the server's AMQP link (undefined: no change, e.g. while starting). */
function serverStateFor(status: LinkStatus): Pick<ServerView, 'state' | 'message'> | undefined {
  switch (status.state) {
    case 'connected':
      return { state: 'running' };
    case 'reconnecting':
      return { state: 'reconnecting', message: `The broker connection dropped (${status.lastError}); reconnecting, attempt ${status.attempt}.` };
    case 'failed':
      return { state: 'failed', message: status.message };
    default:
      return undefined;
  }
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

const SANDBOX_WATCH_MS = 2000;

const isDown = (status: LinkStatus): boolean => status.state === 'reconnecting' || status.state === 'failed';

export class Session {
  private loadController: AbortController | undefined;
  private readonly loadRuns: LoadSummary[] = [];

  readonly handlers: Handlers;
  readonly store: TraceStore;
  private readonly sandboxDir: string;
  private sandbox: SandboxView = { state: 'stopped' };
  private connection: Connection | undefined;
  private server: RpcServer | undefined;
  private serverView: ServerView = { state: 'stopped', stats: emptyStats() };
  private serverDetach: (() => void) | undefined;
  private tracer: FirehoseTracer | undefined;
  private tracerDetach: (() => void) | undefined;
  private tracerView: TracerView = { state: 'off' };
  /** a sandbox check running now, and whether another was asked for meanwhile */
  private sandboxCheck: Promise<void> | undefined;
  private sandboxRecheck = false;
  /** while a link is down, the node is looked at every few seconds (it may be stopping, stopped, or back) */
  private sandboxWatch: NodeJS.Timeout | undefined;
  /** pid of the node this app started: a node someone restarted outside the app is not the app's to stop on quit */
  private ownedSandboxPid: number | undefined;
  private pendingSteps: TraceStep[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private stateTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SessionOptions) {
    this.sandboxDir = options.sandboxDir ?? defaultSandboxDir();
    this.store = new TraceStore(options.trace);
    this.store.on('added', (step) => this.queueStep(step));
    this.handlers = {
      'app.state.get': async () => this.state(),
      'broker.sandbox.start': () => this.startSandbox(),
      'broker.sandbox.stop': () => this.stopSandbox(),
      'connection.open': ({ profile }) => this.open(profile),
      'connection.close': async () => {
        await this.close();
        return this.state();
      },
      'profile.list': () => options.profiles.list(),
      'profile.save': ({ profile }) => options.profiles.save(profile),
      'profile.delete': ({ name }) => options.profiles.remove(name),
      'profile.load': ({ name }) => options.profiles.get(name),
      'server.start': (settings) => this.startServer(settings),
      'server.stop': async () => {
        await this.stopServer();
        return this.serverView;
      },
      'rpc.request.send': async (args) => this.requireConnection().client.call(callOptions(args)),
      'load.run.start': (args) => this.runLoad(args),
      'load.run.cancel': async () => {
        const running = this.loadController;
        running?.abort();
        return { cancelled: running !== undefined };
      },
      'rpc.preflight.run': async (args) => {
        const connection = this.requireConnection();
        const replyTopic = args.replyTopic || (args.strategy === 'shared' ? connection.client.sharedTopic : undefined);
        return preflight(connection.api, {
          exchange: connection.profile.exchange,
          requestTopic: args.topic,
          replyTopic,
          strategy: args.strategy,
          ...(connection.model ? { consumerCount: amqpConsumerCounter(connection.model) } : {}),
        });
      },
      'topic.mapping.get': async ({ topic, role }) => mapTopic(topic, role),
      'broker.bindings.list': async ({ exchange }) => {
        const connection = this.requireConnection();
        const [exchangeType, bindings] = await Promise.all([connection.api.exchangeType(exchange), connection.api.bindings(exchange)]);
        const count = connection.model ? amqpConsumerCounter(connection.model) : undefined;
        const withConsumers = await Promise.all(
          bindings.map(async (binding) => ({
            ...binding,
            consumers: binding.destinationType === 'queue' && count ? await count(binding.destination).catch(() => null) : null,
          })),
        );
        return { exchange, exchangeType, bindings: withConsumers };
      },
      'broker.probe.run': async () => {
        const connection = this.requireConnection();
        return probeMqttExchange({
          mqttUrl: connection.profile.mqttUrl,
          amqpUrl: connection.profile.amqpUrl,
          configuredExchange: connection.profile.exchange,
          api: connection.api,
        });
      },
      'trace.tracing.set': ({ on }) => this.setTracing(on),
      'trace.snapshot.get': async () => ({ steps: this.store.allSteps(), dropped: this.dropped() }),
      'trace.export.create': async () => ({ ...this.store.export(), loadRuns: [...this.loadRuns] }),
      'trace.import.load': async ({ trace }) => {
        this.store.replaceWith(TraceStore.import(trace, this.options.trace));
        this.resetTrace();
        return { steps: this.store.allSteps(), dropped: this.dropped() };
      },
      'trace.store.clear': async () => {
        const cleared = this.store.clear();
        this.resetTrace();
        return { cleared };
      },
    } satisfies Handlers;
  }

  private dropped(): { rpcs: number; steps: number } {
    return { rpcs: this.store.droppedRpcs, steps: this.store.droppedSteps };
  }

  private resetTrace(): void {
    this.pendingSteps = [];
    this.options.emit('trace.store.reset', { steps: this.store.allSteps() });
  }

  /** Steps go to the UI in batches, never one reactive update per step. */
  private queueStep(step: TraceStep): void {
    this.pendingSteps.push(step);
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      const steps = this.pendingSteps;
      this.pendingSteps = [];
      if (steps.length > 0) this.options.emit('trace.steps.added', { steps });
    }, this.options.traceFlushMs ?? 30);
  }

  state(): AppState {
    const connection = this.connection;
    return {
      mode: this.options.mode,
      sandbox: this.sandbox,
      ...(connection ? { profile: redactProfile(connection.profile) } : {}),
      links: {
        amqp: connection ? connection.inspector.status : { state: 'idle' },
        mqtt: connection ? connection.client.link.status : { state: 'idle' },
      },
      tracer: this.tracerView,
      server: { ...this.serverView, stats: this.server ? { ...this.server.stats, perWorker: { ...this.server.stats.perWorker } } : this.serverView.stats },
      ...(this.overview ? { overview: this.overview } : {}),
      ...(this.notice ? { notice: this.notice } : {}),
    };
  }

  private overview: AppState['overview'];
  private notice: string | undefined;
  private lastProfile: ConnectionProfile | undefined;

  /** State changes come in bursts (every request moves the counters): coalesce them. */
  private stateChanged(): void {
    this.stateTimer ??= setTimeout(() => {
      this.stateTimer = undefined;
      this.options.emit('app.state.changed', this.state());
    }, 50);
  }

  private requireConnection(): Connection {
    if (!this.connection) throw new BridgeError('not-connected', 'Not connected: open a connection (or start the sandbox broker) first.');
    return this.connection;
  }

  async startSandbox(): Promise<SandboxView> {
    const status = await sandboxStatus(this.sandboxDir);
    if (status.state === 'running') {
      this.sandbox = { state: 'running', urls: status.info.urls, nodeName: status.info.nodeName, ownedByApp: false };
      this.stateChanged();
      return this.sandbox;
    }
    this.sandbox = { state: 'starting' };
    this.stateChanged();
    try {
      const result = await startSandbox({ dir: this.sandboxDir });
      this.ownedSandboxPid = result.reused ? undefined : result.info.pid;
      this.sandbox = {
        state: 'running',
        urls: result.info.urls,
        nodeName: result.info.nodeName,
        ownedByApp: !result.reused,
        ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}),
      };
    } catch (err) {
      this.sandbox = { state: 'failed', message: toErrorShape(err).message };
      this.stateChanged();
      throw err;
    }
    this.stateChanged();
    return this.sandbox;
  }

  async stopSandbox(): Promise<SandboxView> {
    // Tracing that could not be switched off goes with the node: a restart resets the vhost's flag.
    await this.close().catch(() => undefined);
    await stopSandbox(this.sandboxDir);
    this.sandbox = { state: 'stopped' };
    this.stateChanged();
    return this.sandbox;
  }

  /** The profile for the sandbox broker, once it runs. */
  sandboxProfile(): ConnectionProfile | undefined {
    const urls = this.sandbox.urls;
    if (!urls) return undefined;
    return { name: 'Sandbox broker', amqpUrl: urls.amqp, mqttUrl: urls.mqtt, managementUrl: urls.management, vhost: '/', exchange: 'amq.direct' };
  }

  async open(requested: ConnectionProfile): Promise<AppState> {
    // The UI only ever sees passwords as ***: put back the ones this session already knows.
    const profile = restoreSecrets(requested, this.lastProfile ?? this.sandboxProfile());
    // The previous connection's failed tracing release is told with the new connection, not in the way of it.
    const previous = await this.close().then(() => undefined, (err: unknown) => toErrorShape(err).message);
    const api = new ManagementApi(profile.managementUrl, profile.vhost);
    const client = new RpcClient({ mqttUrl: profile.mqttUrl, strategy: 'shared' });
    const connection: Connection = {
      profile,
      api,
      client,
      model: undefined,
      detach: () => undefined,
      inspector: new AmqpLink({
        url: profile.amqpUrl,
        connectionName: 'bridgescope-inspector',
        onConnected: async (model) => {
          connection.model = model;
        },
      }),
    };
    const detachSteps = this.store.attach(client);
    // A link that drops or comes back is when the node's real state may have changed: look at it then.
    let wasDown = false;
    const onStatus = (): void => {
      const down = isDown(client.link.status) || isDown(connection.inspector.status);
      const up = client.link.status.state === 'connected' && connection.inspector.status.state === 'connected';
      if (down && !wasDown) {
        void this.checkSandbox();
        this.sandboxWatch ??= setInterval(() => void this.checkSandbox(), SANDBOX_WATCH_MS).unref();
      }
      if (up && wasDown) {
        this.stopSandboxWatch();
        void this.checkSandbox();
      }
      if (down) wasDown = true;
      if (up) wasDown = false;
      this.stateChanged();
    };
    client.link.on('status', onStatus);
    connection.inspector.on('status', onStatus);
    connection.detach = () => {
      detachSteps();
      client.link.off('status', onStatus);
      connection.inspector.off('status', onStatus);
    };
    try {
      await Promise.all([client.connect(), connection.inspector.open()]);
    } catch (err) {
      connection.detach();
      await Promise.all([client.close(), connection.inspector.close()]);
      throw err;
    }
    this.connection = connection;
    this.lastProfile = profile;
    this.overview = await api.overview().catch(() => undefined);
    // Tracing that a BridgeScope process which died left on: said once, and switched off when this session is done.
    connection.abandonedTracing = await checkAbandonedTracing(api).catch(() => undefined);
    const notices = [previous, connection.abandonedTracing?.message].filter((sentence) => sentence !== undefined);
    if (notices.length > 0) this.notice = notices.join(' ');
    this.stateChanged();
    return this.state();
  }

  private stopSandboxWatch(): void {
    clearInterval(this.sandboxWatch);
    this.sandboxWatch = undefined;
  }

  /** Closes everything even when tracing cannot be given back; then throws that failure, so the caller can say it. */
  async close(): Promise<void> {
    // A load run on a connection that goes away ends now, as cancelled, instead of timing out request by request.
    this.loadController?.abort();
    this.stopSandboxWatch();
    await this.stopServer();
    let failure: unknown;
    await this.setTracing(false).catch((err: unknown) => (failure = err));
    const connection = this.connection;
    this.connection = undefined;
    this.overview = undefined;
    this.notice = undefined;
    if (connection) {
      connection.detach();
      const restored = await connection.abandonedTracing?.restore();
      if (restored?.outcome === 'failed') failure ??= new BridgeError(restored.code ?? 'internal', restored.reason);
      await Promise.all([connection.client.close(), connection.inspector.close()]);
    }
    this.stateChanged();
    if (failure !== undefined) throw failure;
  }

  async startServer(settings: ServerSettings): Promise<ServerView> {
    const connection = this.requireConnection();
    await this.stopServer();
    const handler = await loadHandler(parseHandlerSpec(settings.handler));
    const server = new RpcServer({ amqpUrl: connection.profile.amqpUrl, ...settings, handler, name: 'bridgescope-app-server' });
    const detachSteps = this.store.attach(server);
    const onChange = (): void => this.stateChanged();
    // The panel follows the server's own link: never "running" while its connection is gone.
    const onStatus = (status: LinkStatus): void => {
      const next = serverStateFor(status);
      const current = this.serverView.state;
      if (next && this.server === server && (current === 'running' || current === 'reconnecting' || current === 'failed')) {
        const { message: _previous, ...rest } = this.serverView;
        this.serverView = { ...rest, ...next };
      }
      this.stateChanged();
    };
    server.on('status', onStatus);
    server.on('step', onChange);
    server.on('problem', onChange);
    this.serverDetach = () => {
      detachSteps();
      server.off('status', onStatus);
      server.off('step', onChange);
      server.off('problem', onChange);
    };
    this.serverView = { state: 'starting', settings, stats: emptyStats() };
    this.stateChanged();
    try {
      await server.start();
    } catch (err) {
      this.serverDetach();
      this.serverDetach = undefined;
      this.serverView = { state: 'failed', settings, message: toErrorShape(err).message, stats: emptyStats() };
      this.stateChanged();
      throw err;
    }
    this.server = server;
    this.serverView = { state: 'running', settings, stats: server.stats, ...serverStateFor(server.status) };
    this.stateChanged();
    return this.state().server;
  }

  async stopServer(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.serverView = { ...this.serverView, state: 'stopping' };
    this.stateChanged();
    await server.stop();
    this.serverDetach?.();
    this.serverDetach = undefined;
    const { message: _reason, ...rest } = this.serverView;
    this.serverView = { ...rest, state: 'stopped', stats: { ...server.stats } };
    this.stateChanged();
  }

  /** One load run at a time; the UI gets progress events and the summary is kept for the trace export. */
  async runLoad(args: LoadArgs): Promise<LoadSummary> {
    const { client } = this.requireConnection();
    if (this.loadController) throw new BridgeError('busy', 'A load run is already going: cancel it or wait for it to end.');
    const controller = new AbortController();
    this.loadController = controller;
    try {
      const summary = await runLoad(client, {
        count: args.count,
        concurrency: args.concurrency,
        call: callOptions(args),
        signal: controller.signal,
        onProgress: (progress) => this.options.emit('load.progress.changed', progress),
      });
      this.loadRuns.push(summary);
      if (this.loadRuns.length > 20) this.loadRuns.shift();
      return summary;
    } finally {
      this.loadController = undefined;
    }
  }

  /**
   * Off: stops the tracer and gives tracing back; when that fails the view says why (tracing may still be on) and the
   * call throws, so whoever asked (the UI, a cleanup step) can tell the user.
   */
  async setTracing(on: boolean): Promise<TracerView> {
    if (!on) {
      const release = await this.stopTracer();
      this.tracerView = release?.outcome === 'failed' ? { state: 'off', reason: release.reason } : { state: 'off' };
      this.stateChanged();
      if (release?.outcome === 'failed') throw new BridgeError(release.code ?? 'internal', release.reason);
      return this.tracerView;
    }
    if (this.tracer && (this.tracerView.state === 'on' || this.tracerView.state === 'reconnecting')) return this.tracerView;
    // A tracer that ended by itself (off or unavailable after a restart) is replaced by a fresh one; it gave tracing back or it is off anyway.
    await this.stopTracer();
    const connection = this.requireConnection();
    const view = await this.startTracer(connection);
    this.stateChanged();
    return view;
  }

  private async stopTracer(): Promise<TracingRelease | undefined> {
    const tracer = this.tracer;
    this.tracer = undefined;
    this.tracerDetach?.();
    this.tracerDetach = undefined;
    return tracer?.stop();
  }

  /** Starts a tracer on `connection` and follows its status: it reconnects and resumes by itself after a broker restart. */
  private async startTracer(connection: Connection): Promise<TracerView> {
    const tracer = new FirehoseTracer({ amqpUrl: connection.profile.amqpUrl, api: connection.api, store: this.store, owner: `BridgeScope ${this.options.mode} (pid ${process.pid})` });
    const onStatus = (next: FirehoseStatus): void => {
      if (this.tracer !== tracer) return;
      this.tracerView = tracerViewFor(next);
      this.stateChanged();
    };
    tracer.on('status', onStatus);
    let status: FirehoseStatus;
    try {
      status = await tracer.start();
    } catch (err) {
      tracer.off('status', onStatus);
      this.tracerView = { state: 'off', reason: `Tracing could not start: ${toErrorShape(err).message}` };
      this.stateChanged();
      throw err;
    }
    if (status.state === 'unavailable') {
      tracer.off('status', onStatus);
      this.tracerView = { state: 'unavailable', reason: status.reason };
      return this.tracerView;
    }
    this.tracer = tracer;
    this.tracerDetach = () => tracer.off('status', onStatus);
    this.tracerView = tracerViewFor(status);
    return this.tracerView;
  }

  /** Looks at the sandbox node itself (its record, its process, whether it answers), one check at a time. */
  checkSandbox(): Promise<void> {
    if (this.sandboxCheck) {
      this.sandboxRecheck = true;
      return this.sandboxCheck;
    }
    const run = async (): Promise<void> => {
      do {
        this.sandboxRecheck = false;
        const before = this.sandbox;
        // Only a node the app has seen running is checked: not one starting, failed to start, or never started.
        if (!before.urls || before.state === 'starting' || before.state === 'failed') return;
        const status = await sandboxStatus(this.sandboxDir).catch(() => undefined);
        if (!status || this.sandbox !== before) continue;
        if (status.state === 'running') {
          this.sandbox = { state: 'running', urls: status.info.urls, nodeName: status.info.nodeName, ownedByApp: status.info.pid === this.ownedSandboxPid };
        } else if (status.state === 'stopped') {
          this.sandbox = { ...before, state: 'stopped', message: `The sandbox broker is not running (it was stopped outside the app); start it again to reconnect.` };
          delete this.sandbox.warnings;
        } else {
          const gone = !/alive but not answering/.test(status.reason);
          this.sandbox = { ...before, state: gone ? 'stopped' : 'unreachable', message: `The sandbox broker: ${status.reason}.` };
          delete this.sandbox.warnings;
        }
        this.stateChanged();
      } while (this.sandboxRecheck);
    };
    this.sandboxCheck = run().finally(() => {
      this.sandboxCheck = undefined;
    });
    return this.sandboxCheck;
  }

  /** Graceful end: drain the server, restore tracing, close the links, stop a sandbox this session started. */
  async dispose(): Promise<void> {
    this.loadController?.abort();
    let failure: unknown;
    await this.close().catch((err: unknown) => (failure = err));
    if (this.sandbox.ownedByApp) await stopSandbox(this.sandboxDir);
    clearTimeout(this.flushTimer);
    clearTimeout(this.stateTimer);
    // A sandbox stopped with it takes its tracing along (a restart resets the flag): nothing is left to report.
    if (failure !== undefined && !this.sandbox.ownedByApp) throw failure;
  }
}
