/** The server's acks, batched per turn of the event loop: never ahead of a request still being handled, never held back by it. */
import { describe, expect, inject, it } from 'vitest';
import { RpcServer } from '../../src/core/rpc/server';
import type { RpcHandler } from '../../src/core/rpc/handlers';
import { amqpChannelForFile, collectReplies, declareRequestQueue, publishRequest } from '../support/rpc-queues';

const broker = inject('broker');
const { channel, closers } = amqpChannelForFile(broker.urls.amqp);

describe('acks behind a slow request', () => {
  it('keeps serving with prefetch 2 while the oldest request is still being handled', async () => {
    const queue = await declareRequestQueue(channel(), closers);
    const collector = await collectReplies(channel(), 'acks-slow');
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let slowStarted: () => void = () => undefined;
    const slowRunning = new Promise<void>((resolve) => (slowStarted = resolve));
    const handler: RpcHandler = async (request) => {
      if (request.id === 'slow') {
        slowStarted();
        await released;
      }
      return request.params;
    };
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: 1, prefetch: 2, handler });
    closers.push(() => server.stop(1000));
    await server.start();
    publishRequest(channel(), queue, 'slow', collector.replyTopic);
    await slowRunning;
    const fast = ['f1', 'f2', 'f3', 'f4', 'f5'];
    for (const id of fast) publishRequest(channel(), queue, id, collector.replyTopic);
    // Each fast request needs the slot of the one before it: an ack held behind 'slow' would stop the line at f2.
    await Promise.all(fast.map((id) => collector.waitFor(id)));
    expect(collector.replies.has('slow')).toBe(false);
    release();
    await collector.waitFor('slow');
    const report = await server.stopWithReport(5000);
    expect(report.drained).toBe(true);
    const { messageCount } = await channel().checkQueue(queue);
    expect(messageCount).toBe(0);
  });

  it('leaves nothing to redeliver after a clean stop that follows a burst of replies', async () => {
    const queue = await declareRequestQueue(channel(), closers);
    const collector = await collectReplies(channel(), 'acks-burst');
    const handler: RpcHandler = (request) => request.params;
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: 2, prefetch: 50, handler });
    closers.push(() => server.stop(1000));
    await server.start();
    const ids = Array.from({ length: 300 }, (_, index) => `b${index}`);
    for (const id of ids) publishRequest(channel(), queue, id, collector.replyTopic);
    await Promise.all(ids.map((id) => collector.waitFor(id)));
    const report = await server.stopWithReport(5000);
    expect(report.drained).toBe(true);
    // Every ack reached the broker before the channels closed: nothing goes back to the queue, nothing is answered twice.
    const { messageCount } = await channel().checkQueue(queue);
    expect(messageCount).toBe(0);
    expect(ids.every((id) => collector.replies.get(id)?.length === 1)).toBe(true);
  });
});
