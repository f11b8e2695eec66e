/** Which RabbitMQ a sandbox runs (issue 22): the choices a user can give, and one sentence for each one that cannot run. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { chrootCommand, resolveRabbitMQ } from '../../src/core/broker/installations';
import { BridgeError } from '../../src/core/errors';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function failure(attempt: () => unknown): BridgeError {
  try {
    attempt();
  } catch (err) {
    if (err instanceof BridgeError) return err;
    throw err;
  }
  throw new Error('no error');
}

describe('choosing the RabbitMQ of a sandbox', () => {
  it('is the machine\'s own unless --rabbitmq or BRIDGESCOPE_RABBITMQ says otherwise', () => {
    expect(resolveRabbitMQ(undefined, {})).toEqual({ kind: 'system', label: 'system' });
    expect(resolveRabbitMQ('system', { BRIDGESCOPE_RABBITMQ: '4.3' })).toEqual({ kind: 'system', label: 'system' });
  });

  it('names the script to run when a version\'s root is not prepared yet', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'bridgescope-cache-test-'));
    dirs.push(cache);
    const err = failure(() => resolveRabbitMQ(undefined, { BRIDGESCOPE_RABBITMQ: '4.3', BRIDGESCOPE_CACHE_DIR: cache }));
    expect(err.code).toBe('not-installed');
    expect(err.message).toBe(
      `RabbitMQ 4.3 is not prepared on this machine: run \`sudo scripts/rabbitmq-root.sh 4.3\` once (about 400 MB in ${join(cache, 'rabbitmq', 'forky')}).`,
    );
  });

  it('refuses an unknown version and a folder that holds no RabbitMQ, in one sentence each', async () => {
    expect(failure(() => resolveRabbitMQ('3.9', {})).message).toBe(
      'Unknown RabbitMQ "3.9": use system, 4.0, 4.3, or the absolute path of a root prepared by scripts/rabbitmq-root.sh.',
    );
    const empty = await mkdtemp(join(tmpdir(), 'bridgescope-root-test-'));
    dirs.push(empty);
    expect(failure(() => resolveRabbitMQ(empty, {})).message).toMatch(/holds no RabbitMQ \(no \/usr\/lib\/rabbitmq\/bin\/rabbitmq-server in it\)/);
  });

  it('runs a root\'s command chrooted in a mount namespace of its own, with nothing after a failed mount', () => {
    const { file, args } = chrootCommand('/r', '/d', ['/usr/bin/epmd', '-port', '1']);
    expect(file).toBe('unshare');
    expect(args.slice(0, 4)).toEqual(['--mount', '--propagation', 'private', '--']);
    const script = args[6] as string;
    // Every step is chained with &&: a mount that fails stops the command before chroot.
    expect(script.split(' && ')).toHaveLength(7);
    expect(script).not.toContain(';');
    expect(args.slice(7)).toEqual(['sh', '/r', '/d', '/usr/bin/epmd', '-port', '1']);
  });
});
