/**
 * A sandbox cluster: N private RabbitMQ nodes on this machine, each a sandbox node of its own (own folder, own ports,
 * MQTT and management), sharing one Erlang cookie kept in the cluster's folder, joined into one cluster.
 *
 * Layout of `dir`: cluster.json (node names, the cookie file, whether the nodes joined), .erlang.cookie, node-1/ .. node-N/
 * (each a single-node sandbox folder, see sandbox.ts). Single-node sandboxes stay the default; a folder holds one or the other.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { promisify } from 'node:util';
import { BridgeError } from '../errors';
import { DEFAULT_MQTT_EXCHANGE } from '../../shared/defaults';
import { ManagementApi } from './management-api';
import { probeAll } from './readiness';
import { chrootCommand, resolveRabbitMQ, rootBaseEnv, ROOT_SANDBOX_DIR, type RabbitMQInstall } from './installations';
import {
  findRabbitMQ,
  freePorts,
  killRootProcesses,
  nodeLogHint,
  startEpmd,
  sandboxStatus,
  startSandbox,
  stopSandbox,
  type SandboxInfo,
  type SandboxPorts,
  type SandboxStatus,
  type SandboxStopResult,
} from './sandbox';

const CLUSTER_FILE = 'cluster.json';
const COOKIE_FILE = '.erlang.cookie';
export const MAX_CLUSTER_NODES = 9;

interface ClusterRecord {
  nodes: string[];
  /** true once every node joined the first one (a later start forms the cluster afresh) */
  joined: boolean;
  mqttExchange: string;
  /** which RabbitMQ the nodes run (see installations.ts); kept so a later start and stop use the same */
  rabbitmq?: string;
}

export interface ClusterInfo {
  dir: string;
  nodes: SandboxInfo[];
  mqttExchange: string;
}

export interface ClusterStartOptions {
  dir: string;
  nodes: number;
  mqttExchange?: string;
  /** per node */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  onProgress?: (message: string) => void;
  /** which RabbitMQ (`system`, `4.0`, `4.3` or a prepared root's path); default the folder's last, else $BRIDGESCOPE_RABBITMQ */
  rabbitmq?: string;
}

export interface ClusterStartResult {
  cluster: ClusterInfo;
  reused: boolean;
  warnings: string[];
}

export type ClusterStatus = (
  | { state: 'running'; cluster: ClusterInfo }
  | { state: 'partial' | 'stopped'; dir: string; nodes: Array<{ nodeName: string; status: SandboxStatus }> }
) & {
  /** how many nodes the cluster in that folder has (0: none there) */
  nodesCount: number;
};

const nodeDir = (dir: string, index: number): string => join(dir, `node-${index + 1}`);

