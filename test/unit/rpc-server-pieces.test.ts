/** The RPC server's pieces on fake channels: no broker (the integration tests run the whole server on a real one). */
import { EventEmitter } from 'node:events';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { describe, expect, it, vi } from 'vitest';
import { AckBatcher } from '../../src/core/rpc/ack-batcher';
import { classifyReplyFailure, FailedReplies, learnMaxMessageSize } from '../../src/core/rpc/reply-failure';
import { HandlerRunner, type Running } from '../../src/core/rpc/handler-runner';
import { declareTopology, type TopologyModel } from '../../src/core/rpc/queue-topology';
import { channelDrained, WorkerPool, type Worker, type WorkerModel, type WorkerPoolHost } from '../../src/core/rpc/worker-pool';
import { encodeHandlerReply, publishReply, replyProperties } from '../../src/core/rpc/reply-publish';
import { HandlerError } from '../../src/core/rpc/handlers';
import type { RpcRequest } from '../../src/core/rpc/envelope';
import { defaultEnvelopeFields } from '../../src/shared/rpc';
import { AMQPLIB_NACKED } from '../../src/core/links/amqp-link';
import { BridgeError } from '../../src/core/errors';
import type { ServerProblem } from '../../src/core/rpc/server-types';

const delivery = (tag: number): ConsumeMessage => ({ fields: { deliveryTag: tag } }) as unknown as ConsumeMessage;
const nextTurn = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

/** Records the acks and nacks the batcher writes, as amqplib's channel would send them. */
class FakeAckChannel {
  readonly calls: string[] = [];
  ack(message: ConsumeMessage, allUpTo = false): void {
    this.calls.push(`ack ${message.fields.deliveryTag}${allUpTo ? ' multiple' : ''}`);
  }
  nack(message: ConsumeMessage, allUpTo = false, requeue = true): void {
    this.calls.push(`nack ${message.fields.deliveryTag}${allUpTo ? ' multiple' : ''}${requeue ? ' requeue' : ''}`);
  }
}

