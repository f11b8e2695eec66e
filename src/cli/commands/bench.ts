/** `bridgescope bench`: BridgeScope against a raw mqtt.js + amqplib floor, side by side in one run, on a private broker. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { BrokerUrls } from '../../core/broker/readiness';
import { brokerSettled, contenderEnv, measureBroker, runContender, type ContenderName, type RunResult, type RunSpec } from '../bench/contenders';
import { formatTable, ratios, renderSvg, summarizeRounds, verdictOf, type CaseSummary } from '../bench/report';
import { formatSoak, formatWatchCost, runWatchChild, watchCost, watchSoak, type WatchChildSpec, type WatchCost } from '../bench/watch';
import { action, parsePositiveInt } from '../run';
import { runUntilStopped, signalExitCode, StopSignals } from '../lifecycle';
import { endSandbox, isStopping, noteWritten, privateSandbox, stopTasks, tracked, unlessStopping, writtenFiles } from '../bench/started';
import { messageOf } from '../../shared/thrown';

interface BenchCase {
  concurrency: number;
  payloadBytes: number;
  requests: number;
  contenders: ContenderName[];
}

function plan(quick: boolean): BenchCase[] {
  const n = (full: number, fast: number): number => (quick ? fast : full);
  const main: ContenderName[] = ['raw', 'raw-reliable', 'bridgescope', 'bridgescope-traced'];
  return [
    { concurrency: 1, payloadBytes: 64, requests: n(2000, 300), contenders: [...main, 'raw-per-request', 'bridgescope-per-request'] },
    { concurrency: 10, payloadBytes: 64, requests: n(5000, 1000), contenders: main },
    // raw-traced only where the traced ratio is taken: it says how much of that gap is the broker's firehose.
    // bridgescope-keep-all: the trace keeps every request (as while the firehose is on), not the load run's sample.
    { concurrency: 100, payloadBytes: 64, requests: n(20_000, 3000), contenders: [...main, 'raw-traced', 'bridgescope-keep-all'] },
    { concurrency: 1, payloadBytes: 1024 * 1024, requests: n(100, 15), contenders: ['raw', 'bridgescope'] },
    { concurrency: 10, payloadBytes: 1024 * 1024, requests: n(200, 30), contenders: ['raw', 'bridgescope'] },
  ];
}

/**
 * Requests before the measured ones. Small payloads: at least 2,000, so the measurement is of the optimized code of both
 * sides (with 300, --quick's old warm-up, CPU per RPC was still twice its steady value for raw and BridgeScope alike, and
 * BridgeScope's longer path is further from it). 1 MiB: a tenth, as before (each one is costly and the JIT is not the issue).
 */
function warmupFor(benchCase: BenchCase): number {
  const tenth = Math.max(20, Math.round(benchCase.requests / 10));
  return benchCase.payloadBytes >= 1024 * 1024 ? tenth : Math.max(2000, tenth);
}

/** Each run in a fresh process, so one contender's heap and sockets never weigh on the other's numbers. */
function runInChild(spec: RunSpec): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = tracked(
      spawn(process.execPath, [resolve(process.argv[1] ?? 'bin/bridgescope'), 'bench', '--child', JSON.stringify(spec)], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: contenderEnv(spec.contender),
      }),
    );
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`the ${spec.contender} run at concurrency ${spec.concurrency} failed (exit ${code})`));
      else resolvePromise(JSON.parse(out) as RunResult);
    });
  });
}

/** The renderer half lives in bench/ (it needs the renderer's store and Chromium); run it when both are there. */
async function rendererScale(resultFile: string): Promise<void> {
  const script = resolve('bench', 'renderer-scale.ts');
  if (!existsSync(script) || !existsSync('/usr/bin/chromium')) {
    process.stderr.write('Skipping the renderer scale benchmark: it runs from a checkout with Debian chromium installed.\n');
    return;
  }
  await new Promise<void>((resolvePromise, reject) => {
    const child = tracked(spawn(process.execPath, ['--expose-gc', '--import', 'tsx', script, resultFile], { stdio: 'inherit' }));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise() : reject(new Error(`the renderer scale benchmark failed (exit ${code})`))));
  });
}

/**
 * The UI under a sustained stream (bench/ui-stream.ts): needs the broker still running, the built renderer and Chromium.
 * Returns its figures, or undefined when it cannot run here.
 */