async function readCluster(dir: string): Promise<ClusterRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(join(dir, CLUSTER_FILE), 'utf8')) as Partial<ClusterRecord>;
    if (!Array.isArray(record.nodes) || record.nodes.some((name) => typeof name !== 'string')) return undefined;
    return {
      nodes: record.nodes,
      joined: record.joined === true,
      mqttExchange: record.mqttExchange ?? DEFAULT_MQTT_EXCHANGE,
      ...(typeof record.rabbitmq === 'string' ? { rabbitmq: record.rabbitmq } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Whether `dir` holds a sandbox cluster (as opposed to a single node or nothing). */
export function isClusterDir(dir: string): boolean {
  return existsSync(join(dir, CLUSTER_FILE));
}

async function rabbitmqctl(nodeName: string, home: string, args: string[], env: NodeJS.ProcessEnv, install: RabbitMQInstall, epmdPort?: number): Promise<string> {
  return rabbitmqTool('rabbitmqctl', nodeName, home, args, env, install, epmdPort);
}

function rootPluginsDir(root: string): { RABBITMQ_PLUGINS_DIR?: string } {
  const lib = '/usr/lib/rabbitmq/lib';
  const server = (() => {
    try {
      return readdirSync(join(root, lib)).find((name) => name.startsWith('rabbitmq_server-'));
    } catch {
      return undefined;
    }
  })();
  return server ? { RABBITMQ_PLUGINS_DIR: join(lib, server, 'plugins') } : {};
}

/**
 * A RabbitMQ command-line tool against one sandbox node (its folder `home`), with that node's cookie ($HOME), plugins
 * file and none of the system's env file; for a prepared root, the root's own tool, chrooted with the node's folder
 * mounted, through the node's epmd.
 */
export async function rabbitmqTool(
  tool: 'rabbitmqctl' | 'rabbitmq-plugins',
  nodeName: string,
  home: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  install: RabbitMQInstall,
  epmdPort?: number,
): Promise<string> {
  // rabbitmq-plugins of 4.0.5 takes the node only after its command (`-n` first prints its usage); rabbitmqctl either way.
  const argv = tool === 'rabbitmq-plugins' ? [...args, '-n', nodeName] : ['-n', nodeName, ...args];
  const command =
    install.kind === 'root'
      ? {
          ...chrootCommand(install.root, home, [`/usr/lib/rabbitmq/bin/${tool}`, ...argv]),
          env: {
            ...rootBaseEnv(),
            RABBITMQ_CONF_ENV_FILE: join(ROOT_SANDBOX_DIR, 'rabbitmq-env.conf'),
            RABBITMQ_ENABLED_PLUGINS_FILE: join(ROOT_SANDBOX_DIR, 'enabled_plugins'),
            // 4.0.5's rabbitmq-plugins does not find its plugins by itself in Debian's layout (plugins_dir_does_not_exist).
            ...rootPluginsDir(install.root),
            ERL_EPMD_ADDRESS: '127.0.0.1',
            ...(epmdPort ? { ERL_EPMD_PORT: String(epmdPort) } : {}),
          },
        }
      : {
          file: join(dirname(findRabbitMQ(env)), tool),
          args: argv,
          env: { ...env, HOME: home, RABBITMQ_CONF_ENV_FILE: join(home, 'rabbitmq-env.conf'), RABBITMQ_ENABLED_PLUGINS_FILE: join(home, 'enabled_plugins') },
        };
  try {
    const { stdout } = await promisify(execFile)(command.file, command.args, { env: command.env, timeout: 120_000 });
    return stdout;
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr?.trim().split('\n').slice(-3).join(' ') || (err as Error).message;
    throw new BridgeError('broker-failed', `${tool} ${args[0]} on ${nodeName} failed: ${detail}`, { cause: err });
  }
}

/** The cluster's members as node 1 sees them: name -> running. */
async function membersSeenBy(first: SandboxInfo): Promise<Map<string, boolean>> {
  const nodes = await new ManagementApi(first.urls.management).nodes();
  return new Map(nodes.map((node) => [node.name, node.running]));
}

/**
 * Starts (or reuses) a cluster of `nodes` sandbox nodes in `dir` and resolves when every node answers AMQP, MQTT and
 * management and node 1 lists all of them as running members.
 */
export async function startSandboxCluster(opts: ClusterStartOptions): Promise<ClusterStartResult> {
  // Absolute: each node runs with its folder as $HOME, and Erlang cannot create its cookie at a relative one.
  const dir = resolvePath(opts.dir);
  const env = opts.env ?? process.env;
  const progress = opts.onProgress ?? (() => undefined);
  const warnings: string[] = [];
  if (!Number.isInteger(opts.nodes) || opts.nodes < 2 || opts.nodes > MAX_CLUSTER_NODES) {
    throw new BridgeError('bad-input', `A sandbox cluster has 2 to ${MAX_CLUSTER_NODES} nodes (got ${opts.nodes}); one node is the plain sandbox.`);
  }
  await mkdir(dir, { recursive: true });
  if (existsSync(join(dir, 'identity.json')) || existsSync(join(dir, 'sandbox.json'))) {
    throw new BridgeError('bad-input', `${dir} holds a single-node sandbox: stop it and use another --dir for a cluster.`);
  }
  const existing = await readCluster(dir);
  if (existing && existing.nodes.length !== opts.nodes) {
    throw new BridgeError(
      'bad-input',
      `${dir} holds a sandbox cluster of ${existing.nodes.length} nodes, not ${opts.nodes}: use --nodes ${existing.nodes.length}, or another --dir.`,
    );
  }
  const mqttExchange = existing?.mqttExchange ?? opts.mqttExchange ?? DEFAULT_MQTT_EXCHANGE;
  const install = resolveRabbitMQ(opts.rabbitmq ?? existing?.rabbitmq, env);
  const base = `bridgescope-${randomBytes(3).toString('hex')}`;
  const record: ClusterRecord = existing ?? { nodes: Array.from({ length: opts.nodes }, (_, i) => `${base}-${i + 1}@localhost`), joined: false, mqttExchange };
  if (existing?.rabbitmq !== undefined && existing.rabbitmq !== install.label && existing.joined) {
    throw new BridgeError('bad-input', `${dir} holds a sandbox cluster of RabbitMQ ${existing.rabbitmq}, not ${install.label}: use --rabbitmq ${existing.rabbitmq}, or another --dir.`);
  }
  record.rabbitmq = install.label;
  await writeFile(join(dir, CLUSTER_FILE), JSON.stringify(record, null, 2));

  // One cookie for every node: each node's $HOME is its folder, so the cookie is copied there (Erlang wants mode 0400).
  const cookiePath = join(dir, COOKIE_FILE);
  const cookie = existsSync(cookiePath) ? (await readFile(cookiePath, 'utf8')).trim() : randomBytes(20).toString('hex').toUpperCase();
  for (const target of [cookiePath, ...record.nodes.map((_, i) => join(nodeDir(dir, i), COOKIE_FILE))]) {
    await mkdir(dirname(target), { recursive: true });
    await rm(target, { force: true });
    await writeFile(target, cookie, { mode: 0o400 });
    await chmod(target, 0o400);
  }

  const statuses = await Promise.all(record.nodes.map((_, i) => sandboxStatus(nodeDir(dir, i))));
  if (record.joined && statuses.every((status) => status.state === 'running')) {
    const infos = statuses.flatMap((status) => (status.state === 'running' ? [status.info] : []));
    // Reused only when the nodes really form one cluster (a join that failed last time leaves three single nodes).
    const members = await membersSeenBy(infos[0] as SandboxInfo).catch(() => new Map<string, boolean>());
    if (record.nodes.every((name) => members.get(name) === true)) return { cluster: { dir, nodes: infos, mqttExchange }, reused: true, warnings };
  }
  if (record.joined) {
    // A sandbox cluster starts fresh each time, with the same node names and ports: RabbitMQ 3.10's MQTT client-id
    // tracker (a Raft cluster) did not recover on one node when all three restarted together (seen here), and a
    // sandbox's queues are recreated by whoever uses them. Nodes still running are stopped first.
    warnings.push('The sandbox cluster starts fresh: queues and messages of its last run are gone (node names and ports stay).');
    await Promise.all(record.nodes.map((_, i) => stopSandbox(nodeDir(dir, i))));
    if (install.kind === 'root') await killRootProcesses(install.root, dir, 5000);
    await Promise.all(record.nodes.map((_, i) => rm(join(nodeDir(dir, i), 'mnesia'), { recursive: true, force: true })));
    record.joined = false;
    await writeFile(join(dir, CLUSTER_FILE), JSON.stringify(record, null, 2));
  }
  // Nodes from a prepared root find each other through one epmd of the cluster's own (in the cluster's folder).
  let epmdPort: number | undefined;
  if (install.kind === 'root') {
    await killRootProcesses(install.root, dir, 5000);
    epmdPort = await startEpmd(install.root, dir);
  }
  // Fresh ports for nodes that never ran, picked together so no two nodes race for the same one.
  const fresh = await freePorts(4 * record.nodes.length);
  const portsFor = (i: number): Partial<SandboxPorts> => ({ amqp: fresh[4 * i], mqtt: fresh[4 * i + 1], management: fresh[4 * i + 2], dist: fresh[4 * i + 3] });
  const startNode = async (i: number): Promise<SandboxInfo> => {
    const nodeName = record.nodes[i] as string;
    const neverRan = !existsSync(join(nodeDir(dir, i), 'identity.json'));
    const result = await startSandbox({
      dir: nodeDir(dir, i),
      nodeName,
      mqttExchange,
      env,
      rabbitmq: install.label,
      ...(epmdPort ? { epmdPort } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(neverRan ? { ports: portsFor(i) } : {}),
      onProgress: progress,
    });
    warnings.push(...result.warnings.map((warning) => `${nodeName}: ${warning}`));
    return result.info;
  };

  // Node 1 first; the others start as nodes of their own, then join it one by one.
  const first = await startNode(0);
  const others = await Promise.all(record.nodes.slice(1).map((_, i) => startNode(i + 1)));
  const infos = [first, ...others];
  const members = await membersSeenBy(first);
  for (const [i, info] of others.entries()) {
    if (members.get(info.nodeName)) continue;
    progress(`Joining ${info.nodeName} to ${first.nodeName}`);
    const home = nodeDir(dir, i + 1);
    await rabbitmqctl(info.nodeName, home, ['stop_app'], env, install, epmdPort);
    await rabbitmqctl(info.nodeName, home, ['join_cluster', first.nodeName], env, install, epmdPort);
    await rabbitmqctl(info.nodeName, home, ['start_app'], env, install, epmdPort);
  }
  record.joined = true;
  await writeFile(join(dir, CLUSTER_FILE), JSON.stringify(record, null, 2));

  // start_app restarts a joined node's listeners, and a restarted member may still be syncing: wait until every node
  // answers on all three protocols and node 1 lists every node as a running member.
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  for (;;) {
    const probes = await Promise.all(infos.map((info) => probeAll(info.urls, 2000)));
    if (probes.every((probe) => probe.ok)) break;
    if (Date.now() > deadline) {
      // Why it does not answer is in its log (a listener that did not start, a crash): the last error it wrote, and where.
      const reasons = probes.flatMap((probe, i) => (probe.ok ? [] : [`${infos[i]?.nodeName}: ${probe.reason}, ${nodeLogHint(nodeDir(dir, i))}`]));
      throw new BridgeError('timeout', `The sandbox cluster in ${dir} is not answering: ${reasons.join('; ')}.`);
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 250));
  }
  for (;;) {
    const members = await membersSeenBy(infos[0] as SandboxInfo).catch(() => new Map<string, boolean>());
    const missing = record.nodes.filter((name) => members.get(name) !== true);
    if (missing.length === 0) break;
    if (Date.now() > deadline) {
      throw new BridgeError('timeout', `The sandbox cluster in ${dir} did not form: ${missing.join(', ')} not running as members of ${record.nodes[0]}.`);
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 250));
  }
  progress(`Sandbox cluster of ${infos.length} nodes is ready`);
  return { cluster: { dir, nodes: infos, mqttExchange }, reused: false, warnings };
}

/** Every node of the cluster in `dir`: running when all are. */
export async function sandboxClusterStatus(dir: string): Promise<ClusterStatus> {
  const record = await readCluster(dir);
  if (!record) return { state: 'stopped', dir, nodes: [], nodesCount: 0 };
  const nodes = await Promise.all(record.nodes.map(async (nodeName, i) => ({ nodeName, status: await sandboxStatus(nodeDir(dir, i)) })));
  const running = nodes.flatMap((node) => (node.status.state === 'running' ? [node.status.info] : []));
  const nodesCount = record.nodes.length;
  if (running.length === nodes.length) return { state: 'running', cluster: { dir, nodes: running, mqttExchange: record.mqttExchange }, nodesCount };
  return { state: running.length === 0 ? 'stopped' : 'partial', dir, nodes, nodesCount };
}

function tryResolve(rabbitmq: string): RabbitMQInstall | undefined {
  try {
    return resolveRabbitMQ(rabbitmq);
  } catch {
    return undefined;
  }
}

/** Stops every node of the cluster in `dir` (together) and waits until their Erlang VMs are gone. */
export async function stopSandboxCluster(dir: string, timeoutMs = 30_000): Promise<Array<{ nodeName: string; result: SandboxStopResult }>> {
  const record = await readCluster(dir);
  if (!record) return [];
  const results = await Promise.all(record.nodes.map(async (nodeName, i) => ({ nodeName, result: await stopSandbox(nodeDir(dir, i), timeoutMs) })));
  // The cluster's own epmd (nodes from a prepared root), found by the root the nodes ran from.
  const install = record.rabbitmq ? tryResolve(record.rabbitmq) : undefined;
  if (install?.kind === 'root') await killRootProcesses(install.root, dir, 5000);
  return results;
}
