import { describe, expect, it } from 'vitest';
import { restartedNodes } from '../../src/core/trace/node-restarts';

describe('which cluster nodes restarted between two readings', () => {
  const a = (running: boolean, uptime?: number) => ({ name: 'a@h', running, ...(uptime !== undefined ? { uptime } : {}) });
  const b = { name: 'b@h', running: true, uptime: 50_000 };

  it('a node that was down and runs again', () => {
    expect(restartedNodes([a(false), b], [a(true, 900), b])).toEqual(['a@h']);
  });

  it('a node whose uptime went down: it restarted between the readings, never seen down', () => {
    expect(restartedNodes([a(true, 40_000), b], [a(true, 1_200), { ...b, uptime: 52_000 }])).toEqual(['a@h']);
  });

  it('not a node that kept running, one still down, one never seen before, or one without uptimes', () => {
    expect(restartedNodes([a(true, 1000), b], [a(true, 3000), b])).toEqual([]);
    expect(restartedNodes([a(false)], [a(false)])).toEqual([]);
    expect(restartedNodes([], [a(true, 10)])).toEqual([]);
    expect(restartedNodes([a(true)], [a(true)])).toEqual([]);
  });
});
