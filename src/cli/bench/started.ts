/** What a benchmark run has started, so that an interrupted run (Ctrl-C, SIGTERM, a closed terminal) stops all of it. */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, stopSandbox } from '../../core/broker/sandbox';
import { BridgeError } from '../../core/errors';
import type { CleanupTask } from '../lifecycle';

/**
 * What a benchmark run has started and must stop when it is interrupted (Ctrl-C, SIGTERM, a closed terminal): the
 * processes it runs contenders, watchers and the UI stream in, and its private sandbox brokers (each a RabbitMQ node
 * that would otherwise outlive the command, with its folder in the temporary directory). Once a stop began, nothing
 * new starts: a child spawned after it is ended at once, and no broker, result file or further step begins.
 */
const started = {
  children: new Set<ChildProcess>(),
  /** sandbox folder -> what aborts its start (the entry goes when the sandbox is ended) */
  sandboxes: new Map<string, AbortController>(),
  /** privateSandbox calls not settled yet (a folder being made, a node starting) */
  creations: new Set<Promise<unknown>>(),
  /** sandbox folder -> its stop under way */
  ending: new Map<string, Promise<void>>(),
  stopping: false,
  /** the result files this run has written (a stop after them must not say it wrote nothing) */
  written: [] as string[],
};

/** Thrown by whatever would start something once the run is being stopped. */
export class BenchStopped extends BridgeError {
  constructor() {
    super('cancelled', 'The benchmark is stopping.');
  }
}

/** Throws BenchStopped once a stop began: called before each step that would start or write something. */
export function unlessStopping(): void {
  if (started.stopping) throw new BenchStopped();
}

/** Whether a stop began (a failure then is the stop's doing, not worth a word of its own). */
export function isStopping(): boolean {
  return started.stopping;
}

/** Remembers a result file this run wrote. */
export function noteWritten(file: string): void {
  started.written.push(file);
}

/** The result files written before the stop. */
export function writtenFiles(): readonly string[] {
  return started.written;
}

/** Keeps `child` in `started` until it ends; one spawned once a stop began is ended at once. */
export function tracked<T extends ChildProcess>(child: T): T {
  if (started.stopping) {
    child.kill('SIGKILL');
    return child;
  }
  started.children.add(child);
  child.on('close', () => started.children.delete(child));
  return child;
}

/**
 * A private sandbox broker in a new temporary folder, remembered from its first step so an interrupted run stops it:
 * before its folder exists, while its node starts (the start is aborted and the node killed), and once it runs.
 */
export function privateSandbox(rabbitmq: string | undefined): Promise<{ dir: string; info: Awaited<ReturnType<typeof startSandbox>>['info'] }> {
  unlessStopping();
  const creation = (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bridgescope-bench-'));
    if (started.stopping) {
      await rm(dir, { recursive: true, force: true });
      throw new BenchStopped();
    }
    const abort = new AbortController();
    started.sandboxes.set(dir, abort);
    try {
      const { info } = await startSandbox({ dir, timeoutMs: 120_000, signal: abort.signal, ...(rabbitmq !== undefined ? { rabbitmq } : {}) });
      return { dir, info };
    } catch (err) {
      await endSandbox(dir).catch(() => undefined);
      throw err;
    }
  })();
  started.creations.add(creation);
  const forget = (): void => void started.creations.delete(creation);
  creation.then(forget, forget);
  return creation;
}

/**
 * Stops a sandbox `privateSandbox` started and removes its folder. Called twice (the run's own `finally` and an
 * interrupted run's cleanup), both wait on the same stop: the cleanup never ends while the run's stop is half way.
 */
export function endSandbox(dir: string): Promise<void> {
  let ending = started.ending.get(dir);
  if (ending === undefined) {
    started.sandboxes.delete(dir);
    ending = (async () => {
      await stopSandbox(dir);
      await rm(dir, { recursive: true, force: true });
    })();
    started.ending.set(dir, ending);
    const forget = (): void => void started.ending.delete(dir);
    ending.then(forget, forget);
  }
  return ending;
}

/** Resolves once `child` closed ('close', after its output was read: what removes it from `started.children`). */
function endChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolvePromise) => {
    if (!started.children.has(child)) return resolvePromise();
    child.once('close', () => resolvePromise());
    child.kill('SIGTERM');
    // One that ignores SIGTERM (a browser closing) is killed after 5 s.
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/**
 * What an interrupted run undoes, in order: its processes first (they use the brokers), then each broker (one still
 * starting is aborted: its node is killed, as a start past its timeout is). From here on nothing new starts.
 */
export function stopTasks(): CleanupTask[] {
  started.stopping = true;
  const tasks: CleanupTask[] = [];
  if (started.children.size > 0) {
    tasks.push({
      what: `end ${started.children.size} benchmark process(es)`,
      run: async () => {
        // Until none is left: one the run spawned while the first ones ended is ended too (tracked() ends later ones).
        // Each round waits for real 'close' events (a child that exited but is not closed yet is waited for, not
        // counted as ended: a loop over already-settled promises would never yield to I/O again).
        while (started.children.size > 0) await Promise.all([...started.children].map(endChild));
      },
    });
  }
  if (started.sandboxes.size > 0 || started.creations.size > 0 || started.ending.size > 0) {
    tasks.push({
      what: `stop the sandbox broker${started.sandboxes.size > 1 ? 's' : ''}${started.sandboxes.size > 0 ? ` in ${[...started.sandboxes.keys()].join(', ')}` : ''}`,
      run: async () => {
        // A node still starting is killed by its start; one that runs is stopped; a folder made meanwhile goes.
        for (const abort of started.sandboxes.values()) abort.abort();
        await Promise.all([...started.creations].map((creation) => creation.catch(() => undefined)));
        await Promise.all([...started.sandboxes.keys()].map(endSandbox));
        // And the stops the run began itself (its `finally` after a run process was ended).
        await Promise.all([...started.ending.values()]);
      },
    });
  }
  return tasks;
}
