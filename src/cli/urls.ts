/** Where the CLI finds broker URLs: the flag, then BRIDGESCOPE_*_URL, then the running sandbox broker. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultSandboxDir, type SandboxInfo } from '../core/broker/sandbox';
import { BridgeError } from '../core/errors';
import { ManagementApi } from '../core/broker/management-api';
import { reachableAmqpUrl } from '../core/links/amqp-link';
import { skippedSentence } from '../core/links/in-turn';
import { splitUrls } from '../shared/url-list';

/** Several URLs in one flag or variable (a cluster's nodes): the app's profiles read lists by the same rule. */
export { splitUrls };

type UrlKind = 'amqp' | 'mqtt' | 'management';

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

/** Every URL given for a protocol (a cluster's nodes), the first being the one to try first. */
export function resolveUrls(kind: UrlKind, flag: string | undefined): string[] {
  const fromEnv = process.env[envNames[kind]];
  const given = flag ?? (fromEnv || undefined);
  const urls = given !== undefined ? splitUrls(given) : sandboxUrls().map((urls) => urls[kind]);
  if (urls.length === 0) {
    throw new BridgeError(
      'bad-input',
      `No ${kind === 'management' ? 'management' : kind.toUpperCase()} URL: pass --${kind}, set ${envNames[kind]}, or start the sandbox broker with \`bridgescope broker start\`.`,
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
  return new ManagementApi(first, vhost, undefined, undefined, others);
}

/**
 * The first AMQP URL of the list that accepts a connection (each attempt bounded), for a command that connects by itself
 * (the tracer); `skipped`, when nodes before it did not answer: one sentence naming them and the one in use.
 */
export async function reachableAmqp(flag: string | undefined): Promise<{ url: string; skipped?: string }> {
  const answered = await reachableAmqpUrl(resolveUrls('amqp', flag));
  const skipped = skippedSentence(answered);
  return { url: answered.url, ...(skipped ? { skipped } : {}) };
}
