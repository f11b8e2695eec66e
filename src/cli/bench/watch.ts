/**
 * Watch's cost and memory (issue 23), apart from the contenders' plan:
 * - `watchCost`: the raw floor at concurrency 100 with watch off, in tap mode and in firehose mode, side by side in one
 *   run: the broker's CPU per RPC and the clients' throughput and latency, as ratios to "off".
 * - `watchSoak`: outside clients at a steady rate (1,000 RPC/s by default) while a watcher runs; its RSS and heap sampled
 *   every 10 s, with what it pairs and what its caps dropped.
 * The watcher always runs in a process of its own (`bench --watch-child`), so its memory and CPU are its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tracked } from './started';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Socket } from 'node:net';
import mqtt from 'mqtt';
import type { BrokerUrls } from '../../core/broker/readiness';
import { amqpConnectOptions, connectAmqp } from '../../core/links/amqp-link';
import { Watcher } from '../../core/watch/watcher';
import { brokerSettled, measureBroker, type RunResult, type RunSpec } from './contenders';
import { median, summarizeRounds, type CaseSummary } from './report';

export type WatchMode = 'off' | 'tap' | 'firehose';

export interface WatchChildSpec {
  mode: 'tap' | 'firehose';
  topic: string;
  timeoutMs: number;
  sampleEveryMs: number;
}

/** What the watch child prints, one JSON object a line. */
export type WatchChildLine =
  | { type: 'ready' }
  | { type: 'sample'; atS: number; rssBytes: number; heapUsedBytes: number; heapTotalBytes: number; externalBytes: number; pending: number; lines: number; pairs: number; verdicts: number; dropped: number; droppedReasons: string[] }
  | { type: 'stopped'; cpuMs: number; lines: number; pairs: number; verdicts: number; dropped: number };

/** The child: a Watcher as `bridgescope watch --json` runs it (every line serialised), reporting on stdout; SIGINT stops it. */
export async function runWatchChild(spec: WatchChildSpec): Promise<void> {
  const urls = JSON.parse(process.env.BRIDGESCOPE_BENCH_URLS ?? '{}') as BrokerUrls;
  const watcher = new Watcher({ mode: spec.mode, amqpUrl: urls.amqp, managementUrl: urls.management, exchange: 'amq.direct', requestKeys: [spec.topic], timeoutMs: spec.timeoutMs, keyLingerMs: 30_000 });
  const counts = { lines: 0, pairs: 0, verdicts: 0, dropped: 0, bytes: 0 };
  const reasons = new Set<string>();
  watcher.on('line', (line) => {
    // What --json would write: the serialising is part of the cost, the terminal is not.
    counts.bytes += JSON.stringify(line).length;
    counts.lines += 1;
    if (line.type === 'pair') counts.pairs += 1;
    else if (line.type === 'verdict') counts.verdicts += 1;
    else if (line.type === 'dropped') {
      counts.dropped += line.count;
      if (reasons.size < 5) reasons.add(line.reason.replace(/\(.*\)/, '(...)'));
    }
  });
  const out = (line: WatchChildLine): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
  const started = Date.now();
  const cpuBefore = process.cpuUsage();
  await watcher.start();
  const sampler = setInterval(() => {
    const memory = process.memoryUsage();
    out({ type: 'sample', atS: Math.round((Date.now() - started) / 1000), rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, heapTotalBytes: memory.heapTotal, externalBytes: memory.external, pending: watcher.pairing.pendingCount, lines: counts.lines, pairs: counts.pairs, verdicts: counts.verdicts, dropped: counts.dropped, droppedReasons: [...reasons] });
  }, spec.sampleEveryMs);
  out({ type: 'ready' });
  await new Promise<void>((done) => process.once('SIGINT', () => done()));
  clearInterval(sampler);
  await watcher.stop();
  const cpu = process.cpuUsage(cpuBefore);
  out({ type: 'stopped', cpuMs: (cpu.user + cpu.system) / 1000, lines: counts.lines, pairs: counts.pairs, verdicts: counts.verdicts, dropped: counts.dropped });
  process.exit(0);
}

interface WatchChild {
  lines: WatchChildLine[];
  /** SIGINT, then the child's last line */
  stop(): Promise<Extract<WatchChildLine, { type: 'stopped' }>>;
}

/** Starts `bench --watch-child` and waits until it watches (the broker URLs, with their credentials, go by environment). */
async function startWatchChild(urls: BrokerUrls, spec: WatchChildSpec, onLine?: (line: WatchChildLine) => void): Promise<WatchChild> {
  const child: ChildProcess = tracked(
    spawn(process.execPath, [resolve(process.argv[1] ?? 'bin/bridgescope'), 'bench', '--watch-child', JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, BRIDGESCOPE_BENCH_URLS: JSON.stringify(urls) },
    }),
  );
  const lines: WatchChildLine[] = [];
  const waiters: Array<(line: WatchChildLine) => void> = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    const line = JSON.parse(text) as WatchChildLine;
    lines.push(line);
    onLine?.(line);
    for (const waiter of waiters.splice(0)) waiter(line);
  });
  const exited = new Promise<number | null>((done) => child.on('close', done));
  const next = (type: WatchChildLine['type']): Promise<WatchChildLine> =>
    new Promise((done, fail) => {
      const wait = (line: WatchChildLine): void => void (line.type === type ? done(line) : waiters.push(wait));
      waiters.push(wait);
      void exited.then((code) => fail(new Error(`the watch child exited (${code}) before "${type}"`)));
    });
  await next('ready');
  return {
    lines,
    async stop() {
      const stopped = next('stopped');
      child.kill('SIGINT');
      const last = (await stopped) as Extract<WatchChildLine, { type: 'stopped' }>;
      await exited;
      return last;
    },
  };
}

