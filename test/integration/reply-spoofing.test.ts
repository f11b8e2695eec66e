import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Events } from '../../src/shared/contract';
import type { Verdict } from '../../src/shared/diagnosis';
import type { RpcOutcome } from '../../src/shared/rpc';
import type { TraceStep } from '../../src/shared/trace';
import { dispatch } from '../../src/core/dispatch';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { uniqueName } from '../support/names';
import { createTestVhost, type TestVhost } from '../support/vhosts';

/**
 * Issue 27, item 4: another MQTT client subscribes to the request topic (its own queue bound to the request key) and
 * answers first with the request's id; the embedded server answers too, after it. A real Session on the run's broker,
 * in a vhost of its own (tracing is per vhost).
 */
const broker = inject('broker');
const events = new EventEmitter();
const gateKey = '__bridgescopeSpoofGate';
let vhost: TestVhost;
let session: Session;
let moduleDir: string;
let mqttUrl: string;
/** resolves per request id once the forged reply to it was acknowledged by the broker (so it is queued for the client first) */
const spoofed = new Map<string, { promise: Promise<void>; resolve: () => void }>();

function gate(id: string): { promise: Promise<void>; resolve: () => void } {
  let entry = spoofed.get(id);
  if (!entry) {
    let resolve = (): void => undefined;
    const promise = new Promise<void>((done) => (resolve = done));
    entry = { promise, resolve };
    spoofed.set(id, entry);
  }
  return entry;
}

beforeAll(async () => {
  vhost = await createTestVhost(broker.urls, 'reply-spoofing');
  moduleDir = await mkdtemp(join(tmpdir(), 'bridgescope-spoof-'));
  // The real server's handler answers only after the forged reply was acknowledged: the forgery is first, every time.
  (globalThis as Record<string, unknown>)[gateKey] = (id: string) => gate(id).promise;
  await writeFile(join(moduleDir, 'after-spoof.mjs'), `export default async (request) => { await globalThis.${gateKey}(request.id); return request.params; };\n`);
  // The handler module is this test's own file: a browser-mode session loads one only when its user allowed it.
  session = new Session({ mode: 'browser', allowHandlerModules: true, profiles: new ProfileStore(memorySecretBox()), traceFlushMs: 10, emit: (name, payload) => events.emit(name, payload) });
  const mqttUser = encodeURIComponent(`${vhost.name}:guest`);
  mqttUrl = broker.urls.mqtt.replace('mqtt://', `mqtt://${mqttUser}:guest@`);
  await session.open({ name: 'spoofing', amqpUrl: vhost.amqpUrl, mqttUrl, managementUrl: broker.urls.management, vhost: vhost.name, exchange: 'amq.direct' });
});

afterAll(async () => {
  await session?.dispose();
  await vhost?.remove();
  delete (globalThis as Record<string, unknown>)[gateKey];
  if (moduleDir) await rm(moduleDir, { recursive: true, force: true });
}, 60_000);

/** An MQTT client that subscribes to the request topic and answers every request at once with a forged result. */
async function startForger(topic: string): Promise<{ client: MqttClient; connectionPrefix: string }> {
  const client = await mqtt.connectAsync(mqttUrl, { clientId: uniqueName('evil'), reconnectPeriod: 0 });
  await client.subscribeAsync(topic, { qos: 1 });
  client.on('message', (_topic, payload) => {
    const request = JSON.parse(payload.toString()) as { id: string; reply_to: string };
    void client
      .publishAsync(request.reply_to, JSON.stringify({ id: request.id, result: 'INJECTED-42', worker: 'evil-worker' }), { qos: 1 })
      .then(() => gate(request.id).resolve());
  });
  const local = (client.stream as unknown as { address(): AddressInfo }).address();
  // The firehose names a connection "peer -> listener" (measured on 3.10.8: docs/RABBITMQ.md).
  return { client, connectionPrefix: `127.0.0.1:${local.port} -> ` };
}

/** Every step of one RPC as the UI receives them, and the first verdict that satisfies `until`. */
function verdictOf(until: (verdict: Verdict) => boolean): { steps: TraceStep[]; verdict: Promise<Verdict>; stop: () => void } {
  const steps: TraceStep[] = [];
  let resolve: (verdict: Verdict) => void = () => undefined;
  const verdict = new Promise<Verdict>((done) => (resolve = done));
  const listener = ({ steps: added }: Events['trace.steps.added']): void => {
    steps.push(...added);
    for (const step of added) if (step.kind === 'rpc.diagnosed' && until(step.detail.verdict)) resolve(step.detail.verdict);
  };
  events.on('trace.steps.added', listener);
  return { steps, verdict, stop: () => events.off('trace.steps.added', listener) };
}

