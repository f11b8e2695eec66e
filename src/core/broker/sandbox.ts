/** The sandbox broker: a private RabbitMQ node with MQTT and management, living in one folder on loopback ports it keeps. */
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, readSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo, type Server } from 'node:net';
import { homedir, platform } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { randomBytes, randomInt } from 'node:crypto';
import { BridgeError } from '../errors';
import { probeAll, type BrokerUrls } from './readiness';
import { ManagementApi } from './management-api';
import { chrootCommand, installedVersion, resolveRabbitMQ, rootBaseEnv, ROOT_SANDBOX_DIR, ROOT_SERVER_SCRIPT, upstreamVersion, type RabbitMQInstall } from './installations';
import { DEFAULT_MQTT_EXCHANGE } from '../../shared/defaults';
import { isProcessAlive } from '../processes';

export interface SandboxPorts {
  amqp: number;
  mqtt: number;
  management: number;
  dist: number;
}

export interface SandboxInfo {
  nodeName: string;
  dir: string;
  /** pid of the Erlang VM (beam.smp) */
  pid: number;
  ports: SandboxPorts;
  urls: BrokerUrls;
  mqttExchange: string;
  startedAt: string;
  logFile: string;
  /** which RabbitMQ runs it: `system`, `4.0`, `4.3` or a prepared root's path (see installations.ts) */
  rabbitmq?: string;
  /** RabbitMQ's version as the node reports it (management API), e.g. 4.3.6 */
  version?: string;
  /** a node from a prepared root: the root, and the port of the epmd its node finds others through */
  root?: string;
  epmdPort?: number;
}

export type SandboxStatus =
  | { state: 'running'; info: SandboxInfo }
  | { state: 'stopped'; dir: string }
  | { state: 'stale'; dir: string; info: SandboxInfo; reason: string };

export interface SandboxStartResult {
  info: SandboxInfo;
  /** true when a node was already running in that folder and was reused */
  reused: boolean;
  warnings: string[];
}

export interface SandboxStartOptions {
  dir: string;
  nodeName?: string;
  mqttExchange?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** fixed ports instead of free ones (tests use this to provoke a port clash) */
  ports?: Partial<SandboxPorts>;
  onProgress?: (message: string) => void;
  /** which RabbitMQ (`system`, `4.0`, `4.3` or a prepared root's path); default $BRIDGESCOPE_RABBITMQ, else system */
  rabbitmq?: string;
  /** a prepared root's node uses this epmd port (a cluster's nodes share one, started by the cluster) instead of its own */
  epmdPort?: number;
  /** aborting it while the node starts kills the node (as a start past its timeout does) and rejects with 'cancelled' */
  signal?: AbortSignal;
}

const STATE_FILE = 'sandbox.json';
/** The node's name and ports, kept across stop/start so every client can reconnect to the same URLs. */
const IDENTITY_FILE = 'identity.json';

export interface SandboxIdentity {
  nodeName: string;
  ports: SandboxPorts;
  /** a cluster node from a prepared root: the cluster's epmd port, which a restart of this node alone must use again */
  sharedEpmdPort?: number;
  /**
   * The RabbitMQ the node last started with (its data in mnesia/ is that version's): its choice (`system`, `4.3`...),
   * its root when from a prepared one, and the version it reported. A start with another RabbitMQ is refused up front.
   */
  rabbitmq?: string;
  root?: string;
  version?: string;
}

const portLabels: Record<keyof SandboxPorts, string> = { amqp: 'AMQP', mqtt: 'MQTT', management: 'management HTTP', dist: 'Erlang distribution' };

/** Where a user's sandbox lives unless `--dir` says otherwise. */
export function defaultSandboxDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BRIDGESCOPE_SANDBOX_DIR) return env.BRIDGESCOPE_SANDBOX_DIR;
  if (platform() === 'darwin') return join(homedir(), 'Library', 'Application Support', 'BridgeScope', 'sandbox');
  const stateHome = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(stateHome, 'bridgescope', 'sandbox');
}

/** Finds the `rabbitmq-server` script that starts a node as the current user (not the /usr/sbin wrapper). */
export const knownRabbitMQPaths = [
  '/usr/lib/rabbitmq/bin/rabbitmq-server',
  '/opt/homebrew/opt/rabbitmq/sbin/rabbitmq-server',
  '/usr/local/opt/rabbitmq/sbin/rabbitmq-server',
];

