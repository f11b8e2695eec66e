/** What the broker knows and AMQP 0-9-1 cannot tell: bindings, queues, connections, vhost tracing (management HTTP API). */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { BindingInfo, BrokerOverview, ConnectionInfo, ConsumerInfo, QueueInfo } from '../../shared/broker';
import { BridgeError } from '../errors';
import { subscriptionQueueOwner } from '../../shared/rabbitmq-mqtt';
import { managementRequest, type ManagementRequestOptions } from './management-http';
import type { TlsFiles } from '../connection-details';

/** `mqtt-subscription-<clientId>qos1` -> { clientId, qos }; undefined for any other queue. */
export const mqttSubscriptionOwner = subscriptionQueueOwner;

const overviewSchema = z.object({
  rabbitmq_version: z.string().optional(),
  erlang_version: z.string().optional(),
  cluster_name: z.string().optional(),
  management_version: z.string().optional(),
  node: z.string().optional(),
  listeners: z.array(z.object({ protocol: z.string(), port: z.number(), node: z.string().optional(), ip_address: z.string().optional() })).optional(),
});

const bindingSchema = z.object({
  source: z.string(),
  destination: z.string(),
  destination_type: z.string(),
  routing_key: z.string(),
});

/** A binding as the API lists it, with an MQTT subscription queue linked to its client id. */
function bindingInfo(binding: z.infer<typeof bindingSchema>): BindingInfo {
  const owner = binding.destination_type === 'queue' ? mqttSubscriptionOwner(binding.destination) : undefined;
  return {
    exchange: binding.source,
    destination: binding.destination,
    destinationType: binding.destination_type === 'exchange' ? 'exchange' : 'queue',
    bindingKey: binding.routing_key,
    ...(owner ? { mqttClientId: owner.clientId, mqttQos: owner.qos } : {}),
  };
}

const queueSchema = z.object({
  name: z.string(),
  consumers: z.number().optional(),
  messages: z.number().optional(),
  messages_ready: z.number().optional(),
  messages_unacknowledged: z.number().optional(),
  durable: z.boolean().optional(),
  auto_delete: z.boolean().optional(),
  exclusive: z.boolean().optional(),
  type: z.string().optional(),
  node: z.string().optional(),
  leader: z.string().optional(),
});

const QUEUE_COLUMNS = 'name,consumers,messages,messages_ready,messages_unacknowledged,durable,auto_delete,exclusive,type,node,leader';

function queueInfo(queue: z.infer<typeof queueSchema>): QueueInfo {
  const owner = mqttSubscriptionOwner(queue.name);
  return {
    name: queue.name,
    consumers: queue.consumers ?? 0,
    messages: queue.messages ?? 0,
    messagesReady: queue.messages_ready ?? 0,
    messagesUnacked: queue.messages_unacknowledged ?? 0,
    durable: queue.durable ?? false,
    ...(owner ? { mqttClientId: owner.clientId, mqttQos: owner.qos } : {}),
    ...(queue.type !== undefined ? { type: queue.type } : {}),
    // a quorum queue's leader; any other queue's node
    ...((queue.leader ?? queue.node) !== undefined ? { node: queue.leader ?? queue.node } : {}),
  };
}

const connectionSchema = z.object({
  name: z.string(),
  node: z.string().optional(),
  protocol: z.string().optional(),
  user: z.string().optional(),
  client_properties: z.record(z.string(), z.unknown()).optional(),
});

/** The management API's connections as BridgeScope reads them: MQTT ones with their client id. */
function connectionInfos(given: unknown): ConnectionInfo[] {
  return z.array(connectionSchema).parse(given).map((connection) => {
    const clientId = connection.client_properties?.client_id;
    const connectionName = connection.client_properties?.connection_name;
    return {
      name: connection.name,
      protocol: connection.protocol ?? 'unknown',
      ...(connection.node !== undefined ? { node: connection.node } : {}),
      ...(typeof clientId === 'string' ? { mqttClientId: clientId } : {}),
      ...(typeof connectionName === 'string' ? { connectionName } : {}),
    };
  });
}

const consumerSchema = z.object({
  queue: z.object({ name: z.string() }),
  channel_details: z.object({ node: z.string().optional(), connection_name: z.string().optional() }).optional(),
});

const nodeSchema = z.object({
  name: z.string(),
  running: z.boolean().optional(),
  type: z.string().optional(),
  uptime: z.number().optional(),
  os_pid: z.union([z.string(), z.number()]).optional(),
});

