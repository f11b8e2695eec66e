/** The composition root: builds one controller per concern (sandbox, connection, server, tracing, requests, load) and maps the contract's commands to them. */
import type { TraceStep } from '../../shared/trace';
import type { AppState, ConnectionProfile, EventName, Events, Handlers, SandboxView, ServerSettings, ServerView, TracerView } from '../../shared/contract';
import { defaultSandboxDir } from '../broker/sandbox';
import type { TraceStore, TraceStoreOptions } from '../trace/trace-store';
import { mapTopic } from '../../shared/topic-map';
import { redactProfile, restoreSecrets, type ProfileStore } from '../profiles';
import { brokerTargets } from '../connection-details';
import { testConnection } from '../connection-test';
import { SandboxController } from './sandbox';
import { ConnectionController, sentenceOf } from './connection';
import { ServerController } from './server';
import { RawRequestJoin } from '../trace/raw-requests';
import { realFactories, type SessionFactories } from './factories';
import { runShutdown, shutdownTasks, type ShutdownTask } from './shutdown';
import { TracingController } from './tracing';
import { RequestsController, whereToAsk } from './requests';
import { diagnosisBroker, gatherBrokerFacts } from '../diagnosis/evidence';
import { LoadController } from './load';
import { WorkspaceController } from './workspace';
import { tracedAbout, WatchController } from './watch';
import { WorkspaceStore } from '../workspace-file';
import { parseHandlerSpec } from '../rpc/handlers';
import { BridgeError, toErrorShape } from '../errors';
import { brokerEndpoints } from '../../shared/url-list';
import type { OtelExport } from '../otel/export';
import type { OtelView } from '../../shared/contract';
import { withDeadline } from '../../shared/deadline';
import { ServerSpans } from '../otel/server-spans';

export { tracerViewFor } from './tracing';
export type { SessionFactories } from './factories';
export type { ShutdownTask } from './shutdown';

export interface SessionOptions {
  mode: AppState['mode'];
  profiles: ProfileStore;
  emit: <E extends EventName>(name: E, payload: Events[E]) => void;
  sandboxDir?: string;
  trace?: TraceStoreOptions;
  /** how often batched trace steps are pushed to the UI */
  traceFlushMs?: number;
  /** collaborators to replace (tests): the sandbox node, the links and APIs, the server, the tracer */
  factories?: Partial<SessionFactories>;
  /** Compose's history and templates (default: in memory only) */
  workspace?: WorkspaceStore;
  /** told about something that went wrong without failing a command (a history write) */
  onProblem?: (sentence: string) => void;
  /**
   * Whether `server.start` may load a handler module (a path): it runs code as this user, so the browser host offers it
   * only when the user asked (`bridgescope ui --allow-handler-modules`). Default: yes in the Electron window, no in a browser.
   */
  allowHandlerModules?: boolean;
  /** OpenTelemetry export (`ui --otlp`, BRIDGESCOPE_OTLP_URL in the app): Compose's RPCs and the embedded server's spans; none by default */
  otel?: OtelExport;
}

/** "Connected to B; stopped with the previous connection to A", or "Reconnected to A; …" when both name the same nodes. */
function replacedSentence(next: ConnectionProfile, previous: ConnectionProfile): string {
  const now = brokerEndpoints(next) ?? 'the new broker';
  const before = brokerEndpoints(previous) ?? 'the previous broker';
  return now === before ? `Reconnected to ${now}; stopped with the previous connection` : `Connected to ${now}; stopped with the previous connection to ${before}`;
}

export class Session {
  readonly handlers: Handlers;
  private readonly sandbox: SandboxController;
  private readonly connection: ConnectionController;
  private readonly server: ServerController;
  private readonly tracing: TracingController;
  private readonly requests: RequestsController;
  private readonly load: LoadController;
  private readonly workspace: WorkspaceController;
  private readonly watch: WatchController;
  private lastProfile: ConnectionProfile | undefined;
  private stateTimer: NodeJS.Timeout | undefined;
  /** the OpenTelemetry export in use: the start-up one, or the one set from the app (`otel.export.set`) */
  private otel: OtelExport | undefined;
  private otelSource: OtelView['source'];
  private otelMessage: string | undefined;

