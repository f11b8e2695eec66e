import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { runLoad } from '../../src/core/load';
import { BridgeError } from '../../src/core/errors';
import type { RpcClient } from '../../src/core/rpc/client';
import type { RpcOutcome } from '../../src/shared/rpc';

/** Just what runLoad uses of a client: call() and the link's status events. */
function clientAnswering(call: () => Promise<RpcOutcome>): RpcClient {
  return { call, link: new EventEmitter() } as unknown as RpcClient;
}

const run = (client: RpcClient, count: number) => runLoad(client, { count, concurrency: 2, call: {}, onProgress: () => undefined });

describe('load run summary', () => {
  it('reports 0 ms percentiles, numbers that survive JSON, when no request got a reply', async () => {
    const summary = await run(clientAnswering(() => Promise.reject(new BridgeError('timeout', 'No reply.'))), 3);
    expect(summary).toMatchObject({ completed: 0, failed: 3, errors: { timeout: 3 }, p50: 0, p95: 0, p99: 0 });
    expect(JSON.parse(JSON.stringify(summary))).toMatchObject({ p50: 0, p95: 0, p99: 0 });
  });

  it('takes ordered, finite percentiles of the latencies of the replies', async () => {
    const summary = await run(clientAnswering(() => Promise.resolve({} as RpcOutcome)), 40);
    expect(summary.completed).toBe(40);
    for (const value of [summary.p50, summary.p95, summary.p99]) expect(Number.isFinite(value) && value >= 0).toBe(true);
    expect(summary.p50).toBeLessThanOrEqual(summary.p95);
    expect(summary.p95).toBeLessThanOrEqual(summary.p99);
  });
});
