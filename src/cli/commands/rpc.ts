/** `bridgescope serve`, `call` and `map`: the RPC engine and the topic map from the terminal. */
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import type { Command } from 'commander';
import type { QoS, ReplyStrategy, RpcOutcome } from '../../shared/rpc';
import { redactUrl } from '../../core/broker/management-http';
import { RpcServer } from '../../core/rpc/server';
import { RpcClient } from '../../core/rpc/client';
import { loadHandler, parseHandlerSpec } from '../../core/rpc/handlers';
import { parsePayloadText } from '../../core/rpc/envelope';
import { mapTopic, type TopicRole } from '../../core/topic-map';
import { ManagementApi } from '../../core/broker/management-api';
import { FirehoseTracer } from '../../core/trace/firehose';
import { TraceStore } from '../../core/trace/trace-store';
import { formatTimeline } from '../../shared/describe';
import { action, parseChoice, parseDurationMs, parsePositiveInt, printJson, warn } from '../run';
import { resolveUrl } from '../urls';

interface ServeOptions {
  amqp?: string;
  exchange: string;
  queue: string;
  workers: number;
  prefetch: number;
  handler: string;
  json?: boolean;
  sparkplug?: boolean;
}

interface CallOptions {
  mqtt?: string;
  topic: string;
  qos: `${QoS}`;
  reply: ReplyStrategy;
  replyTopic?: string;
  method?: string;
  timeout: number;
  mqttVersion: '4' | '5' | 'auto';
  json?: boolean;
  sparkplug?: boolean;
  trace?: boolean;
  amqp?: string;
  management?: string;
}

/** PAYLOAD: a JSON object becomes the request body (id and reply_to are added), anything else its params; - reads stdin. */
export function parsePayload(text: string | undefined): { payload?: Record<string, unknown>; params?: unknown } {
  if (text === undefined) return {};
  return parsePayloadText(text === '-' ? readFileSync(0, 'utf8') : text, 'PAYLOAD');
}

/** Waits (bounded) for the broker's record of the reply's delivery, which can trail the reply itself. */
async function settleTrace(store: TraceStore, rpcId: string, tracer: FirehoseTracer): Promise<void> {
  if (tracer.status.state !== 'on') return;
  const done = (): boolean => store.steps(rpcId).some((step) => step.kind === 'broker.delivered' && step.detail.leg === 'reply');
  if (done()) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(finish, 1500);
    function finish(): void {
      clearTimeout(timer);
      store.off('added', onAdded);
      resolve();
    }
    function onAdded(): void {
      if (done()) finish();
    }
    store.on('added', onAdded);
  });
}

async function printTrace(store: TraceStore, rpcId: string | undefined, tracer: FirehoseTracer, json: boolean | undefined): Promise<void> {
  if (rpcId === undefined) return;
  await settleTrace(store, rpcId, tracer);
  const steps = store.steps(rpcId);
  if (json) {
    process.stderr.write(`${JSON.stringify({ trace: steps, summary: store.summary(rpcId) })}\n`);
    return;
  }
  const sources = [...new Set(steps.map((step) => step.source))];
  const label = `${sources.join(', ')} steps${tracer.status.state === 'on' ? '' : '; no firehose, so no broker steps'}`;
  process.stdout.write(`\nTrace of ${rpcId} (${label}):\n${formatTimeline(steps)}\n`);
  for (const warning of store.summary(rpcId).warnings) process.stdout.write(`! ${warning}\n`);
}

function printReply(outcome: RpcOutcome): void {
  const body = outcome.body;
  if (body.kind === 'json') process.stdout.write(`${JSON.stringify(body.value)}\n`);
  else if (body.kind === 'text') process.stdout.write(`${body.text}\n`);
  else process.stdout.write(`${body.base64}\n`);
}

