import { describe, expect, it } from 'vitest';
import type { Verdict } from '../../src/shared/diagnosis';
import type { FirehoseEvent } from '../../src/core/trace/firehose';
import { TraceStore } from '../../src/core/trace/trace-store';
import { ExternalVerdicts } from '../../src/core/session/external-verdicts';

const publish = (routingKey: string, body: unknown, routedQueues: string[]): FirehoseEvent => ({
  type: 'publish',
  name: 'amq.direct',
  routingKeys: [routingKey],
  routedQueues,
  redelivered: false,
  body: Buffer.from(JSON.stringify(body)),
});

function setUp(timeoutMs = 60_000) {
  const store = new TraceStore();
  const verdicts: Array<[string, Verdict]> = [];
  let settled: (value: [string, Verdict]) => void = () => undefined;
  const next = (): Promise<[string, Verdict]> => new Promise((resolve) => (settled = resolve));
  const externals = new ExternalVerdicts({
    watch: { amqpUrl: 'amqp://127.0.0.1:1', exchange: 'amq.direct' },
    store,
    timeoutMs,
    addVerdict: (rpcId, verdict) => {
      verdicts.push([rpcId, verdict]);
      settled([rpcId, verdict]);
    },
  });
  // Their RPC as the firehose joined it (a broker step only), and one the app sent (its client's composed step).
  store.add({ rpcId: 'ext-1', at: 1, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request' } });
  store.add({ rpcId: 'ours-1', at: 1, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic: 'reply/me', replyStrategy: 'shared', bytes: 2 } });
  return { store, externals, verdicts, next };
}

describe("verdicts of other teams' RPCs from the Trace firehose", () => {
  it('gives an RPC the app did not send its reply as a verdict, and leaves the app\'s own to its own diagnosis', async () => {
    const { externals, verdicts } = setUp();
    externals.start();
    externals.observe(publish('rpc_queue', { id: 'ext-1', reply_to: 'reply/dev' }, ['rpc_queue']), undefined);
    externals.observe(publish('reply.dev', { id: 'ext-1', result: 1, worker: 'w9' }, ['mqtt-subscription-devqos1']), undefined);
    externals.observe(publish('rpc_queue', { id: 'ours-1', reply_to: 'reply/me' }, ['rpc_queue']), { rpcId: 'ours-1' } as never);
    externals.observe(publish('reply.me', { id: 'ours-1', result: 1 }, ['mqtt-subscription-meqos1']), { rpcId: 'ours-1' } as never);
    // An RPC the trace does not hold (not joined) gets nothing either.
    externals.observe(publish('rpc_queue', { id: 'unknown-1', reply_to: 'reply/x' }, ['rpc_queue']), undefined);
    externals.observe(publish('reply.x', { id: 'unknown-1' }, ['mqtt-subscription-xqos1']), undefined);
    await externals.stop();
    expect(verdicts).toEqual([['ext-1', expect.objectContaining({ code: 'replied', hop: 'mqtt-deliver' })]]);
    expect(verdicts[0]?.[1].message).toMatch(/^The reply to "rpc_queue" id ext-1 was published by w9 on "reply\.dev" \d+ ms after the request, routed to "mqtt-subscription-devqos1"\.$/);
  });

  it('judges one left unanswered once its time is up, without the broker\'s facts when there is no management URL', async () => {
    const { externals, next } = setUp(50);
    externals.start();
    const decided = next();
    externals.observe(publish('rpc_queue', { id: 'ext-1', reply_to: 'reply/dev' }, ['rpc_queue']), undefined);
    const [rpcId, verdict] = await decided;
    await externals.stop();
    expect(rpcId).toBe('ext-1');
    expect(verdict.code).not.toBe('replied');
  });
});