  constructor(private readonly options: SessionOptions) {
    this.otel = options.otel;
    this.otelSource = options.otel ? 'start-up' : undefined;
    const factories = { ...realFactories, ...options.factories };
    const changed = (): void => this.stateChanged();
    this.tracing = new TracingController({
      ...(options.trace ? { trace: options.trace } : {}),
      ...(options.traceFlushMs !== undefined ? { flushMs: options.traceFlushMs } : {}),
      emitSteps: (payload) => options.emit('trace.steps.added', payload),
      emitReset: (payload) => options.emit('trace.store.reset', payload),
      createTracer: (connection, store, onEvent) => factories.createTracer(connection, store, `BridgeScope ${options.mode} (pid ${process.pid})`, onEvent),
      onChange: changed,
    });
    const store = this.tracing.store;
    this.sandbox = new SandboxController({ dir: options.sandboxDir ?? defaultSandboxDir(), node: factories.sandboxNode, onChange: changed });
    this.connection = new ConnectionController({
      factories,
      attachSteps: (client) => store.attach(client),
      onChange: changed,
      onLinksDown: () => this.sandbox.linksDown(),
      onLinksUp: () => this.sandbox.linksUp(),
    });
    // The server connects with the open profile's TLS files and verify setting, as the inspector does.
    const createServer: SessionFactories['createServer'] = (settings) => {
      const { tls } = this.connection.require();
      // A server keeps the export that was set when it started.
      const spans = this.otel ? new ServerSpans(this.otel.tracer) : undefined;
      const created = factories.createServer({ ...settings, ...(tls ? { tls } : {}), ...(spans ? { tracing: spans } : {}) });
      return spans ? created.then((server) => server.on('step', spans.step)) : created;
    };
    // A raw send's steps at the embedded server are the sending RPC's, not a second "external" one.
    const rawRequests = new RawRequestJoin();
    this.server = new ServerController({
      createServer,
      attachSteps: (server) => store.attach(server, (draft) => rawRequests.rename(draft)),
      rpcIdOf: (rpcId) => rawRequests.idOf(rpcId),
      onChange: changed,
    });
    const verdicts = {
      steps: (rpcId: string) => store.steps(rpcId),
      firehoseOn: () => this.tracing.firehoseOn,
      addVerdict: this.tracing.addVerdict.bind(this.tracing),
      onStep: (listener: (step: TraceStep) => void) => {
        store.on('added', listener);
        return () => void store.off('added', listener);
      },
    };
    this.workspace = new WorkspaceController({
      store: options.workspace ?? new WorkspaceStore(),
      profiles: options.profiles,
      emit: options.emit,
      ...(options.onProblem ? { onProblem: options.onProblem } : {}),
    });
    // Compose's sends are history, recorded here when they settle; load runs are not.
    this.requests = new RequestsController({
      connection: () => this.connection.require(),
      ...verdicts,
      onSettled: (settled) => this.workspace.record(settled),
      expectRaw: (routingKey, bytes, rpcId) => rawRequests.expect(routingKey, bytes, rpcId),
      otel: () => this.otel,
    });
    this.watch = new WatchController({
      connection: () => this.connection.require(),
      emitView: (view) => options.emit('watch.view.changed', view),
      emitBatch: (batch) => options.emit('watch.batch.added', batch),
      addStep: (draft) => void store.add(draft),
      traced: (ref) => tracedAbout(store, ref),
      ...(factories.createWatcher ? { createWatcher: factories.createWatcher } : {}),
    });
    this.load = new LoadController({
      client: () => this.connection.require().client,
      emitProgress: (progress) => options.emit('load.progress.changed', progress),
      emitFinished: (finished) => options.emit('load.run.finished', finished),
      trace: store,
      firehoseRunning: () => this.tracing.firehoseRunning,
      // A failed request's verdict reads the broker's bindings and consumers, asked once for a burst of failures.
      brokerFacts: (requestKey) => {
        const connection = this.connection.require();
        return gatherBrokerFacts({ ...diagnosisBroker(whereToAsk(connection), connection.client, connection.tls), requestKey });
      },
      ...verdicts,
    });

    this.handlers = {
      'app.state.get': async () => this.state(),
      'broker.sandbox.start': () => this.startSandbox(),
      'broker.sandbox.stop': () => this.stopSandbox(),
      'connection.open': ({ profile }) => this.open(profile),
      // Passwords shown as *** are the ones this session knows, as for connection.open.
      'connection.test': async ({ profile }) => testConnection(await this.withSecrets(profile)),
      'connection.close': async () => {
        await this.close();
        return this.state();
      },
      'profile.list': async () => {
        const told = options.profiles.notice;
        const profiles = await options.profiles.list();
        if (options.profiles.notice !== told) this.stateChanged();
        return profiles;
      },
      // A profile saved from the form as shown (passwords ***) keeps the passwords this session knows, not the stars.
      'profile.save': async ({ profile }) => options.profiles.save(await this.withSecrets(profile)),
      'profile.delete': ({ name }) => options.profiles.remove(name),
      // Loaded into the form as any profile is shown: passwords as ***, put back from the saved profile on use.
      'profile.load': async ({ name }) => redactProfile(await options.profiles.get(name)),
      'server.start': (settings) => this.startServer(settings),
      'server.stop': async () => {
        await this.stopServer();
        return this.server.view();
      },
      'rpc.request.send': (args) => this.requests.send(args),
      'load.run.start': (args) => this.load.start(args),
      'load.run.cancel': async () => ({ cancelled: this.load.cancel() }),
      'load.run.last': async () => this.load.last(),
      'rpc.preflight.run': (args) => this.connection.preflight(args),
      'topic.mapping.get': async ({ topic, role }) => mapTopic(topic, role),
      'broker.bindings.list': ({ exchange }) => this.connection.bindings(exchange),
      'broker.probe.run': () => this.connection.probe(),
      'trace.tracing.set': ({ on }) => this.setTracing(on),
      'trace.snapshot.get': async () => this.tracing.snapshot(),
      'trace.export.create': async () => this.tracing.export(this.load.runs),
      'trace.import.load': async ({ trace }) => this.tracing.import(trace),
      'trace.store.clear': async () => this.tracing.clear(),
      'workspace.history.list': ({ search, limit }) => this.workspace.list(search, limit),
      'workspace.history.delete': ({ id }) => this.workspace.delete(id),
      'workspace.history.clear': () => this.workspace.clear(),
      'workspace.templates.list': () => this.workspace.templates(),
      'workspace.template.save': ({ template }) => this.workspace.saveTemplate(template),
      'workspace.template.rename': ({ from, to }) => this.workspace.renameTemplate(from, to),
      'workspace.template.delete': ({ name }) => this.workspace.deleteTemplate(name),
      'workspace.export.create': ({ includePasswords }) => this.workspace.export(includePasswords),
      'workspace.import.load': ({ file }) => this.workspace.import(file),
      'watch.start': (settings) => this.watch.start(settings),
      'watch.stop': () => this.watch.stop(),
      'watch.snapshot.get': async () => this.watch.snapshot(),
      'watch.rpc.open': async ({ key }) => this.watch.open(key),
      'otel.export.get': async () => this.otelView(),
      'otel.export.set': ({ url }) => this.setOtel(url),
    } satisfies Handlers;
  }