export function registerRpcCommands(program: Command): void {
  program
    .command('serve')
    .description('run the embedded RPC server: N workers consuming the shared queue, replying through the MQTT exchange')
    .option('--amqp <url>', 'AMQP URL (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker)')
    .option('--exchange <name>', 'exchange the MQTT plugin publishes to', 'amq.direct')
    .option('--queue <name>', 'shared request queue (durable, bound with key = its name)', 'rpc_queue')
    .option('--workers <n>', 'competing consumers', parsePositiveInt('--workers'), 2)
    .option('--prefetch <n>', 'unacked requests per worker', parsePositiveInt('--prefetch'), 1)
    .option('--handler <spec>', 'echo | delay:MS | fail | fail:CODE:MESSAGE | PATH.js', 'echo')
    .option('--sparkplug', 'the broker runs with mqtt.sparkplug = true')
    .option('--json', 'print one JSON line per trace step and problem')
    .action(
      action(async (options: ServeOptions) => {
        const handler = await loadHandler(parseHandlerSpec(options.handler));
        const amqpUrl = resolveUrl('amqp', options.amqp);
        const server = new RpcServer({
          amqpUrl,
          exchange: options.exchange,
          queue: options.queue,
          workers: options.workers,
          prefetch: options.prefetch,
          handler,
          topicMap: { sparkplug: Boolean(options.sparkplug) },
        });
        server.on('problem', (problem) => {
          if (options.json) process.stdout.write(`${JSON.stringify({ problem })}\n`);
          else warn(problem.message);
        });
        server.on('status', (status) => {
          if (status.state === 'reconnecting') warn(`AMQP connection lost (${status.lastError}); reconnecting (attempt ${status.attempt}).`);
          if (status.state === 'failed') warn(status.message);
        });
        server.on('step', (step) => {
          if (options.json) process.stdout.write(`${JSON.stringify(step)}\n`);
          else if (step.kind === 'reply.published') {
            process.stdout.write(`${step.detail.worker} answered ${step.rpcId} -> ${step.detail.exchange} "${step.detail.routingKey}"\n`);
          }
        });
        await server.start();
        process.stderr.write(
          `Serving "${server.queue}" on ${server.exchange} at ${redactUrl(amqpUrl)} with ${options.workers} worker(s), prefetch ${options.prefetch}, handler ${options.handler}. Ctrl-C stops.\n`,
        );
        await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
        process.stderr.write(`Stopping: draining ${server.stats.inFlight} in-flight request(s)...\n`);
        await server.stop();
        const { stats } = server;
        process.stderr.write(
          `Stopped. received ${stats.received}, replied ${stats.replied}, failed ${stats.failed}, rejected ${stats.rejected}, unroutable ${stats.unroutable}; per worker ${JSON.stringify(stats.perWorker)}\n`,
        );
      }),
    );

  program
    .command('call')
    .description('send one request over MQTT and print the reply body (warnings go to stderr)')
    .argument('[payload]', 'JSON request body (an object gets id and reply_to added; anything else becomes params); - reads stdin')
    .option('--mqtt <url>', 'MQTT URL (default: $BRIDGESCOPE_MQTT_URL or the sandbox broker)')
    .option('--topic <topic>', 'request topic', 'rpc_queue')
    .option('--qos <qos>', 'QoS of the request: 0, 1 or 2', parseChoice('--qos', ['0', '1', '2'] as const), '1')
    .option('--reply <strategy>', 'per-request | shared', parseChoice('--reply', ['per-request', 'shared'] as const), 'per-request')
    .option('--reply-topic <topic>', 'reply topic to use instead of reply/<uuid>')
    .option('--method <name>', 'method field of the request')
    .option('--timeout <ms>', 'how long to wait for the reply', parseDurationMs('--timeout'), 10_000)
    .option('--mqtt-version <v>', '4 (3.1.1), 5 or auto', parseChoice('--mqtt-version', ['4', '5', 'auto'] as const), '4')
    .option('--sparkplug', 'the broker runs with mqtt.sparkplug = true')
    .option('--trace', 'trace this RPC through the broker (firehose) and print every step after the reply')
    .option('--amqp <url>', 'AMQP URL for --trace (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker)')
    .option('--management <url>', 'management URL for --trace (default: $BRIDGESCOPE_MANAGEMENT_URL or the sandbox broker)')
    .option('--json', 'print the whole outcome (reply, topics, QoS, worker, duration, warnings) as JSON')
    .action(
      action(async (payloadText: string | undefined, options: CallOptions) => {
        const { payload, params } = parsePayload(payloadText);
        const replyField = payload?.reply_to;
        const client = new RpcClient({
          mqttUrl: resolveUrl('mqtt', options.mqtt),
          strategy: options.reply,
          protocolVersion: options.mqttVersion === 'auto' ? 'auto' : (Number(options.mqttVersion) as 4 | 5),
          topicMap: { sparkplug: Boolean(options.sparkplug) },
        });
        await client.connect();
        const store = new TraceStore();
        let tracer: FirehoseTracer | undefined;
        if (options.trace) {
          store.attach(client);
          tracer = new FirehoseTracer({
            amqpUrl: resolveUrl('amqp', options.amqp),
            api: new ManagementApi(resolveUrl('management', options.management)),
            store,
          });
          const status = await tracer.start();
          if (status.state === 'unavailable') warn(status.reason);
        }
        try {
          const outcome = await client.call({
            topic: options.topic,
            qos: Number(options.qos) as QoS,
            ...(options.method ? { method: options.method } : {}),
            ...(params !== undefined ? { params } : {}),
            ...(payload ? { payload } : {}),
            replyTopic: options.replyTopic ?? (typeof replyField === 'string' ? replyField : undefined),
            timeoutMs: options.timeout,
          }).catch(async (err: unknown) => {
            if (tracer) await printTrace(store, store.rpcIds().at(-1), tracer, options.json);
            throw err;
          });
          for (const message of outcome.warnings) warn(message);
          if (tracer) {
            await settleTrace(store, outcome.id, tracer);
            if (options.json) printJson({ ...outcome, trace: store.steps(outcome.id), summary: store.summary(outcome.id) });
            else {
              printReply(outcome);
              await printTrace(store, outcome.id, tracer, false);
            }
          } else if (options.json) printJson(outcome);
          else printReply(outcome);
        } finally {
          await tracer?.stop();
          await client.close();
        }
      }),
    );

  program
    .command('map')
    .description("show how RabbitMQ maps a topic to a routing key and back, and every pitfall on the way")
    .argument('<topic>', 'MQTT topic or filter')
    .option('--role <role>', 'publish | reply | filter', parseChoice('--role', ['publish', 'reply', 'filter'] as const), 'reply')
    .option('--sparkplug', 'the broker runs with mqtt.sparkplug = true')
    .option('--json', 'print the mapping as JSON')
    .action(
      action(async (topic: string, options: { role: TopicRole; sparkplug?: boolean; json?: boolean }) => {
        const mapping = mapTopic(topic, options.role, { sparkplug: Boolean(options.sparkplug) });
        if (options.json) {
          printJson(mapping);
          return;
        }
        const lines = [
          `topic        ${mapping.topic}`,
          `routing key  ${mapping.routingKey}`,
          `back to MQTT ${mapping.backToTopic}${mapping.roundTrips ? '' : '   (differs!)'}`,
        ];
        if (mapping.issues.length === 0) lines.push('ok: survives the round trip unchanged');
        for (const issue of mapping.issues) lines.push(`${issue.severity}: ${issue.message}`);
        process.stdout.write(`${lines.join('\n')}\n`);
      }),
    );
}