export function findRabbitMQ(env: NodeJS.ProcessEnv = process.env, knownPaths = knownRabbitMQPaths): string {
  const candidates: string[] = [];
  if (env.RABBITMQ_HOME) {
    candidates.push(join(env.RABBITMQ_HOME, 'sbin', 'rabbitmq-server'), join(env.RABBITMQ_HOME, 'bin', 'rabbitmq-server'));
  }
  candidates.push(...knownPaths);
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) {
    throw new BridgeError(
      'not-installed',
      'RabbitMQ is not installed: install it with `sudo apt-get install rabbitmq-server` (Debian/Ubuntu) or `brew install rabbitmq` (macOS), or set RABBITMQ_HOME to an unpacked RabbitMQ.',
    );
  }
  return found;
}

/**
 * The range the OS takes a connection's local port from (Linux: /proc/sys/net/ipv4/ip_local_port_range; macOS and
 * Windows: IANA's 49152-65535).
 */
export function ephemeralPortRange(): { low: number; high: number } {
  if (platform() === 'linux') {
    try {
      const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
      if (Number.isInteger(low) && Number.isInteger(high) && (low as number) <= (high as number)) return { low: low as number, high: high as number };
    } catch {
      // not readable: the IANA range below
    }
  }
  return { low: 49_152, high: 65_535 };
}

/** RabbitMQ's own default ports above 10000 (management, Web MQTT/STOMP, Prometheus, distribution): never the sandbox's. */
const RABBITMQ_DEFAULT_PORTS = new Set([15_671, 15_672, 15_673, 15_674, 15_675, 15_692, 25_672]);
const LOWEST_PORT = 10_000;

function listenOn(port: number): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/**
 * `count` distinct ports free on loopback now, picked at random outside the ephemeral range. A port the OS hands out as
 * a connection's local port (what listen(0) picks from) can be held by any outgoing connection when the node restarts
 * on it, a client reconnecting to that very port included (TCP connects to itself when both ends get the same port):
 * the node then fails to start with eaddrinuse. Outside that range only a listener takes a port. When the range leaves
 * too little room (or every pick is taken), the OS's own choice is used.
 */
export async function freePorts(count: number): Promise<number[]> {
  const { low, high } = ephemeralPortRange();
  const spans = [
    [LOWEST_PORT, Math.min(low, 65_536) - 1],
    [Math.max(high + 1, LOWEST_PORT), 65_535],
  ].filter(([from, to]) => (to as number) - (from as number) >= 1000) as Array<[number, number]>;
  const size = spans.reduce((sum, [from, to]) => sum + to - from + 1, 0);
  const held: Server[] = [];
  try {
    for (let attempt = 0; held.length < count && attempt < 40 * count; attempt++) {
      let pick = size > 0 ? randomInt(size) : -1;
      let port: number | undefined;
      for (const [from, to] of spans) {
        if (pick <= to - from) {
          port = from + pick;
          break;
        }
        pick -= to - from + 1;
      }
      if (port === undefined) break;
      if (RABBITMQ_DEFAULT_PORTS.has(port)) continue;
      const server = await listenOn(port);
      if (server) held.push(server);
    }
    while (held.length < count) {
      const server = await listenOn(0);
      if (!server) throw new Error('no free port on 127.0.0.1');
      held.push(server);
    }
    return held.map((server) => (server.address() as AddressInfo).port);
  } finally {
    await Promise.all(held.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

/** Whether a listener could bind 127.0.0.1:port right now. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Best effort (Linux /proc, own user's processes only): which process listens on a TCP port, e.g. "pid 1234 (nc)". */
export async function describePortHolder(port: number): Promise<string | undefined> {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      const local = columns[1];
      // state 0A is LISTEN; column 9 is the socket's inode
      if (!local || columns[3] !== '0A' || Number.parseInt(local.split(':')[1] ?? '', 16) !== port) continue;
      if (columns[9]) inodes.add(`socket:[${columns[9]}]`);
    }
  }
  if (inodes.size === 0) return undefined;
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name));
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (!inodes.has(target)) continue;
      const command = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
      return command ? `pid ${pid} (${command})` : `pid ${pid}`;
    }
  }
  return undefined;
}

