import { getEventListeners } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { runLoad } from '../../src/core/rpc/load-engine';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler } from '../../src/core/rpc/handlers';
import { RpcServer } from '../../src/core/rpc/server';
import { uniqueName } from '../support/names';

const broker = inject('broker');
let server: RpcServer;
let client: RpcClient;
const warnings: Error[] = [];
const onWarning = (warning: Error): void => void warnings.push(warning);

beforeAll(async () => {
  server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 2, prefetch: 100, handler: await loadHandler({ kind: 'echo' }) });
  await server.start();
  client = new RpcClient({ mqttUrl: broker.urls.mqtt, clientId: uniqueName('device'), strategy: 'shared' });
  await client.connect();
});

afterAll(async () => {
  await client.close();
  await server.stop(2000);
});

afterEach(() => {
  process.off('warning', onWarning);
  warnings.splice(0);
});

describe('a load run', () => {
  it('of 1,000 requests at concurrency 50 leaves its signal without listeners and prints no MaxListenersExceededWarning', async () => {
    process.on('warning', onWarning);
    const controller = new AbortController();
    const summary = await runLoad(client, {
      count: 1000,
      concurrency: 50,
      call: { topic: server.queue, params: 'load', timeoutMs: 30_000 },
      signal: controller.signal,
      onProgress: () => undefined,
    });
    // Node reports the warning on a later tick: let those run before looking.
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(summary).toMatchObject({ completed: 1000, failed: 0, cancelled: false });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    expect(warnings.map((warning) => `${warning.name}: ${warning.message}`)).toEqual([]);
  }, 60_000);

  it('cancelled midway ends every call in flight as cancelled and leaves its signal without listeners', async () => {
    const controller = new AbortController();
    const running = runLoad(client, {
      count: 1000,
      concurrency: 20,
      // nobody consumes this queue: every call waits until it is cancelled
      call: { topic: uniqueName('nobody'), params: 'load', timeoutMs: 30_000 },
      signal: controller.signal,
      onProgress: (progress) => {
        if (progress.elapsedMs > 0) controller.abort();
      },
      progressEveryMs: 50,
    });
    const summary = await running;
    expect(summary.cancelled).toBe(true);
    expect(summary.errors).toEqual({ cancelled: 20 });
    expect(summary.notSent).toBe(980);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  }, 60_000);
});
