/** `bridgescope broker start|stop|status`: the sandbox broker from the terminal. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { defaultSandboxDir, sandboxStatus, startSandbox, stopSandbox, type SandboxInfo } from '../../core/broker/sandbox';
import { isClusterDir, sandboxClusterStatus, startSandboxCluster, stopSandboxCluster, type ClusterInfo } from '../../core/broker/cluster';
import { action, ExitCode, parseDurationMs, parsePositiveInt, printJson } from '../run';
import { signalExitCode, StopSignals } from '../lifecycle';
import { DEFAULT_MQTT_EXCHANGE } from '../../shared/defaults';
import { urlLines } from '../terminal';

interface DirOptions {
  dir: string;
  json?: boolean;
}

/** One node's lines: name, pid, its three URLs. */
function nodeLines(info: SandboxInfo, prefix = ''): string[] {
  return [`${prefix}${info.nodeName} (pid ${info.pid}${info.version ? `, RabbitMQ ${info.version}` : ''})`, ...urlLines(info.urls, '  ')];
}

/** What `--json` prints of a cluster: each node with its URLs and ports. */
function clusterJson(cluster: ClusterInfo): object {
  return {
    dir: cluster.dir,
    mqttExchange: cluster.mqttExchange,
    nodes: cluster.nodes.map((info) => ({ nodeName: info.nodeName, pid: info.pid, urls: info.urls, ports: info.ports, logFile: info.logFile })),
  };
}

/** Other commands look for the sandbox in the default folder: one started elsewhere is theirs only when told. */
function noteOtherFolder(dir: string): void {
  const absolute = resolve(dir);
  if (absolute === resolve(defaultSandboxDir())) return;
  // Absolute and quoted: the line is copied into another shell, from another folder.
  process.stderr.write(`Other commands (call, watch, bindings, ui...) use this broker with BRIDGESCOPE_SANDBOX_DIR='${absolute.replaceAll("'", "'\\''")}' or its URLs above; without either they look in ${defaultSandboxDir()}.\n`);
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
    .option('--nodes <n>', 'start a sandbox cluster of n nodes on this machine (2-9; each with its own ports), joined into one cluster', parsePositiveInt('--nodes'))
    .option(
      '--rabbitmq <which>',
      "which RabbitMQ: system (this machine's), 4.0 or 4.3 (a root prepared once by scripts/rabbitmq-root.sh), or a prepared root's path (default: $BRIDGESCOPE_RABBITMQ, else system)",
    )
    .option('--json', 'print a machine-readable object')
    .action(
      action(async (options: DirOptions & { exchange: string; timeout: number; nodes?: number; rabbitmq?: string }) => {
        if ((options.nodes ?? 1) > 1 || (options.nodes === undefined && isClusterDir(options.dir))) {
          const result = await startUnlessStopped(
            startSandboxCluster({
              dir: options.dir,
              nodes: options.nodes ?? (await sandboxClusterStatus(options.dir)).nodesCount,
              mqttExchange: options.exchange,
              timeoutMs: options.timeout,
              ...(options.rabbitmq !== undefined ? { rabbitmq: options.rabbitmq } : {}),
              onProgress: options.json ? undefined : (message) => process.stderr.write(`${message}\n`),
            }),
            options.timeout,
            () => stopSandboxCluster(options.dir),
          );
          if (typeof result === 'number') return result;
          for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
          if (options.json) {
            printJson({ state: 'running', reused: result.reused, ...clusterJson(result.cluster) });
            return ExitCode.ok;
          }
          const { cluster } = result;
          process.stdout.write(
            [
              `${result.reused ? 'Already running' : 'Started'}: a sandbox cluster of ${cluster.nodes.length} nodes`,
              ...cluster.nodes.flatMap((info, i) => nodeLines(info, `node ${i + 1}: `)),
              `MQTT exchange: ${cluster.mqttExchange}   folder: ${cluster.dir}`,
              '',
            ].join('\n'),
          );
          noteOtherFolder(cluster.dir);
          return ExitCode.ok;
        }
        const result = await startUnlessStopped(
          startSandbox({
            dir: options.dir,
            mqttExchange: options.exchange,
            timeoutMs: options.timeout,
            ...(options.rabbitmq !== undefined ? { rabbitmq: options.rabbitmq } : {}),
            onProgress: options.json ? undefined : (message) => process.stderr.write(`${message}\n`),
          }),
          options.timeout,
          () => stopSandbox(options.dir),
        );
        if (typeof result === 'number') return result;
        for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
        const { info } = result;
        if (options.json) {
          printJson({ state: 'running', reused: result.reused, ...info });
          return ExitCode.ok;
        }
        process.stdout.write(
          [
            result.reused
              ? `Already running: ${info.nodeName} (pid ${info.pid})`
              : `Started ${info.nodeName} (pid ${info.pid})`,
            ...(info.version ? [`RabbitMQ    ${info.version}${info.root ? ` (from ${info.root})` : ''}`] : []),
            ...urlLines(info.urls),
            `MQTT exchange: ${info.mqttExchange}   folder: ${info.dir}`,
            '',
          ].join('\n'),
        );
        noteOtherFolder(info.dir);
        return ExitCode.ok;
      }),
    );

  broker
    .command('stop')
    .description('stop the sandbox broker and wait until its Erlang VM is gone')
    .option('--dir <path>', 'folder of the node', defaultSandboxDir())
    .option('--json', 'print a machine-readable object')
    .action(
      action(async (options: DirOptions) => {
        if (isClusterDir(options.dir)) {
          const results = await stopSandboxCluster(options.dir);
          if (options.json) printJson({ nodes: results });
          else {
            for (const { nodeName, result } of results) {
              process.stdout.write(result.stopped ? `Stopped ${nodeName} (pid ${result.info.pid})\n` : `Nothing to stop for ${nodeName}: ${result.reason}\n`);
            }
          }
          return;
        }
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
        if (isClusterDir(options.dir)) {
          const status = await sandboxClusterStatus(options.dir);
          if (options.json) printJson(status.state === 'running' ? { state: 'running', ...clusterJson(status.cluster) } : status);
          else if (status.state === 'running') {
            process.stdout.write([`running: a sandbox cluster of ${status.cluster.nodes.length} nodes`, ...status.cluster.nodes.flatMap((info, i) => nodeLines(info, `node ${i + 1}: `)), ''].join('\n'));
          } else {
            const lines = status.nodes.map(({ nodeName, status: node }) =>
              node.state === 'running' ? `  ${nodeName}: running` : node.state === 'stale' ? `  ${nodeName}: not running (${node.reason})` : `  ${nodeName}: stopped`,
            );
            process.stdout.write([`not running: the sandbox cluster in ${status.dir} is ${status.state}`, ...lines, ''].join('\n'));
          }
          return status.state === 'running' ? ExitCode.ok : ExitCode.failure;
        }
        const status = await sandboxStatus(options.dir);
        if (options.json) printJson(status);
        else if (status.state === 'running') {
          const { info } = status;
          process.stdout.write(
            `${[`running: ${info.nodeName} (pid ${info.pid})`, ...urlLines(info.urls)].join('\n')}\n`,
          );
        } else if (status.state === 'stale') process.stdout.write(`not running: ${status.reason}\n`);
        else process.stdout.write(`not running: no sandbox broker in ${status.dir}\n`);
        return status.state === 'running' ? ExitCode.ok : ExitCode.failure;
      }),
    );
}

