/** `bridgescope ui`: the inspector in a browser: the core, a sandbox broker when none is configured, the WebSocket host, and a bounded, named cleanup on the way out. */
import { finishOtel, otelFor, type OtlpOptions } from '../otlp';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Session } from '../../core/session/session';
import { memorySecretBox, profileFromEnv, ProfileStore } from '../../core/profiles';
import { defaultSandboxDir } from '../../core/broker/sandbox';
import { checkDataDir, defaultDataDir, lockDataDir, readUiIdentity, writeUiIdentity } from '../../core/data-dir';
import { WorkspaceStore } from '../../core/workspace-file';
import { startHost, type Host } from '../../host/host';
import { tightenHeapGrowth } from '../../core/heap-growth';
import { runUntilStopped, StopSignals, type CleanupTask } from '../lifecycle';
import { withDeadline } from '../../shared/deadline';
import { action, ExitCode, parsePort, warn } from '../run';
import { packageRoot } from '../checkout';
import { urlLines } from '../terminal';

const defaultStatic = join(packageRoot, 'out', 'renderer');

/** How long each cleanup step may take before it is given up and named; the server's own drain waits up to 10 s. */
const stepBoundMs = {
  host: 3_000,
  // A sandbox broker still starting must finish starting, or it would be left running with nobody to stop it.
  startup: 60_000,
  drain: 12_000,
  tracing: 8_000,
  links: 8_000,
  sandbox: 30_000,
} as const;

/** Runs `run` but gives up after `boundMs`, so one stuck step (a broker restarted under us) cannot starve the next ones. */
async function withinBound(boundMs: number, run: () => Promise<unknown>): Promise<void> {
  const result = await withDeadline(run(), boundMs);
  if (!result.done) throw new Error(`it did not finish within ${Math.round(boundMs / 1000)} s`);
}

/**
 * Starts the host with the token and port kept in the data dir (the port only when free: else a new one, said once), and
 * keeps what it used, so the page already open reconnects to the next run by itself.
 */
async function startKeptHost(session: Session, options: { port?: number; static: string; newToken?: boolean }, dataDir: string): Promise<Host> {
  // A host runs for hours under streams of steps: its heap is kept near what is live (see heap-growth.ts).
  tightenHeapGrowth();
  const { identity, problem } = await readUiIdentity(dataDir, options.newToken === true);
  if (problem) warn(problem);
  const start = (port: number | undefined): Promise<Host> =>
    startHost(session.handlers, { staticDir: options.static, token: identity.token, ...(port ? { port } : {}), onProblem: (sentence) => warn(sentence) });
  let host: Host;
  if (options.port !== undefined || identity.port === undefined) host = await start(options.port);
  else {
    try {
      host = await start(identity.port);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' && (err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
      host = await start(undefined);
      warn(`Port ${identity.port} of the last run is taken by another process: the inspector moved to ${new URL(host.origin).port} (pages open on the old URL must be opened again).`);
    }
  }
  const port = Number(new URL(host.origin).port);
  await writeUiIdentity(dataDir, { token: identity.token, port }).catch((err: unknown) =>
    warn(`The token and port could not be kept in ${dataDir} (${(err as Error).message}): the next run gets a new URL.`),
  );
  return host;
}

