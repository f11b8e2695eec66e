import { describe, expect, it, vi } from 'vitest';
import type { SendRequestArgs } from '../../src/shared/contract';
import type { Verdict } from '../../src/shared/diagnosis';
import type { TraceStep } from '../../src/shared/trace';
import { BridgeError, toErrorShape } from '../../src/core/errors';
import { dispatch } from '../../src/core/dispatch';
import type { RpcDiagnosisOptions } from '../../src/core/diagnosis/evidence';
import { RequestsController } from '../../src/core/session/requests';
import type { Connection } from '../../src/core/session/connection';
import type { RpcClient } from '../../src/core/rpc/client';
import type { ConnectionProfile, Handlers } from '../../src/shared/contract';
import { TraceStore } from '../../src/core/trace/trace-store';
import { FakeClient, outcomeFor, profile } from './session-fakes';

const args: SendRequestArgs = { topic: 'devices/rpc', qos: 1, strategy: 'shared', payloadText: '{"params": [1]}', timeoutMs: 1000 };
const verdictFor = (code: Verdict['code']): Verdict => ({ code, hop: 'exchange', message: `verdict ${code} at amqp://bob:secret@host`, evidence: [] });

function setUp(connectionProfile: ConnectionProfile = profile, lateWatchMs?: number) {
  const client = new FakeClient();
  client.link.setStatus({ state: 'connected', since: 1 });
  const store = new TraceStore();
  store.attach(client);
  const asked: RpcDiagnosisOptions[] = [];
  const added: Array<{ rpcId: string; verdict: Verdict }> = [];
  let answer: (options: RpcDiagnosisOptions) => Promise<Verdict> = async () => verdictFor('replied');
  const requests = new RequestsController({
    connection: () => ({ profile: connectionProfile, client: client as unknown as RpcClient }) as Connection,
    steps: (rpcId) => store.steps(rpcId),
    firehoseOn: () => false,
    addVerdict: (rpcId, verdict) => added.push({ rpcId, verdict }),
    onStep: (listener) => {
      store.on('added', listener);
      return () => void store.off('added', listener);
    },
    diagnose: (options) => {
      asked.push(options);
      return answer(options);
    },
    newId: () => 'rpc-1',
    ...(lateWatchMs !== undefined ? { lateWatchMs } : {}),
  });
  return { requests, client, store, asked, added, diagnoseWith: (next: typeof answer) => (answer = next) };
}

/** A client call that composes the request (its first step), then fails with `error`. */
function composedThenFails(client: FakeClient, error: BridgeError): void {
  client.answer = async (options) => {
    const draft = { rpcId: options.id as string, at: 1, source: 'client', kind: 'composed', detail: { topic: 'devices/rpc', qos: 1, replyTopic: 'reply/shared', replyStrategy: 'shared', bytes: 9 } };
    client.step(draft as TraceStep);
    throw error;
  };
}

