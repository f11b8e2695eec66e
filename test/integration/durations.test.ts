import { describe, expect, inject, it } from 'vitest';
import { runCli } from '../support/cli';
import { validateArgs } from '../../src/core/contract-schemas';
import { parseDurationMs } from '../../src/cli/run';
import { uniqueName } from '../support/names';

const broker = inject('broker');
// One more than a Node timer can hold: setTimeout would fire after 1 ms with a TimeoutOverflowWarning.
const overflow = String(2 ** 31);

describe('durations beyond what a timer can hold', () => {
  it('call --timeout over 2147483647 ms is a usage error (exit 2, one sentence) before anything is sent', async () => {
    const result = await runCli(['call', '--mqtt', broker.urls.mqtt, '--topic', uniqueName('never'), '--timeout', overflow, '{}']);
    expect(result.stderr).not.toMatch(/TimeoutOverflowWarning/);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--timeout takes a whole number above 0 and at most 2147483647/);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('broker start --timeout over 2147483647 ms is a usage error (exit 2, one sentence)', async () => {
    const result = await runCli(['broker', 'start', '--dir', '/dev/null/not-a-folder', '--timeout', '1e12']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--timeout takes a whole number above 0 and at most 2147483647/);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('parseDurationMs takes whole ms from 1 to 2147483647 and refuses the rest in one sentence', () => {
    const parse = parseDurationMs('--timeout');
    expect(parse('1')).toBe(1);
    expect(parse('2147483647')).toBe(2147483647);
    for (const wrong of ['0', '-1', '1.5', '2147483648', '1e12', 'Infinity', 'NaN', '', 'ten']) {
      expect(() => parse(wrong)).toThrow(/^--timeout takes a whole number above 0 and at most 2147483647 \(milliseconds, about 24\.8 days\), not ".*"\.$/);
    }
  });

  it('rpc.request.send and load.run.start refuse a timeoutMs over the limit, NaN-like or fractional with bad-input', () => {
    const base = { topic: 'rpc_queue', qos: 1, strategy: 'shared', payloadText: '{}' };
    for (const timeoutMs of [2 ** 31, 1e300, 1.5, 0, -1, '1000', null]) {
      expect(() => validateArgs('rpc.request.send', { ...base, timeoutMs })).toThrow(expect.objectContaining({ code: 'bad-input' }));
      expect(() => validateArgs('load.run.start', { ...base, timeoutMs, count: 1, concurrency: 1 })).toThrow(expect.objectContaining({ code: 'bad-input' }));
    }
    expect(validateArgs('rpc.request.send', { ...base, timeoutMs: 600_000 }).timeoutMs).toBe(600_000);
  });
});
