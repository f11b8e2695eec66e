import { describe, expect, it } from 'vitest';
import type { Verdict } from '../../src/shared/diagnosis';
import type { TraceStep } from '../../src/shared/trace';
import type { FirehoseEvent } from '../../src/core/trace/firehose';
import { TraceStore } from '../../src/core/trace/trace-store';
import { ExternalVerdicts } from '../../src/core/session/external-verdicts';

const publish = (routingKey: string, body: unknown, routedQueues: string[], properties?: Record<string, unknown>): FirehoseEvent => ({
  type: 'publish',
  name: 'amq.direct',
  routingKeys: [routingKey],
  routedQueues,
  redelivered: false,
  body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
  ...(properties ? { properties } : {}),
});
/** The step the trace made of a firehose publish it joined to `rpcId` (what the tracer hands over with the event). */
const joined = (rpcId: string, leg: 'request' | 'reply'): TraceStep =>
  ({ rpcId, seq: 0, at: 0, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: [], routedQueues: [], leg } }) as TraceStep;

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
  // Their RPCs as the firehose joined them (a broker step only), and one the app sent (its client's composed step).
  for (const rpcId of ['ext-1', 'ext-5']) store.add({ rpcId, at: 1, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request' } });
  store.add({ rpcId: 'ours-1', at: 1, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic: 'reply/me', replyStrategy: 'shared', bytes: 2 } });
  externals.start();
  return { store, externals, verdicts, next };
}

describe("verdicts of other teams' RPCs from the Trace firehose", () => {
  it("gives an RPC the app did not send its reply as a verdict, and leaves the app's own, and what the trace did not join, alone", async () => {
    const { externals, verdicts } = setUp();
    externals.observe(publish('rpc_queue', { id: 'ext-1', reply_to: 'reply/dev' }, ['rpc_queue']), joined('ext-1', 'request'));
    externals.observe(publish('reply.dev', { id: 'ext-1', result: 1, worker: 'w9' }, ['mqtt-subscription-devqos1']), joined('ext-1', 'reply'));
    externals.observe(publish('rpc_queue', { id: 'ours-1', reply_to: 'reply/me' }, ['rpc_queue']), joined('ours-1', 'request'));
    externals.observe(publish('reply.me', { id: 'ours-1', result: 1 }, ['mqtt-subscription-meqos1']), joined('ours-1', 'reply'));
    externals.observe(publish('rpc_queue', { id: 'unknown-1', reply_to: 'reply/x' }, ['rpc_queue']), undefined);
    externals.observe(publish('reply.x', { id: 'unknown-1' }, ['mqtt-subscription-xqos1']), undefined);
    await externals.stop();
    expect(verdicts).toEqual([['ext-1', expect.objectContaining({ code: 'replied', hop: 'mqtt-deliver' })]]);
    expect(verdicts[0]?.[1].message).toMatch(/^The reply to "rpc_queue" id ext-1 was published by w9 on "reply\.dev" \d+ ms after the request, routed to "mqtt-subscription-devqos1"\.$/);
  });

  it('says once of a message with an id and no reply topic, whose request the trace never saw, that it is no request it can follow', async () => {
    const { store, externals, verdicts } = setUp();
    // A device's malformed request: an id, no reply_to. The trace listed it under "99" and left it pending for good.
    store.add({ rpcId: '99', at: 1, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request' } });
    externals.observe(publish('rpc_queue', { id: 99 }, ['rpc_queue']), joined('99', 'request'));
    store.add({ rpcId: '99', at: 2, source: 'broker', kind: 'rpc.diagnosed', detail: { verdict: verdicts[0]?.[1] as Verdict } });
    externals.observe(publish('rpc_queue', { id: 99 }, ['rpc_queue']), joined('99', 'request'));
    // A reply to a request the trace saw is that RPC's, and no such verdict.
    externals.observe(publish('rpc_queue', { id: 'ext-1', reply_to: 'reply/dev' }, ['rpc_queue']), joined('ext-1', 'request'));
    externals.observe(publish('reply.dev', { id: 'ext-1' }, ['mqtt-subscription-devqos1']), joined('ext-1', 'reply'));
    await externals.stop();
    expect(verdicts.map(([rpcId, verdict]) => [rpcId, verdict.code])).toEqual([
      ['99', 'undetermined'],
      ['ext-1', 'replied'],
    ]);
    expect(verdicts[0]?.[1].message).toBe(
      'The message on "rpc_queue" with id 99 is no request the trace can follow: its JSON body has no "reply_to" (and the message no MQTT 5 Response Topic or AMQP reply_to), so no reply could find the device. Nor is it a reply to a request seen since tracing began. If a device sent it as a request, no reply can come.',
    );
  });

  it("puts an MQTT 5 request's verdict on the trace's RPC (its body id), not on its correlation id", async () => {
    const { externals, verdicts } = setUp();
    const mqtt5 = { headers: { 'x-reply-to-topic': 'reply.d5' }, correlation_id: 'c-77' };
    externals.observe(publish('rpc_queue', { id: 'ext-5' }, ['rpc_queue'], mqtt5), joined('ext-5', 'request'));
    externals.observe(publish('reply.d5', 'done', ['mqtt-subscription-d5qos1'], { correlation_id: 'c-77' }), joined('ext-5', 'reply'));
    await externals.stop();
    expect(verdicts.map(([rpcId, verdict]) => [rpcId, verdict.code])).toEqual([['ext-5', 'replied']]);
  });

  it("judges one left unanswered once its time is up: without the broker's facts (no management URL) it says what it could not ask", async () => {
    const { externals, next } = setUp(50);
    const decided = next();
    externals.observe(publish('rpc_queue', { id: 'ext-1', reply_to: 'reply/dev' }, ['rpc_queue']), joined('ext-1', 'request'));
    const [rpcId, verdict] = await decided;
    await externals.stop();
    expect([rpcId, verdict.code]).toEqual(['ext-1', 'undetermined']);
  });

  it('does not call a request unanswered when the firehose was not read for part of its wait (a broker restart)', async () => {
    const { externals, next } = setUp(50);
    const decided = next();
    // The request came in the gap's last moments (seen as the link came back); the reply's window overlaps the gap.
    const now = Date.now();
    externals.reading(false, now - 1000);
    externals.observe(publish('rpc_queue', { id: 'ext-1', reply_to: 'reply/dev' }, ['rpc_queue']), joined('ext-1', 'request'));
    externals.reading(true, now + 20);
    const [, verdict] = await decided;
    await externals.stop();
    expect(verdict.code).toBe('undetermined');
    expect(verdict.message).toMatch(/but the firehose was not read from .* to .*: a reply in that gap was not seen\.$/);
  });
});
