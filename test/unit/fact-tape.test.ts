import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { FactTape, type TapeOwner } from '../../src/core/trace/fact-tape';
import { TraceStore } from '../../src/core/trace/trace-store';
import { amqpWire, mqttWire, WIRE_SOURCE } from '../../src/core/trace/message-view';
import type { TraceStepDraft } from '../../src/shared/trace';

/** Equal as the trace's readers see values: same types, same keys in the same order, same prototypes, -0 and NaN included. */
function sameValue(read: unknown, written: unknown, path = '$'): void {
  if (typeof written !== 'object' || written === null) {
    expect(Object.is(read, written), `${path}: ${String(read)} is not ${String(written)}`).toBe(true);
    return;
  }
  expect(Object.getPrototypeOf(read), `${path}: prototype`).toBe(Object.getPrototypeOf(written));
  if (Array.isArray(written)) {
    expect((read as unknown[]).length, `${path}: length`).toBe(written.length);
    written.forEach((item, index) => sameValue((read as unknown[])[index], item, `${path}[${index}]`));
    return;
  }
  if (Object.getPrototypeOf(written) !== Object.prototype) {
    // Anything but a plain object or array is kept by reference.
    expect(read, `${path}: kept by reference`).toBe(written);
    return;
  }
  expect(Object.keys(read as object), `${path}: keys in order`).toEqual(Object.keys(written));
  for (const key of Object.keys(written)) sameValue((read as Record<string, unknown>)[key], (written as Record<string, unknown>)[key], `${path}.${key}`);
}

const owner = (): TapeOwner & { told: number[] } => {
  const told: number[] = [];
  return { live: true, told, unTape: (segment) => void told.push(segment) };
};

