/** `bridgescope serve`, `call` and `map`: the RPC engine and the topic map from the terminal. */
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError, type Command } from 'commander';
import { REPLY_STRATEGIES, type Mqtt5RequestOptions, type QoS, type ReplyStrategy, type RpcOutcome, type UserProperty } from '../../shared/rpc';
import { BridgeError } from '../../core/errors';
import { MAX_FILE_PAYLOAD_BYTES, type PayloadFormat } from '../../shared/payload-format';
import { redactUrl } from '../../core/broker/management-http';
import { RpcServer, validateQueueName, type StopReport } from '../../core/rpc/server';
import { RpcClient } from '../../core/rpc/client';
import { buildCallOptions, readPayload } from '../../core/rpc/call-options';
import { cleanMqtt5 } from '../../shared/mqtt5-options';
import { loadHandler, parseHandlerSpec } from '../../core/rpc/handlers';
import { messageOf } from '../../shared/thrown';
import { mapTopic, type TopicRole } from '../../shared/topic-map';
import type { ManagementApi } from '../../core/broker/management-api';
import { probeMqttExchange } from '../../core/broker/checks';
import { checkAbandonedTracing, FirehoseTracer, type AbandonedTracing, type TracingRelease } from '../../core/trace/firehose';
import { amqpConnectOptions, connectAmqp } from '../../core/links/amqp-link';
import { TraceStore } from '../../core/trace/trace-store';
import { formatCount, formatTimeline } from '../../shared/describe';
import { action, ExitCode, exitCodeFor, parseChoice, parseDurationMs, parsePositiveInt, printable, printJson, printJsonLine, say, warn } from '../run';
import { withDeadline } from '../../shared/deadline';
import { ServerSpans } from '../../core/otel/server-spans';
import { RpcSpans } from '../../core/otel/rpc-spans';
import { topicToRoutingKey } from '../../shared/topic-map';
import { addOtlpOptions, finishOtel, otelFor, type OtlpOptions } from '../otlp';
import { addTlsOptions, cliTls, withCliTls } from '../tls';
import { tlsSocketOptions } from '../../core/connection-details';
import { isSubscriptionQueue } from '../../shared/rabbitmq-mqtt';
import { toErrorShape } from '../../core/errors';
import { CallWitness, diagnoseRpc, diagnosisBroker, type RpcDiagnosisOptions } from '../../core/diagnosis/evidence';
import type { Verdict } from '../../shared/diagnosis';
import { checkGivenUrls, managementApiFor, reachableAmqp, resolveUrl, resolveUrls } from '../urls';
import { jsonForTerminal, stdoutIsTerminal, terminalSafe } from '../terminal';
import { runUntilStopped, signalExitCode, StopSignals, type CleanupTask, type StopSignal } from '../lifecycle';
import { DEFAULT_CALL_REPLY_STRATEGY, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_HANDLER_TIMEOUT_MS, DEFAULT_MQTT_EXCHANGE, DEFAULT_REQUEST_QOS, DEFAULT_REQUEST_TOPIC, DEFAULT_SERVER_SETTINGS } from '../../shared/defaults';
import { withWire } from '../../core/trace/message-view';
import { verdictHop } from '../../shared/describe';

interface ServeOptions extends OtlpOptions {
  amqp?: string;
  mqtt?: string;
  management?: string;
  exchange: string;
  queue: string;
  workers: number;
  prefetch: number;
  handler: string;
  handlerTimeout: number;
  transientReplies?: boolean;
  drainTimeout: number;
  json?: boolean;
  sparkplug?: boolean;
  queueType?: 'classic' | 'quorum';
}

interface CallOptions extends OtlpOptions {
  mqtt?: string;
  topic: string;
  qos: `${QoS}`;
  reply: ReplyStrategy;
  replyTopic?: string;
  method?: string;
  timeout: number;
  mqttVersion: '4' | '5' | 'auto';
  payloadFormat?: CliPayloadFormat;
  payloadFile?: string;
  userProperty?: UserProperty[];
  correlationData?: string;
  responseTopic?: string;
  messageExpiry?: number;
  json?: boolean;
  sparkplug?: boolean;
  trace?: boolean;
  amqp?: string;
  management?: string;
  exchange: string;
}

type CliPayloadFormat = Exclude<PayloadFormat, 'file'>;

/** The most bytes `call` reads of a payload file or stdin, per format: 16 MiB of body, as Compose (hex and base64 spell it longer). */
export function payloadSourceLimit(format: CliPayloadFormat | undefined): number {
  return format === 'hex' || format === 'base64' ? 4 * MAX_FILE_PAYLOAD_BYTES : MAX_FILE_PAYLOAD_BYTES;
}

function tooLarge(label: string, format: CliPayloadFormat | undefined): BridgeError {
  const limit = payloadSourceLimit(format);
  return new BridgeError('too-large', `${label} is larger than ${limit / (1024 * 1024)} MiB, the most \`call\` reads${format === 'hex' || format === 'base64' ? ` as ${format}` : ''} (16 MiB of body, as Compose); nothing was sent.`);
}

/**
 * A payload file's bytes, bounded: only a regular file (a FIFO, a device such as /dev/zero or a folder is refused before
 * any read: give such bytes on stdin with PAYLOAD -), and at most payloadSourceLimit bytes, however much the file grows
 * while it is read. Opened without blocking, so a FIFO nobody writes is refused at once.
 */