async function uiStream(urls: BrokerUrls, seconds: number, dir: string): Promise<unknown> {
  const script = resolve('bench', 'ui-stream.ts');
  if (!existsSync(script) || !existsSync('/usr/bin/chromium') || !existsSync(resolve('out', 'renderer', 'index.html'))) {
    process.stderr.write('Skipping the UI stream benchmark: it runs from a built checkout with Debian chromium installed.\n');
    return undefined;
  }
  const file = join(dir, 'ui-stream.json');
  await new Promise<void>((resolvePromise, reject) => {
    // The URLs (with the sandbox's credentials) go by environment, not on a command line others can read.
    const child = tracked(
      spawn(process.execPath, ['--import', 'tsx', script, file, String(seconds)], {
        stdio: 'inherit',
        env: { ...process.env, BRIDGESCOPE_BENCH_URLS: JSON.stringify(urls) },
      }),
    );
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise() : reject(new Error(`the UI stream benchmark failed (exit ${code})`))));
  });
  return JSON.parse(await readFile(file, 'utf8')) as unknown;
}

interface BrokerRun {
  /** as asked (`system`, `4.3`, ...) */
  rabbitmq: string;
  /** as the node reported it */
  version: string;
  wallSeconds: number;
  cases: CaseSummary[];
  ratios: ReturnType<typeof ratios>;
  uiStream?: unknown;
  /** watch off / tap / firehose at concurrency 100 (src/cli/bench/watch.ts) */
  watch?: WatchCost;
}

/** The whole plan, then the UI stream, on one private sandbox broker of the given RabbitMQ. */
async function benchOnBroker(rabbitmq: string | undefined, quick: boolean, rounds: number, watchOnly = false): Promise<BrokerRun> {
  const begun = Date.now();
  process.stderr.write(`Starting a private sandbox broker${rabbitmq ? ` (RabbitMQ ${rabbitmq})` : ''} for the benchmark...\n`);
  const { dir, info } = await privateSandbox(rabbitmq);
  const urls: BrokerUrls = info.urls;
  const cases: CaseSummary[] = [];
  let uiStreamResult: unknown;
  let watch: WatchCost | undefined;
  try {
    process.stderr.write(`  RabbitMQ ${info.version ?? 'unknown'} (${info.rabbitmq ?? 'system'})\n`);
    for (const benchCase of watchOnly ? [] : plan(quick)) {
      const byContender = new Map<ContenderName, RunResult[]>();
      for (let round = 0; round < rounds; round += 1) {
        // Alternate the order every round, so drift on this shared machine hits every contender alike.
        const order = round % 2 === 0 ? benchCase.contenders : [...benchCase.contenders].reverse();
        for (const contender of order) {
          const spec: RunSpec = {
            contender,
            urls,
            concurrency: benchCase.concurrency,
            requests: benchCase.requests,
            warmup: warmupFor(benchCase),
            payloadBytes: benchCase.payloadBytes,
          };
          // Always in a fresh process, --quick too: in one process the libraries' code is optimised for whichever
          // contender ran first (and the heap is shared), which moved --quick's ratios by up to 0.2.
          await brokerSettled(info.pid);
          const result = await measureBroker(info.pid, spec, runInChild);
          byContender.set(contender, [...(byContender.get(contender) ?? []), result]);
        }
      }
      for (const results of byContender.values()) cases.push(summarizeRounds(results));
      process.stderr.write(`  done: concurrency ${benchCase.concurrency}, ${benchCase.payloadBytes >= 1048576 ? '1 MiB' : `${benchCase.payloadBytes} B`} payload\n`);
    }
    watch = await watchCost(urls, info.pid, quick, rounds, (spec) => runInChild(spec));
    process.stderr.write('  done: watch off / tap / firehose at concurrency 100\n');
    // --quick: 30 s of stream instead of 2 minutes (the inspector's caps do not fill in 30 s).
    if (!watchOnly) uiStreamResult = await uiStream(urls, quick ? 30 : 120, dir).catch((err: unknown) => {
      // Stopped (its child was ended by the stop): the run ends here, it does not go on without it.
      if (isStopping()) throw err;
      process.stderr.write(`The UI stream benchmark failed: ${messageOf(err)}\n`);
      return undefined;
    });
  } finally {
    await endSandbox(dir);
  }
  return {
    rabbitmq: info.rabbitmq ?? rabbitmq ?? 'system',
    version: info.version ?? 'unknown',
    wallSeconds: (Date.now() - begun) / 1000,
    cases,
    ratios: ratios(cases),
    ...(uiStreamResult !== undefined ? { uiStream: uiStreamResult } : {}),
    ...(watch ? { watch } : {}),
  };
}

