/**
 * Where the CLI finds broker URLs: the flag, then BRIDGESCOPE_*_URL, then the running sandbox broker. When the command
 * names another broker than the sandbox for one protocol, the sandbox is not used for the others: an MQTT or management
 * URL not given is the AMQP URL's host with the plugin's default port (as the app's environment profile), said on
 * stderr; any other missing URL is asked for in one sentence. Before, `--amqp` to a remote broker sent the MQTT side
 * (or the verdict's management API) to the local sandbox: two brokers in one answer.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultSandboxDir, type SandboxInfo } from '../core/broker/sandbox';
import { BridgeError } from '../core/errors';
import { ManagementApi } from '../core/broker/management-api';
import { amqpConnectOptions, reachableAmqpUrl } from '../core/links/amqp-link';
import { validateMqttUrl } from '../core/links/mqtt-link';
import { parseManagementUrl } from '../core/broker/management-http';
import { skippedSentence } from '../core/links/in-turn';
import { splitUrls } from '../shared/url-list';
import { givenFlags, KINDS, said, type UrlKind } from './given-urls';
import { siblingList } from '../core/profiles';
import { say } from './run';
import { redactUrl, splitTypedUrl } from '../shared/redact';
import { cliTls } from './tls';

/** Several URLs in one flag or variable (a cluster's nodes): the app's profiles read lists by the same rule. */
export { splitUrls };

const envNames: Record<UrlKind, string> = {
  amqp: 'BRIDGESCOPE_AMQP_URL',
  mqtt: 'BRIDGESCOPE_MQTT_URL',
  management: 'BRIDGESCOPE_MANAGEMENT_URL',
};

/** The running sandbox's URLs: one node's, or every node's of a sandbox cluster (node 1 first). */
function sandboxUrls(): Array<SandboxInfo['urls']> {
  const dir = defaultSandboxDir();
  const read = (path: string): SandboxInfo['urls'] | undefined => {
    try {
      return (JSON.parse(readFileSync(path, 'utf8')) as SandboxInfo).urls;
    } catch {
      return undefined;
    }
  };
  const single = read(join(dir, 'sandbox.json'));
  if (single) return [single];
  try {
    const cluster = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as { nodes?: unknown[] };
    const count = Array.isArray(cluster.nodes) ? cluster.nodes.length : 0;
    return Array.from({ length: count }, (_, i) => read(join(dir, `node-${i + 1}`, 'sandbox.json'))).filter((urls) => urls !== undefined);
  } catch {
    return [];
  }
}

const flagNames: Record<UrlKind, string> = { amqp: '--amqp', mqtt: '--mqtt', management: '--management' };

function givenFor(kind: UrlKind): { urls: string; from: string } | undefined {
  const fromFlag = givenFlags[kind];
  if (fromFlag !== undefined) return { urls: fromFlag, from: flagNames[kind] };
  const fromEnv = process.env[envNames[kind]];
  return fromEnv ? { urls: fromEnv, from: envNames[kind] } : undefined;
}

const DEFAULT_PORTS: Record<string, string> = { 'amqp:': '5672', 'amqps:': '5671', 'mqtt:': '1883', 'mqtts:': '8883', 'ws:': '80', 'wss:': '443', 'http:': '80', 'https:': '443' };
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/** host:port of a URL (loopback names as one, the scheme's default port spelled out), or undefined when unreadable. */
function endpointOf(url: string): string | undefined {
  const { prefix, rest } = splitTypedUrl(url.trim());
  try {
    const parsed = new URL(`${prefix}${rest}`);
    const host = LOOPBACK.has(parsed.hostname.toLowerCase()) ? 'loopback' : parsed.hostname.toLowerCase();
    return `${host}:${parsed.port || DEFAULT_PORTS[parsed.protocol.toLowerCase()] || ''}`;
  } catch {
    return undefined;
  }
}

/** Whether every URL of a list is one of the running sandbox's for that protocol. */
function isSandbox(kind: UrlKind, urls: string, sandbox: ReadonlyArray<SandboxInfo['urls']>): boolean {
  const ours = new Set(sandbox.map((node) => endpointOf(node[kind])));
  return splitUrls(urls).every((url) => {
    const endpoint = endpointOf(url);
    return endpoint !== undefined && ours.has(endpoint);
  });
}

/**
 * A list given by flag or variable, each URL read now by its protocol's own parser: one that would be read otherwise
 * than typed, or has no host, is refused in one sentence before anything connects, whichever command it is given to
 * (call's --amqp, used only to ask why a call failed, was read only then, and a failure to read it passed over).
 */
function checkedUrls(kind: UrlKind, given: string): string[] {
  const urls = splitUrls(given);
  // Each parser refuses a URL read otherwise than typed, or with no host (src/shared/redact.ts, hostlessUrlMessage).
  for (const url of urls) {
    if (kind === 'amqp') amqpConnectOptions(url, 0);
    else if (kind === 'mqtt') validateMqttUrl(url);
    else parseManagementUrl(url);
  }
  return urls;
}

/** The flag, else the variable, for a protocol: undefined when neither is given. */
function givenList(kind: UrlKind, flag: string | undefined): string | undefined {
  return flag ?? (process.env[envNames[kind]] || undefined);
}

/** Refuses a URL given for a protocol (flag or variable) that cannot be read, before the command connects to anything. */
export function checkGivenUrls(kind: UrlKind, flag: string | undefined): void {
  const given = givenList(kind, flag);
  if (given !== undefined) checkedUrls(kind, given);
}

/**
 * The URLs of a protocol a command can do without (live consumer counts): undefined when none is given or found, but a
 * URL given that cannot be read is refused all the same, not passed over in silence.
 */