  get store(): TraceStore {
    return this.tracing.store;
  }

  state(): AppState {
    const view = this.connection.view();
    // A profiles file that could not be read is told where the profiles are listed, with the connection's own notice.
    const notice = [view.notice, this.options.profiles.notice].filter((sentence) => sentence !== undefined).join(' ');
    return { mode: this.options.mode, sandbox: this.sandbox.view, ...view, ...(notice ? { notice } : {}), tracer: this.tracing.view, server: this.server.view() };
  }

  /** State changes come in bursts (every request moves the counters): coalesce them. */
  private stateChanged(): void {
    this.stateTimer ??= setTimeout(() => {
      this.stateTimer = undefined;
      this.options.emit('app.state.changed', this.state());
    }, 50);
  }

  startSandbox(): Promise<SandboxView> {
    return this.sandbox.start();
  }

  async stopSandbox(): Promise<SandboxView> {
    // Tracing that could not be switched off goes with the node: a restart resets the vhost's flag.
    await this.close().catch(() => undefined);
    await this.sandbox.stop();
    return this.sandbox.view;
  }

  /** The profile for the sandbox broker, once it runs. */
  sandboxProfile(): ConnectionProfile | undefined {
    return this.sandbox.profile();
  }

  /**
   * The UI only ever sees passwords as ***: each one is put back from the profile it came from, the one in use, the
   * sandbox's, or the saved profile of the same name (a Load shows it masked). A *** nobody knows stays as typed.
   */
  private async withSecrets(requested: ConnectionProfile): Promise<ConnectionProfile> {
    const saved = await this.options.profiles.get(requested.name).catch(() => undefined);
    return [this.lastProfile, this.sandbox.profile(), saved].reduce<ConnectionProfile>((profile, known) => restoreSecrets(profile, known), requested);
  }

