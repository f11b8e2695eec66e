/** The `bridgescope` command line: headless commands over the same core the app uses. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { ExitCode, printable } from './run';
import { guardOutputs } from './lifecycle';
import { packageRoot } from './checkout';

/** The version users see is the one package.json ships. */
const { version } = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };

type Register = (program: Command) => void;

/**
 * Each command's module, loaded only when it is needed: `bridgescope map` does not load mqtt.js or amqplib, and neither
 * does `--version`. In the order of the help.
 */
const commandModules: Array<{ names: string[]; load: () => Promise<Register> }> = [
  { names: ['broker'], load: async () => (await import('./commands/broker')).registerBrokerCommands },
  { names: ['serve', 'call', 'map'], load: async () => (await import('./commands/rpc')).registerRpcCommands },
  { names: ['bindings', 'trace', 'preflight', 'probe'], load: async () => (await import('./commands/inspect')).registerInspectCommands },
  { names: ['ui'], load: async () => (await import('./commands/ui')).registerUiCommand },
  { names: ['bench'], load: async () => (await import('./commands/bench')).registerBenchCommand },
  { names: ['watch'], load: async () => (await import('./commands/watch')).registerWatchCommand },
];

/** The modules `args` needs: the named command's; none for a bare --version; all of them for the help or anything else. */
function modulesFor(args: string[]): typeof commandModules {
  const first = args.find((arg) => !arg.startsWith('-'));
  const named = first === undefined ? undefined : commandModules.find((module) => module.names.includes(first));
  if (named) return [named];
  if (first === undefined && args.length > 0 && args.every((arg) => arg === '--version' || arg === '-V')) return [];
  return commandModules;
}

export async function buildProgram(args: string[] = process.argv.slice(2)): Promise<Command> {
  const program = new Command('bridgescope')
    .description('Inspect MQTT devices calling AMQP 0-9-1 servers through RabbitMQ')
    .version(version)
    .exitOverride();
  const registers = await Promise.all(modulesFor(args).map((module) => module.load()));
  for (const register of registers) register(program);
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return program;
}

// Before anything is written: `bridgescope ... | head` must never crash on the closed pipe.
guardOutputs();

try {
  await (await buildProgram()).parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    const helpOrVersion = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code);
    process.exitCode = helpOrVersion ? ExitCode.ok : ExitCode.usage;
  } else {
    process.stderr.write(`bridgescope: ${printable((err as Error)?.message ?? String(err))}\n`);
    process.exitCode = ExitCode.failure;
  }
}