describe('a request sent from the app', () => {
  it('that timed out on a slow server gets its verdict revised to late-reply when the server publishes the reply later, once', async () => {
    const { requests, client, store, asked, added, diagnoseWith } = setUp();
    diagnoseWith(async (options) => verdictFor(options.steps.some((step) => step.kind === 'reply.published') ? 'late-reply' : 'server-slow'));
    composedThenFails(client, new BridgeError('timeout', 'No reply to rpc-1 within 1000 ms.'));
    const error = await requests.send(args).catch((err: unknown) => err);
    expect(error).toMatchObject({ verdict: verdictFor('server-slow') });
    const replied = { worker: 'w1', exchange: 'amq.direct', routingKey: 'reply.shared', replyTopic: 'reply/shared', mandatory: true };
    // the server's record of the reply, after the client gave up; another RPC's reply changes nothing
    store.add({ rpcId: 'other', at: 5, source: 'server', kind: 'reply.published', detail: replied });
    store.add({ rpcId: 'rpc-1', at: 5, source: 'server', kind: 'reply.published', detail: replied });
    // the revision is decided from the steps alone: a turn of the event loop, no broker round trip
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(added.map((entry) => entry.verdict.code)).toEqual(['server-slow', 'late-reply']);
    // the revision asks no broker
    expect(asked.at(-1)?.broker).toBeUndefined();
    store.add({ rpcId: 'rpc-1', at: 6, source: 'server', kind: 'reply.published', detail: replied });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(added).toHaveLength(2);
  });

  it("that timed out is decided once more at the server's confirm of its late reply (returned: in the evidence), and no longer watched after it", async () => {
    const { requests, client, store, added, diagnoseWith } = setUp();
    diagnoseWith(async (options) => {
      const confirm = options.steps.find((step) => step.kind === 'reply.confirmed');
      const late = options.steps.some((step) => step.kind === 'reply.published');
      return { ...verdictFor(late ? 'late-reply' : 'server-slow'), evidence: confirm?.kind === 'reply.confirmed' ? [`server: the broker ${confirm.detail.outcome} the reply`] : [] };
    });
    composedThenFails(client, new BridgeError('timeout', 'No reply to rpc-1 within 1000 ms.'));
    await requests.send(args).catch(() => undefined);
    expect(store.listenerCount('added')).toBe(1);
    store.add({ rpcId: 'rpc-1', at: 5, source: 'server', kind: 'reply.published', detail: { worker: 'w1', exchange: 'amq.direct', routingKey: 'reply.shared', replyTopic: 'reply/shared', mandatory: true } });
    await new Promise<void>((resolve) => setImmediate(resolve));
    store.add({ rpcId: 'rpc-1', at: 6, source: 'server', kind: 'reply.confirmed', detail: { worker: 'w1', outcome: 'returned', returnReason: 'NO_ROUTE' } });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(added.map((entry) => [entry.verdict.code, ...entry.verdict.evidence])).toEqual([['server-slow'], ['late-reply'], ['late-reply', 'server: the broker returned the reply']]);
    expect(store.listenerCount('added')).toBe(0);
  });

  it('that timed out stops watching for a late reply after lateWatchMs when none comes', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const { requests, client, store, diagnoseWith } = setUp(profile, 60_000);
      diagnoseWith(async () => verdictFor('server-slow'));
      composedThenFails(client, new BridgeError('timeout', 'No reply to rpc-1 within 1000 ms.'));
      await requests.send(args).catch(() => undefined);
      expect(store.listenerCount('added')).toBe(1);
      vi.advanceTimersByTime(60_000);
      expect(store.listenerCount('added')).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('that replied gets its verdict decided again when a second reply or the broker\'s record of a reply comes, once per burst, asking no broker', async () => {
    const { requests, store, asked, added, diagnoseWith } = setUp();
    diagnoseWith(async (options) => verdictFor(options.steps.some((step) => step.kind === 'mqtt.reply.ignored') ? 'replied-twice' : 'replied'));
    const outcome = await requests.send(args);
    expect(outcome.verdict?.code).toBe('replied');
    const second = { topic: 'reply/shared', bytes: 9, reason: 'second-reply' as const };
    const record = { exchange: 'amq.direct', routingKeys: ['reply.shared'], routedQueues: ['q'], leg: 'reply' as const };
    // another RPC's second reply changes nothing; this RPC's record and second reply, in one burst, are decided once
    store.add({ rpcId: 'other', at: 5, source: 'client', kind: 'mqtt.reply.ignored', detail: second });
    store.add({ rpcId: 'rpc-1', at: 5, source: 'broker', kind: 'broker.published', detail: record });
    store.add({ rpcId: 'rpc-1', at: 6, source: 'client', kind: 'mqtt.reply.ignored', detail: second });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(added.map((entry) => entry.verdict.code)).toEqual(['replied', 'replied-twice']);
    expect(asked).toHaveLength(2);
    expect(asked.at(-1)?.broker).toBeUndefined();
    // the same verdict again is not added again
    store.add({ rpcId: 'rpc-1', at: 7, source: 'broker', kind: 'broker.published', detail: record });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(added).toHaveLength(2);
  });

  it('that replied sees a second reply that came while its first verdict was being decided', async () => {
    const { requests, store, added, diagnoseWith } = setUp();
    const second = { topic: 'reply/shared', bytes: 9, reason: 'second-reply' as const };
    let first = true;
    diagnoseWith(async (options) => {
      // The server's true reply lands while the first verdict is decided, before anything watches the RPC's steps.
      if (first) store.add({ rpcId: 'rpc-1', at: 5, source: 'client', kind: 'mqtt.reply.ignored', detail: second });
      first = false;
      return verdictFor(options.steps.some((step) => step.kind === 'mqtt.reply.ignored') ? 'replied-twice' : 'replied');
    });
    expect((await requests.send(args)).verdict?.code).toBe('replied');
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(added.map((entry) => entry.verdict.code)).toEqual(['replied', 'replied-twice']);
  });

  it('that timed out sees the server publish its reply while its first verdict was being decided', async () => {
    const { requests, client, store, added, diagnoseWith } = setUp();
    const replied = { worker: 'w1', exchange: 'amq.direct', routingKey: 'reply.shared', replyTopic: 'reply/shared', mandatory: true };
    let first = true;
    diagnoseWith(async (options) => {
      if (first) store.add({ rpcId: 'rpc-1', at: 5, source: 'server', kind: 'reply.published', detail: replied });
      first = false;
      return verdictFor(options.steps.some((step) => step.kind === 'reply.published') ? 'late-reply' : 'server-slow');
    });
    composedThenFails(client, new BridgeError('timeout', 'No reply to rpc-1 within 1000 ms.'));
    await requests.send(args).catch(() => undefined);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(added.map((entry) => entry.verdict.code)).toEqual(['server-slow', 'late-reply']);
  });

  it('watches the steps of every replied RPC through one listener on the trace store, however many are sent', async () => {
    const { requests, store } = setUp();
    for (let sent = 0; sent < 15; sent += 1) await requests.send(args);
    expect(store.listenerCount('added')).toBe(1);
  });

  it('is sent under the id its verdict is filed under, and returns the outcome with the verdict, asking no broker', async () => {
    const { requests, client, asked, added } = setUp();
    const outcome = await requests.send(args);
    expect(client.calls[0]).toMatchObject({ id: 'rpc-1', topic: 'devices/rpc', payload: { params: [1] }, timeoutMs: 1000 });
    expect(outcome).toEqual({ ...outcomeFor('rpc-1'), verdict: verdictFor('replied') });
    expect(asked[0]).toMatchObject({ rpcId: 'rpc-1', outcome: outcomeFor('rpc-1'), firehose: false });
    expect(asked[0]?.broker).toBeUndefined();
    expect(added).toEqual([{ rpcId: 'rpc-1', verdict: verdictFor('replied') }]);
  });

  it('that fails is rejected with its own code and sentence plus its id and verdict, after the broker of the connection was asked', async () => {
    const { requests, client, asked, added, diagnoseWith } = setUp();
    diagnoseWith(async () => verdictFor('request-unroutable'));
    composedThenFails(client, new BridgeError('timeout', 'No reply to rpc-1 within 1000 ms.'));
    const error = await requests.send(args).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'timeout', message: 'No reply to rpc-1 within 1000 ms.', rpcId: 'rpc-1', verdict: verdictFor('request-unroutable') });
    expect(asked[0]).toMatchObject({ rpcId: 'rpc-1', requestTopic: 'devices/rpc', timeoutMs: 1000, steps: [expect.objectContaining({ kind: 'composed' })] });
    expect(asked[0]?.broker).toEqual({
      managementUrl: profile.managementUrl,
      amqpUrl: profile.amqpUrl,
      vhost: '/',
      exchange: 'amq.direct',
      mqttClientId: 'fake-client',
      mqttConnected: true,
      mqttUsername: 'guest',
    });
    expect(added.map((entry) => entry.verdict.code)).toEqual(['request-unroutable']);
  });

  it('that fails asks the broker at the first node of each list, with the user name and password fields applied', async () => {
    const { requests, client, asked, diagnoseWith } = setUp({
      ...profile,
      amqpUrl: 'amqp://127.0.0.1:5701, amqp://127.0.0.1:5702',
      managementUrl: 'http://127.0.0.1:15701,http://127.0.0.1:15702',
      username: 'ops',
      password: 'p@ss',
    });
    diagnoseWith(async () => verdictFor('request-unroutable'));
    composedThenFails(client, new BridgeError('timeout', 'No reply to rpc-1 within 1000 ms.'));
    await requests.send(args).catch(() => undefined);
    expect(asked[0]?.broker).toMatchObject({ managementUrl: 'http://ops:p%40ss@127.0.0.1:15701', amqpUrl: 'amqp://ops:p%40ss@127.0.0.1:5701' });
  });

  it('that is refused before it was composed keeps its own error, with no verdict and nothing in the trace', async () => {
    const { requests, client, asked, added } = setUp();
    client.answer = async () => {
      throw new BridgeError('bad-input', 'The request topic cannot be used: it contains "#".');
    };
    await expect(requests.send(args)).rejects.toSatisfy((err) => err instanceof BridgeError && err.verdict === undefined && err.code === 'bad-input');
    expect(asked).toEqual([]);
    expect(added).toEqual([]);
  });

  it('whose reply arrives while the broker is being asked is diagnosed again as late', async () => {
    const { requests, client, asked, diagnoseWith } = setUp();
    composedThenFails(client, new BridgeError('timeout', 'No reply to rpc-1 within 1000 ms.'));
    diagnoseWith(async (options) => {
      if (options.lateReply) return verdictFor('late-reply');
      client.emit('stray', { topic: 'reply/shared', id: 'rpc-1', duplicate: false });
      return verdictFor('server-slow');
    });
    await expect(requests.send(args)).rejects.toMatchObject({ verdict: { code: 'late-reply' } });
    expect(asked).toHaveLength(2);
    expect(asked[1]?.lateReply?.topic).toBe('reply/shared');
  });

  it('tells the diagnosis that the MQTT link was lost while the request was in flight', async () => {
    const { requests, client, asked } = setUp();
    composedThenFails(client, new BridgeError('timeout', 'No reply to rpc-1 within 1000 ms.'));
    const fail = client.answer;
    client.answer = async (options) => {
      client.link.setStatus({ state: 'reconnecting', since: 2, attempt: 1, lastError: 'ECONNRESET' });
      return fail(options);
    };
    await requests.send(args).catch(() => undefined);
    expect(asked[0]?.linkLost).toEqual({ at: expect.any(Number), reason: 'ECONNRESET' });
    expect(asked[0]?.broker?.mqttConnected).toBe(false);
  });

  it('leaves no listener on the client once settled', async () => {
    const { requests, client } = setUp();
    await requests.send(args);
    expect(client.listenerCount('stray')).toBe(0);
    expect(client.link.listenerCount('status')).toBe(0);
  });
});

describe('the error shape of a failed RPC', () => {
  it('carries the RPC id and the verdict across dispatch, with no password in the verdict', async () => {
    const failure = new BridgeError('timeout', 'No reply.', { rpcId: 'rpc-9', verdict: verdictFor('no-consumer') });
    const handlers = { 'rpc.request.send': async () => Promise.reject(failure) } as unknown as Handlers;
    const reply = await dispatch(handlers, 'rpc.request.send', args);
    expect(reply).toEqual({ ok: false, error: { code: 'timeout', message: 'No reply.', rpcId: 'rpc-9', verdict: { ...verdictFor('no-consumer'), message: 'verdict no-consumer at amqp://***@host' } } });
  });

  it('has neither field for any other error', () => {
    expect(toErrorShape(new BridgeError('busy', 'Busy.'))).toEqual({ code: 'busy', message: 'Busy.' });
  });
});
