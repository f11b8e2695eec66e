/** `bridgescope bindings`, `trace` and `probe`: what the broker really does, from the terminal. */
import type { Command } from 'commander';
import { amqpConsumerCounter, preflight, probeMqttExchange } from '../../core/broker/checks';
import { bindingsView } from '../../core/broker/bindings-view';
import { amqpConnectOptions, connectAmqp } from '../../core/links/amqp-link';
import { checkAbandonedTracing, FirehoseTracer, type FirehoseEvent, type FirehoseStatus } from '../../core/trace/firehose';
import { TraceStore } from '../../core/trace/trace-store';
import { ExternalVerdicts, EXTERNAL_TIMEOUT_MS } from '../../core/session/external-verdicts';
import { checkExportPath, traceExportOf, writeTraceExport, wroteSentence } from '../trace-export';
import { messageOf } from '../../shared/thrown';
import { describeStep } from '../../shared/describe';
import type { TraceStep } from '../../shared/trace';
import { action, ExitCode, exitCodeFor, parseChoice, parseDurationMs, parsePositiveInt, printJson, printJsonLine, say, warn } from '../run';
import { runUntilStopped, StopSignals } from '../lifecycle';
import { agreedVhost, agreedVhostIfAmqp, managementApiFor, optionalUrls, reachableAmqp, resolveUrls } from '../urls';
import { oncePerOutage, terminalSafe } from '../terminal';
import { reportRelease } from '../tracing-release';
import { isWatchTapQueue } from '../../shared/rabbitmq-mqtt';
import { addTlsOptions, cliTls, withCliTls } from '../tls';
import { tlsSocketOptions } from '../../core/connection-details';
import { DEFAULT_CALL_REPLY_STRATEGY, DEFAULT_MQTT_EXCHANGE, DEFAULT_REQUEST_QOS, DEFAULT_REQUEST_TOPIC } from '../../shared/defaults';
import type { CheckLine } from '../../shared/broker';
import { REPLY_STRATEGIES, type ReplyStrategy } from '../../shared/rpc';

