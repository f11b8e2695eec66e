/**
 * The app's Watch (issue 23) on a real broker: a Session watches a third-party amqplib worker answer requests that
 * devices publish, streams batches with the pairs and verdicts, opens one RPC in the trace, and leaves nothing on the
 * broker when the user stops it or the connection closes (tap), or gives tracing back (firehose).
 */
import { EventEmitter } from 'node:events';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ConnectionProfile, Events, WatchBatch, WatchView } from '../../src/shared/contract';
import type { TraceStep } from '../../src/shared/trace';
import { summarize } from '../../src/shared/trace-summary';
import { dispatch } from '../../src/core/dispatch';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { uniqueName } from '../support/names';
import { createTestVhost, type TestVhost } from '../support/vhosts';

const broker = inject('broker');
const events = new EventEmitter();
let vhost: TestVhost;
let session: Session;
let profile: ConnectionProfile;
let traffic: ChannelModel;
let channel: Channel;
const requestKey = uniqueName('watch_req');
const replyKey = uniqueName('watch_reply');

beforeAll(async () => {
  vhost = await createTestVhost(broker.urls, 'session-watch');
  session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), traceFlushMs: 10, emit: (name, payload) => events.emit(name, payload) });
  const mqttUser = encodeURIComponent(`${vhost.name}:guest`);
  profile = {
    name: 'watch',
    amqpUrl: vhost.amqpUrl,
    mqttUrl: broker.urls.mqtt.replace('mqtt://', `mqtt://${mqttUser}:guest@`),
    managementUrl: broker.urls.management,
    vhost: vhost.name,
    exchange: 'amq.direct',
  };
  await session.open(profile);
  // The outside clients: a worker that answers "ok-" ids at once and never "none-" ones, and a device's reply queue.
  traffic = await amqp.connect(vhost.amqpUrl);
  channel = await traffic.createChannel();
  await channel.assertQueue(requestKey, { durable: false, autoDelete: true });
  await channel.bindQueue(requestKey, 'amq.direct', requestKey);
  await channel.assertQueue(replyKey, { durable: false, autoDelete: true });
  await channel.bindQueue(replyKey, 'amq.direct', replyKey);
  await channel.consume(requestKey, (message) => {
    if (!message) return;
    channel.ack(message);
    const request = JSON.parse(message.content.toString()) as { id: string; reply_to: string };
    if (request.id.startsWith('ok-')) channel.publish('amq.direct', request.reply_to.replaceAll('/', '.'), Buffer.from(JSON.stringify({ id: request.id, result: 1, worker: 'node-w1' })));
  });
});

afterAll(async () => {
  await traffic?.close().catch(() => undefined);
  await session?.dispose();
  await vhost?.remove();
}, 60_000);

const request = (id: string): boolean => channel.publish('amq.direct', requestKey, Buffer.from(JSON.stringify({ id, reply_to: replyKey.replaceAll('.', '/') })));

/** Resolves with the first event `name` whose payload satisfies `until`. */
function next<E extends keyof Events>(name: E, until: (payload: Events[E]) => boolean): Promise<Events[E]> {
  return new Promise((resolve) => {
    const listener = (payload: Events[E]): void => {
      if (!until(payload)) return;
      events.off(name, listener);
      resolve(payload);
    };
    events.on(name, listener);
  });
}

/** Every batch from now on, gathered. */
function gather(): { batches: WatchBatch[]; stop: () => void } {
  const batches: WatchBatch[] = [];
  const listener = (batch: WatchBatch): void => void batches.push(batch);
  events.on('watch.batch.added', listener);
  return { batches, stop: () => void events.off('watch.batch.added', listener) };
}

async function leftOnBroker(queue: string): Promise<{ queue: boolean; bindings: number }> {
  const queues = await vhost.api.queues();
  const bindings = await vhost.api.bindings('amq.direct');
  return { queue: queues.some((item) => item.name === queue), bindings: bindings.filter((binding) => binding.destination === queue).length };
}