async function readIdentity(dir: string): Promise<SandboxIdentity | undefined> {
  try {
    const identity = JSON.parse(await readFile(join(dir, IDENTITY_FILE), 'utf8')) as Partial<SandboxIdentity>;
    const ports = identity.ports;
    const valid = (value: unknown): value is number => Number.isInteger(value) && (value as number) > 0 && (value as number) < 65_536;
    if (typeof identity.nodeName !== 'string' || !ports || !valid(ports.amqp) || !valid(ports.mqtt) || !valid(ports.management) || !valid(ports.dist)) {
      return undefined;
    }
    const text = (key: 'rabbitmq' | 'root' | 'version'): object => (typeof identity[key] === 'string' ? { [key]: identity[key] } : {});
    return {
      nodeName: identity.nodeName,
      ports,
      ...(valid(identity.sharedEpmdPort) ? { sharedEpmdPort: identity.sharedEpmdPort } : {}),
      ...text('rabbitmq'),
      ...text('root'),
      ...text('version'),
    };
  } catch {
    return undefined;
  }
}

/**
 * The ports for this start: explicit ones as given, the remembered ones unless another process took one meanwhile
 * (then that one moves, and a warning says which, to what, and who holds it), fresh free ones otherwise.
 */
async function choosePorts(requested: Partial<SandboxPorts> | undefined, remembered: SandboxPorts | undefined, warnings: string[]): Promise<SandboxPorts> {
  const kinds = ['amqp', 'mqtt', 'management', 'dist'] as const;
  const fresh = await freePorts(kinds.length);
  const chosen = {} as SandboxPorts;
  for (const [index, kind] of kinds.entries()) {
    const explicit = requested?.[kind];
    const kept = remembered?.[kind];
    const freshPort = fresh[index] as number;
    if (explicit !== undefined) chosen[kind] = explicit;
    else if (kept === undefined) chosen[kind] = freshPort;
    else if (await isPortFree(kept)) chosen[kind] = kept;
    else {
      const holder = await describePortHolder(kept);
      chosen[kind] = freshPort;
      warnings.push(`The sandbox's ${portLabels[kind]} port ${kept} is taken by ${holder ?? 'another process'}; it moves to ${freshPort}, so clients must use the new URL.`);
    }
  }
  return chosen;
}

async function readState(dir: string): Promise<SandboxInfo | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as SandboxInfo;
  } catch {
    return undefined;
  }
}

/** Says whether the node recorded in `dir` is running, gone, or alive but not answering. */
export async function sandboxStatus(dir: string): Promise<SandboxStatus> {
  const info = await readState(dir);
  if (!info) return { state: 'stopped', dir };
  if (!isProcessAlive(info.pid)) {
    return { state: 'stale', dir, info, reason: `node ${info.nodeName} (pid ${info.pid}) is no longer running` };
  }
  const probe = await probeAll(info.urls, 2000);
  if (!probe.ok) {
    return { state: 'stale', dir, info, reason: `node ${info.nodeName} (pid ${info.pid}) is alive but not answering (${probe.reason})` };
  }
  return { state: 'running', info };
}