/** One boot of one node: a restart gives it another OS process and a later start (the firehose flag does not survive it). */
export interface NodeBoot {
  node: string;
  osPid: string;
  /** ms since the epoch, estimated as now minus the uptime the node last reported (its statistics lag by up to ~5 s) */
  startedAt: number;
}

const exchangeSchema = z.object({ name: z.string(), type: z.string(), durable: z.boolean().optional() });

/**
 * Durable exchanges named `bridgescope.tracing-owner.<uuid>` say "BridgeScope switched tracing on here"; their arguments
 * say who and since when. One per owner: a tracer removes only the markers it read, so it can never remove the one a
 * tracer that started meanwhile has just written. Any user who may declare exchanges can make one: only those whose
 * record this user keeps locally count (`src/core/trace/ownership.ts`).
 */
export const TRACING_MARKER_EXCHANGE = 'bridgescope.tracing-owner';
/** Every live BridgeScope tracer holds an exclusive queue with this prefix: it vanishes with the tracer's connection. */
export const LIVE_TRACER_QUEUE_PREFIX = 'bridgescope.tracer.';

export interface TracingMarker {
  /** ISO time tracing was switched on */
  since: string;
  /** which process switched it on, e.g. "bridgescope trace (pid 42 on host)" */
  by: string;
}

/** A marker as found on the broker, with the exchange that holds it. */
export interface TracingMarkerRecord extends TracingMarker {
  exchange: string;
}

const UNKNOWN_SINCE = 'an unknown time';
const UNKNOWN_BY = 'an unknown BridgeScope process';
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/;
/** printable, one line, short: it ends up in a sentence shown to the user */
const PRINTABLE_OWNER = /^[^\p{C}]{1,120}$/u;

/** Any vhost user can declare an exchange with our name and arguments: what they say is shown only when it looks sane. */
export function readMarkerArguments(args: Record<string, unknown> | undefined): TracingMarker {
  const since = args?.['x-bridgescope-since'];
  const by = args?.['x-bridgescope-by'];
  return {
    since: typeof since === 'string' && ISO_TIME.test(since) && !Number.isNaN(Date.parse(since)) ? since : UNKNOWN_SINCE,
    by: typeof by === 'string' && PRINTABLE_OWNER.test(by) ? by : UNKNOWN_BY,
  };
}

const markerListSchema = z.object({
  items: z.array(z.object({ name: z.string(), arguments: z.record(z.string(), z.unknown()).optional() })),
});

const pagedQueuesSchema = z.object({ items: z.array(z.object({ name: z.string(), exclusive: z.boolean().optional() })) });

export class ManagementApi {
  private readonly vhostPath: string;
  private peerApis: ManagementApi[] | undefined;
  /** the node this URL reaches, as its overview says (learnt with the peers) */
  private selfNode: string | undefined;

  /** this API's URL first, then the other nodes' management URLs of the same cluster (failover) */
  private readonly urls: readonly string[];
  /** the URL that answered last: asked first next time */
  private current = 0;

  constructor(
    url: string,
    readonly vhost = '/',
    /** the node this API belongs to, when known (a cluster peer found through another node) */
    readonly nodeName?: string,
    /** for https://: the profile's CA, client certificate and key, and whether certificates are verified (peers too) */
    private readonly tls?: TlsFiles,
    /** other nodes' management URLs, tried in turn when the one in use cannot be reached or does not answer */
    fallbackUrls: readonly string[] = [],
  ) {
    this.urls = [url, ...fallbackUrls];
    this.vhostPath = encodeURIComponent(vhost);
  }

  /** The management URL in use (the last one that answered). */
  get url(): string {
    return this.urls[this.current] as string;
  }

  /**
   * One request with this API's TLS settings, at the URL in use; when that node cannot be reached or does not answer, at
   * the next one of the list (an answer, even a refusal, settles it: credentials and permissions are the cluster's).
   */
  private async request<T>(path: string, options: Omit<ManagementRequestOptions, 'tls'> = {}): Promise<T> {
    const withTls = { ...options, ...(this.tls ? { tls: this.tls } : {}) };
    let failure: unknown;
    for (let tried = 0; tried < this.urls.length; tried += 1) {
      const index = (this.current + tried) % this.urls.length;
      try {
        const answer = await managementRequest<T>(this.urls[index] as string, path, withTls);
        this.current = index;
        return answer;
      } catch (err) {
        if (!(err instanceof BridgeError) || (err.code !== 'unreachable' && err.code !== 'timeout')) throw err;
        failure ??= err;
      }
    }
    throw failure;
  }

  private get<T>(path: string): Promise<T> {
    return this.request<T>(path);
  }