export interface WatchCostRow extends CaseSummary {
  mode: WatchMode;
  /** the watcher process's own CPU per RPC (µs), median over rounds */
  watcherCpuUsPerRpc?: number;
}

export interface WatchCost {
  concurrency: number;
  rows: WatchCostRow[];
  ratios: Array<{ label: string; value: number }>;
}

/** Watch off / tap / firehose at concurrency 100 on the raw floor's clients, each round in a fresh process, alternating the order. */
export async function watchCost(
  urls: BrokerUrls,
  brokerPid: number,
  quick: boolean,
  rounds: number,
  runInChild: (spec: RunSpec) => Promise<RunResult>,
): Promise<WatchCost> {
  const concurrency = 100;
  const requests = quick ? 3000 : 20_000;
  const modes: WatchMode[] = ['off', 'tap', 'firehose'];
  const results = new Map<WatchMode, RunResult[]>();
  const watcherCpu = new Map<WatchMode, number[]>();
  for (let round = 0; round < rounds; round += 1) {
    for (const mode of round % 2 === 0 ? modes : [...modes].reverse()) {
      const queue = `bench-watch-${randomUUID().slice(0, 8)}`;
      const watch = mode === 'off' ? undefined : await startWatchChild(urls, { mode, topic: queue, timeoutMs: 5000, sampleEveryMs: 3_600_000 });
      const spec: RunSpec = { contender: 'raw', urls, concurrency, requests, warmup: 2000, payloadBytes: 64, queue };
      try {
        // What the previous mode left (tracing switched off, a tap queue deleted) and this watcher's start are not this
        // mode's cost: the broker is let go idle first, as before each contender of the plan.
        await brokerSettled(brokerPid);
        results.set(mode, [...(results.get(mode) ?? []), await measureBroker(brokerPid, spec, runInChild)]);
      } finally {
        const stopped = await watch?.stop();
        if (stopped) watcherCpu.set(mode, [...(watcherCpu.get(mode) ?? []), (stopped.cpuMs / (requests + 2000)) * 1000]);
      }
    }
  }
  const rows: WatchCostRow[] = modes.map((mode) => {
    const cpu = watcherCpu.get(mode);
    return { ...summarizeRounds(results.get(mode) ?? []), mode, ...(cpu ? { watcherCpuUsPerRpc: median(cpu) } : {}) };
  });
  const off = rows[0] as WatchCostRow;
  const out: WatchCost['ratios'] = [];
  for (const row of rows.slice(1)) {
    out.push({ label: `watch ${row.mode} / off: broker CPU per RPC, c=${concurrency}`, value: (row.brokerCpuUsPerRpc ?? Number.NaN) / (off.brokerCpuUsPerRpc ?? Number.NaN) });
    out.push({ label: `watch ${row.mode} / off: client throughput, c=${concurrency}`, value: row.throughput / off.throughput });
    out.push({ label: `watch ${row.mode} / off: client p50 latency, c=${concurrency}`, value: row.p50 / off.p50 });
    out.push({ label: `watch ${row.mode} / off: client p99 latency, c=${concurrency}`, value: row.p99 / off.p99 });
  }
  const [tap, firehose] = rows.slice(1) as [WatchCostRow, WatchCostRow];
  out.push({ label: `watch firehose / tap: broker CPU per RPC, c=${concurrency}`, value: (firehose.brokerCpuUsPerRpc ?? Number.NaN) / (tap.brokerCpuUsPerRpc ?? Number.NaN) });
  out.push({ label: `watch firehose / tap: watcher CPU per RPC, c=${concurrency}`, value: (firehose.watcherCpuUsPerRpc ?? Number.NaN) / (tap.watcherCpuUsPerRpc ?? Number.NaN) });
  return { concurrency, rows, ratios: out };
}

export function formatWatchCost(cost: WatchCost): string {
  const lines = [`Watch's cost, raw clients at concurrency ${cost.concurrency} (median over rounds):`, '  watch      RPC/s   p50 ms   p99 ms  broker µs/RPC  watcher µs/RPC'];
  for (const row of cost.rows) {
    lines.push(`  ${row.mode.padEnd(8)} ${row.throughput.toFixed(0).padStart(7)} ${row.p50.toFixed(2).padStart(8)} ${row.p99.toFixed(2).padStart(8)} ${(row.brokerCpuUsPerRpc ?? Number.NaN).toFixed(0).padStart(14)} ${(row.watcherCpuUsPerRpc ?? Number.NaN).toFixed(0).padStart(15)}`);
  }
  for (const ratio of cost.ratios) lines.push(`  ${ratio.label.padEnd(60)} ${ratio.value.toFixed(3)}`);
  return lines.join('\n');
}