async function readPayloadFile(file: string, format: CliPayloadFormat | undefined): Promise<Buffer> {
  const label = `--payload-file ${file}`;
  let handle: FileHandle;
  try {
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    throw new BridgeError('bad-input', `--payload-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new BridgeError('bad-input', `${label} is not a regular file (a FIFO, a device or a folder), so it could block or never end; pipe its bytes into PAYLOAD - instead.`);
    const limit = payloadSourceLimit(format);
    if (info.size > limit) throw tooLarge(label, format);
    // One byte more than the file holds: reading it means the file grew while it was read (a log being written).
    const buffer = Buffer.allocUnsafe(Math.min(limit, info.size) + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length === buffer.length) {
      throw length > limit ? tooLarge(label, format) : new BridgeError('bad-input', `${label} grew while it was read; give a file that is not being written.`);
    }
    return buffer.subarray(0, length);
  } catch (err) {
    if (err instanceof BridgeError) throw err;
    throw new BridgeError('bad-input', `--payload-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** PAYLOAD `-`: stdin until it ends, at most payloadSourceLimit bytes and no longer than the call's --timeout (a pipe nobody closes). */
function readStdin(format: CliPayloadFormat | undefined, timeoutMs: number): Promise<Buffer> {
  const stdin = process.stdin;
  const limit = payloadSourceLimit(format);
  return new Promise((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error: Error | undefined): void => {
      clearTimeout(timer);
      stdin.off('data', onData).off('end', onEnd).off('error', onError);
      // Nothing more is read: a stdin left open must not keep the process alive.
      stdin.destroy();
      if (error) reject(error);
      else resolvePromise(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) finish(tooLarge('PAYLOAD - (stdin)', format));
      else chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onError = (err: Error): void => finish(new BridgeError('bad-input', `PAYLOAD -: cannot read stdin (${(err as NodeJS.ErrnoException).code ?? err.message}).`));
    const timer = setTimeout(
      () => finish(new BridgeError('bad-input', `PAYLOAD -: stdin did not end within the --timeout of ${timeoutMs} ms, so nothing was sent (close it, e.g. end a pipe or press Ctrl-D).`)),
      timeoutMs,
    );
    stdin.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

/**
 * PAYLOAD (or --payload-file) read per --payload-format: json (default for PAYLOAD): a JSON object becomes the request
 * body (id and reply_to are added), anything else its params; text, hex, base64: the bytes are sent exactly as given.
 * A file without --payload-format is sent as its raw bytes. PAYLOAD `-` reads stdin. Both sources are bounded in size,
 * and stdin in time (`timeoutMs`, the call's own).
 */
export async function parsePayload(
  text: string | undefined,
  format: CliPayloadFormat | undefined = undefined,
  file: string | undefined = undefined,
  timeoutMs: number = DEFAULT_CALL_TIMEOUT_MS,
): Promise<{ payload?: Record<string, unknown>; params?: unknown; rawBody?: Uint8Array }> {
  if (file !== undefined) {
    if (text !== undefined) throw new BridgeError('bad-input', 'Give the request body either as PAYLOAD or with --payload-file, not both.');
    const bytes = await readPayloadFile(file, format);
    if (format === undefined) return { rawBody: bytes };
    return withinCap(readPayload(format, bytes.toString('utf8'), `--payload-file ${file}`), `--payload-file ${file}`);
  }
  if (text === undefined) {
    if (format !== undefined && format !== 'json') throw new BridgeError('bad-input', `--payload-format ${format} needs a PAYLOAD or --payload-file.`);
    return {};
  }
  if (text !== '-') return readPayload(format, text, 'PAYLOAD');
  return withinCap(readPayload(format, (await readStdin(format, timeoutMs)).toString('utf8'), 'PAYLOAD'), 'PAYLOAD - (stdin)');
}

/** Hex or base64 text within its cap can still spell more than 16 MiB of body: refused the same way. */
function withinCap<T extends { rawBody?: Uint8Array }>(read: T, label: string): T {
  if (read.rawBody !== undefined && read.rawBody.byteLength > MAX_FILE_PAYLOAD_BYTES) {
    throw new BridgeError('too-large', `${label} spells ${read.rawBody.byteLength} bytes of body, more than the 16 MiB \`call\` sends (as Compose); nothing was sent.`);
  }
  return read;
}

/** `--user-property name=value`, repeatable (a name may repeat, as MQTT 5 allows). */
function collectUserProperty(value: string, previous: UserProperty[] = []): UserProperty[] {
  const at = value.indexOf('=');
  if (at < 1) throw new InvalidArgumentError(`--user-property takes name=value, not "${value}".`);
  return [...previous, { key: value.slice(0, at), value: value.slice(at + 1) }];
}

/** `--reply-topic`: an empty one is no topic at all (MQTT forbids it), not a request for a generated one: a usage error. */
function parseReplyTopic(value: string): string {
  if (value === '') throw new InvalidArgumentError('--reply-topic cannot be empty (MQTT forbids an empty topic): give a topic, or leave the flag out for a generated reply/<uuid>.');
  return value;
}

/** The MQTT 5 options of `call`, or undefined when none was given. */
function mqtt5Options(options: CallOptions): Mqtt5RequestOptions | undefined {
  return cleanMqtt5({
    ...(options.userProperty ? { userProperties: options.userProperty } : {}),
    ...(options.correlationData !== undefined ? { correlationData: options.correlationData } : {}),
    ...(options.responseTopic !== undefined ? { responseTopic: options.responseTopic } : {}),
    ...(options.messageExpiry !== undefined ? { messageExpirySeconds: options.messageExpiry } : {}),
  });
}

/**
 * Waits (bounded) for the broker's record of the reply's delivery to the client's MQTT subscription, which can trail the
 * reply itself. A copy delivered to another queue first (a watcher's tap) is not it.
 */
async function settleTrace(store: TraceStore, rpcId: string, tracer: FirehoseTracer): Promise<void> {
  if (tracer.status.state !== 'on') return;
  const done = (): boolean => store.steps(rpcId).some((step) => step.kind === 'broker.delivered' && step.detail.leg === 'reply' && isSubscriptionQueue(step.detail.queue));
  if (done()) return;
  let onAdded = (): void => undefined;
  const delivered = new Promise<void>((resolve) => {
    onAdded = () => {
      if (done()) resolve();
    };
    store.on('added', onAdded);
  });
  try {
    await withDeadline(delivered, 1500);
  } finally {
    store.off('added', onAdded);
  }
}

/** The steps of `call --trace` (settled by the caller: the verdict and the printed steps must be the same ones). */
function printTrace(store: TraceStore, rpcId: string, tracer: FirehoseTracer): void {
  const steps = store.steps(rpcId);
  const sources = [...new Set(steps.map((step) => step.source))];
  const label = `${sources.join(', ')} steps${tracer.status.state === 'on' ? '' : '; no firehose, so no broker steps'}`;
  process.stdout.write(`\nTrace of ${terminalSafe(rpcId)} (${label}):\n${formatTimeline(steps, terminalSafe)}\n`);
  for (const warning of store.summary(rpcId).warnings) process.stdout.write(`! ${terminalSafe(warning)}\n`);
}

/** The end of `call --trace`, under the bounded cleanup (a second signal names what is left, a third forces the exit); false when something was left undone. */
async function finishTraced(signals: StopSignals, client: RpcClient, tracer: FirehoseTracer | undefined, abandoned: AbandonedTracing | undefined): Promise<boolean> {
  const giveBack = async (release: Promise<TracingRelease>): Promise<void> => {
    const result = await release;
    if (result.outcome === 'failed') throw new Error(result.reason);
  };
  const outcome = await signals.cleanup([
    ...(tracer ? [{ what: 'restore firehose tracing', run: () => giveBack(tracer.stop()) }] : []),
    ...(abandoned ? [{ what: 'switch off the tracing a dead BridgeScope process left on', run: () => giveBack(abandoned.restore()) }] : []),
    { what: 'close the MQTT connection', run: () => client.close() },
  ]);
  if (outcome.state === 'timed-out') warn(`cleanup did not finish in time; left undone: ${outcome.leftUndone.join('; ')}.`);
  return outcome.state === 'clean' && outcome.failed.length === 0;
}

/**
 * The reply body on stdout: escaped on a terminal, byte for byte into a pipe or file (scripts need the bytes). A body that
 * is not UTF-8 text is base64 on a terminal, and into a pipe exactly its bytes, with no newline added.
 */
export function printReply(outcome: RpcOutcome, terminal: boolean = stdoutIsTerminal()): void {
  const body = outcome.body;
  if (body.kind === 'json') process.stdout.write(`${terminal ? jsonForTerminal(body.value) : JSON.stringify(body.value)}\n`);
  else if (body.kind === 'text') process.stdout.write(`${terminal ? terminalSafe(body.text) : body.text}\n`);
  else if (terminal) process.stdout.write(`${body.base64}\n`);
  else process.stdout.write(Buffer.from(body.base64, 'base64'));
}

/**
 * Whether an exception that escaped every request plausibly comes from the handler module's own callbacks: its stack
 * passes through the module's file, or it is not an Error at all (ours always are). Built-in handlers have none.
 */
export function isHandlersStray(thrown: unknown, handlerFile: string | undefined): boolean {
  if (handlerFile === undefined) return false;
  let stack: unknown;
  try {
    stack = thrown instanceof Error ? thrown.stack : undefined;
    if (!(thrown instanceof Error)) return true;
  } catch {
    // a hostile proxy: nothing of ours throws one
    return true;
  }
  return typeof stack === 'string' && (stack.includes(handlerFile) || stack.includes(pathToFileURL(handlerFile).href));
}

/** `bridgescope serve`: serves until a stop signal, then drains (every reply confirmed, every ack flushed) and exits 0. */
async function serve(options: ServeOptions): Promise<number | undefined> {
  // First, so a signal that arrives while connecting is not lost (nor handled by Node's default, which skips the drain).
  const signals = new StopSignals({ boundMs: options.drainTimeout + 10_000 });
  // A crash of ours stops serve like a signal (drain, flush acks) but exits 1.
  let crashReason: string | undefined;
  let onCrash: (reason: string) => void = () => undefined;
  const crashed = new Promise<string>((resolve) => (onCrash = resolve));
  let handlerFile: string | undefined;
  // A stray throw or rejection from a handler's own callbacks must not take every other request down with it; any
  // other exception is a bug of ours, which must not be hidden.
  const onStray = (kind: string) => (err: unknown) => {
    if (isHandlersStray(err, handlerFile)) {
      const line = `A handler's ${kind} escaped its request: ${messageOf(err, 'the handler')}; still serving.`;
      if (options.json) printJsonLine({ problem: { kind: 'stray-error', worker: '', rpcId: '', message: line } });
      else warn(line);
      return;
    }
    const reason = err instanceof Error ? err.message || err.name : messageOf(err, 'the handler');
    process.stderr.write(`bridgescope: internal error (not the handler's): ${terminalSafe(reason)}; stopping.\n`);
    crashReason ??= reason;
    onCrash(reason);
  };
  let otel: ReturnType<typeof otelFor>;
  const onException = onStray('exception');
  const onRejection = onStray('unhandled rejection');
  // They stay until the process ends: an abandoned handler may still throw after "Stopped.".
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  try {
    validateQueueName(options.queue);
    const spec = parseHandlerSpec(options.handler);
    if (spec.kind === 'module') handlerFile = resolve(spec.path);
    const handler = await loadHandler(spec);
    const [amqpUrl = '', ...fallbackAmqpUrls] = resolveUrls('amqp', options.amqp);
    // The start-up check of the MQTT plugin passes over URLs it cannot find, not ones given with a typo.
    checkGivenUrls('mqtt', options.mqtt);
    checkGivenUrls('management', options.management);
    otel = otelFor(options, 'bridgescope-serve');
    const spans = otel ? new ServerSpans(otel.tracer) : undefined;
    const server = new RpcServer({
      ...(spans ? { tracing: spans } : {}),
      amqpUrl,
      fallbackAmqpUrls,
      ...(options.queueType ? { queueType: options.queueType } : {}),
      exchange: options.exchange,
      queue: options.queue,
      workers: options.workers,
      prefetch: options.prefetch,
      handler,
      handlerTimeoutMs: options.handlerTimeout,
      topicMap: { sparkplug: Boolean(options.sparkplug) },
      persistentReplies: !options.transientReplies,
      ...withCliTls(),
    });
    let started = false;
    server.on('problem', (problem) => {
      if (options.json) printJsonLine({ problem });
      else warn(problem.message);
    });
    let lost = false;
    // Said once per outage, and again only when the reason changes (each attempt with the same reason was a line).
    let said: string | undefined;
    server.on('status', (status) => {
      if (status.state === 'reconnecting') {
        lost = true;
        if (status.lastError !== said) warn(`AMQP connection lost (${status.lastError}); reconnecting (attempt ${status.attempt}).`);
        said = status.lastError;
      }
      if (status.state === 'connected' && lost) {
        lost = false;
        said = undefined;
        process.stderr.write(`AMQP connection back, at ${redactUrl(server.connectedUrl)}.\n`);
      }
      // Before the start, a failure is the error start() throws: said once, by the command's own error line.
      if (status.state === 'failed' && started) warn(status.message);
    });
    if (spans) server.on('step', spans.step);
    server.on('step', (step) => {
      if (options.json) printJsonLine(withWire(step));
      else if (step.kind === 'reply.published') {
        process.stdout.write(`${terminalSafe(`${step.detail.worker} answered ${step.rpcId} -> ${step.detail.exchange} "${step.detail.routingKey}"`)}\n`);
      }
    });
    const starting = server.start();
    const startedOrStopped = await Promise.race([
      starting.then(() => 'started' as const),
      signals.stopped.then(() => 'stopped' as const),
      crashed.then(() => 'stopped' as const),
    ]);
    if (startedOrStopped === 'stopped') {
      // A failure of the abandoned start is moot now; it must not surface as a stray rejection.
      starting.catch(() => undefined);
      process.stderr.write('Stopped before the server was connected.\n');
      await server.stop(0);
      return crashReason === undefined ? undefined : 1;
    }
    started = true;
    // The node it reached (a node before it in the list may not have answered); the others are where it fails over to.
    const failoverNodes = [amqpUrl, ...fallbackAmqpUrls].filter((url) => url !== server.connectedUrl);
    process.stderr.write(
      `Serving "${server.queue}"${options.queueType ? ` (${options.queueType} queue)` : ''} on ${server.exchange} at ${redactUrl(server.connectedUrl)}${failoverNodes.length > 0 ? ` (fails over to ${failoverNodes.map((url) => redactUrl(url)).join(', ')})` : ''} with ${options.workers} worker(s), prefetch ${options.prefetch}, handler ${options.handler}. Ctrl-C stops.\n`,
    );
    let stopping = false;
    void signals.stopped.then(() => (stopping = true));
    // Said once, in the background: serving does not wait for it, and it never stops serve.
    void mqttPluginWarning({ amqpUrl: server.connectedUrl, exchange: server.exchange, queue: server.queue, ...(options.mqtt ? { mqtt: options.mqtt } : {}), ...(options.management ? { management: options.management } : {}) })
      .then((sentence) => {
        if (sentence === undefined || stopping) return;
        if (options.json) printJsonLine({ problem: { kind: 'mqtt-plugin', worker: '', rpcId: '', message: sentence } });
        else warn(sentence);
      })
      .catch(() => undefined);
    let report: StopReport | undefined;
    const announce = (): void => void process.stderr.write(`Stopping: draining ${server.stats.inFlight} in-flight request(s)...\n`);
    const tasks = (): CleanupTask[] => [{ what: 'drain in-flight requests and flush their acks', run: async () => (report = await server.stopWithReport(options.drainTimeout)) }];
    // A crash stops like a signal: runUntilStopped waits for a signal only, so a crash fires the same bounded cleanup here.
    const byCrash = await Promise.race([signals.stopped.then(() => false), crashed.then(() => true)]);
    if (byCrash) {
      announce();
      const outcome = await signals.cleanup(tasks());
      if (outcome.state === 'timed-out') {
        process.stderr.write(`bridgescope: cleanup did not finish in time; left undone: ${outcome.leftUndone.join('; ')}.\n`);
        process.exit(1);
      }
    } else {
      await runUntilStopped(signals, announce, tasks);
    }
    await finishOtel(otel);
    const { stats } = server;
    process.stderr.write(
      `Stopped. received ${stats.received}, replied ${stats.replied}, failed ${stats.failed}, rejected ${stats.rejected}, unroutable ${stats.unroutable}; per worker ${JSON.stringify(stats.perWorker)}\n`,
    );
    if (report && report.unfinished.length > 0) {
      warn(`${report.unfinished.length} request(s) were still being handled after ${options.drainTimeout} ms and went back to the queue: ${listIds(report.unfinished)}.`);
    }
    if (report && report.abandoned.length > 0) {
      const forgotten = report.abandonedForgotten > 0 ? ` (and ${report.abandonedForgotten} older one(s) no longer tracked)` : '';
      warn(`${report.abandoned.length} handler(s) abandoned after the handler timeout had still not returned${forgotten}: ${listIds(report.abandoned)}.`);
    }
    return crashReason === undefined ? undefined : 1;
  } finally {
    // A handler's own timers (an abandoned one, say) or a connection still opening must not keep the process alive.
    setTimeout(() => process.exit(), 2000).unref();
  }
}

/**
 * What `serve` says once at start when devices cannot reach its queue through this broker: the broker has no MQTT
 * listener (the rabbitmq_mqtt plugin is off), its MQTT plugin publishes to another exchange than the one served, or the
 * MQTT URL reaches another broker. Asked of the management API (its listeners) and by the exchange probe (a message of its
 * own, on a topic of its own); undefined when all is well or when it cannot be told (no management URL, another broker's
 * management API, anything unreachable): a warning, never a reason not to serve. Bounded by the probe's own timeouts.
 */
export async function mqttPluginWarning(options: { amqpUrl: string; exchange: string; queue: string; mqtt?: string; management?: string }): Promise<string | undefined> {
  let api: ManagementApi;
  let mqttUrl: string | undefined;
  try {
    api = managementApiFor(options.management);
    mqttUrl = resolveUrl('mqtt', options.mqtt);
  } catch {
    return undefined;
  }
  const overview = await api.overview().catch(() => undefined);
  if (!overview) return undefined;
  // Only the served broker's own management API can speak for it: the same cluster name as the AMQP connection's.
  const connection = await connectAmqp(amqpConnectOptions(options.amqpUrl, 0), { ...tlsSocketOptions(cliTls()), timeout: 3000 }).catch(() => undefined);
  if (!connection) return undefined;
  const clusterName = (connection.connection as unknown as { serverProperties?: Record<string, unknown> }).serverProperties?.cluster_name;
  await connection.close().catch(() => undefined);
  if (clusterName !== overview.clusterName) return undefined;
  const broker = redactUrl(options.amqpUrl);
  if (!overview.protocols.includes('mqtt')) {
    return `The broker at ${broker} has no MQTT listener (is the rabbitmq_mqtt plugin enabled?): no device can call "${options.queue}" through it, and a device that gets replies is calling another broker.`;
  }
  const verdict = await probeMqttExchange({ mqttUrl, amqpUrl: options.amqpUrl, configuredExchange: options.exchange, api, ...withCliTls() }).catch(() => undefined);
  if (!verdict) return undefined;
  const observed = verdict.observedExchange;
  if (observed !== undefined && observed !== options.exchange) {
    return `The MQTT plugin of ${broker} publishes to ${observed} (mqtt.exchange), but "${options.queue}" is served on ${options.exchange}: devices' requests will not reach it (use --exchange ${observed}).`;
  }
  if (observed === undefined) {
    const line = verdict.lines.find((candidate) => candidate.status === 'fail' && candidate.check === 'MQTT exchange');
    if (line) return `${line.message.replace(/\.$/, '')}: devices on ${redactUrl(mqttUrl)} cannot reach "${options.queue}".`;
  }
  return undefined;
}

function listIds(ids: readonly string[]): string {
  return ids.length > 20 ? `${ids.slice(0, 20).join(', ')} and ${ids.length - 20} more` : ids.join(', ');
}

/** Where to ask the broker why a call failed; undefined when no management URL can be found (the verdict then says so). */
function callDiagnosisBroker(options: CallOptions, client: RpcClient): RpcDiagnosisOptions['broker'] {
  try {
    const managementUrl = resolveUrl('management', options.management);
    let amqpUrl: string | undefined;
    let vhost = '/';
    try {
      amqpUrl = resolveUrl('amqp', options.amqp);
      vhost = amqpConnectOptions(amqpUrl, 0).vhost ?? '/';
    } catch {
      amqpUrl = undefined; // the management API's counts (lagging) will do
    }
    return diagnosisBroker({ managementUrl, vhost, exchange: options.exchange, mqttUrl: resolveUrl('mqtt', options.mqtt), ...(amqpUrl !== undefined ? { amqpUrl } : {}) }, client, cliTls());
  } catch {
    return undefined;
  }
}

/** The verdict under the steps of `call --trace`: code and hop, the sentence, then the evidence. */
function printVerdict(verdict: Verdict): void {
  // A reply went the whole way: its hop is where it arrived, not where it stopped (as `trace` prints a verdict).
  const lines = [`Verdict: ${verdict.code} (${verdictHop(verdict)})`, `  ${verdict.message}`, ...verdict.evidence.map((line) => `  - ${line}`)];
  process.stdout.write(`\n${lines.map((line) => terminalSafe(line)).join('\n')}\n`);
}

/** How `call --trace` ended besides its outcome: whether tracing was given back, and the signal that interrupted it. */
interface CallEnding {
  restored: boolean;
  interruptedBy?: StopSignal;
}

/** `bridgescope call`, and exit 1 when `--trace` could not give tracing back (whatever the call's own outcome). */
async function callCommand(payloadText: string | undefined, options: CallOptions): Promise<number | undefined> {
  const cleanup: CallEnding = { restored: true };
  const code = await call(payloadText, options, cleanup);
  // A signal or a closed output that came after the reply still ends the command as a shell reports it.
  if (cleanup.interruptedBy) return signalExitCode(cleanup.interruptedBy);
  return (code ?? 0) === 0 && !cleanup.restored ? ExitCode.failure : code;
}

/** `bridgescope call`: one request, its reply or its failure, and always a verdict saying where it stopped. */
async function call(payloadText: string | undefined, options: CallOptions, cleanup: CallEnding): Promise<number | undefined> {
  // From the start, a signal ends the call (says what it was waiting for, closes the link, and with --trace restores the
  // vhost-wide tracing) instead of killing the process without a word.
  const signals = new StopSignals();
  const interruption = new AbortController();
  let interruptedBy: StopSignal | undefined;
  let client: RpcClient | undefined;
  let rpcId: string | undefined;
  const store = new TraceStore();
  let tracer: FirehoseTracer | undefined;
  let abandoned: AbandonedTracing | undefined;
  let outcome: RpcOutcome | undefined;
  let failure: unknown;
  let witness: CallWitness | undefined;
  /** true once the call returned or threw (see the link-lost lines) */
  let callDone = false;
  let otel: ReturnType<typeof otelFor>;
  let spans: RpcSpans | undefined;
  /** true while --trace connects its tracer (AMQP, the management API): a failure then is theirs, not the MQTT URL's */
  let tracingSetup = false;
  /** What the call was doing when the signal came: a user who gives up on a call learns what it was still waiting for. */
  const waitingFor = (): string => {
    if (outcome) return 'after the reply';
    if (rpcId === undefined) return 'before the request was sent';
    const summary = store.summary(rpcId);
    const waited = Math.max(0, Date.now() - summary.startedAt);
    return `no reply yet to ${rpcId} after ${formatCount(waited)} ms${summary.replyTopic !== undefined ? ` on "${summary.replyTopic}"` : ''}`;
  };
  void signals.stopped.then((signal) => {
    // A plain call's output closed once it had its reply (`call ... | head -c 100`): nothing to interrupt or restore,
    // so it ends as the call did, not with 141.
    if (signal === 'SIGPIPE' && !options.trace && outcome) return;
    interruptedBy = signal;
    cleanup.interruptedBy = signal;
    say(`Interrupted (${signal === 'SIGPIPE' ? 'output closed' : signal}): ${waitingFor()}${options.trace ? '; restoring firehose tracing...' : '.'}`);
    // Nothing sent and nothing changed on the broker (a plain call still connecting): nothing to wait for either.
    if (!options.trace && rpcId === undefined) signals.exit(signalExitCode(signal));
    interruption.abort();
  });
  try {
    try {
      // A bad --otlp is bad input, said before anything is connected.
      otel = otelFor(options, 'bridgescope-call');
      const { payload, params, rawBody } = await parsePayload(payloadText, options.payloadFormat, options.payloadFile, options.timeout);
      const mqtt5 = mqtt5Options(options);
      // --amqp and --management serve --trace and the question why a call failed, asked only then (and a URL that could
      // not be read was passed over in silence): a typo in them is refused now, as every command refuses one.
      checkGivenUrls('amqp', options.amqp);
      checkGivenUrls('management', options.management);
      const [mqttUrl = '', ...fallbackMqttUrls] = resolveUrls('mqtt', options.mqtt);
      client = new RpcClient({
        mqttUrl,
        fallbackMqttUrls,
        strategy: options.reply,
        protocolVersion: options.mqttVersion === 'auto' ? 'auto' : (Number(options.mqttVersion) as 4 | 5),
        topicMap: { sparkplug: Boolean(options.sparkplug) },
      });
      const tls = cliTls();
      if (tls) client.link.useDetails({ tls });
      // The client's own steps always: the verdict rests on them (the firehose adds the broker's).
      store.attach(client);
      client.on('step', (step) => void (rpcId ??= step.kind === 'composed' ? step.rpcId : undefined));
      await client.connect();
      // A link lost mid-call, or a reply after the timeout (seen while the verdict is being gathered), decide the verdict.
      witness = new CallWitness(client, () => rpcId);
      // Said when it happens, not only in the verdict at the timeout: a broker restart during a long call is not silent.
      let lostAt: number | undefined;
      client.link.on('status', (status) => {
        if (callDone || rpcId === undefined || interruptedBy !== undefined) return;
        if (status.state === 'reconnecting' && lostAt === undefined) {
          lostAt = Date.now();
          warn(`the MQTT connection was lost ${formatCount(Math.max(0, lostAt - store.summary(rpcId).startedAt))} ms into the call (${status.lastError}); reconnecting, and waiting for the reply until the timeout (${formatCount(options.timeout)} ms). A reply published while it is down is dropped with its subscription.`);
        } else if (status.state === 'connected' && lostAt !== undefined) {
          say(`MQTT connection back after ${formatCount(Date.now() - lostAt)} ms; still waiting for the reply (a request the broker lost with the restart gets none: send it again).`);
          lostAt = undefined;
        }
      });
      if (options.trace) {
        tracingSetup = true;
        // The first node of the list that answers: the tracer stays with it.
        const amqp = await reachableAmqp(options.amqp);
        if (amqp.skipped) warn(amqp.skipped);
        const amqpUrl = amqp.url;
        // Tracing is per vhost: the one the tracer consumes in, named by the AMQP URL.
        const api = managementApiFor(options.management, amqpConnectOptions(amqpUrl, 0).vhost);
        abandoned = await checkAbandonedTracing(api).catch(() => undefined);
        if (abandoned) say(abandoned.message);
        tracer = new FirehoseTracer({ amqpUrl, api, store, owner: `bridgescope call --trace (pid ${process.pid})`, ...withCliTls() });
        const status = await tracer.start();
        if (status.state === 'unavailable') warn(status.reason);
        if (status.state === 'on' && status.turnedOnByUs) say(`Firehose tracing switched on for vhost ${api.vhost}; it is switched off again when the call ends.`);
        tracingSetup = false;
      }
      const topicMap = { sparkplug: Boolean(options.sparkplug) };
      spans = otel
        ? new RpcSpans(otel.tracer, { topic: options.topic, routingKey: topicToRoutingKey(options.topic, topicMap), exchange: options.exchange, mqttVersion: client.link.protocolVersion, ...(options.method !== undefined ? { method: options.method } : {}) })
        : undefined;
      outcome = await client.call({
        ...(spans?.carrier ? { traceContext: spans.carrier } : {}),
        ...buildCallOptions({
          topic: options.topic,
          qos: Number(options.qos) as QoS,
          strategy: options.reply,
          ...(options.replyTopic !== undefined ? { replyTopic: options.replyTopic } : {}),
          ...(options.method !== undefined ? { method: options.method } : {}),
          ...(payload !== undefined ? { payload } : {}),
          ...(params !== undefined ? { params } : {}),
          ...(rawBody !== undefined ? { rawBody } : {}),
          ...(mqtt5 !== undefined ? { mqtt5 } : {}),
          timeoutMs: options.timeout,
          signal: interruption.signal,
        }),
      });
    } catch (err) {
      failure = err;
    }
    // Replied or timed out: a link lost from now on (while the verdict is gathered) is no longer the call's to say.
    callDone = true;
    // An interrupted one-shot command exits as a shell reports a signal (130, 143, 141 for a closed pipe).
    if (interruptedBy) return signalExitCode(interruptedBy);

    if (tracer && rpcId !== undefined) await settleTrace(store, rpcId, tracer);
    const steps = rpcId !== undefined ? store.steps(rpcId) : [];
    const verdict = await diagnoseRpc({
      rpcId: rpcId ?? '',
      steps,
      firehose: tracer?.status.state === 'on',
      requestTopic: options.topic,
      timeoutMs: options.timeout,
      topicMap: { sparkplug: Boolean(options.sparkplug) },
      ...(outcome ? { outcome } : { error: failure }),
      ...(witness?.linkLost ? { linkLost: witness.linkLost } : {}),
      ...(witness?.lateReply ? { lateReply: witness.lateReply } : {}),
      ...(outcome === undefined && client ? { broker: callDiagnosisBroker(options, client) } : {}),
    });
    // The MQTT side was fine: --trace could not reach the broker's AMQP side (or its management API) for the firehose. The
    // request stopped before its publish (the hop), and the evidence is the tracer's, not the MQTT client's.
    if (tracingSetup && verdict.code === 'link-down') {
      verdict.evidence = verdict.evidence.map((line) => (line.startsWith('client: ') ? `call --trace: ${line.slice('client: '.length)}` : line));
      verdict.message = `The request to "${options.topic}" was not sent: --trace reads the broker's firehose over AMQP and its management API, and could not: ${toErrorShape(failure).message.replace(/\.$/, '')}; check --amqp and --management (or BRIDGESCOPE_AMQP_URL, BRIDGESCOPE_MANAGEMENT_URL) and that the broker runs, or call without --trace.`;
    }
    const traced = tracer && rpcId !== undefined ? { trace: steps, summary: store.summary(rpcId) } : {};
    if (spans) {
      spans.end({ rpcId, steps, verdict, ...(outcome ? {} : { errorCode: toErrorShape(failure).code }) });
      await finishOtel(otel);
    }

    if (outcome) {
      for (const message of outcome.warnings) warn(message);
      if (options.json) {
        printJson({ ok: true, rpcId: outcome.id, verdict, reply: outcome.body, ...outcome, ...traced });
        return undefined;
      }
      printReply(outcome);
      if (tracer) {
        printTrace(store, outcome.id, tracer);
        printVerdict(verdict);
      }
      return undefined;
    }

    const shape = toErrorShape(failure);
    if (options.json) {
      const warnings = rpcId !== undefined ? store.summary(rpcId).warnings.filter((line) => line !== shape.message) : [];
      printJson({ ok: false, rpcId: rpcId ?? null, verdict, warnings, error: shape, ...traced });
    } else if (tracer && rpcId !== undefined) {
      printTrace(store, rpcId, tracer);
      printVerdict(verdict);
    }
    process.stderr.write(`bridgescope: ${printable(shape.message)}\n`);
    // Bad input is said once, by its own sentence; anything else gets the verdict's.
    if (verdict.code !== 'not-sent') process.stderr.write(`why: ${printable(verdict.message)}\n`);
    return exitCodeFor(shape.code);
  } finally {
    witness?.stop();
    if (client) cleanup.restored = await finishTraced(signals, client, tracer, abandoned);
  }
}

export function registerRpcCommands(program: Command): void {
  const serveCommand = program
    .command('serve')
    .description('run the embedded RPC server: N workers consuming the shared queue, replying through the MQTT exchange')
    .option('--amqp <urls>', 'AMQP URL, or several (comma-separated) of one cluster to fail over between (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker)')
    .option('--exchange <name>', 'exchange the MQTT plugin publishes to', DEFAULT_SERVER_SETTINGS.exchange)
    .option('--mqtt <url>', "MQTT URL the devices use, to check at start that the MQTT plugin publishes to --exchange (default: $BRIDGESCOPE_MQTT_URL, else the sandbox broker, or the AMQP URL's host on port 1883 when that is another broker)")
    .option('--management <url>', "management URL, to check at start that the broker has the MQTT plugin (default: $BRIDGESCOPE_MANAGEMENT_URL, else the sandbox broker, or the AMQP URL's host on port 15672 when that is another broker)")
    .option('--queue <name>', 'shared request queue (durable, bound with key = its name)', DEFAULT_SERVER_SETTINGS.queue)
    .option(
      '--queue-type <type>',
      'classic | quorum: declare the queue of this type (quorum survives the loss of a cluster node); default: use an existing queue as it is, else classic',
      parseChoice('--queue-type', ['classic', 'quorum'] as const),
    )
    .option('--workers <n>', 'competing consumers', parsePositiveInt('--workers'), DEFAULT_SERVER_SETTINGS.workers)
    .option('--prefetch <n>', 'unacked requests per worker', parsePositiveInt('--prefetch'), DEFAULT_SERVER_SETTINGS.prefetch)
    .option('--handler <spec>', 'echo | delay:MS | fail | fail:CODE:MESSAGE | PATH.js', DEFAULT_SERVER_SETTINGS.handler)
    .option('--handler-timeout <ms>', 'abandon a handler that has not answered after this long, replying with an error', parseDurationMs('--handler-timeout'), DEFAULT_HANDLER_TIMEOUT_MS)
    .option('--drain-timeout <ms>', 'on Ctrl-C or SIGTERM, how long in-flight requests may take before the rest go back to the queue', parseDurationMs('--drain-timeout'), DEFAULT_DRAIN_TIMEOUT_MS)
    .option('--sparkplug', 'the broker runs with mqtt.sparkplug = true')
    .option(
      '--transient-replies',
      'publish replies non-persistent (delivery_mode 1): on RabbitMQ 3.13+ they then reach devices at QoS 0 whatever their subscription (default: persistent, delivered at the QoS subscribed)',
    )
    .option('--json', 'print one JSON line per trace step and problem')
    .action(action(serve));
  addOtlpOptions(serveCommand);
  addTlsOptions(serveCommand);

  const callCommandSpec = program
    .command('call')
    .description('send one request over MQTT and print the reply body (warnings go to stderr)')
    .argument(
      '[payload]',
      'request body: JSON by default (an object gets id added, and reply_to: see --reply-topic; anything else becomes params); with --payload-format text, hex or base64 the bytes are sent exactly as given; - reads stdin',
    )
    .option(
      '--payload-format <format>',
      'json | text | hex | base64: how PAYLOAD (or --payload-file) is read; only json gets id and reply_to, so another body can only be answered by a server reading the MQTT 5 Response Topic',
      parseChoice('--payload-format', ['json', 'text', 'hex', 'base64'] as const),
    )
    .option('--payload-file <path>', "send this file's bytes exactly as they are (or read per --payload-format)")
    .option('--mqtt <urls>', "MQTT URL, or several (comma-separated) of one cluster to fail over between (default: $BRIDGESCOPE_MQTT_URL, else the sandbox broker, or the AMQP URL's host on port 1883 when that is another broker)")
    .option('--topic <topic>', 'request topic', DEFAULT_REQUEST_TOPIC)
    .option('--qos <qos>', 'QoS of the request: 0, 1 or 2', parseChoice('--qos', ['0', '1', '2'] as const), `${DEFAULT_REQUEST_QOS}`)
    .option('--reply <strategy>', 'per-request | shared', parseChoice('--reply', REPLY_STRATEGIES), DEFAULT_CALL_REPLY_STRATEGY)
    .option('--reply-topic <topic>', 'reply topic; wins over a reply_to in PAYLOAD (warned when they differ), which wins over a generated reply/<uuid>', parseReplyTopic)
    .option('--method <name>', 'method field of the request')
    .option('--timeout <ms>', 'how long to wait for the reply', parseDurationMs('--timeout'), DEFAULT_CALL_TIMEOUT_MS)
    .option('--mqtt-version <v>', '4 (3.1.1), 5 or auto', parseChoice('--mqtt-version', ['4', '5', 'auto'] as const), '4')
    .option('--user-property <name=value>', 'MQTT 5 user property (repeatable; RabbitMQ 3.13+ passes it on as an AMQP header)', collectUserProperty)
    .option('--correlation-data <text>', 'MQTT 5 Correlation Data (default: the RPC id; RabbitMQ 3.13+: AMQP correlation_id)')
    .option('--response-topic <topic>', 'MQTT 5 Response Topic (default: the reply topic; RabbitMQ 3.13+: AMQP header x-reply-to-topic)')
    .option('--message-expiry <s>', 'MQTT 5 Message Expiry Interval in seconds (RabbitMQ 3.13+: a per-message TTL)', parsePositiveInt('--message-expiry'))
    .option('--sparkplug', 'the broker runs with mqtt.sparkplug = true')
    .option('--trace', 'trace this RPC through the broker (firehose) and print every step after the reply')
    .option('--amqp <url>', 'AMQP URL for --trace and for asking why a call failed (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker)')
    .option('--management <url>', "management URL for --trace and for asking why a call failed (default: $BRIDGESCOPE_MANAGEMENT_URL, else the sandbox broker, or the AMQP URL's host on port 15672 when that is another broker)")
    .option('--exchange <name>', 'exchange the MQTT plugin publishes to (to say why a call failed)', DEFAULT_MQTT_EXCHANGE)
    .option('--json', 'print one JSON object: ok, rpcId, verdict, warnings, and the reply (topics, QoS, worker, duration) or the error')
    .action(action(callCommand));
  addOtlpOptions(callCommandSpec);
  addTlsOptions(callCommandSpec);

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
        // A topic MQTT or RabbitMQ refuses in this role fails the command, as a linter's error does (a script can test it).
        const code = mapping.issues.some((issue) => issue.blocking) ? ExitCode.failure : ExitCode.ok;
        if (options.json) {
          printJson(mapping);
          return code;
        }
        const lines = [
          `topic        ${mapping.topic}`,
          `routing key  ${mapping.routingKey}`,
          `back to MQTT ${mapping.backToTopic}${mapping.roundTrips ? '' : '   (differs!)'}`,
        ];
        if (mapping.issues.length === 0) lines.push('ok: survives the round trip unchanged');
        for (const issue of mapping.issues) lines.push(`${issue.severity}: ${issue.message}`);
        // A topic pasted from a device log may hold ESC, BEL or a bidi override: shown as escapes, like every other command.
        process.stdout.write(`${lines.map((line) => terminalSafe(line)).join('\n')}\n`);
        return code;
      }),
    );
}