  async overview(): Promise<BrokerOverview> {
    const raw = overviewSchema.parse(await this.get('/api/overview'));
    return {
      rabbitmqVersion: raw.rabbitmq_version ?? 'unknown',
      erlangVersion: raw.erlang_version ?? 'unknown',
      clusterName: raw.cluster_name ?? '',
      protocols: [...new Set((raw.listeners ?? []).map((listener) => listener.protocol))].sort(),
      ...(raw.node !== undefined ? { node: raw.node } : {}),
    };
  }

  async exchanges(): Promise<Array<{ name: string; type: string }>> {
    const raw = z.array(exchangeSchema).parse(await this.get(`/api/exchanges/${this.vhostPath}?columns=name,type,durable`));
    return raw.map(({ name, type }) => ({ name: name || '(default)', type }));
  }

  async exchangeType(exchange: string): Promise<string> {
    try {
      const raw = exchangeSchema.parse(await this.get(`/api/exchanges/${this.vhostPath}/${encodeURIComponent(exchange)}`));
      return raw.type;
    } catch (err) {
      if (err instanceof BridgeError && err.code === 'not-found') {
        throw new BridgeError('not-found', `The exchange "${exchange}" does not exist in vhost "${this.vhost}".`);
      }
      throw err;
    }
  }

  /** Every binding whose source is `exchange`, with MQTT subscription queues linked to their client id. */
  async bindings(exchange: string): Promise<BindingInfo[]> {
    const raw = z
      .array(bindingSchema)
      .parse(await this.get(`/api/exchanges/${this.vhostPath}/${encodeURIComponent(exchange)}/bindings/source`));
    // The API lists no bindings for an exchange that does not exist; say so instead of showing an empty table.
    if (raw.length === 0) await this.exchangeType(exchange);
    return raw.map(bindingInfo);
  }

  /** Every binding in the vhost (the default exchange's, one per queue, left out), as `bindings` gives them. */
  async vhostBindings(): Promise<BindingInfo[]> {
    const raw = z.array(bindingSchema).parse(await this.get(`/api/bindings/${this.vhostPath}`));
    return raw.filter((binding) => binding.source !== '').map(bindingInfo);
  }

  /**
   * The exchanges MQTT clients' subscription queues are bound on: the MQTT plugin binds them on its `mqtt.exchange`, so
   * this tells where it publishes without publishing anything. Empty when no MQTT client subscribes now.
   */
  async mqttSubscriptionExchanges(): Promise<string[]> {
    return [...new Set((await this.vhostBindings()).filter((binding) => binding.mqttClientId !== undefined).map((binding) => binding.exchange))].sort();
  }

  async queues(): Promise<QueueInfo[]> {
    const raw = z.array(queueSchema).parse(await this.get(`/api/queues/${this.vhostPath}?columns=${QUEUE_COLUMNS}`));
    return raw.map(queueInfo);
  }

  /** One queue (its type and node are known at once; its counts lag by the stats interval), or undefined when there is none. */
  async queue(name: string): Promise<QueueInfo | undefined> {
    try {
      return queueInfo(queueSchema.parse(await this.get(`/api/queues/${this.vhostPath}/${encodeURIComponent(name)}?columns=${QUEUE_COLUMNS}`)));
    } catch (err) {
      if (err instanceof BridgeError && err.code === 'not-found') return undefined;
      throw err;
    }
  }

  /** Connections by protocol; MQTT ones carry their client id. The broker refreshes this list every few seconds. */
  async connections(): Promise<ConnectionInfo[]> {
    return connectionInfos(await this.get('/api/connections?columns=name,node,protocol,user,client_properties'));
  }

  /** This vhost's connections only (what a tracer of the vhost can meet), as `connections` gives them. */
  async vhostConnections(): Promise<ConnectionInfo[]> {
    return connectionInfos(await this.get(`/api/vhosts/${this.vhostPath}/connections?columns=name,node,protocol,user,client_properties`));
  }

  /** The consumers on this vhost, each with the node of its connection. Listed at the broker's stats interval (~5 s): a new one may be missing. */
  async consumers(): Promise<ConsumerInfo[]> {
    const raw = z.array(consumerSchema).parse(await this.get(`/api/consumers/${this.vhostPath}`));
    return raw.map((consumer) => ({
      queue: consumer.queue.name,
      ...(consumer.channel_details?.node !== undefined ? { node: consumer.channel_details.node } : {}),
      ...(consumer.channel_details?.connection_name !== undefined ? { connectionName: consumer.channel_details.connection_name } : {}),
    }));
  }

