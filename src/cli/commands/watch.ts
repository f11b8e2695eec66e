/** `bridgescope watch`: other clients' RPCs on the MQTT exchange, paired passively, with a verdict for each one unanswered (issue 23). */
import type { Command } from 'commander';
import { repliedVerdict, Watcher, type WatchLine } from '../../core/watch/watcher';
import type { TopicStats } from '../../core/watch/pairing';
import { DEFAULT_MQTT_EXCHANGE, DEFAULT_REQUEST_TOPIC } from '../../shared/defaults';
import { action, ExitCode, exitCodeFor, parseChoice, parseDurationMs, printJsonLine, say } from '../run';
import { runUntilStopped, StopSignals } from '../lifecycle';
import { agreedVhost, managementApiFor, optionalUrls, reachableAmqp } from '../urls';
import { oncePerOutage, terminalSafe } from '../terminal';
import { addOtlpOptions, finishOtel, otelFor, type OtlpOptions } from '../otlp';
import { addTlsOptions, withCliTls } from '../tls';
import { reportRelease } from '../tracing-release';
import { WatchSpans } from '../../core/otel/watch-spans';
import { BridgeError } from '../../core/errors';
import { messageOf } from '../../shared/thrown';
import { redactUrl } from '../../shared/redact';
import { topicToRoutingKey } from '../../shared/topic-map';

interface WatchOptions extends OtlpOptions {
  amqp?: string;
  management?: string;
  vhost?: string;
  exchange: string;
  mode: 'tap' | 'firehose';
  topic?: string[];
  timeout: number;
  lateWindow?: number;
  keyLinger: number;
  summaryEvery: number;
  json?: boolean;
}

const ms = (value: number | undefined): string => (value === undefined ? '-' : `${Math.round(value)}ms`);

function plainLine(line: WatchLine): string {
  const time = new Date().toISOString().slice(11, 23);
  if (line.type === 'dropped') return `${time}  dropped   ${line.reason}`;
  if (line.type === 'not-request') return `${time}  ignored   ${line.topic}: not a request the watch can pair: ${line.reason}`;
  if (line.type === 'qos0-replies') return `${time}  qos 0     ${line.topic}: ${qos0Sentence(line)}`;
  const who = 'worker' in line && line.worker !== undefined ? `  worker ${line.worker}` : '';
  // Its reply topic beside its id: devices count their ids from 1, so "id 1" alone may be any device's.
  const id = `id ${line.id} for ${line.replyTopic ?? line.replyKey}`;
  if (line.type === 'duplicate') {
    const first = line.firstWorker !== undefined ? `; the first came from ${line.firstWorker}` : '';
    const fate = line.dropped ? 'the broker routed it to no queue, so no device got it' : 'a device still subscribed gets both';
    return `${time}  duplicate ${line.topic}  ${id}  ${ms(line.rttMs)}${who}  (${line.pattern}): another reply to a request already answered${first}; ${fate}`;
  }
  if (line.type === 'pair') {
    // Replied, on another topic than the device asked for (a "." inside a level): said, as the app says it.
    const seen = repliedVerdict(line, 'watch');
    const other = seen.code === 'replied' ? '' : `: ${seen.code}: ${seen.message}`;
    return `${time}  replied   ${line.topic}  ${id}  ${ms(line.rttMs)}${who}  (${line.pattern})${other}`;
  }
  return `${time}  ${line.verdict.code.padEnd(9)} ${line.topic}  ${id}${line.rttMs !== undefined ? `  ${ms(line.rttMs)}` : ''}${who}  (${line.pattern}): ${line.verdict.message}`;
}

/** Said once per topic: its replies are non-persistent, so the broker delivers them to devices at QoS 0. */
export function qos0Sentence(line: Extract<WatchLine, { type: 'qos0-replies' }>): string {
  const who = line.worker !== undefined ? line.worker : 'a worker that names itself nowhere';
  return `${who} publishes its replies to "${line.topic}" requests non-persistent (delivery_mode not 2; first seen on "${line.replyKey}"): RabbitMQ ${line.brokerVersion ?? '3.13+'} delivers them to devices at QoS 0 even when they subscribed at QoS 1, so a reply is lost if a device's connection drops before it arrives; publish replies with delivery_mode 2 (counted in the summary as "at QoS 0")`;
}

