/** The sandbox broker as the app sees it: start, stop, and a watch on the node's real state while a link is down. */
import type { ConnectionProfile, SandboxView } from '../../shared/contract';
import { toErrorShape } from '../errors';
import type { SandboxStartOptions, SandboxStartResult, SandboxStatus, SandboxStopResult } from '../broker/sandbox';
import { DEFAULT_MQTT_EXCHANGE } from '../../shared/defaults';

/** The node's own functions (src/core/broker/sandbox.ts), passed in so the controller can be tested without a node. */
export interface SandboxNode {
  status(dir: string): Promise<SandboxStatus>;
  start(options: SandboxStartOptions): Promise<SandboxStartResult>;
  stop(dir: string, timeoutMs?: number): Promise<SandboxStopResult>;
}

export interface SandboxControllerOptions {
  dir: string;
  node: SandboxNode;
  /** called on every change of the view */
  onChange: () => void;
  /** how often the node is looked at while a link is down */
  watchMs?: number;
}

const DEFAULT_WATCH_MS = 2000;

export class SandboxController {
  private current: SandboxView = { state: 'stopped' };
  /** a check running now, and whether another was asked for meanwhile */
  private checking: Promise<void> | undefined;
  private recheck = false;
  /** while a link is down, the node is looked at every few seconds (it may be stopping, stopped, or back) */
  private watchTimer: NodeJS.Timeout | undefined;
  /** pid of the node this app started: a node someone restarted outside the app is not the app's to stop on quit */
  private ownedPid: number | undefined;
  /** a start this app asked for and that has not settled yet: a quit meanwhile waits for it, then stops the node */
  private starting: Promise<unknown> | undefined;

  constructor(private readonly options: SandboxControllerOptions) {}

  get view(): SandboxView {
    return this.current;
  }

  private set(view: SandboxView): void {
    this.current = view;
    this.options.onChange();
  }

  async start(): Promise<SandboxView> {
    const status = await this.options.node.status(this.options.dir);
    if (status.state === 'running') {
      // "Connect to the sandbox broker" on a node this process started keeps it this process's to stop on exit.
      this.set({ state: 'running', urls: status.info.urls, nodeName: status.info.nodeName, ownedByApp: this.ownedPid !== undefined && status.info.pid === this.ownedPid });
      return this.current;
    }
    // A second start while one runs joins it: two rabbitmq-server in one folder would fight over it.
    if (this.starting) {
      await this.starting;
      return this.current;
    }
    this.set({ state: 'starting' });
    try {
      const started = this.options.node.start({ dir: this.options.dir });
      const settled: Promise<unknown> = started.then(
        () => undefined,
        () => undefined,
      );
      this.starting = settled;
      void settled.then(() => {
        if (this.starting === settled) this.starting = undefined;
      });
      const result = await started;
      this.ownedPid = result.reused ? undefined : result.info.pid;
      this.set({
        state: 'running',
        urls: result.info.urls,
        nodeName: result.info.nodeName,
        ownedByApp: !result.reused,
        ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}),
      });
    } catch (err) {
      this.set({ state: 'failed', message: toErrorShape(err).message });
      throw err;
    }
    return this.current;
  }

  /**
   * Whether the node that runs is not the one this app started, which was stopped outside it (a `broker stop` and `broker
   * start` from a terminal): it is left running on quit, and the quit says so.
   */
  get replaced(): boolean {
    return this.ownedPid !== undefined && this.current.state === 'running' && this.current.ownedByApp === false;
  }

  /** Whether this app is starting the node now, or started the node that runs (so it is the app's to stop on quit). */
  get owned(): boolean {
    return this.starting !== undefined || this.current.ownedByApp === true;
  }

  /**
   * Stops the node (the caller closes what is connected to it first). A start still running is waited for first: its
   * node would otherwise come up after the stop and outlive the app.
   */
  async stop(timeoutMs?: number): Promise<SandboxStopResult> {
    if (this.starting) await this.starting;
    const result = await this.options.node.stop(this.options.dir, timeoutMs);
    // Stopped by the app: a node started later from a terminal replaced nothing of the app's.
    this.ownedPid = undefined;
    this.set({ state: 'stopped' });
    return result;
  }

  /** The profile for the sandbox broker, once it runs. */
  profile(): ConnectionProfile | undefined {
    const urls = this.current.urls;
    if (!urls) return undefined;
    return { name: 'Sandbox broker', amqpUrl: urls.amqp, mqttUrl: urls.mqtt, managementUrl: urls.management, vhost: '/', exchange: DEFAULT_MQTT_EXCHANGE };
  }

  /** A link went down: look at the node now and every few seconds until `linksUp`. */
  linksDown(): void {
    void this.check();
    this.watchTimer ??= setInterval(() => void this.check(), this.options.watchMs ?? DEFAULT_WATCH_MS).unref();
  }

  /** The links are back: stop watching, and look once more (the node may have been restarted outside the app). */
  linksUp(): void {
    this.stopWatch();
    void this.check();
  }

  stopWatch(): void {
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
  }

  /** Looks at the node itself (its record, its process, whether it answers), one check at a time. */
  check(): Promise<void> {
    if (this.checking) {
      this.recheck = true;
      return this.checking;
    }
    const run = async (): Promise<void> => {
      do {
        this.recheck = false;
        const before = this.current;
        // Only a node the app has seen running is checked: not one starting, failed to start, or never started.
        if (!before.urls || before.state === 'starting' || before.state === 'failed') return;
        const status = await this.options.node.status(this.options.dir).catch(() => undefined);
        if (!status || this.current !== before) continue;
        if (status.state === 'running') {
          this.set({ state: 'running', urls: status.info.urls, nodeName: status.info.nodeName, ownedByApp: status.info.pid === this.ownedPid });
        } else if (status.state === 'stopped') {
          const { warnings: _warnings, ...rest } = before;
          this.set({ ...rest, state: 'stopped', message: `The sandbox broker is not running (it was stopped outside the app); start it again to reconnect.` });
        } else {
          const gone = !/alive but not answering/.test(status.reason);
          const { warnings: _warnings, ...rest } = before;
          // A node whose process went while its record is still there (a stop caught half way) is stopped, and said so
          // in the words of a stopped one ("is not running ...; start it again"), with what the check saw in between.
          const message = gone ? `The sandbox broker is not running (${status.reason}); start it again to reconnect.` : `The sandbox broker: ${status.reason}.`;
          this.set({ ...rest, state: gone ? 'stopped' : 'unreachable', message });
        }
      } while (this.recheck);
    };
    this.checking = run().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }
}
