/**
 * Profiles contenders side by side: each run in a fresh process (`bridgescope bench --child`), the order alternated
 * every round, a V8 CPU profile of the measured part (after warm-up) of each, and the top of every profile by self
 * time and by module. The ratios are per round (same broker, back to back), then the median.
 *
 *   node --import tsx bench/profile.ts [--contenders raw-reliable,bridgescope] [--concurrency 100] [--requests 5000] [--warmup requests/10]
 *     [--rounds 3] [--top 25] [--no-profile] [--dir .scratch/bench-broker] [--stop]
 *
 * The sandbox broker in --dir is started once and reused by later runs (stop it with --stop, or `bridgescope broker stop`).
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startSandbox, stopSandbox } from '../src/core/broker/sandbox';
import { brokerSettled, contenderEnv, measureBroker, type ContenderName, type RunResult, type RunSpec } from '../src/cli/bench/contenders';
import { median, percentile } from '../src/cli/bench/report';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values } = parseArgs({
  options: {
    contenders: { type: 'string', default: 'raw-reliable,bridgescope' },
    concurrency: { type: 'string', default: '100' },
    requests: { type: 'string', default: '5000' },
    warmup: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    top: { type: 'string', default: '25' },
    'no-profile': { type: 'boolean', default: false },
    dir: { type: 'string', default: '.scratch/bench-broker' },
    stop: { type: 'boolean', default: false },
  },
});

/** `name` runs from this checkout, `name@dir` from another one (say, a copy of the last commit: an A/B in one run). */
const contenders = (values.contenders ?? '').split(',').filter(Boolean);
const concurrency = Number(values.concurrency);
const requests = Number(values.requests);
const rounds = Number(values.rounds);
const top = Number(values.top);
const profiling = !values['no-profile'];
const dir = resolve(values.dir ?? '.scratch/bench-broker');
const profileDir = join(dir, 'profiles');

function fileName(contender: string): string {
  return contender.replace(/[^A-Za-z0-9-]+/g, '_');
}

function runChild(spec: RunSpec, tree: string): Promise<RunResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [join(tree, 'bin/bridgescope'), 'bench', '--child', JSON.stringify(spec)], { cwd: tree, stdio: ['ignore', 'pipe', 'inherit'], env: contenderEnv(spec.contender) });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? done(JSON.parse(out) as RunResult) : fail(new Error(`${spec.contender} failed (exit ${code})`))));
  });
}

/** Where a function lives, coarsely: a package, one of our folders, Node itself, or V8's own buckets. */
function moduleOf(frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1] as string;
  if (url.startsWith('node:')) return 'node';
  const ours = /\/src\/(.+)$/.exec(url);
  if (ours) return `src/${ours[1]}`;
  return url;
}

function nameOf(frame: ProfileNode['callFrame']): string {
  return `${frame.functionName || '(anonymous)'} ${frame.url ? moduleOf(frame) : ''}`.trim();
}

interface Summary {
  total: number;
  byFunction: Map<string, number>;
  byModule: Map<string, number>;
  /** time with one of our functions (src/) on the stack, counted once per sample */
  inclusiveOurs: Map<string, number>;
}

function summarize(profile: CpuProfile): Summary {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const byFunction = new Map<string, number>();
  const byModule = new Map<string, number>();
  const inclusiveOurs = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const ms = (profile.timeDeltas[index] ?? 0) / 1000;
    const node = nodes.get(id);
    if (!node) return;
    total += ms;
    const frame = node.callFrame;
    byFunction.set(nameOf(frame), (byFunction.get(nameOf(frame)) ?? 0) + ms);
    const module = moduleOf(frame);
    byModule.set(module, (byModule.get(module) ?? 0) + ms);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) {
      const up = nodes.get(at)?.callFrame;
      if (!up || !moduleOf(up).startsWith('src/') || up.functionName === '') continue;
      seen.add(nameOf(up));
    }
    for (const name of seen) inclusiveOurs.set(name, (inclusiveOurs.get(name) ?? 0) + ms);
  });
  return { total, byFunction, byModule, inclusiveOurs };
}

function addInto(target: Map<string, number>, source: Map<string, number>): void {
  for (const [key, value] of source) target.set(key, (target.get(key) ?? 0) + value);
}

function topLines(map: Map<string, number>, count: number, perRound: number): string[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([key, ms]) => `  ${(ms / perRound).toFixed(0).padStart(7)} ms  ${key}`);
}