export function optionalUrls(kind: UrlKind, flag: string | undefined): string[] | undefined {
  const given = givenList(kind, flag);
  if (given !== undefined) return checkedUrls(kind, given);
  try {
    return resolveUrls(kind, flag);
  } catch {
    return undefined;
  }
}

/** Every URL given for a protocol (a cluster's nodes), the first being the one to try first. */
export function resolveUrls(kind: UrlKind, flag: string | undefined): string[] {
  const given = givenList(kind, flag);
  if (given !== undefined) return checkedUrls(kind, given);
  const sandbox = sandboxUrls();
  // Another protocol's URL names a broker other than the sandbox: the sandbox would answer for another broker.
  const elsewhere = KINDS.filter((other) => other !== kind)
    .map((other) => ({ other, given: givenFor(other) }))
    .find(({ other, given: named }) => named !== undefined && !isSandbox(other, named.urls, sandbox));
  if (elsewhere?.given) {
    const { other, given: named } = elsewhere;
    // The app's environment profile rule (the same siblingList): the AMQP URL's host, the plugin's default port.
    const derived = other === 'amqp' && kind !== 'amqp' ? siblingList(named.urls, kind) : undefined;
    if (derived !== undefined) {
      if (!said.has(kind)) {
        said.add(kind);
        say(`bridgescope: no ${kind === 'management' ? 'management' : 'MQTT'} URL given: using ${splitUrls(derived).map(redactUrl).join(', ')} (the host of ${named.from} with the plugin's default port); pass ${flagNames[kind]} or set ${envNames[kind]} to say otherwise.`);
      }
      return splitUrls(derived);
    }
    throw new BridgeError(
      'bad-input',
      `No ${kind === 'management' ? 'management' : kind.toUpperCase()} URL for the broker ${named.from} names (${splitUrls(named.urls).map(redactUrl).join(', ')}): pass ${flagNames[kind]} or set ${envNames[kind]}${sandbox.length > 0 ? ' (the running sandbox broker is another broker)' : ''}.`,
    );
  }
  const urls = sandbox.map((urls) => urls[kind]);
  if (urls.length === 0) {
    // A sandbox that ran here before and is stopped now: the broker is what is missing, not a flag (exit 4, as any broker down).
    const dir = defaultSandboxDir();
    if (existsSync(dir)) {
      throw new BridgeError(
        'unreachable',
        `No ${kind === 'management' ? 'management' : kind.toUpperCase()} URL: the sandbox broker (${dir}) is not running; start it with \`bridgescope broker start\`, or pass --${kind} or set ${envNames[kind]}.`,
      );
    }
    throw new BridgeError(
      'bad-input',
      `No ${kind === 'management' ? 'management' : kind.toUpperCase()} URL: pass --${kind}, set ${envNames[kind]}, or start the sandbox broker with \`bridgescope broker start\` (one started with --dir elsewhere: set BRIDGESCOPE_SANDBOX_DIR to its folder).`,
    );
  }
  return urls;
}

/** The (first) URL for a protocol: the flag, then the environment, then the running sandbox. */
export function resolveUrl(kind: UrlKind, flag: string | undefined): string {
  return resolveUrls(kind, flag)[0] as string;
}

/** The management API at every URL given (a cluster's nodes): when the one in use cannot be reached or does not answer, the next is asked. */
export function managementApiFor(flag: string | undefined, vhost?: string): ManagementApi {
  const [first, ...others] = resolveUrls('management', flag) as [string, ...string[]];
  return new ManagementApi(first, vhost, undefined, cliTls(), others);
}

/**
 * The first AMQP URL of the list that accepts a connection (each attempt bounded), for a command that connects by itself
 * (the tracer); `skipped`, when nodes before it did not answer: one sentence naming them and the one in use.
 */
export async function reachableAmqp(flag: string | undefined): Promise<{ url: string; skipped?: string }> {
  const answered = await reachableAmqpUrl(resolveUrls('amqp', flag), cliTls());
  const skipped = skippedSentence(answered);
  return { url: answered.url, ...(skipped ? { skipped } : {}) };
}

/**
 * The one vhost a command that both consumes over AMQP and asks the management API works in: the AMQP URL's (its path,
 * else /). A --vhost naming another would have it listen in one vhost and read or change the other (`clash` says how):
 * refused in one sentence, before anything connects.
 */
export function agreedVhost(amqpFlag: string | undefined, vhostFlag: string | undefined, clash: string): string {
  return vhostOfUrl(resolveUrls('amqp', amqpFlag)[0] as string, vhostFlag, clash);
}

/**
 * agreedVhost for a command whose AMQP URL is optional (bindings and preflight: live consumer counts, if any): with no
 * AMQP URL given or found, --vhost, else /. Before, they read --vhost (default /) whatever vhost the AMQP URL named.
 */
export function agreedVhostIfAmqp(amqpFlag: string | undefined, vhostFlag: string | undefined, clash: string): string {
  const url = optionalUrls('amqp', amqpFlag)?.[0];
  return url === undefined ? (vhostFlag ?? '/') : vhostOfUrl(url, vhostFlag, clash);
}

/** The AMQP URL's vhost (its path, else /), which a --vhost naming another may not contradict. */
function vhostOfUrl(amqpUrl: string, vhostFlag: string | undefined, clash: string): string {
  const urlVhost = amqpConnectOptions(amqpUrl, 0).vhost ?? '/';
  if (vhostFlag !== undefined && vhostFlag !== urlVhost) {
    throw new BridgeError('bad-input', `--vhost "${vhostFlag}" and the AMQP URL's vhost "${urlVhost}" differ: ${clash}. Put the vhost in the AMQP URL (amqp://host:port/${encodeURIComponent(vhostFlag)}) or leave --vhost out.`);
  }
  return urlVhost;
}