describe('the fact tape', () => {
  it('reads back every value as written: plain objects and arrays rebuilt key by key in order, anything else by reference', () => {
    const tape = new FactTape(1 << 16);
    const me = owner();
    const values = fc.anything({ withBigInt: true, withDate: true, withTypedArray: true, withNullPrototype: true, withObjectString: true, withSparseArray: false, maxDepth: 5 });
    fc.assert(
      fc.property(fc.array(values, { maxLength: 5 }), fc.double(), (record, head) => {
        const position = tape.write(me, head, record);
        expect(position).toBeGreaterThanOrEqual(0);
        expect(Object.is(tape.head(position), head)).toBe(true);
        sameValue(tape.read(position, record.length), record);
        record.forEach((value, index) => sameValue(tape.readOne(position, index), value));
      }),
      { numRuns: 400 },
    );
  });

  it('reads back any string exactly, short or long: non-ASCII, astral characters, lone surrogates', () => {
    const tape = new FactTape(1 << 16);
    const me = owner();
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit)), maxLength: 80 })), { maxLength: 6 }), (strings) => {
        const position = tape.write(me, 0, strings);
        expect(tape.read(position, strings.length)).toEqual(strings);
      }),
      { numRuns: 300 },
    );
    const odd = ['\ud800', `x${'\udc00'.repeat(40)}`, `a${'😀'.repeat(30)}\ud83d`, ''];
    expect(tape.read(tape.write(me, 0, odd), odd.length)).toEqual(odd);
  });

  it('keeps an object with a __proto__ key, or nested too deep to follow, by reference (a cycle never loops)', () => {
    const tape = new FactTape(1 << 16);
    const proto = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
    const cycle: Record<string, unknown> = { name: 'loop' };
    cycle.self = cycle;
    const position = tape.write(owner(), 0, [proto, cycle]);
    const [readProto, readCycle] = tape.read(position, 2) as [Record<string, unknown>, Record<string, unknown>];
    expect(readProto).toBe(proto);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // Plain levels are rebuilt, the level past the depth limit is the original object.
    let level: Record<string, unknown> = readCycle;
    for (let depth = 0; depth < 20 && level !== cycle; depth += 1) level = level.self as Record<string, unknown>;
    expect(level).toBe(cycle);
  });

  it('copies a Buffer (a body head) into memory of its own, read back as a Buffer; a Buffer longer than 8 KiB stays a reference', () => {
    const tape = new FactTape(1 << 16);
    const slab = Buffer.alloc(16 * 1024, 0x61);
    const head = slab.subarray(10, 60);
    const large = Buffer.alloc(9 * 1024, 0x62);
    const position = tape.write(owner(), 0, [{ head, large, empty: Buffer.alloc(0) }]);
    slab.fill(0x7a);
    const [read] = tape.read(position, 1) as [{ head: Buffer; large: Buffer; empty: Buffer }];
    expect(Buffer.isBuffer(read.head)).toBe(true);
    expect(read.head.toString('latin1')).toBe('a'.repeat(50));
    // Not a view of the tape (written again later) nor of Buffer's shared pool.
    expect(read.head.buffer.byteLength).toBe(50);
    expect(read.large).toBe(large);
    expect(read.empty).toEqual(Buffer.alloc(0));
  });

  it('points at a string it wrote lately instead of copying it again, and reads every record back right when segments fill and come round', () => {
    // Two segments; strings of 2,000 code units fill a segment's bytes long before its cells, so records do not fit
    // at the end of a segment (written again at the start of the next) and the ring comes round many times.
    const pool = ['reply/5cca04f1-0000-4000-8000-000000000000', 'reply.5cca04f1-0000-4000-8000-000000000000', 'amq.ctag-VxE', 'x'.repeat(2_000), 'y'.repeat(2_000), 'é'.repeat(300), 'mqtt.acknowledged', 'short'];
    fc.assert(
      fc.property(fc.array(fc.array(fc.nat(pool.length - 1).map((index) => pool[index] as string), { minLength: 1, maxLength: 12 }), { minLength: 50, maxLength: 400 }), (records) => {
        const tape = new FactTape(1);
        const written: Array<{ position: number; record: string[] }> = [];
        // What the store does: a segment about to be written again is read back first.
        const checking: TapeOwner = {
          live: true,
          unTape: (segment) => {
            for (const { position, record } of written) if (FactTape.segmentOf(position) === segment) expect(tape.read(position, record.length)).toEqual(record);
            written.splice(0, written.length, ...written.filter(({ position }) => FactTape.segmentOf(position) !== segment));
          },
        };
        for (const record of records) {
          const position = tape.write(checking, 0, record);
          expect(position).toBeGreaterThanOrEqual(0);
          written.push({ position, record });
        }
        for (const { position, record } of written) expect(tape.read(position, record.length)).toEqual(record);
      }),
      { numRuns: 60 },
    );
  });

  it('says a record bigger than a segment cannot be kept, and goes on writing', () => {
    const tape = new FactTape(1 << 16);
    const me = owner();
    expect(tape.write(me, 1, [Array.from({ length: 20_000 }, (_, index) => index)])).toBe(-1);
    const position = tape.write(me, 2, ['after']);
    expect(tape.read(position, 1)).toEqual(['after']);
  });

  it('tells the live owners of a segment before it is written again, and not the owners that went', () => {
    const tape = new FactTape(1);
    const kept = owner();
    const gone = { ...owner(), live: false };
    const first = tape.write(kept, 0, ['kept']);
    tape.write(gone, 0, ['gone']);
    // Two segments of 16,384 cells, 8,191 records of 2 cells each: the third segment is the first one again.
    for (let written = 0; written < 16_000; written += 1) tape.write(owner(), 0, ['filler']);
    expect(kept.told).toEqual([]);
    for (let written = 0; written < 400; written += 1) tape.write(owner(), 0, ['filler']);
    expect(kept.told).toEqual([FactTape.segmentOf(first)]);
    expect(gone.told).toEqual([]);
  });
});