await mkdir(dir, { recursive: true });
if (profiling) {
  await rm(profileDir, { recursive: true, force: true });
  await mkdir(profileDir, { recursive: true });
}
process.stderr.write(`Sandbox broker in ${dir} (reused when running)...\n`);
const { info } = await startSandbox({ dir, timeoutMs: 120_000 });
const results = new Map<string, RunResult[]>();
const perRoundRatios = new Map<string, number[]>();
const brokerCpu = new Map<string, number[]>();
try {
  for (let round = 0; round < rounds; round += 1) {
    const order = round % 2 === 0 ? contenders : [...contenders].reverse();
    const throughput = new Map<string, number>();
    for (const contender of order) {
      const [name, tree] = contender.split('@') as [ContenderName, string | undefined];
      const spec: RunSpec = {
        contender: name,
        urls: info.urls,
        concurrency,
        requests,
        warmup: values.warmup !== undefined ? Number(values.warmup) : Math.max(20, Math.round(requests / 10)),
        payloadBytes: 64,
        ...(profiling ? { cpuProfile: join(profileDir, `${fileName(contender)}-${round}.cpuprofile`) } : {}),
      };
      await brokerSettled(info.pid);
      const result = await measureBroker(info.pid, spec, (asked) => runChild(asked, resolve(tree ?? '.')));
      // The broker's share over the whole child run (set-up and warm-up included): per RPC over every request it carried.
      const brokerUs = result.brokerCpuMs !== undefined && result.brokerRequests ? (result.brokerCpuMs / result.brokerRequests) * 1000 : Number.NaN;
      brokerCpu.set(contender, [...(brokerCpu.get(contender) ?? []), brokerUs]);
      results.set(contender, [...(results.get(contender) ?? []), result]);
      const perSecond = (result.requests / result.durationMs) * 1000;
      throughput.set(contender, perSecond);
      const sorted = [...result.latenciesMs].sort((a, b) => a - b);
      const cpu = ((result.cpuMs ?? Number.NaN) / result.requests) * 1000;
      process.stdout.write(`round ${round + 1}  ${contender.padEnd(24)} ${perSecond.toFixed(0).padStart(6)} req/s  p50 ${percentile(sorted, 50).toFixed(2)} ms  CPU ${cpu.toFixed(0)} us/RPC  broker ${(brokerCpu.get(contender)?.at(-1) ?? Number.NaN).toFixed(0)} us/RPC\n`);
    }
    const base = throughput.get(contenders[0] as string) as number;
    for (const contender of contenders.slice(1)) {
      perRoundRatios.set(contender, [...(perRoundRatios.get(contender) ?? []), (throughput.get(contender) as number) / base]);
    }
  }
} finally {
  if (values.stop) await stopSandbox(dir);
}

process.stdout.write(`\nMedians over ${rounds} round(s), concurrency ${concurrency}, ${requests} requests:\n`);
for (const contender of contenders) {
  const runs = results.get(contender) ?? [];
  const perSecond = median(runs.map((run) => (run.requests / run.durationMs) * 1000));
  const ratio = perRoundRatios.get(contender);
  const cpu = median(runs.map((run) => ((run.cpuMs ?? Number.NaN) / run.requests) * 1000));
  process.stdout.write(`  ${contender.padEnd(24)} ${perSecond.toFixed(0).padStart(6)} req/s  CPU ${cpu.toFixed(0)} us/RPC  broker ${median(brokerCpu.get(contender) ?? []).toFixed(0)} us/RPC${ratio ? `  / ${contenders[0]} ${median(ratio).toFixed(3)} (rounds: ${ratio.map((r) => r.toFixed(3)).join(' ')})` : ''}\n`);
}

if (profiling) {
  for (const contender of contenders) {
    const byFunction = new Map<string, number>();
    const byModule = new Map<string, number>();
    const inclusiveOurs = new Map<string, number>();
    let total = 0;
    for (let round = 0; round < rounds; round += 1) {
      const profile = JSON.parse(await readFile(join(profileDir, `${fileName(contender)}-${round}.cpuprofile`), 'utf8')) as CpuProfile;
      const summary = summarize(profile);
      total += summary.total;
      addInto(byFunction, summary.byFunction);
      addInto(byModule, summary.byModule);
      addInto(inclusiveOurs, summary.inclusiveOurs);
    }
    const requestsPerRound = requests;
    process.stdout.write(`\n${contender}: ${(total / rounds).toFixed(0)} ms profiled per round (${((total / rounds / requestsPerRound) * 1000).toFixed(0)} us per RPC incl. idle)\n`);
    process.stdout.write(' by module (self time, per round):\n');
    process.stdout.write(`${topLines(byModule, 14, rounds).join('\n')}\n`);
    process.stdout.write(' by function (self time, per round):\n');
    process.stdout.write(`${topLines(byFunction, top, rounds).join('\n')}\n`);
    if (inclusiveOurs.size > 0) {
      process.stdout.write(' our functions, inclusive (callees counted, per round):\n');
      process.stdout.write(`${topLines(inclusiveOurs, 20, rounds).join('\n')}\n`);
    }
  }
  process.stdout.write(`\nProfiles: ${profileDir} (open in Chrome DevTools > Performance, or speedscope)\n`);
}