export function registerInspectCommands(program: Command): void {
  program
    .command('bindings')
    .description('list the bindings on the MQTT exchange, with MQTT subscription queues linked to their client id')
    .option('--management <url>', "management URL (default: $BRIDGESCOPE_MANAGEMENT_URL, else the sandbox broker, or the AMQP URL's host on port 15672 when that is another broker)")
    .option('--amqp <url>', 'AMQP URL for live consumer counts (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker, if any)')
    .option('--exchange <name>', 'exchange to list', DEFAULT_MQTT_EXCHANGE)
    .option('--vhost <name>', "virtual host (default: the AMQP URL's, else /)")
    .option('--json', 'print the bindings as JSON')
    .action(
      action(async (options: { management?: string; amqp?: string; exchange: string; vhost?: string; json?: boolean }) => {
        // The consumer counts come over the AMQP URL, from its vhost: the bindings are listed from the same one.
        const vhost = agreedVhostIfAmqp(options.amqp, options.vhost, "the bindings of one would be listed with the other's consumer counts");
        const api = managementApiFor(options.management, vhost);
        const { bindings } = await withLiveCounts(options.amqp, (count) => bindingsView(api, options.exchange, count));
        if (options.json) {
          printJson(bindings);
          return;
        }
        if (bindings.length === 0) {
          process.stdout.write(`No bindings on ${terminalSafe(options.exchange)}.\n`);
          return;
        }
        // In a cluster, each queue's type and node (a quorum queue's leader) are shown too.
        const clustered = (await api.nodes().catch(() => [])).length > 1;
        // Keys, queue names and client ids come from the broker: escaped before the columns are measured.
        const rows = bindings.map((binding) =>
          [
            binding.bindingKey,
            binding.destination,
            binding.mqttClientId !== undefined
              ? `MQTT client ${binding.mqttClientId} (QoS ${binding.mqttQos})`
              : isWatchTapQueue(binding.destination)
                ? `a BridgeScope watch's tap: no server`
                : `${binding.consumers ?? 0} consumer(s)`,
            ...(clustered ? [`${binding.queueType ?? ''} ${binding.node ?? ''}`.trim()] : []),
          ].map(terminalSafe),
        );
        const header = ['BINDING KEY', 'QUEUE', 'WHO', ...(clustered ? ['TYPE / NODE'] : [])];
        const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
        const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd();
        process.stdout.write(`Bindings on ${terminalSafe(options.exchange)}:\n${[line(header), ...rows.map(line)].join('\n')}\n`);
      }),
    );

  program
    .command('trace')
    .description("turn on firehose tracing and stream what the broker publishes and delivers, with a verdict for each RPC it joins; Ctrl-C restores the setting (and writes --export)")
    .option('--amqp <url>', 'AMQP URL (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker)')
    .option('--management <url>', "management URL (default: $BRIDGESCOPE_MANAGEMENT_URL, else the sandbox broker, or the AMQP URL's host on port 15672 when that is another broker)")
    .option('--vhost <name>', "virtual host (default: the AMQP URL's, else /); tracing is switched and listened to there")
    .option('--exchange <name>', 'the exchange the MQTT plugin publishes to: its requests get the verdicts', DEFAULT_MQTT_EXCHANGE)
    .option('--timeout <ms>', 'a request without a reply after this long gets a verdict (server-slow, no-consumer, ...)', parseDurationMs('--timeout'), EXTERNAL_TIMEOUT_MS)
    .option('--export <file>', "when the command ends, write the trace to this file as the app's Trace > Export does (mode 0600: it holds message bodies)")
    .option('--json', 'one JSON line per step (verdicts are rpc.diagnosed steps)')
    .action(
      action(async (given: { amqp?: string; management?: string; vhost?: string; exchange: string; timeout: number; export?: string; json?: boolean }) => {
        // One vhost: the tracer's queue is in the AMQP URL's, and tracing is switched through the API in the same one.
        const options = { ...given, vhost: agreedVhost(given.amqp, given.vhost, 'the trace would switch tracing on in one and listen in the other, seeing nothing') };
        // A file it could not write is said now, before anything connects: not after an hour of tracing.
        const exportTo = options.export !== undefined ? { given: options.export, path: checkExportPath(options.export) } : undefined;
        // First of all, so no signal finds tracing switched on and nobody left to switch it off.
        const signals = new StopSignals();
        const store = new TraceStore();
        const api = managementApiFor(options.management, options.vhost);
        const printStep = (step: TraceStep): void => {
          if (options.json) printJsonLine(step);
          else {
            process.stdout.write(`${new Date(step.at).toISOString().slice(11, 23)}  ${terminalSafe(step.rpcId.slice(0, 8))}  ${terminalSafe(describeStep(step))}\n`);
          }
        };
        const print = (event: FirehoseEvent, step: TraceStep | undefined): void => {
          if (step) {
            printStep(step);
            return;
          }
          // Events that carry no id of a known RPC are still shown, with the body's first bytes.
          const detail = { name: event.name, routingKeys: event.routingKeys, routedQueues: event.routedQueues, body: event.body.subarray(0, 120).toString('utf8') };
          if (options.json) {
            printJsonLine({ rpcId: null, at: Date.now(), source: 'broker', kind: `broker.${event.type}`, detail });
            return;
          }
          const routed = event.type === 'publish' ? ` -> ${event.routedQueues.join(', ') || 'nothing -- DROPPED as unroutable'}` : '';
          process.stdout.write(
            `${new Date().toISOString().slice(11, 23)}  ${'-'.padEnd(8)}  ${terminalSafe(`${event.type} ${event.name} key "${event.routingKeys.join(', ')}"${routed}`)}\n`,
          );
        };
        // The first node of the list that answers: the tracer stays with it.
        const amqp = await reachableAmqp(options.amqp);
        if (amqp.skipped) warn(amqp.skipped);
        // Every RPC the trace joins is another's here (trace sends nothing): each gets its verdict, as in the app's Trace
        // panel, as an rpc.diagnosed step of source 'broker', in the stream and in the export.
        const externals = new ExternalVerdicts({
          watch: { amqpUrl: amqp.url, managementUrl: resolveUrls('management', options.management)[0] as string, ...withCliTls(), vhost: options.vhost, exchange: options.exchange },
          store,
          timeoutMs: options.timeout,
          timeoutRemedy: { name: "the trace's timeout", raise: 'raise it with --timeout if that is normal for it' },
          addVerdict: (rpcId, verdict) => {
            try {
              const step = store.add({ rpcId, at: Date.now(), source: 'broker', kind: 'rpc.diagnosed', detail: { verdict } });
              if (step) printStep(step);
            } catch (err) {
              // From a timer: a throw here would end the process with tracing on.
              warn(`a verdict on ${rpcId} could not be shown: ${messageOf(err)}`);
            }
          },
        });
        const tracer = new FirehoseTracer({
          amqpUrl: amqp.url,
          api,
          store,
          onEvent: (event, step) => {
            print(event, step);
            externals.observe(event, step);
          },
          owner: `bridgescope trace (pid ${process.pid})`,
          ...withCliTls(),
        });
        externals.nameConnectionsWith(tracer);
        const abandoned = await checkAbandonedTracing(api);
        if (abandoned) say(abandoned.message);
        // The export only once tracing ran: a trace that never started has nothing to write.
        let traced = false;
        const tasks = () => [
          {
            what: `stop tracing and restore firehose tracing on vhost ${options.vhost}`,
            run: async () => {
              // Its timer stops now; a verdict still being worked out is dropped (the tracer it came from is going).
              void externals.stop().catch(() => undefined);
              reportRelease(await tracer.stop(), options.vhost);
            },
          },
          ...(abandoned ? [{ what: 'switch off the tracing a dead BridgeScope process left on', run: async () => reportRelease(await abandoned.restore(), options.vhost, { quietWhenLeftOn: true }) }] : []),
          // Last: tracing is given back first, whether or not the file can be written; the trace is complete by then.
          ...(exportTo && traced ? [{ what: `write the trace to ${exportTo.given}`, run: async () => say(wroteSentence(await writeTraceExport(exportTo.path, traceExportOf(store)), exportTo.given)) }] : []),
        ];
        let status: FirehoseStatus;
        try {
          status = await tracer.start();
        } catch (err) {
          await signals.cleanup(tasks());
          throw err;
        }
        if (status.state === 'unavailable') {
          await signals.cleanup(tasks());
          say(`bridgescope: ${status.reason}`);
          return status.code ? exitCodeFor(status.code) : ExitCode.failure;
        }
        traced = true;
        externals.start();
        say(`Tracing vhost ${options.vhost}${status.state === 'on' && status.turnedOnByUs ? ' (turned on; Ctrl-C turns it off again)' : ' (it was already on)'}.`);
        const outage = oncePerOutage();
        tracer.on('status', (next) => {
          externals.followStatus(next);
          reportStatus(next, options.vhost, outage);
        });
        tracer.on('node-resumed', (node) => say(`Tracing switched on again at ${terminalSafe(node)}: the node restarted, and a restart resets it.`));
        await runUntilStopped(signals, () => say(`Stopping: restoring firehose tracing${exportTo ? `, then writing ${exportTo.given}` : ''}...`), tasks);
        return ExitCode.ok;
      }),
    );

  program
    .command('preflight')
    .description("before sending: is the request routed and consumed, will the reply come back, and what this broker version does with it (QoS, size, MQTT 5, headers); on a cluster, the nodes")
    .argument('[payload]', 'the request body as it will be sent: only its size is used')
    .option('--management <url>', "management URL (default: $BRIDGESCOPE_MANAGEMENT_URL, else the sandbox broker, or the AMQP URL's host on port 15672 when that is another broker)")
    .option('--amqp <url>', 'AMQP URL for live consumer counts (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker, if any)')
    .option('--exchange <name>', 'exchange the MQTT plugin publishes to', DEFAULT_MQTT_EXCHANGE)
    .option('--vhost <name>', "virtual host (default: the AMQP URL's, else /)")
    .option('--topic <topic>', 'request topic', DEFAULT_REQUEST_TOPIC)
    .option('--qos <qos>', 'QoS of the request: 0, 1 or 2', parseChoice('--qos', ['0', '1', '2'] as const), `${DEFAULT_REQUEST_QOS}`)
    .option('--reply <strategy>', 'per-request | shared', parseChoice('--reply', REPLY_STRATEGIES), DEFAULT_CALL_REPLY_STRATEGY)
    .option('--reply-topic <topic>', 'the reply topic the device is told to use')
    .option('--mqtt-version <v>', 'the MQTT version the device speaks: 4 (3.1.1) or 5', parseChoice('--mqtt-version', ['4', '5'] as const), '4')
    .option('--payload-bytes <n>', 'the request body size, when not given as PAYLOAD', parsePositiveInt('--payload-bytes'))
    .option('--mqtt-client <id>', 'the MQTT client id of the device: on a cluster, the node it is connected to is named')
    .option('--sparkplug', 'the broker runs with mqtt.sparkplug = true')
    .option('--json', 'print the lines as JSON')
    .action(
      action(
        async (
          payload: string | undefined,
          options: {
            management?: string;
            amqp?: string;
            exchange: string;
            vhost?: string;
            topic: string;
            qos: '0' | '1' | '2';
            reply: ReplyStrategy;
            replyTopic?: string;
            mqttVersion: '4' | '5';
            payloadBytes?: number;
            mqttClient?: string;
            sparkplug?: boolean;
            json?: boolean;
          },
        ) => {
          // The checks read the bindings of the vhost whose consumers the AMQP URL counts: its own (a PASS from "/" said
          // nothing of a vhost with no queue at all).
          const vhost = agreedVhostIfAmqp(options.amqp, options.vhost, "the checks would read the bindings of one and count the other's consumers");
          const api = managementApiFor(options.management, vhost);
          const bytes = payload !== undefined ? Buffer.byteLength(payload) : options.payloadBytes;
          const lines: CheckLine[] = await withLiveCounts(options.amqp, (count) =>
            preflight(api, {
              exchange: options.exchange,
              requestTopic: options.topic,
              replyTopic: options.replyTopic,
              strategy: options.reply,
              topicMap: { sparkplug: Boolean(options.sparkplug) },
              qos: Number(options.qos) as 0 | 1 | 2,
              mqttVersion: options.mqttVersion === '5' ? 5 : 4,
              ...(bytes !== undefined ? { payloadBytes: bytes } : {}),
              ...(options.mqttClient !== undefined ? { mqttClientId: options.mqttClient } : {}),
              ...(count ? { consumerCount: count } : {}),
            }),
          );
          if (options.json) printJson(lines);
          else for (const line of lines) process.stdout.write(`${line.status.toUpperCase().padEnd(4)}  ${terminalSafe(`${line.check}: ${line.message}`)}\n`);
          return lines.some((line) => line.status === 'fail') ? ExitCode.failure : ExitCode.ok;
        },
      ),
    );

  program
    .command('probe')
    .description('find which exchange the MQTT plugin publishes to, and warn about mismatches')
    .option('--mqtt <url>', "MQTT URL (default: $BRIDGESCOPE_MQTT_URL, else the sandbox broker, or the AMQP URL's host on port 1883 when that is another broker)")
    .option('--amqp <url>', 'AMQP URL (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker)')
    .option('--management <url>', "management URL (default: $BRIDGESCOPE_MANAGEMENT_URL, else the sandbox broker, or the AMQP URL's host on port 15672 when that is another broker)")
    .option('--exchange <name>', 'the exchange BridgeScope is configured for', DEFAULT_MQTT_EXCHANGE)
    .option('--json', 'print the verdict as JSON')
    .action(
      action(async (options: { mqtt?: string; amqp?: string; management?: string; exchange: string; json?: boolean }) => {
        const [mqttUrl, ...fallbackMqttUrls] = resolveUrls('mqtt', options.mqtt) as [string, ...string[]];
        const [amqpUrl, ...fallbackAmqpUrls] = resolveUrls('amqp', options.amqp) as [string, ...string[]];
        const verdict = await probeMqttExchange({
          mqttUrl,
          fallbackMqttUrls,
          amqpUrl,
          fallbackAmqpUrls,
          configuredExchange: options.exchange,
          api: managementApiFor(options.management),
          onSkipped: warn,
          ...withCliTls(),
        });
        if (options.json) printJson(verdict);
        else {
          // Without an observed exchange the cause lines below say why; "none of the candidates" would only mislead.
          if (verdict.observedExchange) process.stdout.write(`The MQTT plugin publishes to: ${terminalSafe(verdict.observedExchange)}\n`);
          for (const line of verdict.lines) process.stdout.write(`${line.status.toUpperCase().padEnd(4)}  ${terminalSafe(line.message)}\n`);
        }
        // Refused credentials end it as a refused login ends every command (4); any other failed check, 1.
        if (verdict.lines.some((line) => line.status === 'fail' && line.cause === 'auth')) return ExitCode.unreachable;
        return verdict.lines.some((line) => line.status === 'fail') ? ExitCode.failure : ExitCode.ok;
      }),
    );

  // Each of them connects to the broker: the TLS options after its own.
  for (const name of ['bindings', 'trace', 'preflight', 'probe']) {
    const command = program.commands.find((candidate) => candidate.name() === name);
    if (command) addTlsOptions(command);
  }
}