describe('the trace store with its tape', () => {
  const body = (id: string, bytes: number): Buffer => Buffer.from(JSON.stringify({ id, params: 'x'.repeat(bytes) }));
  const drafts = (id: string, bytes: number, at: number): TraceStepDraft[] => [
    { rpcId: id, at, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic: 'reply/a', replyStrategy: 'shared', bytes }, [WIRE_SOURCE]: mqttWire({ qos: 1, retain: false }, body(id, bytes)) } as TraceStepDraft,
    { rpcId: id, at, source: 'client', kind: 'mqtt.published', detail: { topic: 'rpc_queue', qosAsked: 1, predictedRoutingKey: 'rpc_queue' } },
    {
      rpcId: id,
      at: at + 1,
      source: 'server',
      kind: 'worker.received',
      detail: { worker: 'w1', consumerTag: 'ctag', queue: 'rpc_queue', routingKey: 'rpc_queue', redelivered: false },
      [WIRE_SOURCE]: amqpWire({ contentType: undefined, headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false, raw: Buffer.from([0, 1, 2]) }, deliveryMode: 2, timestamp: new Date(at) }, body(id, bytes)),
    } as TraceStepDraft,
    { rpcId: id, at: at + 2, source: 'server', kind: 'handler.finished', detail: { worker: 'w1', durationMs: 0.25, outcome: 'result' } },
    { rpcId: id, at: at + 2, source: 'server', kind: 'reply.published', detail: { worker: 'w1', exchange: 'amq.topic', routingKey: 'reply.a', replyTopic: 'reply/a', mandatory: true }, [WIRE_SOURCE]: amqpWire({ messageId: `r-${id}`, deliveryMode: 2 }, body(id, 3)) } as TraceStepDraft,
    { rpcId: id, at: at + 3, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } },
    { rpcId: id, at: at + 3, source: 'broker', kind: 'broker.delivered', detail: { queue: 'rpc_queue', routingKeys: ['rpc_queue'], redelivered: false, leg: 'request', consumer: { connection: 'c1', channel: 1 } } },
    { rpcId: id, at: at + 4, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/a', replyTopic: 'reply/a', topicMismatch: false, bytes: 3, qos: 1 }, [WIRE_SOURCE]: mqttWire({ qos: 1, retain: false, dup: false }, body(id, 3)) } as TraceStepDraft,
  ];

  // 40 RPCs of 64 steps: the tape (two segments at least) comes round while the RPCs are still kept, and the 20 KB body
  // budget drops most previews on the way, some still on the tape. With a cap of 30 RPCs, the oldest go meanwhile.
  it.each([
    { maxRpcs: 40, maxStepsPerRpc: 64, maxBodyBytes: 20_000, readsBack: true },
    // RPCs come and go here: the segment written again holds only steps of RPCs that went.
    { maxRpcs: 30, maxStepsPerRpc: 64, maxBodyBytes: 20_000, readsBack: false },
  ])('gives every reader the steps, wires and flow order a store that built them at once gives, after its tape came round, previews were dropped and RPCs went (cap $maxRpcs)', ({ readsBack, ...options }) => {
    // Asked only when a kept RPC's steps are read back before their segment is written again.
    const readBack = vi.spyOn(FactTape, 'segmentOf');
    const taped = new TraceStore(options);
    const built = new TraceStore(options);
    built.on('added', () => undefined);
    for (let round = 0; round < 8; round += 1) {
      for (let rpc = 0; rpc < 40; rpc += 1) {
        const id = `rpc-${rpc}`;
        // Every other round in reverse: later phases first, so steps are inserted before steps on the tape.
        // Each store gets drafts of its own (a budget drop changes a wire's source in place).
        for (const store of [taped, built]) {
          const steps = drafts(id, 50 + rpc * 7, 1_000 * round + rpc);
          if (round % 2 === 1) steps.reverse();
          for (const draft of steps) store.record(draft);
        }
      }
    }
    expect(readBack.mock.calls.length > 0).toBe(readsBack);
    readBack.mockRestore();
    expect(taped.bodies.used).toBe(built.bodies.used);
    expect(taped.findDetail('rpc-3', 'broker.delivered')).toEqual(built.findDetail('rpc-3', 'broker.delivered'));
    expect(taped.allSteps()).toEqual(built.allSteps());
    expect(taped.rpcIds()).toEqual(built.rpcIds());
    expect(taped.export().steps).toEqual(built.export().steps);
    expect(taped.droppedRpcs).toBe(built.droppedRpcs);
    // Cleared, the tape starts over.
    taped.clear();
    built.clear();
    for (const store of [taped, built]) for (const draft of drafts('after-clear', 10, 5)) store.record(draft);
    expect(taped.allSteps()).toEqual(built.allSteps());
  });
});