describe.each([
  ['on', true],
  ['off', false],
])('a forged reply that arrives before the server\'s, firehose %s', (_label, firehose) => {
  let queue: string;
  let forger: Awaited<ReturnType<typeof startForger>>;

  beforeAll(async () => {
    expect((await session.setTracing(firehose)).state).toBe(firehose ? 'on' : 'off');
    queue = uniqueName('spoof_queue');
    const started = await dispatch(session.handlers, 'server.start', { exchange: 'amq.direct', queue, workers: 1, prefetch: 1, handler: join(moduleDir, 'after-spoof.mjs') });
    expect(started).toMatchObject({ ok: true, result: { state: 'running' } });
    forger = await startForger(queue);
  });
  afterAll(async () => {
    await forger?.client.endAsync();
    await session.stopServer();
    await session.setTracing(false);
  }, 30_000);

  it(
    firehose
      ? 'is taken (it came first), then flagged as not from a consumer of the request, naming its connection, with the server\'s reply listed as the second, ignored one'
      : 'is taken (it came first), then flagged as one of two replies, saying the embedded server\'s reply is not the one taken, and never called foreign (the firehose is off)',
    async () => {
      // The verdict once the client's second reply is in too: the broker's records of both replies can come before it (4.3.6).
      const watch = verdictOf(
        (verdict) =>
          verdict.code === (firehose ? 'reply-foreign' : 'replied-twice') &&
          verdict.message.includes(firehose ? '1 more reply' : 'worker') &&
          verdict.evidence.some((line) => line.includes('after the first and was ignored')) &&
          // With the firehose, also the broker's record of the second reply: under load it can come after the client's.
          (!firehose || verdict.evidence.some((line) => / of 2 published by /.test(line))),
      );
      try {
        const reply = await dispatch(session.handlers, 'rpc.request.send', { topic: queue, qos: 1, strategy: 'shared', payloadText: '{"params": {"n": 1}}', timeoutMs: 5000 });
        expect(reply.ok).toBe(true);
        const outcome = (reply as { result: RpcOutcome }).result;
        // The reply taken is the forgery: it came first.
        expect(outcome).toMatchObject({ result: 'INJECTED-42', worker: 'evil-worker' });
        const verdict = await watch.verdict;
        // The server's true reply arrived second, and the client kept it in the trace.
        expect(watch.steps.filter((step) => step.rpcId === outcome.id && step.kind === 'mqtt.reply.ignored')).toHaveLength(1);
        const evidence = verdict.evidence.join('\n');
        expect(evidence).toContain('after the first and was ignored: {"id":');
        expect(evidence).toContain('"result":{"n":1}');
        if (firehose) {
          expect(verdict.hop).toBe('reply-exchange');
          expect(verdict.message).toContain(`published by user "guest" on connection "${forger.connectionPrefix}`);
          expect(verdict.message).toContain('worker "evil-worker"');
          expect(verdict.message).toContain(`only as an MQTT subscriber of "${queue}"`);
          expect(verdict.message).toContain(`it went to queue "${queue}" on connection`);
          expect(verdict.message).toContain('The client took it because it came first; 1 more reply to the same id came after and was not used');
          expect(evidence).toMatch(new RegExp(`reply \\d of 2 published by user "guest" on connection "${forger.connectionPrefix}[^"]*".*\\(the reply the client took\\)`));
          expect(evidence).toMatch(/reply \d of 2 published by user "guest" on connection "[^"]+", routed to "mqtt-subscription-[^"]+": \{"id":"[^"]+","result":\{"n":1\}/);
        } else {
          expect(verdict.message).toContain('the client took the first (which names itself worker "evil-worker")');
          expect(verdict.message).toContain("The embedded server's own reply (worker-");
        }
        // The trace's summary (Trace and History) carries the doubt, not "replied".
        expect(session.store.summary(outcome.id).verdict).toEqual(verdict);
      } finally {
        watch.stop();
      }
    },
  );
});
