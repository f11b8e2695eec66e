/** The `bridgescope` command line: headless commands over the same core the app uses. */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { registerBrokerCommands } from './commands/broker';
import { registerRpcCommands } from './commands/rpc';
import { registerInspectCommands } from './commands/inspect';
import { registerUiCommand } from './commands/ui';
import { registerBenchCommand } from './commands/bench';
import { registerWatchCommand } from './commands/watch';
import { ExitCode, printable } from './run';
import { guardOutputs } from './lifecycle';

/** The version users see is the one package.json ships. */
const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export function buildProgram(): Command {
  const program = new Command('bridgescope')
    .description('Inspect MQTT devices calling AMQP 0-9-1 servers through RabbitMQ')
    .version(version)
    .exitOverride();
  registerBrokerCommands(program);
  registerRpcCommands(program);
  registerInspectCommands(program);
  registerUiCommand(program);
  registerBenchCommand(program);
  registerWatchCommand(program);
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return program;
}

// Before anything is written: `bridgescope ... | head` must never crash on the closed pipe.
guardOutputs();

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    const helpOrVersion = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code);
    process.exitCode = helpOrVersion ? ExitCode.ok : ExitCode.usage;
  } else {
    process.stderr.write(`bridgescope: ${printable((err as Error)?.message ?? String(err))}\n`);
    process.exitCode = ExitCode.failure;
  }
}