function logTail(logFile: string, lines = 12): string {
  try {
    const text = readFileSync(logFile, 'utf8');
    return text.trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** What a node wrote to its log from byte `offset` on (this start's lines, not an earlier run's), at most its last 64 KB. */
function logSince(logFile: string, offset: number): string {
  try {
    const size = statSync(logFile).size;
    const from = Math.max(offset, size - 65_536);
    const buffer = Buffer.alloc(Math.max(0, size - from));
    const fd = openSync(logFile, 'r');
    try {
      readSync(fd, buffer, 0, buffer.length, from);
    } finally {
      closeSync(fd);
    }
    return buffer.toString('utf8');
  } catch {
    return '';
  }
}

/** How to get a node going in `dir` when its data is another RabbitMQ version's; `choice` is the one that made it, if known. */
function otherVersionRemedy(dir: string, choice?: string): string {
  const startWith = choice
    ? `start it with the RabbitMQ it was made with (BRIDGESCOPE_RABBITMQ=${choice}, or \`broker start --rabbitmq ${choice}\`)`
    : 'start it with the RabbitMQ version it was made with (BRIDGESCOPE_RABBITMQ=system, 4.0 or 4.3, or `broker start --rabbitmq`)';
  return `${startWith}, use another folder (BRIDGESCOPE_SANDBOX_DIR, or \`broker start --dir\`), or remove ${join(dir, 'mnesia')} to start afresh (its queues, exchanges and users go with it)`;
}

/** A log line's own text, without the timestamp, level and process RabbitMQ puts before it. */
const LOG_PREFIX = /^\d{4}-\d\d-\d\d[ T][\d:.+-]+ \[\w+\] <[\d.]+> ?/;

/**
 * The reason of the first "BOOT FAILED" block in a node's log: the first error RabbitMQ logged before it (3.10.8 and
 * 4.3.6 both say there what failed, in words; the node's stdout and its log interleave in no fixed order), else the
 * error term that follows its heading ("Error during startup: {...}", or "Exception during startup:" then
 * "throw:{...}"); in one line of 300 characters at most.
 */
export function bootFailedReason(log: string): string | undefined {
  const raw = log.split('\n');
  const lines = raw.map((line) => line.replace(LOG_PREFIX, '').trim());
  const heading = lines.indexOf('BOOT FAILED');
  if (heading < 0) return undefined;
  const isError = (index: number): boolean => /\[error\]/.test(raw[index] as string) && LOG_PREFIX.test(raw[index] as string);
  const first = lines.findIndex((line, index) => index < heading && line !== '' && isError(index));
  if (first >= 0) {
    // An error's further lines come indented after the same prefix.
    const message = [lines[first] as string];
    for (let index = first + 1; index < heading && isError(index) && /^\s/.test((raw[index] as string).replace(LOG_PREFIX, '')) && lines[index] !== ''; index++) {
      message.push(lines[index] as string);
    }
    return oneLine(message);
  }
  const rest = lines.slice(heading + 1);
  const error = rest.findIndex((line) => /^(Error|Exception) during startup:/.test(line));
  if (error < 0) return undefined;
  if ((rest[error] as string).startsWith('Exception')) return rest.slice(error + 1).find((line) => line !== '')?.slice(0, 300);
  // "Error during startup: {error," and the rest of its term on the lines up to the next empty one.
  const end = rest.indexOf('', error);
  const term = rest.slice(error, end < 0 ? undefined : end);
  return oneLine(term);
}

/** A message's or an Erlang term's lines in one line: the indentation between the term's pieces goes. */
function oneLine(lines: string[]): string {
  return lines.join(' ').replace(/\s*([{},[\]])\s*/g, '$1').replace(/: ?\{/, ': {').slice(0, 300);
}

/**
 * Why a node stopped during start-up, from what it logged in this start; `dir` is its sandbox folder, `madeWith` the
 * RabbitMQ version its folder last recorded (a folder from before versions were recorded, or the machine's package
 * upgraded since, reaches the node's boot with another version's data).
 */
export function explainStartFailure(log: string, ports: SandboxPorts, dir: string, madeWith?: string): string {
  // RabbitMQ 3.11+ on the data of an older version whose feature flags it requires (4.3.6 on 3.10.8's, for one).
  const requiredFlag = /Feature flags: `([\w.]+)`: required feature flag not enabled/.exec(log) ?? /disabled_required_feature_flag,\s*(\w+)/.exec(log);
  if (requiredFlag) {
    return `the sandbox folder ${dir} holds a node's data made by another RabbitMQ version${madeWith ? ` (${madeWith})` : ''}, which this one cannot start on (its log: required feature flag \`${requiredFlag[1]}\` is not enabled): ${otherVersionRemedy(dir, madeWith)}`;
  }
  const listener = /could_not_start_listener,"?[\d.:a-f]+"?,(\d+)/.exec(log);
  if (listener) return `port ${listener[1]} was taken by another process meanwhile`;
  if (/eaddrinuse|address already in use/i.test(log)) {
    return `one of its ports (${ports.amqp}, ${ports.mqtt}, ${ports.management}, ${ports.dist}) was taken by another process meanwhile`;
  }
  const erlang = /erl: not found|erl: command not found/.test(log);
  if (erlang) return 'Erlang (`erl`) is not on the PATH';
  const boot = bootFailedReason(log);
  if (boot) return `its boot failed: ${boot}`;
  return lastErrorLine(log) ?? 'no reason in the log';
}

/** The last line of a node's log that tells an error, a failure or a crash (cut to 300 characters), if any. */
function lastErrorLine(log: string): string | undefined {
  const line = log
    .split('\n')
    .reverse()
    .find((text) => /error|failed|crash/i.test(text));
  return line?.trim().slice(0, 300);
}

/** What the node in `dir` last logged as an error, and where its log is: for a node that does not answer. */
export function nodeLogHint(dir: string): string {
  const logFile = join(dir, 'node.log');
  const error = lastErrorLine(logTail(logFile, 200));
  return error ? `its log's last error: ${error} (${logFile})` : `no error in its log (${logFile})`;
}

/**
 * Starts a node in `opts.dir`, or reports the one already running there.
 * Resolves only when AMQP, MQTT and management HTTP all answer.
 */
export async function startSandbox(opts: SandboxStartOptions): Promise<SandboxStartResult> {
  // Absolute: the node runs with its folder as $HOME, and Erlang cannot create its cookie at a relative one.
  const dir = resolvePath(opts.dir);
  const warnings: string[] = [];
  const progress = opts.onProgress ?? (() => undefined);
  await mkdir(dir, { recursive: true });
  if (existsSync(join(dir, 'cluster.json'))) {
    throw new BridgeError('bad-input', `${dir} holds a sandbox cluster: use \`broker start --nodes N\` there, or another folder for a single node.`);
  }

  const status = await sandboxStatus(dir);
  if (status.state === 'running') return { info: status.info, reused: true, warnings };
  // A record from before identity.json existed still names the node and its ports.
  const remembered: SandboxIdentity | undefined =
    (await readIdentity(dir)) ??
    (status.state === 'stale'
      ? {
          nodeName: status.info.nodeName,
          ports: status.info.ports,
          ...(status.info.rabbitmq ? { rabbitmq: status.info.rabbitmq } : {}),
          ...(status.info.root ? { root: status.info.root } : {}),
          ...(status.info.version ? { version: status.info.version } : {}),
        }
      : undefined);
  if (status.state === 'stale') {
    warnings.push(`Found a stale sandbox record: ${status.reason}; starting a fresh node.`);
    // Everything the record names goes: the node if still alive, its wrapper, a root's namespace and epmd.
    await stopSandbox(dir, 15_000);
  }

  const install = resolveRabbitMQ(opts.rabbitmq, opts.env ?? process.env);
  refuseOtherVersionsData(dir, opts.nodeName ?? remembered?.nodeName, remembered, install);
  const serverScript = install.kind === 'root' ? ROOT_SERVER_SCRIPT : findRabbitMQ(opts.env ?? process.env);
  const ports = await choosePorts(opts.ports, remembered?.ports, warnings);
  // The same node name keeps the same data folder (mnesia) across restarts.
  const nodeName = opts.nodeName ?? remembered?.nodeName ?? `bridgescope-${randomBytes(4).toString('hex')}@localhost`;
  const mqttExchange = opts.mqttExchange ?? DEFAULT_MQTT_EXCHANGE;
  const logFile = join(dir, 'node.log');
  const pidFile = join(dir, 'node.pid');
  await rm(pidFile, { force: true });

  await writeFile(
    join(dir, 'rabbitmq.conf'),
    [
      `listeners.tcp.default = 127.0.0.1:${ports.amqp}`,
      `mqtt.listeners.tcp.default = 127.0.0.1:${ports.mqtt}`,
      `mqtt.exchange = ${mqttExchange}`,
      'mqtt.allow_anonymous = true',
      `management.tcp.port = ${ports.management}`,
      'management.tcp.ip = 127.0.0.1',
      '',
    ].join('\n'),
  );
  await writeFile(join(dir, 'enabled_plugins'), '[rabbitmq_management,rabbitmq_mqtt].\n');
  // An empty env file keeps the system's /etc/rabbitmq/rabbitmq-env.conf (node name, ports) out of the sandbox.
  await writeFile(join(dir, 'rabbitmq-env.conf'), '');

  // A node from a prepared root sees its folder at /sandbox, and finds other nodes through an epmd of its own port.
  const inner = install.kind === 'root' ? ROOT_SANDBOX_DIR : dir;
  let epmdPort: number | undefined;
  let sharedEpmdPort: number | undefined;
  if (install.kind === 'root') {
    // A cluster node restarted on its own (the others running) finds them through the cluster's epmd, still running.
    sharedEpmdPort = opts.epmdPort ?? (remembered?.sharedEpmdPort && (await epmdListens(remembered.sharedEpmdPort)) ? remembered.sharedEpmdPort : undefined);
    epmdPort = sharedEpmdPort ?? (await startEpmd(install.root, dir));
  }
  const env: NodeJS.ProcessEnv = {
    ...(install.kind === 'root' ? rootBaseEnv() : (opts.env ?? process.env)),
    // The Erlang cookie lives in $HOME: keep the sandbox's own, inside its folder.
    HOME: inner,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_PORT: String(ports.amqp),
    RABBITMQ_DIST_PORT: String(ports.dist),
    RABBITMQ_CONFIG_FILE: join(inner, 'rabbitmq.conf'),
    RABBITMQ_CONF_ENV_FILE: join(inner, 'rabbitmq-env.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(inner, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: join(inner, 'mnesia'),
    RABBITMQ_LOG_BASE: join(inner, 'log'),
    RABBITMQ_PID_FILE: join(inner, 'node.pid'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(inner, 'advanced.config'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
    ...(epmdPort ? { ERL_EPMD_PORT: String(epmdPort) } : {}),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  delete env.RABBITMQ_NODE_IP_ADDRESS;

  progress(`Starting RabbitMQ node ${nodeName} (RabbitMQ ${describeInstall(install)}) in ${dir}`);
  // What this start logs begins here (the log keeps earlier runs' lines).
  const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
  const logFd = openSync(logFile, 'a');
  // In its own folder: an Erlang crash dump (erl_crash.dump) lands there, not in whatever folder the user ran us from.
  const command = install.kind === 'root' ? chrootCommand(install.root, dir, [serverScript]) : { file: serverScript, args: [] };
  const child = spawn(command.file, command.args, { detached: true, stdio: ['ignore', logFd, logFd], env, cwd: dir });
  closeSync(logFd);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', (err) =>
      reject(new BridgeError('not-installed', `Cannot run ${serverScript}: ${err.message}.`, { cause: err })),
    );
  });
  spawnError.catch(() => undefined);
  child.unref();

  const urls: BrokerUrls = {
    amqp: `amqp://guest:guest@127.0.0.1:${ports.amqp}`,
    mqtt: `mqtt://127.0.0.1:${ports.mqtt}`,
    management: `http://guest:guest@127.0.0.1:${ports.management}`,
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  let lastReason = 'not started yet';
  for (;;) {
    if (exited) {
      if (install.kind === 'root') await killRootProcesses(install.root, dir, 5000);
      const log = logSince(logFile, logStart);
      throw new BridgeError(
        'broker-failed',
        `RabbitMQ node ${nodeName} stopped during start-up: ${explainStartFailure(log, ports, dir, remembered?.version)}. Log: ${logFile}`,
      );
    }
    if (opts.signal?.aborted) {
      await killProcessGroup(child.pid);
      if (install.kind === 'root') await killRootProcesses(install.root, dir, 5000);
      throw new BridgeError('cancelled', `The start of RabbitMQ node ${nodeName} was stopped; the node is stopped too.`);
    }
    if (Date.now() > deadline) {
      await killProcessGroup(child.pid);
      if (install.kind === 'root') await killRootProcesses(install.root, dir, 5000);
      throw new BridgeError(
        'timeout',
        `RabbitMQ node ${nodeName} did not become ready within ${Math.round((opts.timeoutMs ?? 90_000) / 1000)} s (${lastReason}). Log: ${logFile}`,
      );
    }
    if (existsSync(pidFile)) {
      const probe = await Promise.race([probeAll(urls, 2000), spawnError]);
      if (probe.ok) break;
      lastReason = probe.reason;
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 250));
  }

  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  const version = await new ManagementApi(urls.management)
    .overview()
    .then((overview) => overview.rabbitmqVersion)
    .catch(() => undefined);
  const info: SandboxInfo = {
    nodeName,
    dir,
    pid,
    ports,
    urls,
    mqttExchange,
    startedAt: new Date().toISOString(),
    logFile,
    rabbitmq: install.label,
    ...(version ? { version } : {}),
  };
  if (install.kind === 'root') {
    info.root = install.root;
    if (epmdPort) info.epmdPort = epmdPort;
  }
  await writeFile(join(dir, STATE_FILE), JSON.stringify({ ...info, wrapperPid: child.pid }, null, 2));
  const recordedVersion = version ?? (install.kind === 'root' ? install.version : undefined);
  const identity: SandboxIdentity = {
    nodeName,
    ports,
    ...(sharedEpmdPort ? { sharedEpmdPort } : {}),
    rabbitmq: install.label,
    ...(install.kind === 'root' ? { root: install.root } : {}),
    ...(recordedVersion ? { version: recordedVersion } : {}),
  };
  await writeFile(join(dir, IDENTITY_FILE), JSON.stringify(identity, null, 2));
  progress(`RabbitMQ node ${nodeName} is ready`);
  return { info, reused: false, warnings };
}

/**
 * A node's data (mnesia/<node>) is the RabbitMQ version's that made it: another version crashes on it (4.3.6 on
 * 3.10.8's: a required feature flag is not enabled), hangs (4.0.5 on 4.3.6's) or starts without what it held (3.10.8
 * on 4.3.6's). A folder that recorded another RabbitMQ than `install` is refused before the node boots, saying what to do.
 */
function refuseOtherVersionsData(dir: string, nodeName: string | undefined, remembered: SandboxIdentity | undefined, install: RabbitMQInstall): void {
  if (!remembered?.rabbitmq || !nodeName || !existsSync(join(dir, 'mnesia', nodeName))) return;
  const refusal = otherVersionsDataRefusal(dir, remembered, install, installedVersion(install));
  if (refusal) throw new BridgeError('bad-input', refusal);
}

/**
 * Why a folder made with `remembered` cannot be started with `install` (which runs version `runs`, when known), or
 * undefined when it can: the same installation, or another one of the same version (a root moved or copied, the
 * machine's package and a root alike), whose data format is the same.
 */
export function otherVersionsDataRefusal(dir: string, remembered: SandboxIdentity, install: RabbitMQInstall, runs: string | undefined): string | undefined {
  const madeBy = remembered.root ?? 'system';
  const now = install.kind === 'root' ? install.root : 'system';
  if (madeBy === now) return undefined;
  if (remembered.version !== undefined && runs !== undefined && upstreamVersion(remembered.version) === upstreamVersion(runs)) return undefined;
  const made = `RabbitMQ ${remembered.version ?? remembered.rabbitmq}${remembered.root ? ` (from ${remembered.root})` : " (this machine's)"}`;
  return `The sandbox folder ${dir} holds a node's data made with ${made}, and RabbitMQ ${describeInstall(install)} cannot run on another version's data: ${otherVersionRemedy(dir, remembered.rabbitmq)}.`;
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise<void>((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

async function killProcessGroup(pid: number | undefined): Promise<void> {
  if (!pid) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** SIGTERM lets RabbitMQ shut down cleanly; SIGKILL only when it does not within the timeout. */
export async function killNode(pid: number, timeoutMs: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitForExit(pid, timeoutMs)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitForExit(pid, 5000);
}

/**
 * Kills, bounded, every process chrooted in `root` that sees the sandbox folder `dir` at /sandbox (a node, its epmd, a
 * rabbitmqctl): a process belongs to this folder only if that mount is this very folder (same device and inode), so a
 * copied record or another sandbox on the same root is never touched. Their mount namespaces end with them.
 */
export async function killRootProcesses(root: string, dir: string, timeoutMs: number): Promise<number> {
  const target = await stat(dir).catch(() => undefined);
  if (!target) return 0;
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name) && Number(name) !== process.pid);
  const owned = await Promise.all(
    pids.map(async (pid) => {
      if ((await readlink(`/proc/${pid}/root`).catch(() => '')) !== root) return 0;
      const seen = await stat(`/proc/${pid}/root${ROOT_SANDBOX_DIR}`).catch(() => undefined);
      return seen && seen.dev === target.dev && seen.ino === target.ino ? Number(pid) : 0;
    }),
  );
  const found = owned.filter((pid) => pid > 0);
  await Promise.all(found.map((pid) => killNode(pid, timeoutMs)));
  return found.length;
}

/** How a start names its RabbitMQ: the machine's package, or a prepared root's version. */
export function describeInstall(install: RabbitMQInstall): string {
  if (install.kind === 'system') return 'from this machine';
  return `${install.label}${install.version ? ` (${install.version})` : ''} from ${install.root}`;
}

/**
 * An epmd of its own (a free port, on loopback) for nodes from a prepared root, run from that root with `dir` mounted.
 * Waiting for it asks the port as a node would (epmd's NAMES request) instead of binding it: a bind to see whether the
 * port is still free holds it for a moment, and an epmd that binds in that moment exits quietly (status 0). A port taken
 * by another listener between the pick and epmd's bind ends the same way (that listener does not answer as epmd), so a
 * new port is picked then, three times at most.
 */
export async function startEpmd(root: string, dir: string): Promise<number> {
  let lastPort = 0;
  let spawnError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const [port] = (await freePorts(1)) as [number];
    lastPort = port;
    const logFd = openSync(join(dir, 'epmd.log'), 'a');
    // In the folder's own namespace too, so that stopping the folder's processes (killRootProcesses) finds it.
    const command = chrootCommand(root, dir, ['/usr/bin/epmd', '-port', String(port), '-address', '127.0.0.1']);
    const child = spawn(command.file, command.args, {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: rootBaseEnv(),
    });
    closeSync(logFd);
    child.once('error', (err) => void (spawnError = err));
    child.unref();
    const ended = (): boolean => child.exitCode !== null || child.signalCode !== null || child.pid === undefined || spawnError !== undefined;
    const deadline = Date.now() + 30_000;
    while (!ended() && !(await epmdListens(port))) {
      if (Date.now() > deadline) {
        await killNode(child.pid as number, 2000);
        throw new BridgeError('broker-failed', `epmd from ${root} did not listen on port ${port} within 30 s${epmdLogTail(dir)}.`);
      }
      await new Promise<void>((resolve) => setTimeout(resolve, 50));
    }
    if (!ended()) return port;
    if (spawnError) break;
  }
  const why = spawnError ? `could not be started (${spawnError.message})` : `exited three times without listening (last on port ${lastPort})`;
  throw new BridgeError('broker-failed', `epmd from ${root} ${why}${epmdLogTail(dir)}.`);
}

/** The end of a folder's epmd log, for an error message: what epmd or the chroot's mounts said. */
function epmdLogTail(dir: string): string {
  const path = join(dir, 'epmd.log');
  const text = logTail(path, 5).replace(/\s+/g, ' ');
  return `; ${path}${text ? ` ends "${text.slice(-300)}"` : ' has nothing in it'}`;
}

/** epmd's NAMES request: a 2-byte length (1), then 110 ('n'); its answer begins with epmd's own port, 4 bytes. */
const EPMD_NAMES_REQUEST = Buffer.from([0, 1, 110]);

/**
 * Whether an epmd answers on loopback `port` now, as itself: it is asked for its names, as a node asks it, and must say
 * its own port back (any other listener does not). Asked without taking the port; bounded by `timeoutMs`.
 */
export function epmdListens(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    let answer = Buffer.alloc(0);
    const socket = createConnection({ port, host: '127.0.0.1' });
    const done = (listens: boolean): void => {
      socket.destroy();
      resolve(listens);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => socket.write(EPMD_NAMES_REQUEST));
    socket.on('data', (chunk: Buffer) => {
      answer = Buffer.concat([answer, chunk]);
      if (answer.length >= 4) done(answer.readUInt32BE(0) === port);
    });
    socket.once('error', () => done(false));
    socket.once('close', () => done(answer.length >= 4 && answer.readUInt32BE(0) === port));
  });
}

export type SandboxStopResult = { stopped: true; info: SandboxInfo } | { stopped: false; reason: string };

/** Stops the node in `dir` and waits until its Erlang VM is gone. */
export async function stopSandbox(dir: string, timeoutMs = 30_000): Promise<SandboxStopResult> {
  const raw = await readState(dir);
  if (!raw) return { stopped: false, reason: `no sandbox broker is recorded in ${dir}` };
  const info = raw as SandboxInfo & { wrapperPid?: number };
  const wasAlive = isProcessAlive(info.pid);
  if (wasAlive) await killNode(info.pid, timeoutMs);
  if (info.wrapperPid && isProcessAlive(info.wrapperPid)) await killNode(info.wrapperPid, 5000);
  // A node from a prepared root: whatever else runs in that root with this folder mounted (the epmd it started; its
  // mounts end with the last process of its mount namespace).
  if (info.root) await killRootProcesses(info.root, dir, 5000);
  await rm(join(dir, STATE_FILE), { force: true });
  await rm(join(dir, 'node.pid'), { force: true });
  if (!wasAlive) return { stopped: false, reason: `node ${info.nodeName} was not running (stale record removed)` };
  return { stopped: true, info };
}
