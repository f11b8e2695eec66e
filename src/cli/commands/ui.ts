/** `bridgescope ui`: the inspector in a browser: the core, a sandbox broker when none is configured, and the WebSocket host. */
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { Session } from '../../core/session';
import { memorySecretBox, profileFromEnv, ProfileStore } from '../../core/profiles';
import { startHost, type Host } from '../../host/host';
import { action, parsePositiveInt, warn } from '../run';

const defaultStatic = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'out', 'renderer');

export function registerUiCommand(program: Command): void {
  program
    .command('ui')
    .description('serve the inspector to a browser on 127.0.0.1 (prints a URL with a one-time token)')
    .option('--port <n>', 'port to listen on (default: a free one)', parsePositiveInt('--port'))
    .option('--static <dir>', 'the built renderer', defaultStatic)
    .option('--no-sandbox', 'do not start the sandbox broker when no broker is configured')
    .option('--sandbox-dir <path>', 'folder of the sandbox broker')
    .action(
      action(async (options: { port?: number; static: string; sandbox: boolean; sandboxDir?: string }) => {
        // The session exists before the host it emits through.
        const late: { host?: Host } = {};
        const session = new Session({
          mode: 'browser',
          profiles: new ProfileStore(memorySecretBox()),
          emit: (name, payload) => late.host?.broadcast(name, payload),
          ...(options.sandboxDir ? { sandboxDir: options.sandboxDir } : {}),
        });
        const host = await startHost(session.handlers, { staticDir: options.static, ...(options.port ? { port: options.port } : {}) });
        late.host = host;
        const configured = profileFromEnv();
        try {
          if (configured) await session.open(configured);
          else if (options.sandbox) {
            process.stderr.write('No broker configured (BRIDGESCOPE_AMQP_URL unset): starting the sandbox broker...\n');
            await session.startSandbox();
            const profile = session.sandboxProfile();
            if (profile) await session.open(profile);
          }
        } catch (err) {
          warn(`${(err as Error).message} The inspector still opens; connect from its Connections panel.`);
        }
        process.stdout.write(`BridgeScope is ready: ${host.url}\n`);
        await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
        process.stderr.write('Stopping...\n');
        await session.dispose();
        await host.close();
      }),
    );
}
