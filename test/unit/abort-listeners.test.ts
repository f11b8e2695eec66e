import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { RpcRequest } from '../../src/core/rpc/envelope';
import { loadHandler } from '../../src/core/rpc/handlers';

describe('the delay handler', () => {
  it("removes its abort listener from the server's stop signal when each delay ends", async () => {
    const handler = await loadHandler({ kind: 'delay', ms: 1 });
    const stop = new AbortController();
    const request: RpcRequest = {
      id: 'one',
      replyTopic: 'reply/one',
      replyRoutingKey: 'reply.one',
      replySource: 'body',
      correlationHeader: undefined,
      method: undefined,
      params: 'x',
      body: {},
      correlationId: undefined,
    };
    for (let index = 0; index < 20; index += 1) await handler(request, { worker: 'worker-1', signal: stop.signal });
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0);
  });
});