  /**
   * Replaces the links with ones for `requested`. The embedded server and the firehose have AMQP connections of their
   * own: they keep running while the new links are tried. A refused Connect puts the previous links back, so a typo
   * never costs the working session; a Connect that succeeds then stops what ran for the previous broker and says so.
   */
  async open(requested: ConnectionProfile): Promise<AppState> {
    const profile = await this.withSecrets(requested);
    const previous = this.connection.current;
    if (!previous) {
      await this.connection.open(profile);
      this.lastProfile = profile;
      return this.state();
    }
    // A load run would fail request by request on links that go away: it ends now, as cancelled.
    const loadCancelled = this.load.cancel();
    this.sandbox.stopWatch();
    // The previous connection's failed tracing release is told with the new connection, not in the way of it.
    const released = await this.connection.close();
    try {
      await this.connection.open(profile);
    } catch (err) {
      const refused = toErrorShape(err);
      const where = brokerEndpoints(previous.profile) ?? 'the previous broker';
      try {
        await this.connection.open(previous.profile);
      } catch (again) {
        const stopped = await this.stopWhatRan();
        throw new BridgeError(
          refused.code,
          `${refused.message} The previous connection to ${where} could not be reopened either (${sentenceOf(again)})${stopped.length > 0 ? `: stopped with it: ${stopped.join(', ')}` : ''}.`,
        );
      }
      const kept = [this.server.active ? 'the embedded server' : undefined, this.tracing.view.state === 'on' ? 'the firehose' : undefined].filter((what) => what !== undefined);
      throw new BridgeError(
        refused.code,
        `${refused.message} Still connected to ${where}${kept.length > 0 ? `, with ${kept.join(' and ')} running` : ''}: nothing was changed.${loadCancelled ? ' The load run was cancelled.' : ''}`,
      );
    }
    this.lastProfile = profile;
    // The new links are up: what ran for the previous broker stops now, and the notice says what and why.
    const stopped = await this.stopWhatRan();
    if (loadCancelled) stopped.push('the load run (cancelled)');
    const notices = [
      released ? sentenceOf(released) : undefined,
      stopped.length > 0 ? `${replacedSentence(profile, previous.profile)}: ${stopped.join(', ')}.` : undefined,
    ].filter((sentence) => sentence !== undefined);
    if (notices.length > 0) this.connection.addNotice(notices.join(' '));
    return this.state();
  }

  /** Stops the embedded server and the firehose (they ran for the connection being replaced); names what was stopped. */
  private async stopWhatRan(): Promise<string[]> {
    const stopped: string[] = [];
    if (this.watch.active) {
      await this.watch.stop();
      stopped.push('the watch');
    }
    if (this.server.active) {
      const queue = this.server.view().settings?.queue;
      await this.server.stop();
      stopped.push(queue ? `the embedded server on ${queue}` : 'the embedded server');
    }
    if (this.tracing.view.state === 'on') {
      await this.setTracing(false).then(
        () => stopped.push('the firehose (tracing switched back off)'),
        (err: unknown) => stopped.push(`the firehose (${sentenceOf(err)})`),
      );
    }
    return stopped;
  }

