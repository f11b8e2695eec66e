/** How a session ends gracefully: named steps in order (drain, give tracing back, close the links, stop the sandbox it started). */
import type { AppState, TracerView } from '../../shared/contract';
import type { SandboxController } from './sandbox';
import type { ServerController } from './server';
import type { TracingController } from './tracing';

/** One step of a graceful end, named for the user; `needed` says whether it has anything to do (its run is a no-op otherwise). */
export interface ShutdownTask {
  what: string;
  kind: 'drain' | 'tracing' | 'links' | 'sandbox';
  needed: () => boolean;
  /** resolves with a sentence to tell the user, if any; throws what could not be done */
  run: () => Promise<string | undefined>;
}

export interface ShutdownParts {
  mode: AppState['mode'];
  server: Pick<ServerController, 'active' | 'stop'>;
  tracing: Pick<TracingController, 'view'>;
  sandbox: Pick<SandboxController, 'view' | 'stop' | 'owned'> & Partial<Pick<SandboxController, 'replaced'>>;
  cancelLoad: () => void;
  tracingOff: () => Promise<TracerView>;
  /** closes the connection (and whatever runs on it) */
  close: () => Promise<void>;
}

export function shutdownTasks(parts: ShutdownParts): ShutdownTask[] {
  const whose = parts.mode === 'browser' ? 'this command' : 'the app';
  // Owned also while the app's own start is still running (a quit during start-up must not leave the node behind).
  const ownsSandbox = (): boolean => parts.sandbox.owned;
  return [
    {
      what: 'drain the embedded server',
      kind: 'drain',
      needed: () => parts.server.active,
      run: async () => {
        // A load run would only keep sending to a server that stops taking requests.
        parts.cancelLoad();
        await parts.server.stop();
        return undefined;
      },
    },
    {
      what: 'turn firehose tracing back off',
      kind: 'tracing',
      needed: () => parts.tracing.view.state === 'on',
      run: async () => {
        if (parts.tracing.view.state === 'on') await parts.tracingOff();
        return undefined;
      },
    },
    {
      what: 'close the connections',
      kind: 'links',
      needed: () => true,
      run: async () => {
        await parts.close();
        return undefined;
      },
    },
    {
      what: parts.sandbox.replaced === true ? `leave running the sandbox broker that replaced the one ${whose} started` : `stop the sandbox broker ${whose} started`,
      kind: 'sandbox',
      // Also when the node it started was replaced outside it: nothing is stopped then, and the user is told why.
      needed: () => ownsSandbox() || parts.sandbox.replaced === true,
      run: async () => {
        if (!ownsSandbox()) {
          if (parts.sandbox.replaced !== true) return undefined;
          const node = parts.sandbox.view.nodeName !== undefined ? ` (${parts.sandbox.view.nodeName})` : '';
          return `The sandbox broker ${whose} started was stopped outside it; the one running there now${node} was started by something else, so it is left running (\`bridgescope broker stop\` stops it).`;
        }
        const stopped = await parts.sandbox.stop(20_000);
        return stopped.stopped ? undefined : `The sandbox broker was already gone: ${stopped.reason}.`;
      },
    },
  ];
}

/**
 * Runs every task, whatever failed before; then throws the first failure, except that tracing not given back is moot
 * when the sandbox it was on is stopped too (a node restart resets it).
 */
export async function runShutdown(tasks: readonly ShutdownTask[], stopsOwnSandbox: boolean): Promise<void> {
  let failure: unknown;
  let sandboxFailure: unknown;
  for (const task of tasks) {
    try {
      await task.run();
    } catch (err) {
      if (task.kind === 'sandbox') sandboxFailure = err;
      else failure ??= err;
    }
  }
  if (sandboxFailure !== undefined) throw sandboxFailure;
  if (failure !== undefined && !stopsOwnSandbox) throw failure;
}
