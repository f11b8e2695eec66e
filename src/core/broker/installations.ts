/**
 * Which RabbitMQ a sandbox node runs: the machine's own package (`system`), or a Debian root prepared for a newer
 * version by scripts/rabbitmq-root.sh (`4.0`, `4.3`, or the path of any such root). A root's node runs chrooted in a
 * private mount namespace (`unshare --mount`), so its /proc and its sandbox folder mounts vanish with its processes.
 */
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { BridgeError } from '../errors';

export type RabbitMQInstall =
  | { kind: 'system'; label: string }
  | {
      kind: 'root';
      /** the prepared root folder */
      root: string;
      /** what the user asked for: 4.0, 4.3 or the root's path */
      label: string;
      /** RabbitMQ's Debian package version in the root, when the preparing script recorded it */
      version?: string;
    };

/** Where a sandbox folder appears inside a root (each node binds its own folder there, in its own mount namespace). */
export const ROOT_SANDBOX_DIR = '/sandbox';
export const ROOT_SERVER_SCRIPT = '/usr/lib/rabbitmq/bin/rabbitmq-server';

const suites: Record<string, string> = { '4.0': 'trixie', '4.3': 'forky' };
export const RABBITMQ_CHOICES = ['system', ...Object.keys(suites)];

/** The folder scripts/rabbitmq-root.sh keeps its roots in. */
export function rabbitmqRootsDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.BRIDGESCOPE_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'bridgescope');
  return join(cache, 'rabbitmq');
}

function rootVersion(root: string): string | undefined {
  try {
    const recorded = JSON.parse(readFileSync(join(root, '.bridgescope-root.json'), 'utf8')) as { rabbitmq?: unknown };
    return typeof recorded.rabbitmq === 'string' ? recorded.rabbitmq : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The RabbitMQ version an installation runs, as its server's own folder names it (`/usr/lib/rabbitmq/lib/rabbitmq_server-
 * 4.3.6`, the machine's or inside the root); undefined where that folder is not (another layout, RABBITMQ_HOME).
 */
export function installedVersion(install: RabbitMQInstall): string | undefined {
  const lib = join(install.kind === 'root' ? install.root : '/', 'usr/lib/rabbitmq/lib');
  try {
    const server = readdirSync(lib).find((name) => name.startsWith('rabbitmq_server-'));
    return server?.slice('rabbitmq_server-'.length);
  } catch {
    return undefined;
  }
}

/** A version as RabbitMQ reports it: Debian's epoch and revision off (`4.3.6-1` -> `4.3.6`). */
export function upstreamVersion(version: string): string {
  return version.replace(/^\d+:/, '').replace(/-\d[^-]*$/, '');
}

/**
 * The installation for a choice (`--rabbitmq`, else $BRIDGESCOPE_RABBITMQ, else `system`). Throws one sentence when a
 * version's root is not prepared, a path is not a root, or this process cannot chroot.
 */
export function resolveRabbitMQ(choice: string | undefined, env: NodeJS.ProcessEnv = process.env): RabbitMQInstall {
  const wanted = (choice ?? env.BRIDGESCOPE_RABBITMQ ?? '').trim() || 'system';
  if (wanted === 'system') return { kind: 'system', label: 'system' };
  const suite = suites[wanted];
  if (!suite && !isAbsolute(wanted)) {
    throw new BridgeError('bad-input', `Unknown RabbitMQ "${wanted}": use system, 4.0, 4.3, or the absolute path of a root prepared by scripts/rabbitmq-root.sh.`);
  }
  const root = suite ? join(rabbitmqRootsDir(env), suite) : resolve(wanted);
  if (!existsSync(join(root, ROOT_SERVER_SCRIPT.slice(1)))) {
    throw new BridgeError(
      'not-installed',
      suite
        ? `RabbitMQ ${wanted} is not prepared on this machine: run \`sudo scripts/rabbitmq-root.sh ${wanted}\` once (about 400 MB in ${root}).`
        : `${root} holds no RabbitMQ (no ${ROOT_SERVER_SCRIPT} in it): prepare a root with scripts/rabbitmq-root.sh.`,
    );
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new BridgeError('not-installed', `Running RabbitMQ ${wanted} from its prepared root needs root (chroot and mounts): run as root, or use --rabbitmq system.`);
  }
  const version = rootVersion(root);
  // The real path: stopping a node finds its processes by their root (/proc/<pid>/root), which is always the real one.
  return { kind: 'root', root: realpathSync(root), label: wanted, ...(version ? { version } : {}) };
}

/**
 * The command that runs `argv` (a path inside the root) chrooted in `root`, in a mount namespace of its own where /proc,
 * the machine's /etc/hosts and the sandbox folder `dir` (at /sandbox) are mounted. The mounts end with the last process.
 */
export function chrootCommand(root: string, dir: string, argv: string[]): { file: string; args: string[] } {
  const script = [
    'mount -t proc proc "$1/proc"',
    `mount --bind "$2" "$1${ROOT_SANDBOX_DIR}"`,
    'mount --bind /etc/hosts "$1/etc/hosts"',
    `cd "$1${ROOT_SANDBOX_DIR}"`,
    'root="$1"',
    'shift 2',
    'exec chroot "$root" "$@"',
  ].join(' && ');
  return { file: 'unshare', args: ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, 'sh', root, dir, ...argv] };
}

/** The environment a chrooted RabbitMQ command starts with: none of this machine's, only what the node needs. */
export function rootBaseEnv(): NodeJS.ProcessEnv {
  return { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: ROOT_SANDBOX_DIR };
}