  /** Closes everything even when tracing cannot be given back; then throws that failure, so the caller can say it. */
  async close(): Promise<void> {
    // A load run on a connection that goes away ends now, as cancelled, instead of timing out request by request.
    this.load.cancel();
    this.sandbox.stopWatch();
    // The watch has an AMQP connection of its own: its tap queue (or the tracing it switched on) goes before the links.
    await this.watch.stop();
    await this.server.stop();
    let failure: unknown;
    await this.setTracing(false).catch((err: unknown) => (failure = err));
    const released = await this.connection.close();
    failure ??= released;
    this.stateChanged();
    if (failure !== undefined) throw failure;
  }

  async startServer(settings: ServerSettings): Promise<ServerView> {
    const spec = parseHandlerSpec(settings.handler);
    if (spec.kind === 'module' && !(this.options.allowHandlerModules ?? this.options.mode === 'electron')) {
      throw new BridgeError(
        'bad-input',
        `The handler module ${spec.path} is refused: handler modules run code as the user running BridgeScope, so the browser socket takes them only after \`bridgescope ui --allow-handler-modules\` (echo, delay:MS and fail:CODE:MESSAGE work always).`,
      );
    }
    // Every AMQP URL of the profile with its credential fields, one per line: the server fails over as the inspector does.
    return this.server.start(brokerTargets(this.connection.require().profile).amqp.join('\n'), settings);
  }

  stopServer(): Promise<void> {
    return this.server.stop();
  }

  setTracing(on: boolean): Promise<TracerView> {
    return this.tracing.set(on, () => this.connection.require());
  }

  /**
   * The graceful end, as named steps in order: drain the server, switch tracing back, close the links, stop a sandbox
   * this session started. The browser host (`bridgescope ui`) runs them under its own bounds; Electron's quit runs `shutdown()`.
   */
  shutdownTasks(): ShutdownTask[] {
    return shutdownTasks({
      mode: this.options.mode,
      server: this.server,
      tracing: this.tracing,
      sandbox: this.sandbox,
      cancelLoad: () => this.load.cancel(),
      tracingOff: () => this.setTracing(false),
      close: () => this.close(),
    });
  }

  otelView(): OtelView {
    const otel = this.otel;
    return {
      state: otel ? 'on' : 'off',
      ...(otel ? { destinations: otel.destinations } : {}),
      ...(this.otelSource ? { source: this.otelSource } : {}),
      ...(this.otelMessage !== undefined ? { message: this.otelMessage } : {}),
    };
  }

  /**
   * The app's OpenTelemetry setting, for this run: a URL replaces the export in use (start-up or app), null switches it
   * off. The previous export sends what it still holds (bounded) and says what it could not.
   */
  async setOtel(url: string | null): Promise<OtelView> {
    // The SDK is loaded only when an export is asked for.
    const next = url === null ? undefined : new (await import('../otel/export')).OtelExport({ url, serviceName: 'bridgescope-app' });
    const previous = this.otel;
    this.otel = next;
    this.otelSource = next ? 'app' : undefined;
    this.otelMessage = undefined;
    if (previous) {
      const ended = await withDeadline(previous.shutdown(), 7000).catch((err: unknown) => ({ done: true as const, value: [sentenceOf(err)] }));
      const failures = ended.done ? ended.value : ['the previous OpenTelemetry export did not finish within 7 s'];
      if (failures.length > 0) this.otelMessage = `${failures.join('; ')}.`;
    }
    return this.otelView();
  }

  /** Resolves once the history and templates changed so far are on disk. */
  workspaceFlushed(): Promise<void> {
    return this.workspace.flushed();
  }

  /** Runs every shutdown step in order; a failure to give tracing back is thrown unless the sandbox it was on went with it. */
  async shutdown(): Promise<void> {
    this.load.cancel();
    try {
      await runShutdown(this.shutdownTasks(), this.sandbox.view.ownedByApp === true);
    } finally {
      await this.workspace.flushed();
      this.tracing.dispose();
      this.watch.dispose();
      clearTimeout(this.stateTimer);
      this.stateTimer = undefined;
      // The spans still buffered (the app quitting): bounded by the exporter's timeout; failures are the caller's to say.
      await this.otel?.shutdown();
    }
  }

  /** The same as `shutdown()` (kept for the callers that use this name). */
  dispose(): Promise<void> {
    return this.shutdown();
  }
}