export interface SoakReport {
  mode: 'tap' | 'firehose';
  seconds: number;
  targetRate: number;
  /** requests the outside clients sent and replies they got */
  sent: number;
  answered: number;
  /** requests the outside worker leaves unanswered on purpose (one in `unansweredEvery`) */
  unansweredEvery: number;
  samples: Array<Extract<WatchChildLine, { type: 'sample' }>>;
  stopped: Extract<WatchChildLine, { type: 'stopped' }>;
}

/**
 * Outside traffic at `rate` RPC/s for `seconds`: an mqtt.js device publishing seed requests (QoS 0, paced every 10 ms) on
 * one shared reply topic and an amqplib worker answering all but one in `unansweredEvery`, while the watcher samples
 * its memory every 10 s.
 */
export async function watchSoak(urls: BrokerUrls, options: { seconds: number; rate: number; mode: 'tap' | 'firehose'; sampleEveryMs?: number; onSample?: (sample: Extract<WatchChildLine, { type: 'sample' }>) => void }): Promise<SoakReport> {
  const unansweredEvery = 200;
  const queue = `bench-soak-${randomUUID().slice(0, 8)}`;
  const connection = await connectAmqp(amqpConnectOptions(urls.amqp, 10), { noDelay: true });
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: false, autoDelete: true });
  await channel.bindQueue(queue, 'amq.direct', queue);
  await channel.prefetch(500);
  let seq = 0;
  await channel.consume(queue, (message) => {
    if (!message) return;
    channel.ack(message);
    const request = JSON.parse(message.content.toString()) as { id: string; reply_to: string; n: number };
    if (request.n % unansweredEvery === 0) return;
    channel.publish('amq.direct', request.reply_to.replaceAll('/', '.'), Buffer.from(JSON.stringify({ id: request.id, worker: 'soak-worker', result: request.n })));
  });
  const device = await mqtt.connectAsync(urls.mqtt, { clientId: `bench-soak-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
  (device.stream as Partial<Socket>).setNoDelay?.(true);
  const replyTo = `reply/${randomUUID()}`;
  let answered = 0;
  device.on('message', () => void (answered += 1));
  await device.subscribeAsync(replyTo, { qos: 0 });

  const sampleEveryMs = options.sampleEveryMs ?? 10_000;
  const watch = await startWatchChild(urls, { mode: options.mode, topic: queue, timeoutMs: 5000, sampleEveryMs }, (line) => {
    if (line.type === 'sample') options.onSample?.(line);
  });
  const startedAt = Date.now();
  const perTick = options.rate / 100;
  let owed = 0;
  // Paced by the clock, not by replies: a slow watcher must not slow the outside clients down.
  await new Promise<void>((done) => {
    const ticker = setInterval(() => {
      const elapsed = Date.now() - startedAt;
      if (elapsed >= options.seconds * 1000) {
        clearInterval(ticker);
        done();
        return;
      }
      owed = Math.round((elapsed / 1000) * options.rate) - seq;
      for (let i = 0; i < Math.min(owed, perTick * 5); i += 1) {
        seq += 1;
        device.publish(queue, JSON.stringify({ id: `soak-${seq}`, reply_to: replyTo, n: seq, params: {} }), { qos: 0 });
      }
    }, 10);
  });
  const stopped = await watch.stop();
  await device.endAsync();
  await connection.close();
  const samples = watch.lines.filter((line): line is Extract<WatchChildLine, { type: 'sample' }> => line.type === 'sample');
  return { mode: options.mode, seconds: options.seconds, targetRate: options.rate, sent: seq, answered, unansweredEvery, samples, stopped };
}

export function formatSoak(report: SoakReport): string {
  const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1).padStart(7);
  const lines = [
    `Watch soak (${report.mode}): ${report.sent} requests in ${report.seconds} s (${(report.sent / report.seconds).toFixed(0)}/s asked ${report.targetRate}/s), ${report.answered} answered, 1 in ${report.unansweredEvery} left unanswered on purpose`,
    '    s  RSS MiB  heap MiB  heap total  external  pending     pairs  verdicts  dropped',
  ];
  for (const s of report.samples) lines.push(`${String(s.atS).padStart(5)}  ${mib(s.rssBytes)}  ${mib(s.heapUsedBytes).padStart(8)}  ${mib(s.heapTotalBytes).padStart(10)}  ${mib(s.externalBytes).padStart(8)}  ${String(s.pending).padStart(7)}  ${String(s.pairs).padStart(8)}  ${String(s.verdicts).padStart(8)}  ${String(s.dropped).padStart(7)}`);
  const reasons = report.samples.at(-1)?.droppedReasons ?? [];
  if (reasons.length > 0) lines.push(`  dropped because: ${reasons.join('; ')}`);
  lines.push(`  watcher CPU ${(report.stopped.cpuMs / 1000).toFixed(1)} s over the run`);
  return lines.join('\n');
}

