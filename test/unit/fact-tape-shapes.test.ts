import { describe, expect, it } from 'vitest';
import { FactTape } from '../../src/core/trace/fact-tape';
import { TraceStore } from '../../src/core/trace/trace-store';
import { amqpWire, WIRE_SOURCE, wireSourceOf, type PendingDraft } from '../../src/core/trace/message-view';
import { wireOf, type TraceStepDraft } from '../../src/shared/trace';

// Its own file: the tape's shapes are shared by the whole process, and this test uses them all up.

const delivered = (rpcId: string, body: Buffer, routingKeys = ['rpc_queue']): TraceStepDraft =>
  ({
    rpcId,
    at: 1,
    source: 'broker',
    kind: 'broker.delivered',
    detail: { queue: 'rpc_queue', routingKeys, redelivered: false, leg: 'request' },
    [WIRE_SOURCE]: amqpWire({ headers: {} }, body),
  }) as PendingDraft;

describe('a body head the store keeps', () => {
  it('is a copy of its own even when the tape keeps its wire source by reference (every shape used up), and an empty head holds no memory', () => {
    const store = new TraceStore();
    // A kept draft (too big for the tape) with an empty payload: mqtt.js gives it as an empty slice of the socket's chunk.
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const crowded = delivered('empty', chunk.subarray(10, 10), new Array<string>(20_000).fill('k'));
    store.record(crowded);
    expect(wireSourceOf(crowded)?.head.buffer).not.toBe(chunk.buffer);

    // Every shape the tape can learn, learnt: objects of any new shape are kept as they are, by reference.
    const tape = new FactTape(1 << 16);
    const owner = { live: true, unTape: () => undefined };
    for (let index = 0; index < 5000; index += 1) tape.write(owner, 0, [{ [`key-${index}`]: index }]);
    const draft = delivered('by-reference', chunk.subarray(100, 150));
    store.record(draft);
    chunk.fill(0x7a);
    expect(wireOf(store.steps('by-reference')[0] as never)?.body).toMatchObject({ bytes: 50, preview: 'a'.repeat(50) });
  });
});
