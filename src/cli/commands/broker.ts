/** `bridgescope broker start|stop|status`: the sandbox broker from the terminal. */
import type { Command } from 'commander';
import { defaultSandboxDir, sandboxStatus, startSandbox, stopSandbox } from '../../core/broker/sandbox';
import { action, ExitCode, parseDurationMs, printJson } from '../run';
import { DEFAULT_MQTT_EXCHANGE } from '../../shared/defaults';

interface DirOptions {
  dir: string;
  json?: boolean;
}

export function registerBrokerCommands(program: Command): void {
  const broker = program
    .command('broker')
    .description('start, stop or inspect the sandbox broker: a private RabbitMQ node with MQTT and management');

  broker
    .command('start')
    .description('start the sandbox broker (or report the one already running in that folder) and print its URLs')
    .option('--dir <path>', 'folder for the node data and logs', defaultSandboxDir())
    .option('--exchange <name>', 'exchange the MQTT plugin publishes to (mqtt.exchange)', DEFAULT_MQTT_EXCHANGE)
    .option('--timeout <ms>', 'how long to wait for the node to accept connections', parseDurationMs('--timeout'), 90_000)
    .option('--json', 'print a machine-readable object')
    .action(
      action(async (options: DirOptions & { exchange: string; timeout: number }) => {
        const result = await startSandbox({
          dir: options.dir,
          mqttExchange: options.exchange,
          timeoutMs: options.timeout,
          onProgress: options.json ? undefined : (message) => process.stderr.write(`${message}\n`),
        });
        for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
        const { info } = result;
        if (options.json) {
          printJson({ state: 'running', reused: result.reused, ...info });
          return;
        }
        process.stdout.write(
          [
            result.reused
              ? `Already running: ${info.nodeName} (pid ${info.pid})`
              : `Started ${info.nodeName} (pid ${info.pid})`,
            `AMQP        ${info.urls.amqp}`,
            `MQTT        ${info.urls.mqtt}`,
            `Management  ${info.urls.management}`,
            `MQTT exchange: ${info.mqttExchange}   folder: ${info.dir}`,
            '',
          ].join('\n'),
        );
      }),
    );

  broker
    .command('stop')
    .description('stop the sandbox broker and wait until its Erlang VM is gone')
    .option('--dir <path>', 'folder of the node', defaultSandboxDir())
    .option('--json', 'print a machine-readable object')
    .action(
      action(async (options: DirOptions) => {
        const result = await stopSandbox(options.dir);
        if (options.json) printJson(result);
        else if (result.stopped) process.stdout.write(`Stopped ${result.info.nodeName} (pid ${result.info.pid})\n`);
        else process.stdout.write(`Nothing to stop: ${result.reason}\n`);
      }),
    );

  broker
    .command('status')
    .description('say whether the sandbox broker is running (exit 0) or not (exit 1)')
    .option('--dir <path>', 'folder of the node', defaultSandboxDir())
    .option('--json', 'print a machine-readable object')
    .action(
      action(async (options: DirOptions) => {
        const status = await sandboxStatus(options.dir);
        if (options.json) printJson(status);
        else if (status.state === 'running') {
          const { info } = status;
          process.stdout.write(
            `running: ${info.nodeName} (pid ${info.pid})\nAMQP        ${info.urls.amqp}\nMQTT        ${info.urls.mqtt}\nManagement  ${info.urls.management}\n`,
          );
        } else if (status.state === 'stale') process.stdout.write(`not running: ${status.reason}\n`);
        else process.stdout.write(`not running: no sandbox broker in ${status.dir}\n`);
        return status.state === 'running' ? ExitCode.ok : ExitCode.failure;
      }),
    );
}
