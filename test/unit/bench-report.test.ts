import { describe, expect, it } from 'vitest';
import { formatTable, ratios, summarizeRounds, verdictOf, type CaseSummary, type Ratio } from '../../src/cli/bench/report';
import type { ContenderName, RunResult } from '../../src/cli/bench/contenders';

function summary(contender: ContenderName, concurrency: number, throughput: number, p50 = 1): CaseSummary {
  return { contender, concurrency, payloadBytes: 64, rounds: 1, throughput, p50, p95: p50, p99: p50, peakRssMiB: 100 };
}

describe('bench ratios', () => {
  it('judges BridgeScope against both floors: the one with the same guarantees and the bare loop', () => {
    const cases = [
      summary('raw', 1, 1000, 1),
      summary('bridgescope', 1, 900, 1.05),
      summary('raw', 100, 5000),
      summary('raw-reliable', 100, 4000),
      summary('bridgescope', 100, 3900),
      summary('bridgescope-traced', 100, 2500),
    ];
    const byLabel = new Map(ratios(cases).map((ratio) => [ratio.label, ratio]));
    expect(byLabel.get('throughput bridgescope/raw-reliable at concurrency 100')).toMatchObject({ value: 0.975, target: '>= 0.95', met: true });
    expect(byLabel.get('throughput bridgescope/raw at concurrency 100')).toMatchObject({ value: 0.78, target: '>= 0.85', met: false });
    expect(byLabel.get('throughput traced bridgescope/raw at concurrency 100')).toMatchObject({ value: 0.5, target: '>= 0.6', met: false });
    expect(byLabel.get('p50 latency bridgescope/raw at concurrency 1')).toMatchObject({ target: '<= 1.10', met: true });
  });

  it('tells the firehose\'s own cost from the tracer\'s when the raw loop also ran with the firehose on', () => {
    const cases = [summary('raw', 100, 5000), summary('raw-traced', 100, 3000), summary('bridgescope-traced', 100, 2400)];
    const byLabel = new Map(ratios(cases).map((ratio) => [ratio.label, ratio]));
    expect(byLabel.get('throughput traced bridgescope/raw at concurrency 100')).toMatchObject({ value: 0.48, met: false });
    expect(byLabel.get('throughput traced bridgescope/raw-traced at concurrency 100')).toMatchObject({ value: 0.8, target: '>= 0.90', met: false });
    expect(byLabel.get('throughput raw-traced/raw at concurrency 100 (firehose cost)')).toMatchObject({ value: 0.6, target: 'report' });
  });

  it('reports CPU per RPC, ours and the broker\'s, as the median over rounds, and our share against the reliable floor', () => {
    const run = (contender: ContenderName, cpuMs: number, brokerCpuMs: number): RunResult => ({
      contender,
      concurrency: 100,
      payloadBytes: 64,
      requests: 1000,
      durationMs: 500,
      latenciesMs: [1, 2, 3],
      peakRssBytes: 100 * 1024 * 1024,
      cpuMs,
      brokerCpuMs,
      brokerRequests: 2000,
    });
    const reliable = summarizeRounds([run('raw-reliable', 90, 300), run('raw-reliable', 100, 320), run('raw-reliable', 300, 900)]);
    const ours = summarizeRounds([run('bridgescope', 120, 310), run('bridgescope', 150, 330), run('bridgescope', 130, 2000)]);
    expect(reliable).toMatchObject({ cpuUsPerRpc: 100, brokerCpuUsPerRpc: 160 });
    expect(ours).toMatchObject({ cpuUsPerRpc: 130, brokerCpuUsPerRpc: 165 });
    const byLabel = new Map(ratios([reliable, ours]).map((ratio) => [ratio.label, ratio]));
    expect(byLabel.get('CPU per RPC bridgescope/raw-reliable at concurrency 100')?.value).toBeCloseTo(1.3);
    expect(formatTable([ours])).toMatch(/CPU us\/RPC\s+broker us\/RPC\n.*\s130\s+165$/);
  });

  it("takes each gated ratio round by round too, and says when the rounds disagree about a target (issue 25's CPU and traced targets among them)", () => {
    const run = (contender: ContenderName, durationMs: number, cpuMs: number): RunResult => ({
      contender,
      concurrency: 100,
      payloadBytes: 64,
      requests: 1000,
      durationMs,
      latenciesMs: [1],
      peakRssBytes: 0,
      cpuMs,
    });
    // Round 1: the floor had a bad round (slow), BridgeScope looks better than it; round 2: the usual order.
    const floor = summarizeRounds([run('raw-reliable', 400, 150), run('raw-reliable', 280, 150)]);
    const ours = summarizeRounds([run('bridgescope', 300, 170), run('bridgescope', 320, 210)]);
    expect(floor.perRound?.throughput.map(Math.round)).toEqual([2500, 3571]);
    const byLabel = new Map(ratios([floor, ours]).map((ratio) => [ratio.label, ratio]));
    const throughput = byLabel.get('throughput bridgescope/raw-reliable at concurrency 100');
    expect(throughput?.perRound?.map((value) => Number(value.toFixed(3)))).toEqual([1.333, 0.875]);
    expect(throughput).toMatchObject({ target: '>= 0.95', roundsMet: 1, met: true });
    expect(verdictOf(throughput as Ratio)).toBe('met (met in 1 of 2 rounds: undecided at this spread)');
    const cpu = byLabel.get('CPU per RPC bridgescope/raw-reliable at concurrency 100');
    expect(cpu).toMatchObject({ target: '<= 1.15', met: false, roundsMet: 1 });
    expect(cpu?.value).toBeCloseTo(1.267);
    // Three rounds whose median meets the target while no round's ratio does: not said plainly.
    expect(verdictOf({ label: 'x', value: 0.96, target: '>= 0.95', met: true, perRound: [0.94, 0.93, 0.94], roundsMet: 0 })).toBe('met (met in 0 of 3 rounds: undecided at this spread)');
    // Every round on one side: said plainly.
    const steady = new Map(ratios([summarizeRounds([run('raw-reliable', 300, 150), run('raw-reliable', 300, 150)]), summarizeRounds([run('bridgescope', 330, 210), run('bridgescope', 340, 220)])]).map((ratio) => [ratio.label, ratio]));
    expect(verdictOf(steady.get('CPU per RPC bridgescope/raw-reliable at concurrency 100') as Ratio)).toBe('MISSED');
    expect(verdictOf(steady.get('throughput bridgescope/raw-reliable at concurrency 100') as Ratio)).toBe('MISSED');
  });

  it('prints a dash where a run measured no CPU (an older result)', () => {
    const old = summarizeRounds([{ contender: 'raw', concurrency: 1, payloadBytes: 64, requests: 10, durationMs: 10, latenciesMs: [1], peakRssBytes: 0 }]);
    expect(old.cpuUsPerRpc).toBeUndefined();
    expect(formatTable([old])).toMatch(/-\s+-$/);
  });
});