/** `bench --watch-soak <seconds>`: outside traffic at 1,000 RPC/s under a watcher, its memory every 10 s; writes watch-soak.json. */
async function soak(seconds: number, mode: 'tap' | 'firehose', rabbitmq: string | undefined, outDir: string): Promise<void> {
  process.stderr.write(`Starting a private sandbox broker${rabbitmq ? ` (RabbitMQ ${rabbitmq})` : ''} for the watch soak...\n`);
  const { dir, info } = await privateSandbox(rabbitmq);
  try {
    const report = await watchSoak(info.urls, {
      seconds,
      rate: 1000,
      mode,
      onSample: (sample) => process.stderr.write(`  ${sample.atS} s: RSS ${(sample.rssBytes / 1048576).toFixed(1)} MiB, heap ${(sample.heapUsedBytes / 1048576).toFixed(1)} MiB\n`),
    });
    process.stdout.write(`${formatSoak(report)}\n`);
    unlessStopping();
    await mkdir(outDir, { recursive: true });
    await writeFile(join(outDir, `watch-soak-${mode}.json`), JSON.stringify({ at: new Date().toISOString(), rabbitmq: info.version ?? 'unknown', ...report }, null, 2));
    noteWritten(join(outDir, `watch-soak-${mode}.json`));
    process.stdout.write(`Wrote ${join(outDir, `watch-soak-${mode}.json`)}.\n`);
  } finally {
    await endSandbox(dir);
  }
}

/** The ratios of every broker's run in one table: a column per RabbitMQ version. */
function sideBySide(brokers: BrokerRun[]): string {
  const [first] = brokers as [BrokerRun, ...BrokerRun[]];
  const lines = [`${'ratio (same run)'.padEnd(66)} ${brokers.map((run) => run.version.padStart(8)).join(' ')}  target`];
  for (const ratio of first.ratios) {
    const values = brokers.map((run) => run.ratios.find((other) => other.label === ratio.label)?.value.toFixed(3) ?? '-');
    lines.push(`${ratio.label.padEnd(66)} ${values.map((value) => value.padStart(8)).join(' ')}  ${ratio.target}`);
  }
  return lines.join('\n');
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('benchmark BridgeScope against raw mqtt.js + amqplib on a private sandbox broker; writes bench/results/latest.{json,svg}')
    .option('--quick', 'fewer requests and rounds, 30 s of UI stream: finishes in a few minutes')
    .option('--rounds <n>', 'rounds per case (the median is reported)', parsePositiveInt('--rounds'))
    .option('--out <dir>', 'where to write latest.json and latest.svg', 'bench/results')
    .option('--rabbitmq <which>', 'which RabbitMQ runs the sandbox: system, 4.0, 4.3 or a prepared root; a comma list (system,4.3) runs the plan on each in turn and reports them side by side (default: $BRIDGESCOPE_RABBITMQ, else system)')
    .option('--watch-soak <seconds>', 'instead of the plan: outside clients at 1,000 RPC/s for this long under `watch`, its RSS and heap every 10 s (writes watch-soak-<mode>.json)', parsePositiveInt('--watch-soak'))
    .option('--watch-only', "only watch's cost (off / tap / firehose at concurrency 100), not the contenders' plan nor the UI stream")
    .option('--watch-mode <mode>', 'the watch mode of --watch-soak: tap or firehose', 'tap')
    .option('--child <spec>', 'internal: run one contender and print its result')
    .option('--watch-child <spec>', 'internal: run a watcher and print its samples')
    .action(
      action(async (options: { quick?: boolean; rounds?: number; out: string; child?: string; rabbitmq?: string; watchSoak?: number; watchMode: string; watchChild?: string; watchOnly?: boolean }) => {
        if (options.watchChild) {
          await runWatchChild(JSON.parse(options.watchChild) as WatchChildSpec);
          return;
        }
        if (options.child) {
          const result = await runContender(JSON.parse(options.child) as RunSpec);
          process.stdout.write(JSON.stringify(result));
          return;
        }
        // From here on the run starts brokers and processes: a stop signal ends them all (bounded), then the command.
        const signals = new StopSignals();
        const stopping = runUntilStopped(
          signals,
          () => signals.say('Stopping the benchmark: ending its runs and stopping its sandbox broker...'),
          stopTasks,
        ).then(async () => {
          const written = writtenFiles();
          signals.say(written.length > 0 ? `Stopped; the benchmark had written ${written.join(' and ')}.` : 'Stopped; the benchmark wrote nothing.');
          // As a shell reports the signal: 130 for Ctrl-C, 143 for SIGTERM, 129 for a closed terminal.
          signals.exit(signalExitCode(await signals.stopped));
        });
        const first = await Promise.race([
          benchCommand(options).then(
            () => ({ stopped: false as const }),
            (err: unknown) => ({ stopped: false as const, err }),
          ),
          signals.stopped.then(() => ({ stopped: true as const })),
        ]);
        // Once a stop began, its cleanup decides the ending (the runs it kills fail on their way out: not worth a word).
        if (first.stopped || signals.leftUndone.length > 0) return stopping;
        signals.dispose();
        if ('err' in first) throw first.err;
      }),
    );
}

