import { describe, expect, it } from 'vitest';
import { ratios, type CaseSummary } from '../../src/bench/report';
import type { ContenderName } from '../../src/bench/contenders';

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
});
