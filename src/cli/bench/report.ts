/** Benchmark arithmetic and output: percentiles, medians over rounds, ratios to the raw floor, the table and the SVG. */
import { percentile as nearestRank } from '../../shared/stats';
import type { ContenderName, RunResult } from './contenders';

/** A bench round with no samples reports NaN, which the table prints as such. */
export function percentile(sorted: number[], p: number): number {
  return nearestRank(sorted, p) ?? Number.NaN;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export interface CaseSummary {
  contender: ContenderName;
  concurrency: number;
  payloadBytes: number;
  rounds: number;
  throughput: number;
  p50: number;
  p95: number;
  p99: number;
  peakRssMiB: number;
  /**
   * CPU time per RPC of the process running both sides (client and server), median over rounds: on a machine shared with
   * other work this moves far less than throughput does, so it says where our own cost went.
   */
  cpuUsPerRpc?: number;
  /** the broker's CPU time per RPC over the same runs (set-up and warm-up included), when it could be read */
  brokerCpuUsPerRpc?: number;
  /** each round's figures, in round order: a ratio is also taken round by round (contenders of a round ran back to back) */
  perRound?: { throughput: number[]; p50: number[]; cpu: number[] };
}

/** The median of each metric over the rounds of one contender in one case. */
export function summarizeRounds(results: RunResult[]): CaseSummary {
  const first = results[0];
  if (!first) throw new Error('no rounds');
  const perRound = results.map((result) => {
    const sorted = [...result.latenciesMs].sort((a, b) => a - b);
    return {
      throughput: (result.requests / result.durationMs) * 1000,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      rss: result.peakRssBytes / 1024 / 1024,
      cpu: result.cpuMs !== undefined ? (result.cpuMs / result.requests) * 1000 : Number.NaN,
      broker: result.brokerCpuMs !== undefined && result.brokerRequests ? (result.brokerCpuMs / result.brokerRequests) * 1000 : Number.NaN,
    };
  });
  const cpu = median(perRound.map((round) => round.cpu));
  const broker = median(perRound.map((round) => round.broker));
  return {
    contender: first.contender,
    concurrency: first.concurrency,
    payloadBytes: first.payloadBytes,
    rounds: results.length,
    throughput: median(perRound.map((round) => round.throughput)),
    p50: median(perRound.map((round) => round.p50)),
    p95: median(perRound.map((round) => round.p95)),
    p99: median(perRound.map((round) => round.p99)),
    peakRssMiB: median(perRound.map((round) => round.rss)),
    ...(Number.isFinite(cpu) ? { cpuUsPerRpc: cpu } : {}),
    ...(Number.isFinite(broker) ? { brokerCpuUsPerRpc: broker } : {}),
    perRound: { throughput: perRound.map((round) => round.throughput), p50: perRound.map((round) => round.p50), cpu: perRound.map((round) => round.cpu) },
  };
}

export interface Ratio {
  label: string;
  /** the ratio of the medians over the rounds */
  value: number;
  target: string;
  /** whether `value` meets the target ('report': always) */
  met: boolean;
  /**
   * the same ratio round by round (each round's two contenders ran back to back), when both had every round: on a shared
   * machine one round's floor can swing more than a target's margin, which the median of two rounds hides
   */
  perRound?: number[];
  /** of `perRound`, how many meet the target */
  roundsMet?: number;
}

/** What a ratio's line says of its target: met or missed by the median, and how many rounds agree when they do not all. */
export function verdictOf(ratio: Ratio): string {
  if (ratio.target === 'report') return '';
  const rounds = ratio.perRound?.length ?? 0;
  const word = ratio.met ? 'met' : 'MISSED';
  // Said plainly only when every round agrees with the median's word.
  if (ratio.roundsMet === undefined || rounds < 2 || (ratio.met ? ratio.roundsMet === rounds : ratio.roundsMet === 0)) return word;
  return `${word} (met in ${ratio.roundsMet} of ${rounds} rounds: undecided at this spread)`;
}

/** The ratios the targets speak of (issue 16), each against a raw floor of the same case and run. */
export function ratios(cases: CaseSummary[]): Ratio[] {
  const find = (contender: ContenderName, concurrency: number, payloadBytes = 64): CaseSummary | undefined =>
    cases.find((c) => c.contender === contender && c.concurrency === concurrency && c.payloadBytes === payloadBytes);
  const out: Ratio[] = [];
  /** `of` a figure of BridgeScope's case over the same figure of its floor's, round by round */
  type Figure = keyof NonNullable<CaseSummary['perRound']>;
  const add = (label: string, value: number | undefined, target: string, met: (value: number) => boolean, rounds?: { ours?: CaseSummary; floor?: CaseSummary; figure: Figure }): void => {
    if (value === undefined || !Number.isFinite(value)) return;
    const ours = rounds?.ours?.perRound?.[rounds.figure];
    const floor = rounds?.floor?.perRound?.[rounds.figure];
    const paired = ours && floor && ours.length === floor.length && ours.length > 1 ? ours.map((figure, index) => figure / (floor[index] as number)) : undefined;
    const perRound = paired?.every(Number.isFinite) ? paired : undefined;
    out.push({ label, value, target, met: met(value), ...(perRound ? { perRound, roundsMet: perRound.filter(met).length } : {}) });
  };
  const top = Math.max(...cases.map((c) => c.concurrency));
  const rawTop = find('raw', top);
  const reliableTop = find('raw-reliable', top);
  const bsTop = find('bridgescope', top);
  // Against the floor with the same guarantees (confirms, mandatory, ack after confirm), and against the bare loop.
  add(
    `throughput bridgescope/raw-reliable at concurrency ${top}`,
    reliableTop && bsTop ? bsTop.throughput / reliableTop.throughput : undefined,
    '>= 0.95',
    (v) => v >= 0.95,
    { ours: bsTop, floor: reliableTop, figure: 'throughput' },
  );
  add(`throughput bridgescope/raw at concurrency ${top}`, rawTop && bsTop ? bsTop.throughput / rawTop.throughput : undefined, '>= 0.85', (v) => v >= 0.85);
  const raw1 = find('raw', 1);
  const bs1 = find('bridgescope', 1);
  add('p50 latency bridgescope/raw at concurrency 1', raw1 && bs1 ? bs1.p50 / raw1.p50 : undefined, '<= 1.10', (v) => v <= 1.1, { ours: bs1, floor: raw1, figure: 'p50' });
  // The part of that gap which is the guarantees (a confirm before the ack), not BridgeScope's own work.
  const reliable1 = find('raw-reliable', 1);
  add('p50 latency raw-reliable/raw at concurrency 1', raw1 && reliable1 ? reliable1.p50 / raw1.p50 : undefined, 'report', () => true);
  const rawPer = find('raw-per-request', 1);
  const bsPer = find('bridgescope-per-request', 1);
  add('throughput per-request bridgescope/raw at concurrency 1', rawPer && bsPer ? bsPer.throughput / rawPer.throughput : undefined, '>= 0.9', (v) => v >= 0.9);
  // Throughput on a shared machine swings with the neighbours' load; CPU per RPC of our process much less (issue 25's target).
  add(
    `CPU per RPC bridgescope/raw-reliable at concurrency ${top}`,
    reliableTop?.cpuUsPerRpc && bsTop?.cpuUsPerRpc ? bsTop.cpuUsPerRpc / reliableTop.cpuUsPerRpc : undefined,
    '<= 1.15',
    (v) => v <= 1.15,
    { ours: bsTop, floor: reliableTop, figure: 'cpu' },
  );
  const keepAll = find('bridgescope-keep-all', top);
  add(
    `CPU per RPC bridgescope-keep-all/raw-reliable at concurrency ${top} (every request's steps kept)`,
    reliableTop?.cpuUsPerRpc && keepAll?.cpuUsPerRpc ? keepAll.cpuUsPerRpc / reliableTop.cpuUsPerRpc : undefined,
    'report',
    () => true,
  );
  add(`throughput bridgescope-keep-all/raw-reliable at concurrency ${top}`, reliableTop && keepAll ? keepAll.throughput / reliableTop.throughput : undefined, 'report', () => true);
  const traced = find('bridgescope-traced', top);
  add(`throughput traced bridgescope/raw at concurrency ${top}`, rawTop && traced ? traced.throughput / rawTop.throughput : undefined, '>= 0.6', (v) => v >= 0.6);
  // The same with the broker's firehose on for the raw loop too (and a bare consumer of it): BridgeScope's tracer alone.
  const rawTraced = find('raw-traced', top);
  // Issue 25's target for the tracer's own cost.
  add(`throughput traced bridgescope/raw-traced at concurrency ${top}`, rawTraced && traced ? traced.throughput / rawTraced.throughput : undefined, '>= 0.90', (v) => v >= 0.9, {
    ours: traced,
    floor: rawTraced,
    figure: 'throughput',
  });
  add(`throughput raw-traced/raw at concurrency ${top} (firehose cost)`, rawTop && rawTraced ? rawTraced.throughput / rawTop.throughput : undefined, 'report', () => true);
  for (const concurrency of [...new Set(cases.map((c) => c.concurrency))]) {
    const rawBig = find('raw', concurrency, 1024 * 1024);
    const bsBig = find('bridgescope', concurrency, 1024 * 1024);
    add(`1 MiB throughput bridgescope/raw at concurrency ${concurrency}`, rawBig && bsBig ? bsBig.throughput / rawBig.throughput : undefined, 'report', () => true);
  }
  return out;
}

export function formatTable(cases: CaseSummary[]): string {
  const header = ['contender', 'conc', 'payload', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', 'peak RSS MiB', 'CPU us/RPC', 'broker us/RPC'];
  const rows = cases.map((c) => [
    c.contender,
    String(c.concurrency),
    c.payloadBytes >= 1024 * 1024 ? '1 MiB' : `${c.payloadBytes} B`,
    c.throughput.toFixed(0),
    c.p50.toFixed(2),
    c.p95.toFixed(2),
    c.p99.toFixed(2),
    c.peakRssMiB.toFixed(0),
    c.cpuUsPerRpc !== undefined ? c.cpuUsPerRpc.toFixed(0) : '-',
    c.brokerCpuUsPerRpc !== undefined ? c.brokerCpuUsPerRpc.toFixed(0) : '-',
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padStart(widths[column] ?? 0)).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

const palette: Record<ContenderName, string> = {
  raw: '#6b7280',
  'raw-reliable': '#374151',
  'raw-traced': '#9ca3af',
  bridgescope: '#2563eb',
  'raw-per-request': '#a8a29e',
  'bridgescope-per-request': '#0891b2',
  'bridgescope-traced': '#d97706',
  'bridgescope-keep-all': '#7c3aed',
};

/** Two grouped bar charts side by side: throughput, and p50/p95/p99 latency, per case and contender. */
export function renderSvg(cases: CaseSummary[], title: string): string {
  const groups = [...new Set(cases.map((c) => `${c.concurrency}|${c.payloadBytes}`))];
  const contenders = [...new Set(cases.map((c) => c.contender))];
  const width = 1100;
  const height = 420;
  const chartWidth = 500;
  const chartHeight = 300;
  const top = 60;
  const escape = (text: string): string => text.replace(/[<>&]/g, (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[ch] ?? ch);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="20" y="24" font-size="15" font-weight="bold">${escape(title)}</text>`,
  ];
  const chart = (x0: number, label: string, value: (c: CaseSummary) => number[], unit: string): void => {
    const max = Math.max(1e-9, ...cases.flatMap(value));
    const groupWidth = chartWidth / groups.length;
    const barWidth = (groupWidth - 12) / contenders.length;
    parts.push(`<text x="${x0}" y="${top - 10}" font-weight="bold">${escape(label)} (${unit}, max ${max.toFixed(1)})</text>`);
    parts.push(`<line x1="${x0}" y1="${top + chartHeight}" x2="${x0 + chartWidth}" y2="${top + chartHeight}" stroke="#999"/>`);
    groups.forEach((group, g) => {
      const [concurrency, bytes] = group.split('|').map(Number);
      const gx = x0 + g * groupWidth + 6;
      parts.push(`<text x="${gx + groupWidth / 2 - 20}" y="${top + chartHeight + 14}">c=${concurrency}${(bytes ?? 0) >= 1048576 ? ' 1MiB' : ''}</text>`);
      contenders.forEach((name, k) => {
        const found = cases.find((c) => c.contender === name && `${c.concurrency}|${c.payloadBytes}` === group);
        if (!found) return;
        value(found).forEach((v, layer) => {
          const h = (v / max) * chartHeight;
          const opacity = [0.3, 0.55, 1][layer] ?? 1;
          parts.push(`<rect x="${(gx + k * barWidth).toFixed(1)}" y="${(top + chartHeight - h).toFixed(1)}" width="${Math.max(1, barWidth - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${palette[name]}" fill-opacity="${opacity}"><title>${name} ${v.toFixed(2)} ${unit}</title></rect>`);
        });
      });
    });
  };
  chart(40, 'Throughput', (c) => [c.throughput], 'req/s');
  chart(580, 'Latency p99 / p95 / p50', (c) => [c.p99, c.p95, c.p50], 'ms');
  contenders.forEach((name, k) => {
    parts.push(`<rect x="${40 + k * 200}" y="${height - 22}" width="12" height="12" fill="${palette[name]}"/><text x="${56 + k * 200}" y="${height - 12}">${name}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