/**
 * A start that Ctrl-C (or SIGTERM, SIGHUP) may cut short. The node is started detached and recorded only once it
 * answers, so a command simply ended by the signal left it running unrecorded (`broker stop` found nothing). Interrupted,
 * the start is let finish (bounded by its own timeout) and the node it started is stopped; one that was already running
 * (reused) is left alone. Returns the start's result, or the exit code of the interrupted command (130 for Ctrl-C).
 */
async function startUnlessStopped<T extends { reused: boolean }>(start: Promise<T>, startTimeoutMs: number, stop: () => Promise<unknown>): Promise<T | number> {
  const signals = new StopSignals({ boundMs: startTimeoutMs + 30_000 });
  const settled = start.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  const first = await Promise.race([settled, signals.stopped]);
  if (typeof first === 'object') {
    signals.dispose();
    if ('error' in first) throw first.error;
    return first.value;
  }
  process.stderr.write('Stopping: the node being started is stopped once its start is done...\n');
  const outcome = await signals.cleanup([
    { what: 'let the start finish, so the node it started can be stopped', run: () => settled },
    {
      what: 'stop the node it started',
      run: async () => {
        // A start that failed cleaned up after itself; its stop finds nothing then, and says nothing.
        const done = await settled;
        if (!('value' in done && done.value.reused)) await stop();
      },
    },
  ]);
  if (outcome.state === 'timed-out') {
    signals.say(`bridgescope: cleanup did not finish in time; left undone: ${outcome.leftUndone.join('; ')}.`);
    return ExitCode.failure;
  }
  if (outcome.failed.length > 0) return ExitCode.failure;
  process.stderr.write('Stopped: nothing of this start is left running.\n');
  return signalExitCode(first);
}