  /** The cluster's nodes as this node sees them (a single node lists itself); `uptime` (ms) of a running node tells a restart. */
  async nodes(): Promise<Array<{ name: string; running: boolean; uptime?: number }>> {
    const raw = z.array(nodeSchema).parse(await this.get('/api/nodes?columns=name,running,type,uptime'));
    return raw.map((node) => ({ name: node.name, running: node.running ?? false, ...(node.uptime !== undefined ? { uptime: node.uptime } : {}) }));
  }

  /**
   * The boot of each running node, for the nodes that report one: a node's OS process id and uptime appear some seconds
   * after it starts (with its first statistics), and only to users tagged monitoring or administrator.
   */
  async nodeBoots(): Promise<NodeBoot[]> {
    const raw = z.array(nodeSchema).parse(await this.get('/api/nodes?columns=name,running,uptime,os_pid'));
    const now = Date.now();
    return raw.flatMap((node) =>
      node.running === true && node.os_pid !== undefined && node.uptime !== undefined ? [{ node: node.name, osPid: String(node.os_pid), startedAt: now - node.uptime }] : [],
    );
  }

  /**
   * The management API of every other node of the cluster, from the HTTP listeners the overview lists per node. The
   * user's credentials go only where the node itself said it listens: an explicit address, or, for a wildcard one, the
   * same loopback host as the URL given (a sandbox cluster); never a host guessed from a node name, never https
   * downgraded to http. A node that cannot be reached this way is left out (and said to be by `tracingByNode`). A failed
   * overview is asked again next time, not remembered.
   */
  private async peers(): Promise<ManagementApi[]> {
    if (this.peerApis) return this.peerApis;
    const overview = overviewSchema.parse(await this.get('/api/overview').catch(() => ({})));
    if (overview.listeners === undefined) return [];
    this.selfNode = overview.node;
    const base = new URL(this.url);
    const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(base.hostname);
    const byNode = new Map<string, ManagementApi>();
    for (const listener of overview.listeners) {
      const node = listener.node;
      if (node === undefined || node === overview.node || byNode.has(node)) continue;
      // Never send the password in the clear where the user gave https.
      if (listener.protocol !== base.protocol.slice(0, -1)) continue;
      const address = listener.ip_address;
      const wildcard = address === undefined || address === '::' || address === '0.0.0.0';
      if (wildcard && !loopback) continue;
      const url = new URL(base.href);
      url.hostname = wildcard ? base.hostname : address.includes(':') ? `[${address}]` : address;
      url.port = String(listener.port);
      byNode.set(node, new ManagementApi(url.href, this.vhost, node, this.tls));
    }
    this.peerApis = [...byNode.values()];
    return this.peerApis;
  }

  /**
   * The peers, asked again when a running node is missing from them: a node that was down when they were first read
   * (the overview lists only running nodes' listeners) must be reached once it is back, to switch tracing there too.
   */
  private async livePeers(): Promise<ManagementApi[]> {
    const peers = await this.peers();
    const nodes = await this.nodes().catch(() => undefined);
    if (nodes === undefined) return peers;
    const known = new Set([this.nodeName ?? this.selfNode, ...peers.map((peer) => peer.nodeName)]);
    if (!nodes.some((node) => node.running && !known.has(node.name))) return peers;
    this.peerApis = undefined;
    return this.peers();
  }

  /**
   * Whether the firehose is on for this vhost at every node (the flag is per node, even when set through the management
   * API: measured on a 3.10 cluster; rabbit_trace:start/1 sets the local node's environment only). A node that does not
   * answer counts as off: switching on then tries it again.
   */
  async tracing(): Promise<boolean> {
    return (await this.tracingByNode()).every((node) => node.on === true);
  }

  /** Whether the firehose is on at any node that answers: what must be switched off when giving tracing back. */
  async tracingAnywhere(): Promise<boolean> {
    return (await this.tracingByNode()).some((node) => node.on === true);
  }

  private async ownTracing(): Promise<boolean> {
    const raw = z.object({ tracing: z.boolean().optional() }).parse(await this.get(`/api/vhosts/${this.vhostPath}`));
    return raw.tracing ?? false;
  }

  /** The firehose flag of this vhost at each node: the one asked, then its peers (`on` undefined: the node did not answer). */
  async tracingByNode(): Promise<Array<{ node: string; on: boolean | undefined }>> {
    const own = { node: this.nodeName ?? (await this.overviewNode().catch(() => undefined)) ?? 'this node', on: await this.ownTracing() };
    const peers = await Promise.all(
      (await this.livePeers()).map((peer) =>
        peer.ownTracing().then(
          (on) => ({ node: peer.nodeName ?? 'a peer', on }),
          () => ({ node: peer.nodeName ?? 'a peer', on: undefined }),
        ),
      ),
    );
    return [own, ...peers];
  }

