import { afterEach, describe, expect, it, vi } from 'vitest';
import { Watcher, type WatchLine } from '../../src/core/watch/watcher';
import type { ObservedMessage } from '../../src/core/watch/pairing';

afterEach(() => {
  vi.useRealTimers();
});

const message = (routingKey: string, body: unknown, routedQueues: string[]): ObservedMessage => ({
  at: Date.now(),
  exchange: 'amq.direct',
  routingKey,
  body: Buffer.from(JSON.stringify(body)),
  routedQueues,
});

describe('a watched late reply', () => {
  it.each([
    ['routed to the device', ['mqtt-subscription-devqos1'], { hop: 'mqtt-deliver' }],
    // The trial: every hop "passed" beside evidence saying the broker routed it nowhere.
    ['the broker routed nowhere', [], { hop: 'server', replyReached: { hop: 'reply-exchange', stopped: true } }],
  ])('%s: its verdict says how far the reply went', async (_what, routed, expected) => {
    vi.useFakeTimers({ now: 1_000_000 });
    const watcher = new Watcher({ mode: 'fed', amqpUrl: 'amqp://127.0.0.1:1', exchange: 'amq.direct', requestKeys: ['#'], timeoutMs: 100, lateWindowMs: 60_000 });
    const lines: WatchLine[] = [];
    watcher.on('line', (line) => lines.push(line));
    await watcher.start();
    watcher.feed(message('rpc_queue', { id: 'r1', reply_to: 'reply/dev' }, ['rpc_queue']));
    await vi.advanceTimersByTimeAsync(1000);
    expect(lines.map((line) => line.type)).toContain('verdict');
    watcher.feed(message('reply.dev', { id: 'r1', result: 'late' }, routed));
    await vi.advanceTimersByTimeAsync(10);
    await watcher.stop();
    const late = lines.flatMap((line) => (line.type === 'verdict' && line.verdict.code === 'late-reply' ? [line.verdict] : []));
    expect(late).toHaveLength(1);
    expect(late[0]).toMatchObject(expected);
  });

  it('says when the device sent another request with the id since, answered already: the late reply is a second answer to that one', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const watcher = new Watcher({ mode: 'fed', amqpUrl: 'amqp://127.0.0.1:1', exchange: 'amq.direct', requestKeys: ['#'], timeoutMs: 100, lateWindowMs: 60_000 });
    const lines: WatchLine[] = [];
    watcher.on('line', (line) => lines.push(line));
    await watcher.start();
    const routed = ['mqtt-subscription-devqos1'];
    watcher.feed(message('rpc_queue', { id: '6', reply_to: 'reply/dev' }, ['rpc_queue']));
    await vi.advanceTimersByTimeAsync(1000);
    // The device rebooted and counts from 1 again: its new "6" is answered at once; the old one's reply comes after.
    watcher.feed(message('rpc_queue', { id: '6', reply_to: 'reply/dev' }, ['rpc_queue']));
    watcher.feed(message('reply.dev', { id: '6', worker: 'fast' }, routed));
    await vi.advanceTimersByTimeAsync(10);
    watcher.feed(message('reply.dev', { id: '6', worker: 'slow' }, routed));
    await vi.advanceTimersByTimeAsync(10);
    await watcher.stop();
    expect(lines.filter((line) => line.type === 'pair')).toHaveLength(1);
    const late = lines.flatMap((line) => (line.type === 'verdict' && line.verdict.code === 'late-reply' ? [line.verdict] : []));
    expect(late).toHaveLength(1);
    expect(late[0]?.message).toMatch(/The device has since sent another request with id 6 on "reply\/dev" \(at [\d:.]+\), answered already: it gets this late reply as a second answer to that one/);
  });
});
