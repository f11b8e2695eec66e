/**
 * Keeps the firehose on at a cluster node that restarts while a tracer runs. The vhost's tracing flag is per node and
 * not kept across a restart, so a node that comes back traces nothing; the tracer's own link may be on another node
 * (it never notices) or reconnecting with back-off (it notices late). This watches the cluster's nodes and switches
 * tracing on again at each node that restarted, as soon as its management API answers.
 */
import type { ManagementApi } from '../broker/management-api';

export interface NodeState {
  name: string;
  running: boolean;
  /** ms since the node started, when it runs */
  uptime?: number;
}

/** The nodes that restarted between two readings: running now, and down before or with a smaller uptime now. */
export function restartedNodes(before: readonly NodeState[], now: readonly NodeState[]): string[] {
  const previous = new Map(before.map((node) => [node.name, node]));
  return now
    .filter((node) => {
      const was = previous.get(node.name);
      if (!node.running || was === undefined) return false;
      return !was.running || (was.uptime !== undefined && node.uptime !== undefined && node.uptime < was.uptime);
    })
    .map((node) => node.name);
}

export const DEFAULT_NODE_WATCH_MS = 2000;

/** While started, switches tracing back on at every node of the cluster that restarts; does nothing on a single node. */
export class TracingNodeKeeper {
  private timer: NodeJS.Timeout | undefined;
  private last: NodeState[] = [];
  /** restarted nodes whose flag is not switched on yet (their management listener may start after the node) */
  private readonly pending = new Set<string>();
  private checking: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly api: ManagementApi,
    private readonly onSwitchedOn: (node: string) => void,
    private readonly intervalMs = DEFAULT_NODE_WATCH_MS,
  ) {}

  async start(): Promise<void> {
    const nodes = await this.api.nodes().catch(() => []);
    // A single node's restart drops the tracer's own link: its reconnect switches tracing on again.
    if (nodes.length < 2 || this.stopped) return;
    this.last = nodes;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.checking = this.check().finally(() => {
        this.checking = undefined;
        this.schedule();
      });
    }, this.intervalMs);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    // The node this API asks may be the one that is down: then nothing is known until it answers again.
    const nodes = await this.api.nodes().catch(() => undefined);
    if (nodes) {
      for (const node of restartedNodes(this.last, nodes)) this.pending.add(node);
      this.last = nodes;
    }
    for (const node of [...this.pending]) {
      if (this.stopped) return;
      try {
        await this.api.setTracingAt(node, true);
      } catch {
        continue; // its management API is not up yet: asked again next time
      }
      this.pending.delete(node);
      this.onSwitchedOn(node);
    }
  }

  /** Stops watching; resolves once a check under way has finished (so nothing is switched on after this). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.checking;
  }
}