  private async overviewNode(): Promise<string | undefined> {
    return overviewSchema.parse(await this.get('/api/overview')).node;
  }

  /** Switches the firehose at this node and at every other node of the cluster (the flag is per node). */
  async setTracing(on: boolean): Promise<void> {
    await this.request(`/api/vhosts/${this.vhostPath}`, { method: 'PUT', body: { tracing: on } });
    await Promise.allSettled((await this.livePeers()).map((peer) => peer.request(`/api/vhosts/${peer.vhostPath}`, { method: 'PUT', body: { tracing: on } })));
  }

  /** Switches the firehose at one node of the cluster (by its name); throws when that node cannot be reached. */
  async setTracingAt(node: string, on: boolean): Promise<void> {
    const peers = await this.livePeers();
    const own = this.nodeName ?? this.selfNode ?? (await this.overviewNode());
    const target = node === own ? this : peers.find((peer) => peer.nodeName === node);
    if (!target) throw new BridgeError('unreachable', `The management API of node ${node} is not known from ${this.nodeName ?? 'this node'}: tracing could not be switched there.`);
    await target.request(`/api/vhosts/${target.vhostPath}`, { method: 'PUT', body: { tracing: on } });
  }

  /** Every exchange named like a BridgeScope ownership marker on this vhost, oldest first (anyone may have made one). */
  async tracingMarkers(): Promise<TracingMarkerRecord[]> {
    const pattern = encodeURIComponent(`^${TRACING_MARKER_EXCHANGE.replaceAll('.', '\\.')}(\\.|$)`);
    const raw = markerListSchema.parse(
      await this.get(`/api/exchanges/${this.vhostPath}?page=1&page_size=500&use_regex=true&name=${pattern}&columns=name,arguments`),
    );
    return raw.items
      .filter((item) => item.name === TRACING_MARKER_EXCHANGE || item.name.startsWith(`${TRACING_MARKER_EXCHANGE}.`))
      .map((item) => ({ exchange: item.name, ...readMarkerArguments(item.arguments) }))
      .sort((a, b) => (Date.parse(a.since) || Infinity) - (Date.parse(b.since) || Infinity));
  }

  /** The oldest ownership marker (when tracing was first switched on), or undefined when there is none. */
  async tracingMarker(): Promise<TracingMarker | undefined> {
    const [oldest] = await this.tracingMarkers();
    return oldest ? { since: oldest.since, by: oldest.by } : undefined;
  }

  /**
   * Writes a marker exchange and returns its name. Any user who may declare exchanges can write one too: only a marker
   * whose record this user keeps locally counts as BridgeScope's (`src/core/trace/ownership.ts`).
   */
  async setTracingMarker(marker: TracingMarker, id: string = randomUUID()): Promise<string> {
    const exchange = `${TRACING_MARKER_EXCHANGE}.${id}`;
    // internal: nobody can publish to it; durable: it must outlive the process and a broker restart.
    await this.request(`/api/exchanges/${this.vhostPath}/${encodeURIComponent(exchange)}`, {
      method: 'PUT',
      body: { type: 'fanout', durable: true, auto_delete: false, internal: true, arguments: { 'x-bridgescope-since': marker.since, 'x-bridgescope-by': marker.by } },
    });
    return exchange;
  }

  /** Removes the named markers (those read before): a marker written since then by another owner stays. */
  async deleteTracingMarkers(exchanges: readonly string[]): Promise<void> {
    for (const exchange of exchanges) {
      try {
        await this.request(`/api/exchanges/${this.vhostPath}/${encodeURIComponent(exchange)}`, { method: 'DELETE' });
      } catch (err) {
        if (!(err instanceof BridgeError && err.code === 'not-found')) throw err;
      }
    }
  }

  /** Names of the exclusive `bridgescope.tracer.*` queues: one per live BridgeScope tracer on this vhost, and any a user made so. */
  async liveTracerQueues(): Promise<string[]> {
    const pattern = encodeURIComponent(`^${LIVE_TRACER_QUEUE_PREFIX.replaceAll('.', '\\.')}`);
    // The name filter only applies to paged requests; 500 tracers at once is far beyond any real use.
    const raw = pagedQueuesSchema.parse(
      await this.get(`/api/queues/${this.vhostPath}?page=1&page_size=500&use_regex=true&name=${pattern}&columns=name,exclusive`),
    );
    // Only exclusive queues prove a live connection; a plain queue with the same prefix proves nothing.
    return raw.items.filter((queue) => queue.exclusive === true && queue.name.startsWith(LIVE_TRACER_QUEUE_PREFIX)).map((queue) => queue.name);
  }
}
