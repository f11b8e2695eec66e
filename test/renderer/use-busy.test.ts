import { describe, expect, it } from 'vitest';
import { useBusy } from '../../src/renderer/src/stores/use-busy';
import { useServerStore } from '../../src/renderer/src/stores/server';
import { useBindingsStore } from '../../src/renderer/src/stores/bindings';
import type { ServerView } from '../../src/shared/contract';
import { appWith, fakeClient } from './fake-client';

/** A promise the test settles by hand, to look at a store while an attempt is running. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('useBusy: the busy/error pattern of every store', () => {
  it('says what runs while an attempt runs, and nothing once it settled', async () => {
    const busy = useBusy();
    const work = deferred<number>();
    const running = busy.run(() => work.promise, 'Connecting');
    expect(busy.active.value).toBe(true);
    expect(busy.label.value).toBe('Connecting');
    work.resolve(7);
    await expect(running).resolves.toBe(7);
    expect(busy.active.value).toBe(false);
    expect(busy.label.value).toBeUndefined();
  });

  it('stays busy until the last of two overlapping attempts settles', async () => {
    const busy = useBusy();
    const first = deferred<void>();
    const second = deferred<void>();
    const one = busy.run(() => first.promise);
    const two = busy.run(() => second.promise);
    first.resolve();
    await one;
    expect(busy.active.value).toBe(true);
    second.resolve();
    await two;
    expect(busy.active.value).toBe(false);
  });

  it('keeps an error through the next attempt until it settles: cleared by its success, replaced by its failure', async () => {
    const busy = useBusy();
    await expect(busy.run(() => Promise.reject(new Error('Access refused.')))).resolves.toBeUndefined();
    expect(busy.error.value).toBe('Access refused.');

    const retry = deferred<string>();
    const retrying = busy.run(() => retry.promise);
    expect(busy.error.value).toBe('Access refused.');
    retry.reject(new Error('Still refused.'));
    await retrying;
    expect(busy.error.value).toBe('Still refused.');

    await busy.run(() => Promise.resolve('ok'));
    expect(busy.error.value).toBeUndefined();
  });
});

describe('stores reset their errors by the same rule', () => {
  it('the server store keeps the start error while the retry runs and clears it when the retry works', async () => {
    let answer = deferred<ServerView>();
    const app = appWith(fakeClient({ 'server.start': () => answer.promise }));
    const server = app.runWithContext(() => useServerStore());
    const first = server.start();
    answer.reject(new Error('Queue "rpc_queue" is exclusive to another connection.'));
    await first;
    expect(server.error).toBe('Queue "rpc_queue" is exclusive to another connection.');

    answer = deferred<ServerView>();
    const second = server.start();
    expect(server.busy).toBe(true);
    expect(server.error).toBe('Queue "rpc_queue" is exclusive to another connection.');
    answer.resolve({ state: 'running', stats: { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} } });
    await second;
    expect(server.busy).toBe(false);
    expect(server.error).toBeUndefined();
  });

  it('a successful bindings poll does not wipe the probe error', async () => {
    const app = appWith(
      fakeClient({
        'broker.probe.run': () => Promise.reject(new Error('The probe needs the management API.')),
        'broker.bindings.list': ({ exchange }) => ({ exchange, exchangeType: 'direct', bindings: [] }),
      }),
    );
    const bindings = app.runWithContext(() => useBindingsStore());
    await bindings.runProbe();
    expect(bindings.error).toBe('The probe needs the management API.');
    await bindings.refresh();
    expect(bindings.error).toBe('The probe needs the management API.');
  });
});