function summaryLine(stats: TopicStats): string {
  const workers = Object.entries(stats.workers).map(([name, count]) => `${name} ${count}`).join(', ');
  const twice = stats.duplicates > 0 ? `, ${stats.duplicates} extra ${stats.duplicates === 1 ? 'reply' : 'replies'} to requests already answered` : '';
  const waiting = stats.waiting > 0 ? `, ${stats.waiting} waiting` : '';
  const unseen = stats.unseen > 0 ? `, ${stats.unseen} not seen (reply key bound after the request)` : '';
  const retried = stats.retried > 0 ? `, ${stats.retried} retried (the same id again before a reply: the newer one followed)` : '';
  const notRequests = stats.notRequests > 0 ? `, ${stats.notRequests} not ${stats.notRequests === 1 ? 'a request' : 'requests'} (no id or reply topic: not followed)` : '';
  const qos0 = stats.qos0Replies > 0 ? `, ${stats.qos0Replies} ${stats.qos0Replies === 1 ? 'reply' : 'replies'} at QoS 0 (non-persistent)` : '';
  return `summary ${stats.topic}: ${stats.rate}/s over the last ${stats.rateOverS} s, ${stats.requests} ${stats.requests === 1 ? 'request' : 'requests'}, ${stats.replies} replied${qos0}, ${stats.unanswered} unanswered${stats.late > 0 ? ` (${stats.late} of them answered late)` : ''}${unseen}${waiting}${retried}${notRequests}${twice}; round trip p50 ${ms(stats.p50)} p95 ${ms(stats.p95)} p99 ${ms(stats.p99)}${workers ? `; workers: ${workers}` : ''}`;
}