describe('the ack batcher', () => {
  it('acks the ready run at the head of the line with one basic.ack multiple, at the end of the turn', async () => {
    const channel = new FakeAckChannel();
    const acks = new AckBatcher<ConsumeMessage>(channel);
    const messages = [1, 2, 3].map(delivery);
    for (const message of messages) acks.track(message);
    for (const message of messages) acks.settle(message, 'ack', false);
    expect(channel.calls).toEqual([]);
    await nextTurn();
    expect(channel.calls).toEqual(['ack 3 multiple']);
    expect(acks.pending).toBe(0);
  });

  it('acks ready deliveries behind one still being handled alone, and the held one later', async () => {
    const channel = new FakeAckChannel();
    const acks = new AckBatcher<ConsumeMessage>(channel);
    const slow = delivery(1);
    const quick = delivery(2);
    const quicker = delivery(3);
    for (const message of [slow, quick, quicker]) acks.track(message);
    acks.settle(quick, 'ack', false);
    acks.settle(quicker, 'ack', false);
    await nextTurn();
    expect(channel.calls).toEqual(['ack 2', 'ack 3']);
    acks.settle(slow, 'ack', false);
    await nextTurn();
    expect(channel.calls).toEqual(['ack 2', 'ack 3', 'ack 1']);
  });

  it('rejects at once without requeue, marks the delivery settled, and acks at once when told to', () => {
    const channel = new FakeAckChannel();
    const acks = new AckBatcher<ConsumeMessage>(channel);
    const bad = delivery(7);
    const good = delivery(8);
    const badDelivery = acks.track(bad);
    acks.track(good);
    acks.settle(bad, 'reject', false);
    expect(badDelivery.settled).toBe(true);
    expect(channel.calls).toEqual(['nack 7']);
    acks.settle(good, 'ack', true);
    expect(channel.calls).toEqual(['nack 7', 'ack 8']);
  });

  it('puts a delivery back on its queue at once when told to requeue it', () => {
    const channel = new FakeAckChannel();
    const acks = new AckBatcher<ConsumeMessage>(channel);
    const again = delivery(3);
    const tracked = acks.track(again);
    acks.settle(again, 'requeue', false);
    expect(tracked.settled).toBe(true);
    expect(channel.calls).toEqual(['nack 3 requeue']);
    expect(acks.pending).toBe(0);
  });

  it('keeps the arrival order through rejects in the middle: the ready run after a rejected head goes as one multiple', async () => {
    const channel = new FakeAckChannel();
    const acks = new AckBatcher<ConsumeMessage>(channel);
    const messages = [1, 2, 3, 4, 5].map(delivery);
    for (const message of messages) acks.track(message);
    acks.settle(messages[2]!, 'reject', false);
    acks.settle(messages[1]!, 'ack', false);
    acks.settle(messages[3]!, 'ack', false);
    await nextTurn();
    // 1 still being handled: 2 and 4 go alone, 3 was rejected at once.
    expect(channel.calls).toEqual(['nack 3', 'ack 2', 'ack 4']);
    acks.settle(messages[0]!, 'reject', false);
    acks.settle(messages[4]!, 'ack', false);
    await nextTurn();
    expect(channel.calls).toEqual(['nack 3', 'ack 2', 'ack 4', 'nack 1', 'ack 5']);
    expect(acks.pending).toBe(0);
    // Tracked after the line emptied: the links start over.
    const next = [6, 7].map(delivery);
    for (const message of next) acks.track(message);
    acks.settle(next[0]!, 'ack', false);
    acks.settle(next[1]!, 'ack', false);
    await nextTurn();
    expect(channel.calls.slice(5)).toEqual(['ack 7 multiple']);
    expect(acks.pending).toBe(0);
  });

  it('settles the Delivery track gave (no lookup), once: a second settle of it, or one from another batcher, goes alone', async () => {
    const channel = new FakeAckChannel();
    const acks = new AckBatcher<ConsumeMessage>(channel);
    const first = acks.track(delivery(1));
    const second = acks.track(delivery(2));
    acks.settleDelivery(second, 'reject', false);
    acks.settleDelivery(second, 'reject', false);
    expect(acks.pending).toBe(1);
    acks.settleDelivery(first, 'ack', false);
    await nextTurn();
    const foreign = new AckBatcher<ConsumeMessage>(new FakeAckChannel()).track(delivery(9));
    acks.settleDelivery(foreign, 'ack', true);
    expect(channel.calls).toEqual(['nack 2', 'nack 2', 'ack 1', 'ack 9']);
    expect([first.settled, second.settled, acks.pending]).toEqual([true, true, 0]);
  });

  it('survives a channel that throws on ack (closed under it)', async () => {
    const acks = new AckBatcher<ConsumeMessage>({
      ack: () => {
        throw new Error('Channel closed');
      },
      nack: () => undefined,
    });
    const message = delivery(1);
    acks.track(message);
    acks.settle(message, 'ack', false);
    await nextTurn();
    expect(acks.pending).toBe(0);
  });
});