/** What the `trace` command says when the tracer's link or the vhost's tracing changes while it runs. */
function reportStatus(status: FirehoseStatus, vhost: string, outage: ReturnType<typeof oncePerOutage>): void {
  if (status.state === 'reconnecting') {
    if (outage.lost()) warn(`tracing paused: lost the broker (${status.reason}); reconnecting.`);
  } else if (status.state === 'on' && status.resumed) {
    outage.back();
    say(`Tracing resumed on vhost ${vhost}${status.turnedOnByUs ? ' (switched on again: a broker restart resets it)' : ''}.`);
  } else if (status.state === 'unavailable') warn(status.reason);
}

/** Runs `use` with live consumer counts over a short AMQP connection when one can be opened (the management API's lag ~5 s). */
async function withLiveCounts<T>(amqpFlag: string | undefined, use: (count: ((queue: string) => Promise<number>) | undefined) => Promise<T>): Promise<T> {
  // None found: the management API's counts; one given that cannot be read: refused, not passed over.
  const url = optionalUrls('amqp', amqpFlag)?.[0];
  const connection = url ? await connectAmqp(amqpConnectOptions(url, 0), { ...tlsSocketOptions(cliTls()), timeout: 3000 }).catch(() => undefined) : undefined;
  try {
    return await use(connection ? amqpConsumerCounter(connection) : undefined);
  } finally {
    await connection?.close().catch(() => undefined);
  }
}