/** The benchmark proper (not a child): the plan, a watch soak or watch's cost. */
async function benchCommand(options: { quick?: boolean; rounds?: number; out: string; rabbitmq?: string; watchSoak?: number; watchMode: string; watchOnly?: boolean }): Promise<void> {
  if (options.watchSoak !== undefined) {
    if (options.watchMode !== 'tap' && options.watchMode !== 'firehose') throw new Error(`--watch-mode must be tap or firehose, not "${options.watchMode}".`);
    await soak(options.watchSoak, options.watchMode, options.rabbitmq, resolve(options.out));
    return;
  }
  const quick = Boolean(options.quick);
  const rounds = options.rounds ?? (quick ? 2 : 5);
  const started = Date.now();
  // One broker after the other, the same plan on each: the side-by-side report compares ratios, each from its own run.
  const wanted = options.rabbitmq ? options.rabbitmq.split(',').map((which) => which.trim()).filter(Boolean) : [undefined];
  const brokers: BrokerRun[] = [];
  for (const rabbitmq of wanted) brokers.push(await benchOnBroker(rabbitmq, quick, rounds, Boolean(options.watchOnly)));
  if (options.watchOnly) {
    // Its own file: a watch-only run must not replace the plan's latest.json.
    for (const run of brokers) if (run.watch) process.stdout.write(`\nRabbitMQ ${run.version} (${run.rabbitmq}), median of ${rounds} round(s)\n${formatWatchCost(run.watch)}\n`);
    unlessStopping();
    await mkdir(resolve(options.out), { recursive: true });
    const file = join(resolve(options.out), 'watch-cost.json');
    await writeFile(file, JSON.stringify({ at: new Date().toISOString(), quick, rounds, brokers: brokers.map(({ rabbitmq, version, watch }) => ({ rabbitmq, version, watch })) }, null, 2));
    noteWritten(file);
    process.stdout.write(`Wrote ${file}.\n`);
    return;
  }
  const [first] = brokers as [BrokerRun, ...BrokerRun[]];
  for (const run of brokers) {
    process.stdout.write(`\nRabbitMQ ${run.version} (${run.rabbitmq})\n${formatTable(run.cases)}\n\nRatios (BridgeScope / a raw floor, same run, median of ${rounds} round(s); ${cpus().length} cores shared with other work; CPU: the process running both sides):\n`);
    for (const ratio of run.ratios) {
      const rounds = ratio.perRound ? ` (rounds ${ratio.perRound.map((value) => value.toFixed(3)).join(', ')})` : '';
      process.stdout.write(`  ${ratio.label.padEnd(66)} ${ratio.value.toFixed(3)}${rounds}  target ${ratio.target}  ${verdictOf(ratio)}\n`);
    }
  }
  for (const run of brokers) if (run.watch) process.stdout.write(`\n${formatWatchCost(run.watch)}\n`);
  if (brokers.length > 1) process.stdout.write(`\n${sideBySide(brokers)}\n`);
  const outDir = resolve(options.out);
  // A run stopped meanwhile (its last steps' children ended) must not replace the last good results with its own.
  unlessStopping();
  await mkdir(outDir, { recursive: true });
  const report = {
    at: new Date().toISOString(),
    quick,
    rounds,
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, rabbitmq: first.version, shared: 'the cores are shared with other work: compare ratios from the same run' },
    rssPerContender: true,
    wallSeconds: (Date.now() - started) / 1000,
    // The first broker's run at the top level (what every reader of this file used to find there)...
    cases: first.cases,
    ratios: first.ratios,
    ...(first.uiStream !== undefined ? { uiStream: first.uiStream } : {}),
    ...(first.watch ? { watch: first.watch } : {}),
    // ...and every broker's, side by side, when more than one ran.
    ...(brokers.length > 1 ? { brokers: brokers.map(({ rabbitmq, version, wallSeconds, ratios: r, cases: c, uiStream: u }) => ({ rabbitmq, version, wallSeconds, ratios: r, cases: c, ...(u !== undefined ? { uiStream: u } : {}) })) } : {}),
  };
  await writeFile(join(outDir, 'latest.json'), JSON.stringify(report, null, 2));
  noteWritten(join(outDir, 'latest.json'));
  await writeFile(join(outDir, 'latest.svg'), renderSvg(first.cases, `BridgeScope vs raw mqtt.js + amqplib on RabbitMQ ${first.version} (${quick ? 'quick' : 'full'}, median of ${rounds})`));
  noteWritten(join(outDir, 'latest.svg'));
  process.stdout.write(`\nWrote ${join(outDir, 'latest.json')} and ${join(outDir, 'latest.svg')} (${report.wallSeconds.toFixed(0)} s).\n`);
  unlessStopping();
  await rendererScale(join(outDir, 'latest.json'));
}