export function registerUiCommand(program: Command): void {
  program
    .command('ui')
    .description('serve the inspector to a browser on 127.0.0.1 (prints a URL with a token kept in the data dir until --new-token, so a restart keeps the same URL)')
    .option('--port <n>', 'port to listen on (default: the last run\'s when free, else a free one)', parsePort('--port'))
    .option('--data-dir <path>', 'where history, templates and the token are kept (default: $XDG_CONFIG_HOME/bridgescope or ~/.config/bridgescope)')
    .option('--new-token', 'replace the kept token (pages opened with the old URL are refused)')
    .option('--static <dir>', 'the built renderer', defaultStatic)
    .option('--no-sandbox', 'do not start the sandbox broker when no broker is configured')
    .option('--sandbox-dir <path>', 'folder of the sandbox broker')
    .option(
      '--allow-handler-modules',
      "let the Server panel load a handler module (PATH.js): it runs code as you, so without this only echo, delay:MS and fail are served; a module must be yours, in a folder only you can write",
    )
    .option('--otlp <url>', "export OpenTelemetry spans of Compose's RPCs and the Server panel's requests over OTLP/HTTP to this collector (e.g. http://localhost:4318)")
    .option('--otlp-file <path>', 'write the same spans to this file as OTLP JSON lines')
    .action(
      action(async (options: OtlpOptions & { port?: number; static: string; sandbox: boolean; sandboxDir?: string; dataDir?: string; newToken?: boolean; allowHandlerModules?: boolean }) => {
        // Without the built page, the URL it prints would only ever answer 404: said now, in one sentence, before anything starts.
        if (!existsSync(join(options.static, 'index.html'))) {
          process.stderr.write(
            `bridgescope: the inspector's page is not built (${join(options.static, 'index.html')} is missing): run \`npm run build\` once (\`npm start\` builds it too), then \`bridgescope ui\` again.\n`,
          );
          return ExitCode.failure;
        }
        const otel = otelFor(options, 'bridgescope-app');
        // Listening first: a Ctrl-C during start-up still stops what start-up started.
        const signals = new StopSignals({
          boundMs: Object.values(stepBoundMs).reduce((sum, ms) => sum + ms, 0) + 5_000,
        });
        const sandboxDir = options.sandboxDir ?? defaultSandboxDir();
        const dataDir = options.dataDir ?? defaultDataDir();
        // The session exists before the host it emits through.
        const late: { host?: Host } = {};
        const workspace = new WorkspaceStore({ dir: dataDir });
        const session = new Session({
          mode: 'browser',
          // Profiles last between runs (in the data dir); their passwords stay in this process only.
          profiles: new ProfileStore(memorySecretBox(), join(dataDir, 'profiles.json'), { onProblem: (sentence) => warn(sentence) }),
          emit: (name, payload) => late.host?.broadcast(name, payload),
          sandboxDir,
          workspace,
          onProblem: (sentence) => warn(sentence),
          allowHandlerModules: options.allowHandlerModules === true,
          ...(otel ? { otel } : {}),
        });
        let host: Host;
        let releaseDataDir: () => Promise<void> = async () => undefined;
        try {
          // A data dir another user can write is theirs to steer (its token opens this inspector): refused before anything is read.
          await checkDataDir(dataDir);
          // One run per data dir: two would rewrite each other's history, templates and profiles (given back on exit).
          releaseDataDir = await lockDataDir(dataDir);
          await workspace.load();
          if (workspace.notice) warn(workspace.notice);
          host = await startKeptHost(session, options, dataDir);
        } catch (err) {
          signals.dispose();
          await releaseDataDir();
          throw err;
        }
        late.host = host;

        let startupDone = false;
        let stopRequested = false;
        void signals.stopped.then(() => (stopRequested = true));
        const startup = (async () => {
          const configured = profileFromEnv(process.env, (sentence) => process.stderr.write(`${sentence}\n`));
          try {
            if (configured) await session.open(configured);
            else if (options.sandbox) {
              process.stderr.write('No broker configured (BRIDGESCOPE_AMQP_URL unset): starting the sandbox broker...\n');
              const sandbox = await session.startSandbox();
              // The sentence above gets its end: started (and stopped with this run) or one already running (left running).
              if (sandbox.state === 'running') {
                const node = sandbox.nodeName !== undefined ? ` ${sandbox.nodeName}` : '';
                process.stderr.write(sandbox.ownedByApp ? `Sandbox broker${node} started; it stops when this run ends.\n` : `Sandbox broker${node} was already running: using it, and leaving it running.\n`);
                // Where your own devices and workers connect to it (and \`bridgescope\` commands, with BRIDGESCOPE_SANDBOX_DIR).
                const urls = sandbox.urls;
                if (urls) process.stderr.write(`${urlLines(urls, '  ').join('\n')}\n`);
              }
              const profile = session.sandboxProfile();
              // Stopping while the sandbox started: the broker must finish starting (to be stopped), but nothing connects to it.
              if (profile && !stopRequested) await session.open(profile);
            }
          } catch (err) {
            warn(`${(err as Error).message} The inspector still opens; connect from its Connections panel.`);
          } finally {
            startupDone = true;
          }
        })();
        const first = await Promise.race([startup.then(() => 'ready' as const), signals.stopped]);
        if (first === 'ready') process.stdout.write(`BridgeScope is ready: ${host.url}\n`);

        /** One named step: says what it does when there is something to do, and gives up at its bound (a failed step makes the exit code 1). */
        const step = (what: string, boundMs: number, needed: () => boolean, run: () => Promise<unknown>): CleanupTask => ({
          what,
          run: async () => {
            if (!needed()) return;
            process.stderr.write(`Stopping: ${what}...\n`);
            await withinBound(boundMs, run);
          },
        });
        // The session's own shutdown, in its order; each step under its own bound here.
        const tasks = (): CleanupTask[] => [
          step('close the browser pages\' socket', stepBoundMs.host, () => true, () => host.close()),
          step('save the history', stepBoundMs.host, () => true, () => session.workspaceFlushed()),
          step('let the start-up finish, so what it started can be stopped', stepBoundMs.startup, () => !startupDone, () => startup),
          ...session.shutdownTasks().map((task) =>
            step(task.what, stepBoundMs[task.kind], task.needed, async () => {
              const note = await task.run();
              if (note) warn(note);
            }),
          ),
        ];
        // A step given up or failed ends the process there with exit 1: what was given up may still hold sockets open.
        await runUntilStopped(signals, () => process.stderr.write('Stopping...\n'), tasks);
        await finishOtel(otel);
        process.stderr.write('Stopped.\n');
        // A link that keeps a timer after its close would otherwise hold the process; everything that matters is done.
        setTimeout(() => process.exit(process.exitCode ?? ExitCode.ok), 3_000).unref();
        return ExitCode.ok;
      }),
    );
}