describe('classifying a reply the broker did not confirm', () => {
  const tooLarge = 'PRECONDITION_FAILED - message size 2000 is larger than configured max size 1000';

  it('blames the reply whose own size breaks the limit the broker named, and learns that limit', () => {
    const verdict = classifyReplyFailure({ failureMessage: 'channel closed', closeReason: tooLarge, bodyBytes: 2000, maxMessageBytes: 134_217_728, blamedBefore: false });
    expect(verdict).toMatchObject({ tooLarge: true, blamed: false, maxMessageBytes: 1000, remember: { code: 'reply-too-large' } });
    expect(verdict.remember?.reason).toBe("The reply was 2000 bytes, over the broker's max_message_size (1000)");
  });

  it('does not remember a small sibling lost with the channel a too-large reply closed', () => {
    const verdict = classifyReplyFailure({ failureMessage: 'channel closed', closeReason: tooLarge, bodyBytes: 10, maxMessageBytes: 134_217_728, blamedBefore: false });
    expect(verdict).toMatchObject({ tooLarge: false, blamed: false, remember: undefined });
  });

  it("remembers amqplib's nack as reply-failed, with the reply to publish again (a queue went down or was full)", () => {
    const verdict = classifyReplyFailure({ failureMessage: AMQPLIB_NACKED, closeReason: undefined, bodyBytes: 10, maxMessageBytes: 1000, blamedBefore: false });
    expect(verdict).toMatchObject({ tooLarge: false, blamed: false, reason: AMQPLIB_NACKED, remember: { code: 'reply-failed', resend: true } });
  });

  it('blames another channel error on one reply only, once per close', () => {
    const facts = { failureMessage: 'channel closed', closeReason: 'NOT_FOUND - no exchange', bodyBytes: 10, maxMessageBytes: 1000 };
    const first = classifyReplyFailure({ ...facts, blamedBefore: false });
    expect(first).toMatchObject({ blamed: true, reason: 'channel closed; the broker closed the channel: NOT_FOUND - no exchange', remember: { code: 'reply-failed', resend: false } });
    expect(classifyReplyFailure({ ...facts, blamedBefore: true })).toMatchObject({ blamed: false, remember: undefined });
  });

  it('forgets nothing of a lost connection: the request is handled again on redelivery', () => {
    const verdict = classifyReplyFailure({ failureMessage: 'Connection closed', closeReason: undefined, bodyBytes: 10, maxMessageBytes: 1000, blamedBefore: false });
    expect(verdict.remember).toBeUndefined();
  });

  it('only lowers the known limit', () => {
    expect(learnMaxMessageSize(tooLarge, 500)).toBe(500);
    expect(learnMaxMessageSize('something else', 500)).toBe(500);
  });

  it("keeps refused replies by routing key, id and the request's bytes, counting only answers from memory refused again", () => {
    const failed = new FailedReplies(2);
    const request = Buffer.from('{"id":"1"}');
    const refusal = { code: 'reply-failed' as const, reason: 'x' };
    failed.remember('1', 'reply.a', refusal, request, { again: false });
    expect(failed.find('1', 'reply.b', request)).toBeUndefined();
    // Another request that reuses the id and the reply topic (a device counting from 1 again) is not this one.
    expect(failed.find('1', 'reply.a', Buffer.from('{"id":"1","n":2}'))).toBeUndefined();
    expect(failed.find('1', 'reply.a', request)).toMatchObject({ code: 'reply-failed', reason: 'x', attempts: 0 });
    // The answer from memory was refused too: one attempt, after which the server rejects the request.
    failed.remember('1', 'reply.a', { code: 'reply-too-large', reason: 'y' }, request, { again: true });
    expect(failed.find('1', 'reply.a', request)).toMatchObject({ code: 'reply-too-large', reason: 'y', attempts: 1 });
    failed.forget('1', 'reply.a');
    expect(failed.find('1', 'reply.a', request)).toBeUndefined();
  });

  it('keeps a nacked reply (a copy off the shared pool) within a byte budget, and frees its bytes when forgotten or evicted', () => {
    const failed = new FailedReplies(2, 10);
    const nacked = { code: 'reply-failed' as const, reason: 'nacked' };
    const request = (id: string): Buffer => Buffer.from(id);
    const reply = Buffer.from('123456');
    failed.remember('1', 'reply.a', nacked, request('1'), { again: false, body: reply, answer: { outcome: 'result' } });
    const first = failed.find('1', 'reply.a', request('1'));
    expect(first?.body?.toString()).toBe('123456');
    expect(first?.body?.buffer).not.toBe(reply.buffer);
    expect(first?.answer).toEqual({ outcome: 'result' });
    // Over the budget: remembered without its reply (the redelivery gets an error reply, as before).
    failed.remember('2', 'reply.a', nacked, request('2'), { again: false, body: Buffer.from('7890ab') });
    expect(failed.find('2', 'reply.a', request('2'))?.body).toBeUndefined();
    expect(failed.bytes).toBe(6);
    // Refused again from memory: not kept for a third try.
    failed.remember('1', 'reply.a', nacked, request('1'), { again: true, body: reply });
    expect(failed.find('1', 'reply.a', request('1'))?.body).toBeUndefined();
    expect(failed.bytes).toBe(0);
    failed.remember('3', 'reply.a', nacked, request('3'), { again: false, body: Buffer.from('cd') });
    failed.forget('3', 'reply.a');
    expect(failed.bytes).toBe(0);
    failed.remember('4', 'reply.a', nacked, request('4'), { again: false, body: Buffer.from('ef') });
    failed.remember('5', 'reply.a', nacked, request('5'), { again: false, body: Buffer.from('gh') });
    failed.remember('6', 'reply.a', nacked, request('6'), { again: false, body: Buffer.from('ij') });
    expect(failed.bytes).toBe(4);
  });
});

const request = (fields: Partial<RpcRequest> = {}): RpcRequest => ({
  id: '1',
  replyTopic: 'reply/x',
  replyRoutingKey: 'reply.x',
  replySource: 'body',
  method: 'm',
  params: 'p',
  body: {},
  correlationId: undefined,
  correlationHeader: undefined,
  ...fields,
});

