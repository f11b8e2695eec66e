import { describe, expect, it } from 'vitest';
import { RawRequestJoin } from '../../src/core/trace/raw-requests';
import type { TraceStepDraft } from '../../src/shared/trace';

const received = (rpcId: string, routingKey: string, bytes: number): TraceStepDraft => ({
  rpcId,
  at: 1,
  source: 'server',
  kind: 'worker.received',
  detail: { worker: 'worker-1', consumerTag: 'c', queue: 'q', routingKey, redelivered: false, wire: { protocol: 'amqp', properties: {}, headers: {}, body: { bytes, encoding: 'text', preview: '', shown: 0 } } },
});
const rejected = (rpcId: string): TraceStepDraft => ({ rpcId, at: 2, source: 'server', kind: 'request.rejected', detail: { worker: 'worker-1', reason: 'not JSON', bytes: 10 } });

describe('RawRequestJoin: the server steps of a body sent without an id join the send', () => {
  it('the first matching delivery and its later steps take the sender id', () => {
    const join = new RawRequestJoin();
    join.expect('rpc_queue', 10, 'rpc-1');
    expect(join.rename(received('delivery-1-ab', 'rpc_queue', 10)).rpcId).toBe('rpc-1');
    expect(join.rename(rejected('delivery-1-ab')).rpcId).toBe('rpc-1');
    // taken once: the next delivery of the same shape is the server's own
    expect(join.rename(received('delivery-2-cd', 'rpc_queue', 10)).rpcId).toBe('delivery-2-cd');
  });

  it('another routing key, another size, a body with its own id, or a cancelled send stay as they are', () => {
    const join = new RawRequestJoin();
    const cancel = join.expect('rpc_queue', 10, 'rpc-1');
    expect(join.rename(received('delivery-1-ab', 'other', 10)).rpcId).toBe('delivery-1-ab');
    expect(join.rename(received('delivery-2-ab', 'rpc_queue', 11)).rpcId).toBe('delivery-2-ab');
    expect(join.rename(received('their-id', 'rpc_queue', 10)).rpcId).toBe('their-id');
    cancel();
    expect(join.rename(received('delivery-3-ab', 'rpc_queue', 10)).rpcId).toBe('delivery-3-ab');
  });
});
