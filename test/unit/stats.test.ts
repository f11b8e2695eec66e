import { describe, expect, it } from 'vitest';
import { percentile } from '../../src/shared/stats';
import { percentile as benchPercentile } from '../../src/cli/bench/report';

describe('percentile', () => {
  it('takes the nearest rank of an ascending list', () => {
    const sorted = Array.from({ length: 100 }, (_, index) => index + 1);
    expect([percentile(sorted, 50), percentile(sorted, 95), percentile(sorted, 99), percentile(sorted, 100)]).toEqual([50, 95, 99, 100]);
    expect(percentile([7], 1)).toBe(7);
  });

  it('says there is no value for an empty list, and the benchmark shows that as NaN', () => {
    expect(percentile([], 50)).toBeUndefined();
    expect(benchPercentile([], 50)).toBeNaN();
  });
});
