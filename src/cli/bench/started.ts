/** What a benchmark run has started, so that an interrupted run (Ctrl-C, SIGTERM, a closed terminal) stops all of it. */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, stopSandbox } from '../../core/broker/sandbox';
import type { CleanupTask } from '../lifecycle';

/**
 * What a benchmark run has started and must stop when it is interrupted (Ctrl-C, SIGTERM, a closed terminal): the
 * processes it runs contenders, watchers and the UI stream in, and its private sandbox brokers (each a RabbitMQ node
 * that would otherwise outlive the command, with its folder in the temporary directory).
 */
const started = {
  children: new Set<ChildProcess>(),
  /** sandbox folder -> its start, settled or not (a node still starting is stopped once it has started) */
  sandboxes: new Map<string, Promise<unknown>>(),
};

/** Keeps `child` in `started` until it ends. */
export function tracked<T extends ChildProcess>(child: T): T {
  started.children.add(child);
  child.on('close', () => started.children.delete(child));
  return child;
}

/** A private sandbox broker in a new temporary folder, remembered so an interrupted run stops it. */
export async function privateSandbox(rabbitmq: string | undefined): Promise<{ dir: string; info: Awaited<ReturnType<typeof startSandbox>>['info'] }> {
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-bench-'));
  const starting = startSandbox({ dir, timeoutMs: 120_000, ...(rabbitmq !== undefined ? { rabbitmq } : {}) });
  started.sandboxes.set(dir, starting.catch(() => undefined));
  try {
    const { info } = await starting;
    return { dir, info };
  } catch (err) {
    await endSandbox(dir).catch(() => undefined);
    throw err;
  }
}

/** Stops a sandbox `privateSandbox` started and removes its folder. */
export async function endSandbox(dir: string): Promise<void> {
  started.sandboxes.delete(dir);
  await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
}

/** What an interrupted run undoes, in order: its processes first (they use the brokers), then each broker. */
export function stopTasks(): CleanupTask[] {
  const tasks: CleanupTask[] = [];
  if (started.children.size > 0) {
    tasks.push({
      what: `end ${started.children.size} benchmark process(es)`,
      run: () =>
        Promise.all(
          [...started.children].map(
            (child) =>
              new Promise<void>((resolvePromise) => {
                if (child.exitCode !== null || child.signalCode !== null) return resolvePromise();
                child.once('close', () => resolvePromise());
                child.kill('SIGTERM');
                // One that ignores SIGTERM (a browser closing) is killed after 5 s.
                setTimeout(() => child.kill('SIGKILL'), 5000).unref();
              }),
          ),
        ),
    });
  }
  for (const [dir, starting] of started.sandboxes) {
    tasks.push({
      what: `stop the sandbox broker in ${dir}`,
      run: async () => {
        await starting;
        await endSandbox(dir);
      },
    });
  }
  return tasks;
}