export function registerWatchCommand(program: Command): void {
  const command = program
    .command('watch')
    .description("pair other clients' RPCs on the MQTT exchange without publishing anything: round trips, workers, and a verdict for each request left unanswered; Ctrl-C leaves nothing on the broker")
    .option('--amqp <url>', 'AMQP URL (default: $BRIDGESCOPE_AMQP_URL or the sandbox broker)')
    .option('--management <url>', "management URL, for the verdicts (default: $BRIDGESCOPE_MANAGEMENT_URL, else the sandbox broker, or the AMQP URL's host on port 15672 when that is another broker)")
    .option('--vhost <name>', "virtual host (default: the AMQP URL's, else /); the tap or the firehose and the verdicts all use it")
    .option('--exchange <name>', 'the exchange the MQTT plugin publishes to', DEFAULT_MQTT_EXCHANGE)
    .option('--mode <mode>', 'tap (the default, by the bench: the broker spends ~1.2x its CPU per RPC, against ~1.85x for the firehose; docs/WATCH.md): a private queue bound to the request keys (and each reply key while awaited); firehose: the vhost\'s trace exchange, switched on if off and restored on exit as trace does; it also sees replies on keys nobody waits on', parseChoice('--mode', ['tap', 'firehose'] as const), 'tap')
    .option('--topic <key>', `request routing key to watch, repeatable (default ${DEFAULT_REQUEST_TOPIC}; "#" on a topic exchange watches all)`, (value: string, previous: string[] | undefined) => [...(previous ?? []), value])
    .option('--timeout <ms>', 'a request without a reply after this long gets a verdict', parseDurationMs('--timeout'), 5000)
    .option('--late-window <ms>', 'how long after the timeout a reply still counts as late (default: the timeout)', parseDurationMs('--late-window'))
    .option('--key-linger <ms>', 'how long a reply key stays bound after its last request closed, so a device reusing its reply topic is seen from its second request on', parseDurationMs('--key-linger'), 30_000)
    .option('--summary-every <ms>', 'how often the per-topic summary line is written (to stderr)', parseDurationMs('--summary-every'), 5000)
    .option('--json', 'one JSON line per closed pair, extra reply (duplicate), verdict or drop, and one per topic summary')
    .action(
      action(async (options: WatchOptions) => {
        // First of all, so no signal finds the tap queue made and nobody left to delete it.
        const signals = new StopSignals();
        // One vhost for everything: the tap (or the firehose's queue), tracing and the verdicts' questions all use the AMQP
        // URL's. A --vhost naming another would read as watching that one: refused before anything connects.
        const vhost = agreedVhost(options.amqp, options.vhost, 'the watch would listen in one and judge by the other');
        // None found: a warning; one given that cannot be read: refused before anything connects, not "no management URL".
        const managementUrl = optionalUrls('management', options.management)?.[0];
        if (managementUrl === undefined) say('warning: no management URL: verdicts on unanswered requests will not say why (pass --management).');
        const amqp = await reachableAmqp(options.amqp);
        if (amqp.skipped) say(`warning: ${amqp.skipped}`);
        // The verdicts ask the management API: one question now (its own timeout, 5 s) says at once when it cannot answer
        // (a wrong port, the sandbox's AMQP URL given without its management URL, an exchange the vhost lacks), not only
        // later in each verdict's evidence. It does not hold the start up, and says nothing once the watch has stopped.
        // The same answer tells the '#'-on-a-direct-exchange warning below (asked once, through every node given).
        let stopped = false;
        const api = managementUrl !== undefined ? managementApiFor(options.management, vhost) : undefined;
        const exchangeType = api?.exchangeType(options.exchange);
        if (managementUrl !== undefined && api !== undefined && exchangeType !== undefined) {
          const asked = redactUrl(managementUrl);
          // The plugin binds its clients' subscription queues on the exchange it publishes to: subscribers bound only
          // elsewhere mean every device's message goes there, and this watch would sit silent (amq.topic, the plugin's
          // default, against amq.direct in the reference setup). No subscriber now: nothing to tell by.
          void exchangeType
            .then(() => api.mqttSubscriptionExchanges())
            .then((exchanges) => {
              if (stopped || exchanges.length === 0 || exchanges.includes(options.exchange)) return;
              const likely = exchanges[0] as string;
              say(`warning: the MQTT clients' subscriptions here are bound on ${exchanges.join(', ')}, not on ${options.exchange}: the MQTT plugin publishes to ${likely}, and nothing a device publishes reaches ${options.exchange}. Did you mean --exchange ${likely}?`);
            })
            .catch(() => undefined);
          void exchangeType.catch((err: unknown) => {
            if (stopped) return;
            const why = messageOf(err).replace(/\.$/, '');
            // A tap's start finds a missing exchange itself and stops with its own sentence.
            if (err instanceof BridgeError && err.code === 'not-found') {
              if (options.mode === 'firehose') say(`warning: ${why} (asked the management API at ${asked}): check --exchange and the AMQP URL's vhost; nothing published to it is seen.`);
            }
            // The firehose mode's start reads tracing through the same API and stops with its own sentence.
            else if (options.mode !== 'firehose') say(`warning: the management API at ${asked} could not be asked (${why}): verdicts on unanswered requests will say what could not be asked instead of why (pass --management).`);
          });
        }
        const requestKeys = options.topic && options.topic.length > 0 ? [...new Set(options.topic)] : [DEFAULT_REQUEST_TOPIC];
        // A routing key never holds "/" when an MQTT device published it: the plugin turns it into ".".
        for (const key of requestKeys) {
          if (key.includes('/')) say(`warning: --topic takes a routing key, and the MQTT plugin turns "/" into "." (the topic "${key}" is the routing key "${topicToRoutingKey(key)}"): "${key}" is never published by an MQTT device. Did you mean --topic ${topicToRoutingKey(key)}?`);
        }
        // Spans only for requests that carry a trace context, and only when asked (a bad --otlp is said before connecting).
        const otel = otelFor(options, 'bridgescope-watch');
        const spans = otel ? new WatchSpans(otel.tracer, { exchange: options.exchange, observedBy: options.mode }) : undefined;
        const watcher = new Watcher({
          ...(spans ? { spans } : {}),
          mode: options.mode,
          amqpUrl: amqp.url,
          ...(managementUrl !== undefined ? { managementUrl } : {}),
          vhost,
          exchange: options.exchange,
          requestKeys,
          timeoutMs: options.timeout,
          keyLingerMs: options.keyLinger,
          ...(options.lateWindow !== undefined ? { lateWindowMs: options.lateWindow } : {}),
          ...withCliTls(),
        });
        let toldUnseen = false;
        watcher.on('line', (line) => {
          if (options.json) printJsonLine(line);
          else process.stdout.write(`${terminalSafe(plainLine(line))}\n`);
          // The tap's blind spot, said once where a person reads it: fresh reply topics answered faster than the tap binds them.
          if (!toldUnseen && line.type === 'verdict' && line.unseen) {
            toldUnseen = true;
            say(`warning: the tap binds a reply key only once it sees a request naming it, so a prompt reply to a reply topic it had not seen before (or to a request that came before the broker confirmed that bind) may come before the bind (a device that makes a new reply topic per request makes every one new): such requests are counted "not seen", not unanswered. --mode firehose sees every reply.`);
          }
        });
        const firehose = options.mode === 'firehose';
        const tasks = () => [
          {
            what: firehose ? `stop tracing and restore firehose tracing on vhost ${vhost}` : `delete the tap queue${watcher.tap?.queue ? ` "${watcher.tap.queue}"` : ''} and its bindings`,
            run: async () => {
              await watcher.stop();
              // Said as trace says it, including who keeps tracing on when this watch does not switch it off.
              for (const release of watcher.releases) reportRelease(release, vhost);
            },
          },
        ];
        if (firehose) {
          const outage = oncePerOutage();
          watcher.on('status', (status) => {
            if (status.state === 'reconnecting') {
              if (outage.lost()) say(`Tracing paused: lost the broker (${status.reason}); reconnecting.`);
            } else if (status.state === 'on' && status.resumed) {
              outage.back();
              say(`Tracing resumed on vhost ${vhost}${status.turnedOnByUs ? ' (switched on again: a broker restart resets it)' : ''}.`);
            }
          });
        }
        const tapOutage = oncePerOutage();
        watcher.on('tapStatus', (status) => {
          if (status.state === 'on') tapOutage.back();
          if (status.state === 'reconnecting' && tapOutage.lost()) say(`Tap paused: lost the broker (${status.reason}), which deletes the tap queue with its bindings; reconnecting.`);
          // About once a minute at the longest retry delay: a broker that stays away (or a tap it now refuses) is not silent.
          else if (status.state === 'reconnecting' && status.attempt % 12 === 0) say(`Tap still reconnecting (try ${status.attempt}): ${status.reason}.`);
          else if (status.state === 'on') say(`Tap resumed on a new queue "${status.queue}" after ${Math.round((status.blindUntil - status.blindFrom) / 1000)} s unseen; requests waiting then may get a verdict for a reply that came in the gap.`);
        });
        let lost: string | undefined;
        watcher.on('lost', (reason) => {
          lost = reason;
          say(`bridgescope: the tap is over (${reason}). Stopping.`);
          signals.onSignal('SIGTERM');
        });
        let started: Awaited<ReturnType<Watcher['start']>>;
        try {
          started = await watcher.start();
        } catch (err) {
          stopped = true;
          await signals.cleanup(tasks());
          await finishOtel(otel);
          throw err;
        }
        if (watcher.firehose?.abandonedMessage) say(watcher.firehose.abandonedMessage);
        if (typeof started !== 'string' && started.state === 'unavailable') {
          stopped = true;
          await signals.cleanup(tasks());
          await finishOtel(otel);
          say(`bridgescope: ${started.reason}`);
          return started.code ? exitCodeFor(started.code) : ExitCode.failure;
        }
        const summary = setInterval(() => {
          for (const stats of watcher.stats()) {
            if (options.json) printJsonLine({ type: 'summary', ...stats });
            else say(summaryLine(stats));
          }
        }, options.summaryEvery);
        summary.unref();
        const through =
          typeof started === 'string'
            ? `through tap queue "${started}" (timeout ${options.timeout} ms). Ctrl-C stops and deletes it.`
            : `through the firehose${started.state === 'on' && started.turnedOnByUs ? ' (turned on; Ctrl-C turns it off again)' : ' (it was already on)'} (timeout ${options.timeout} ms).`;
        say(`Watching ${options.exchange} for ${requestKeys.map((key) => `"${key}"`).join(', ')} ${through}`);
        // A tap binds its keys, and '#' or '*' match only on a topic exchange: on a direct one (amq.direct, the plugin's
        // reference setup) they are keys like any other, and the watch would sit silent. The firehose mode takes '#' for
        // every key on any exchange, and any other key as it is.
        const patterns = requestKeys.filter((key) => /(^|\.)[#*](\.|$)/.test(key));
        const quotedKeys = (keys: string[]): string => keys.map((key) => `"${key}"`).join(', ');
        if (firehose) {
          const literal = patterns.filter((key) => key !== '#');
          if (literal.length > 0) say(`warning: --mode firehose takes "#" for every key and any other key as it is: ${quotedKeys(literal)} match${literal.length === 1 ? 'es' : ''} only messages published with that very key.`);
        } else if (patterns.length > 0 && exchangeType !== undefined) {
          const type = await exchangeType.catch(() => undefined);
          if (type === 'direct') {
            say(`warning: ${options.exchange} is a direct exchange: ${quotedKeys(patterns)} match${patterns.length === 1 ? 'es' : ''} only messages published with that very key, not a pattern; name the request keys (--topic rpc_queue), watch a topic exchange, or use --mode firehose.`);
          }
        }
        await runUntilStopped(
          signals,
          () => {
            stopped = true;
            clearInterval(summary);
            process.stderr.write(firehose ? 'Stopping: restoring firehose tracing...\n' : 'Stopping: deleting the tap queue...\n');
          },
          tasks,
        );
        for (const stats of watcher.stats()) {
          if (options.json) printJsonLine({ type: 'summary', ...stats });
          else say(summaryLine(stats));
        }
        // What is left to export goes within a bound (finishOtel says what could not be sent).
        await finishOtel(otel);
        // An empty export is not a broken one: spans go only for requests that carry a trace context.
        if (spans && spans.seen > 0 && spans.traced === 0) {
          say(`No spans were exported: none of the ${spans.seen} request${spans.seen === 1 ? '' : 's'} seen carried a trace context (a traceparent in the body, or in an MQTT 5 request's user properties); watch exports spans only for those.`);
        }
        if (firehose) say('Stopped.');
        else if (watcher.tapStopped === 'cut') say('Stopped: the broker did not answer, so the connection was cut; the broker deletes the tap queue and its bindings when it notices.');
        else say('Stopped: the tap queue and its bindings are deleted.');
        return lost !== undefined ? ExitCode.failure : ExitCode.ok;
      }),
    );
  addOtlpOptions(command);
  addTlsOptions(command);
}