describe('the handler runner', () => {
  const runner = (handler: (request: RpcRequest, context: { signal: AbortSignal }) => unknown, timeoutMs = 1000, maxAbandoned = 10): { run: HandlerRunner; timeouts: Running[] } => {
    const timeouts: Running[] = [];
    return { run: new HandlerRunner({ handler, timeoutMs, maxAbandoned, onTimeout: (entry) => timeouts.push(entry) }), timeouts };
  };

  it('answers a synchronous handler at once, without a promise', () => {
    const { run } = runner((asked) => asked.params);
    expect(run.run(1, '1', 'worker-1', request())).toEqual({ ok: true, result: 'p' });
    run.finished(1);
    expect(run.ids).toEqual([]);
  });

  it('turns whatever a handler throws into an error, a HandlerError keeping its code', async () => {
    expect(runner(() => {
      throw undefined;
    }).run.run(1, '1', 'w', request())).toEqual({ ok: false, error: { code: 'handler-error', message: 'the handler threw undefined' } });
    expect(await runner(() => Promise.reject(new HandlerError('no-stock', 'none left'))).run.run(1, '1', 'w', request())).toEqual({ ok: false, error: { code: 'no-stock', message: 'none left' } });
  });

  it('abandons a handler past its timeout, aborts its signal, and lists it until it returns', async () => {
    vi.useFakeTimers();
    try {
      let release: () => void = () => undefined;
      let signal: AbortSignal | undefined;
      const { run, timeouts } = runner((_, context) => {
        signal = context.signal;
        return new Promise<void>((resolve) => (release = resolve));
      }, 50);
      const settled = run.run(1, 'slow', 'worker-1', request());
      await vi.advanceTimersByTimeAsync(50);
      expect(await settled).toMatchObject({ ok: false, error: { code: 'handler-timeout' } });
      expect(timeouts.map((entry) => entry.rpcId)).toEqual(['slow']);
      expect(signal?.aborted).toBe(true);
      run.finished(1);
      expect(run.report()).toEqual({ unfinished: [], abandoned: ['slow'], abandonedForgotten: 0 });
      release();
      await vi.advanceTimersByTimeAsync(0);
      expect(run.ids).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('forgets the oldest abandoned handlers beyond the cap', async () => {
    vi.useFakeTimers();
    try {
      const { run } = runner(() => new Promise(() => undefined), 10, 2);
      const all = [1, 2, 3, 4].map((ticket) => run.run(ticket, `hang-${ticket}`, 'w', request()));
      await vi.advanceTimersByTimeAsync(10);
      await Promise.all(all);
      expect(run.report()).toEqual({ unfinished: [], abandoned: ['hang-3', 'hang-4'], abandonedForgotten: 2 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('gives a signal born aborted to a handler that reads it after the stop', () => {
    let read: (() => AbortSignal) | undefined;
    const { run } = runner((_, context) => {
      read = () => context.signal;
      return new Promise(() => undefined);
    });
    void run.run(1, '1', 'w', request());
    run.abortAll();
    expect(read?.().aborted).toBe(true);
    expect(run.report().unfinished).toEqual(['1']);
  });
});

describe('encoding a handler outcome as a reply', () => {
  it('answers a result over the limit, or one JSON cannot carry, with an error', () => {
    const big = encodeHandlerReply({ ok: true, result: 'x'.repeat(100) }, request(), 'w', defaultEnvelopeFields, 50);
    expect(big.tooLargeBytes).toBeGreaterThan(50);
    expect(JSON.parse(big.body.toString())).toMatchObject({ id: '1', error: { code: 'reply-too-large' } });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(encodeHandlerReply({ ok: true, result: cyclic }, request(), 'w', defaultEnvelopeFields, 1000).error?.code).toBe('unserializable-result');
    expect(encodeHandlerReply({ ok: true, result: 5 }, request(), 'w', defaultEnvelopeFields, 1000).error).toBeUndefined();
  });
});

describe('publishing a reply', () => {
  it('copies the correlation back, marks it mandatory, adds trace headers, and calls back once with the confirm', () => {
    const published: unknown[][] = [];
    const channel = {
      publish: (...args: unknown[]) => {
        published.push(args);
        (args[4] as (err: unknown) => void)(null);
        return false;
      },
    } as unknown as Pick<ConfirmChannel, 'publish'>;
    const asked = request({ correlationHeader: 'abc' });
    const confirms: unknown[] = [];
    const writable = publishReply(channel, 'amq.direct', asked, 'w-1', 2, Buffer.from('{}'), { traceparent: 't' }, (failure) => confirms.push(failure));
    expect(writable).toBe(false);
    expect(confirms).toEqual([undefined]);
    // amqplib calls back again for every unconfirmed publish when the channel closes: the caller is told once only.
    (published[0]?.[4] as (err: unknown) => void)(new Error('Channel closed'));
    expect(confirms).toEqual([undefined]);
    expect(published[0]?.slice(0, 2)).toEqual(['amq.direct', 'reply.x']);
    expect(published[0]?.[3]).toEqual({ messageId: 'w-1', contentType: 'application/json', deliveryMode: 2, mandatory: true, headers: { 'x-correlation-id': 'abc', traceparent: 't' } });
    expect(replyProperties(request({ correlationId: 'c' }), 'w-2', 1)).toEqual({ messageId: 'w-2', contentType: 'application/json', deliveryMode: 1, correlationId: 'c' });
  });

  it('returns the error of a channel that throws on publish, and never calls back for it', () => {
    let callback: ((err: unknown) => void) | undefined;
    const channel = {
      publish: (...args: unknown[]) => {
        callback = args[4] as (err: unknown) => void;
        throw new Error('Channel closed');
      },
    } as unknown as Pick<ConfirmChannel, 'publish'>;
    const confirms: unknown[] = [];
    const published = publishReply(channel, 'x', request(), 'id', 2, Buffer.alloc(0), undefined, (failure) => confirms.push(failure));
    expect(published instanceof Error && published.message).toBe('Channel closed');
    callback?.(new Error('Channel closed'));
    expect(confirms).toEqual([]);
  });
});

/** A channel for set-up: records what was declared; `refuse` makes the named operation fail as the broker would. */
class FakeSetupChannel extends EventEmitter {
  constructor(
    private readonly log: string[],
    private readonly refuse: Partial<Record<string, string>>,
  ) {
    super();
  }
  private async op(name: string, detail: string): Promise<void> {
    this.log.push(`${name} ${detail}`);
    const refusal = this.refuse[name];
    if (refusal) throw new Error(refusal);
  }
  checkExchange = (exchange: string): Promise<void> => this.op('checkExchange', exchange);
  checkQueue = (queue: string): Promise<void> => this.op('checkQueue', queue);
  assertQueue = (queue: string, options: { arguments: Record<string, string> }): Promise<void> => this.op('assertQueue', `${queue} ${options.arguments['x-queue-type']}`);
  bindQueue = (queue: string, exchange: string, key: string): Promise<void> => this.op('bindQueue', `${queue} ${exchange} ${key}`);
  close = (): Promise<void> => Promise.resolve();
}

const setupModel = (log: string[], refuse: Partial<Record<string, string>> = {}): TopologyModel =>
  ({ createChannel: () => Promise.resolve(new FakeSetupChannel(log, refuse)) }) as unknown as TopologyModel;

describe('the queue topology', () => {
  it('binds an existing queue as it is when no type is asked', async () => {
    const log: string[] = [];
    await declareTopology(setupModel(log), { exchange: 'amq.direct', queue: 'rpc', queueType: undefined });
    expect(log).toEqual(['checkExchange amq.direct', 'checkQueue rpc', 'bindQueue rpc amq.direct rpc']);
  });

  it('declares a missing queue classic, and always says the asked type', async () => {
    const log: string[] = [];
    await declareTopology(setupModel(log, { checkQueue: 'NOT_FOUND' }), { exchange: 'amq.direct', queue: 'rpc', queueType: undefined });
    expect(log.slice(2)).toEqual(['assertQueue rpc classic', 'bindQueue rpc amq.direct rpc']);
    const quorum: string[] = [];
    await declareTopology(setupModel(quorum), { exchange: 'amq.direct', queue: 'rpc', queueType: 'quorum' });
    expect(quorum).toEqual(['checkExchange amq.direct', 'assertQueue rpc quorum', 'bindQueue rpc amq.direct rpc']);
  });

  it('says which exchange is missing, and what to do about a queue of another type', async () => {
    await expect(declareTopology(setupModel([], { checkExchange: 'NOT_FOUND' }), { exchange: 'mqtt.x', queue: 'rpc', queueType: undefined })).rejects.toMatchObject({
      code: 'not-found',
      message: expect.stringContaining('The exchange "mqtt.x" does not exist'),
    });
    const inequivalent = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'rpc'";
    const refused = declareTopology(setupModel([], { assertQueue: inequivalent }), { exchange: 'amq.direct', queue: 'rpc', queueType: 'quorum' });
    await expect(refused).rejects.toBeInstanceOf(BridgeError);
    await expect(refused).rejects.toMatchObject({ code: 'broker-failed', message: expect.stringContaining('another type than quorum') });
  });
});

/** A worker's confirm channel: an EventEmitter (close, error, drain, return) that records what the pool asked. */
class FakeWorkerChannel extends EventEmitter {
  consumer: ((message: ConsumeMessage | null) => void) | undefined;
  prefetched = 0;
  closed = false;
  ack = (): void => undefined;
  nack = (): void => undefined;
  prefetch = (count: number): Promise<void> => {
    this.prefetched = count;
    return Promise.resolve();
  };
  consume = (_queue: string, consumer: (message: ConsumeMessage | null) => void): Promise<{ consumerTag: string }> => {
    this.consumer = consumer;
    return Promise.resolve({ consumerTag: 'tag' });
  };
  cancel = (): Promise<void> => Promise.resolve();
  close = (): Promise<void> => {
    this.closed = true;
    this.emit('close');
    return Promise.resolve();
  };
}

function poolFor(overrides: Partial<WorkerPoolHost> = {}): { pool: WorkerPool; channels: FakeWorkerChannel[]; model: WorkerModel; delivered: string[]; problems: ServerProblem[] } {
  const channels: FakeWorkerChannel[] = [];
  const delivered: string[] = [];
  const problems: ServerProblem[] = [];
  const model = {
    createConfirmChannel: () => {
      const channel = new FakeWorkerChannel();
      channels.push(channel);
      return Promise.resolve(channel as unknown as ConfirmChannel);
    },
  } as WorkerModel;
  const host: WorkerPoolHost = {
    queue: 'rpc',
    prefetch: 3,
    stopping: () => false,
    connected: () => true,
    deliver: (worker, message) => delivered.push(`${worker.name} ${message?.fields.deliveryTag ?? 'cancelled'}`),
    problem: (problem) => problems.push(problem),
    channelError: () => undefined,
    opened: () => undefined,
    openWorker: (opening, name) => pool.open(opening, name),
    ...overrides,
  };
  const pool = new WorkerPool(host);
  return { pool, channels, model, delivered, problems };
}

describe('the worker pool', () => {
  it('opens one consumer per worker with the prefetch, and hands their deliveries over by worker', async () => {
    const { pool, channels, model, delivered } = poolFor();
    await pool.start(model, 2);
    expect(pool.workers.map((worker) => worker.name)).toEqual(['worker-1', 'worker-2']);
    expect(channels.map((channel) => channel.prefetched)).toEqual([3, 3]);
    channels[1]?.consumer?.(delivery(5));
    channels[0]?.consumer?.(null);
    expect(delivered).toEqual(['worker-2 5', 'worker-1 cancelled']);
  });

  it('leaves nothing consuming when a stop begins while it opens', async () => {
    let stopping = false;
    const { pool, channels, model } = poolFor({ stopping: () => stopping, opened: (name) => (stopping = name === 'worker-1') });
    await pool.start(model, 3);
    expect(pool.workers).toEqual([]);
    expect(channels.map((channel) => channel.closed)).toEqual([true, true]);
  });

  it('reopens a worker whose channel the broker closed, and says so', async () => {
    vi.useFakeTimers();
    try {
      const { pool, channels, model, problems } = poolFor();
      await pool.start(model, 1);
      const first = pool.workers[0];
      channels[0]?.emit('error', new Error('PRECONDITION_FAILED - something'));
      expect(first?.closeReason).toBe('PRECONDITION_FAILED - something');
      channels[0]?.emit('close');
      await vi.advanceTimersByTimeAsync(100);
      expect(problems.map((problem) => problem.kind)).toEqual(['channel-reopened']);
      expect(pool.workers[0]).not.toBe(first);
      expect(channels).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('shares one drain listener among the replies waiting on a channel, and stops waiting when it closes', async () => {
    const channel = new FakeWorkerChannel();
    const worker = { channel: channel as unknown as ConfirmChannel } as Worker;
    const waits = [channelDrained(worker), channelDrained(worker), channelDrained(worker)];
    expect(channel.listenerCount('drain')).toBe(1);
    channel.emit('drain');
    await Promise.all(waits);
    const closing = channelDrained(worker);
    channel.emit('close');
    await closing;
    expect(channel.listenerCount('drain')).toBe(0);
    expect(channel.listenerCount('close')).toBe(0);
  });
});