describe('the session watch (tap)', () => {
  let tapQueue: string;

  it('streams batches with the pairs, the worker and the verdict of each unanswered request', async () => {
    const started = await dispatch(session.handlers, 'watch.start', { mode: 'tap', timeoutMs: 800, requestKeys: [requestKey] });
    expect(started).toMatchObject({ ok: true, result: { state: 'running', exchange: 'amq.direct' } });
    tapQueue = (started as { result: WatchView }).result.through as string;
    expect(tapQueue).toMatch(/^bridgescope\.watch-tap\./);
    const seen = gather();
    // The first request binds the reply key (it stays bound a while), so the prompt replies after it are all seen.
    const first = next('watch.batch.added', (batch) => batch.verdicts.some((rpc) => rpc.id === 'none-0'));
    request('none-0');
    await first;
    const done = next('watch.batch.added', (batch) => batch.verdicts.some((rpc) => rpc.id === 'none-1'));
    for (const id of ['ok-1', 'ok-2', 'ok-3', 'ok-4', 'none-1']) request(id);
    const last = await done;
    seen.stop();
    const line = last.stats.find((stats) => stats.topic === requestKey);
    // none-0 was the first on its reply key (bound only then: "not seen"); none-1 came while the key was bound (unanswered).
    expect(line).toMatchObject({ requests: 6, replies: 4, unanswered: 1, unseen: 1, workers: { 'node-w1': 4 } });
    expect(line?.p50).toBeGreaterThanOrEqual(0);
    expect(line?.p99).toBeGreaterThanOrEqual(line?.p50 ?? 0);
    expect(seen.batches.reduce((sum, batch) => sum + batch.pairs, 0)).toBe(4);
    expect(seen.batches.flatMap((batch) => batch.verdicts).find((rpc) => rpc.id === 'none-0')?.verdict?.code).toBe('undetermined');
    const verdict = seen.batches.flatMap((batch) => batch.verdicts).find((rpc) => rpc.id === 'none-1');
    // The worker took the request and said nothing: the same engine's verdict as for the app's own RPCs.
    expect(verdict?.verdict?.code).toBe('server-slow');
    expect(verdict?.verdict?.message.length).toBeGreaterThan(20);
    const snapshot = await dispatch(session.handlers, 'watch.snapshot.get', {});
    // A page that opens now reads the same count of replied pairs, and the latest replies.
    expect(snapshot).toMatchObject({ ok: true, result: { view: { state: 'running' }, pairs: 4 } });
    expect((snapshot as { result: { replied: Array<{ id: string }> } }).result.replied.map((rpc) => rpc.id).sort()).toEqual(['ok-1', 'ok-2', 'ok-3', 'ok-4']);
  });

  it('opens a watched RPC in the trace with the steps the watch saw and its verdict', async () => {
    const { verdicts } = await session.handlers['watch.snapshot.get']({});
    const rpc = verdicts.find((line) => line.id === 'none-1');
    expect(rpc).toBeDefined();
    const steps = new Promise<TraceStep[]>((resolve) => {
      const listener = ({ steps: added }: Events['trace.steps.added']): void => {
        if (!added.some((step) => step.kind === 'rpc.diagnosed' && step.rpcId.startsWith('watch-'))) return;
        events.off('trace.steps.added', listener);
        resolve(added);
      };
      events.on('trace.steps.added', listener);
    });
    const opened = await dispatch(session.handlers, 'watch.rpc.open', { key: rpc!.key });
    expect(opened.ok).toBe(true);
    const rpcId = (opened as { result: { rpcId: string } }).result.rpcId;
    const own = (await steps).filter((step) => step.rpcId === rpcId);
    expect(own.map((step) => step.kind)).toEqual(['broker.published', 'rpc.diagnosed']);
    // The Trace panel reads the reply topic the device asked for (not a "?"), and the request's key as the broker saw it.
    expect(rpc?.replyTopic).toBe(replyKey.replaceAll('.', '/'));
    expect(summarize(rpcId, own)).toMatchObject({ replyTopic: replyKey.replaceAll('.', '/'), brokerRequestKeys: [requestKey], brokerSeen: true });
    const unknown = await dispatch(session.handlers, 'watch.rpc.open', { key: 'w999999' });
    expect(unknown).toMatchObject({ ok: false, error: { code: 'bad-input' } });
  });

  it('Stop deletes the tap queue and its bindings', async () => {
    expect(await leftOnBroker(tapQueue)).toMatchObject({ queue: true });
    const stopped = await dispatch(session.handlers, 'watch.stop', {});
    expect(stopped).toMatchObject({ ok: true, result: { state: 'stopped' } });
    expect(await leftOnBroker(tapQueue)).toEqual({ queue: false, bindings: 0 });
  });

  it('closing the connection stops a running watch and leaves nothing on the broker', async () => {
    const started = await dispatch(session.handlers, 'watch.start', { mode: 'tap', timeoutMs: 500, requestKeys: [requestKey, 'other.key'] });
    const queue = (started as { result: WatchView }).result.through as string;
    expect((await leftOnBroker(queue)).bindings).toBe(2);
    const stoppedView = next('watch.view.changed', (view) => view.state === 'stopped');
    await dispatch(session.handlers, 'connection.close', {});
    await stoppedView;
    expect(await leftOnBroker(queue)).toEqual({ queue: false, bindings: 0 });
    const refused = await dispatch(session.handlers, 'watch.start', { mode: 'tap', timeoutMs: 500, requestKeys: [requestKey] });
    expect(refused).toMatchObject({ ok: false, error: { code: 'not-connected' } });
    await session.open(profile);
  });

  it('refuses a second watch and bad settings with one sentence', async () => {
    const bad = await dispatch(session.handlers, 'watch.start', { mode: 'tap', timeoutMs: 0, requestKeys: [] });
    expect(bad).toMatchObject({ ok: false, error: { code: 'bad-input' } });
    await dispatch(session.handlers, 'watch.start', { mode: 'tap', timeoutMs: 500, requestKeys: [requestKey] });
    const again = await dispatch(session.handlers, 'watch.start', { mode: 'tap', timeoutMs: 500, requestKeys: [requestKey] });
    expect(again).toMatchObject({ ok: false, error: { code: 'bad-input', message: expect.stringMatching(/already running/) } });
    await dispatch(session.handlers, 'watch.stop', {});
  });
});

describe('the session watch (firehose, on a vhost of its own)', () => {
  it('pairs through the vhost\'s tracing and switches it back off on Stop', async () => {
    expect(await vhost.api.tracing()).toBe(false);
    const started = await dispatch(session.handlers, 'watch.start', { mode: 'firehose', timeoutMs: 800, requestKeys: [requestKey] });
    expect(started).toMatchObject({ ok: true, result: { state: 'running', through: 'firehose' } });
    expect(await vhost.api.tracing()).toBe(true);
    const paired = next('watch.batch.added', (batch) => batch.replied.some((rpc) => rpc.id === 'ok-f1'));
    request('ok-f1');
    const batch = await paired;
    expect(batch.replied.find((rpc) => rpc.id === 'ok-f1')).toMatchObject({ topic: requestKey, replyKey, worker: 'node-w1' });
    const stopped = await dispatch(session.handlers, 'watch.stop', {});
    expect(stopped).toMatchObject({ ok: true, result: { state: 'stopped', message: expect.stringMatching(/switched back off/) } });
    expect(await vhost.api.tracing()).toBe(false);
  });
});
