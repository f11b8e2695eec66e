import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { LoadProgress } from '../../src/shared/contract';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { uniqueName } from '../support/names';

const broker = inject('broker');
let session: Session;
const progressListeners = new Set<(progress: LoadProgress) => void>();

beforeAll(async () => {
  session = new Session({
    mode: 'browser',
    profiles: new ProfileStore(memorySecretBox()),
    emit: (name, payload) => {
      if (name === 'load.progress.changed') for (const listener of progressListeners) listener(payload as LoadProgress);
    },
  });
  await session.open({ name: 'test', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: 'amq.direct' });
});

afterAll(async () => {
  await session.dispose();
});

describe('a load run when the connection is closed under it', () => {
  it('ends at once as cancelled, with every request accounted for, instead of timing out one by one', async () => {
    const firstTick = new Promise<void>((resolve) => progressListeners.add(() => resolve()));
    const run = session.handlers['load.run.start']({
      // nobody consumes this queue: the calls wait until something ends them
      topic: uniqueName('nobody'),
      qos: 1,
      strategy: 'shared',
      payloadText: '"load"',
      timeoutMs: 25_000,
      count: 500,
      concurrency: 8,
    });
    await firstTick;
    const closedAt = performance.now();
    await session.handlers['connection.close']({});
    const summary = await run;
    expect(performance.now() - closedAt).toBeLessThan(5000);
    expect(summary).toMatchObject({ cancelled: true, completed: 0, failed: 8, errors: { cancelled: 8 }, notSent: 492 });
    // Each failed request got a verdict from its own steps (no broker was asked per request): cancelled.
    const verdicts = session.store
      .rpcIds()
      .flatMap((rpcId) => session.store.steps(rpcId))
      .flatMap((step) => (step.kind === 'rpc.diagnosed' ? [step.detail.verdict.code] : []));
    expect(verdicts).toEqual(Array.from({ length: 8 }, () => 'cancelled'));
  }, 60_000);
});
