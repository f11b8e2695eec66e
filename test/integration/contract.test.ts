import { EventEmitter, once } from 'node:events';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { CommandName, EventName, Events, InvokeReply } from '../../src/shared/contract';
import type { HostFrame, ReceivedInvokeFrame } from '../../src/shared/ws-frames';
import { dispatch } from '../../src/core/dispatch';
import { Session } from '../../src/core/session/session';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { startHost, type Host } from '../../src/host/host';
import { uniqueName } from '../support/names';
import { TRACE_EXPORT_VERSION } from '../../src/shared/trace';

const broker = inject('broker');
const events = new EventEmitter();
let host: Host;
let session: Session;

/** A raw view of a transport: what crossed it, as data. */
interface Transport {
  invoke(name: string, args: unknown): Promise<InvokeReply<CommandName>>;
  next<E extends EventName>(name: E, until: (payload: Events[E]) => boolean): Promise<Events[E]>;
  close(): Promise<void>;
}

/** The first event `name` on `emitter` whose payload satisfies `until`. */
function nextEvent<E extends EventName>(emitter: EventEmitter, name: E, until: (payload: Events[E]) => boolean): Promise<Events[E]> {
  return new Promise((resolve) => {
    const listener = (payload: Events[E]): void => {
      if (!until(payload)) return;
      emitter.off(name, listener);
      resolve(payload);
    };
    emitter.on(name, listener);
  });
}

function loopback(): Transport {
  return {
    invoke: (name, args) => dispatch(session.handlers, name, args),
    next: (name, until) => nextEvent(events, name, until),
    close: async () => undefined,
  };
}

async function overWebSocket(): Promise<Transport> {
  const socket = new WebSocket(`${host.origin.replace('http', 'ws')}/ws?token=${host.token}`, { origin: host.origin });
  await once(socket, 'open');
  let nextId = 0;
  const waiting = new Map<number, (reply: InvokeReply<CommandName>) => void>();
  const frames = new EventEmitter();
  socket.on('message', (data) => {
    const frame = JSON.parse(data.toString()) as HostFrame;
    if (frame.type === 'reply') waiting.get(frame.id)?.(frame);
    if (frame.type === 'event') frames.emit(frame.name, frame.payload);
  });
  return {
    invoke(name, args) {
      nextId += 1;
      const id = nextId;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        const frame: ReceivedInvokeFrame = { type: 'invoke', id, command: name, args };
        socket.send(JSON.stringify(frame));
      });
    },
    next: (name, until) => nextEvent(frames, name, until),
    close: async () => {
      socket.close();
      await once(socket, 'close');
    },
  };
}

beforeAll(async () => {
  session = new Session({
    mode: 'browser',
    profiles: new ProfileStore(memorySecretBox()),
    emit: (name, payload) => {
      events.emit(name, payload);
      host?.broadcast(name, payload);
    },
  });
  host = await startHost(session.handlers, { staticDir: join(import.meta.dirname, '..', '..', 'out', 'renderer') });
  await session.open({ name: 'test', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: 'amq.direct' });
});
afterAll(async () => {
  await session.dispose();
  await host.close();
});

const transports: Array<[string, () => Promise<Transport>]> = [
  ['in-memory loopback', async () => loopback()],
  ['WebSocket host', overWebSocket],
];

describe.each(transports)('the contract over the %s', (_name, open) => {
  let transport: Transport;
  beforeAll(async () => {
    transport = await open();
  });
  afterAll(async () => {
    await transport.close();
  });

  it('reports the app state with both links connected', async () => {
    const reply = await transport.invoke('app.state.get', {});
    expect(reply).toMatchObject({ ok: true, result: { mode: 'browser', links: { amqp: { state: 'connected' }, mqtt: { state: 'connected' } } } });
  });

  it('never sends passwords in the app state, and reconnects with the redacted profile it showed', async () => {
    const state = await transport.invoke('app.state.get', {});
    const shown = state.ok ? (state.result as { profile: { amqpUrl: string; managementUrl: string } }).profile : undefined;
    expect(JSON.stringify(state)).not.toContain('guest:guest');
    expect(shown?.amqpUrl).toContain(':***@');
    const reopened = await transport.invoke('connection.open', { profile: shown });
    expect(reopened).toMatchObject({ ok: true, result: { links: { amqp: { state: 'connected' }, mqtt: { state: 'connected' } } } });
  });

  it('tests the redacted profile it showed, one line per URL, without a password in the answer', async () => {
    const state = await transport.invoke('app.state.get', {});
    const shown = state.ok ? (state.result as { profile: unknown }).profile : undefined;
    const reply = await transport.invoke('connection.test', { profile: shown });
    expect(reply).toMatchObject({ ok: true, result: [{ protocol: 'amqp', ok: true }, { protocol: 'mqtt', ok: true }, { protocol: 'management', ok: true }] });
    expect(JSON.stringify(reply)).not.toContain('guest:guest');
  });

  it('maps a topic and explains the dot pitfall', async () => {
    const reply = await transport.invoke('topic.mapping.get', { topic: 'reply/v1.2/x', role: 'reply' });
    expect(reply).toMatchObject({ ok: true, result: { routingKey: 'reply.v1.2.x', backToTopic: 'reply/v1/2/x', roundTrips: false } });
  });

  it('refuses an unknown command and wrong argument types, each in one sentence', async () => {
    expect(await transport.invoke('rpc.request.explode', {})).toMatchObject({ ok: false, error: { code: 'bad-input', message: expect.stringMatching(/not a BridgeScope command/) } });
    const wrongQos = await transport.invoke('rpc.request.send', { topic: 'rpc_queue', qos: 3, strategy: 'shared', payloadText: '', timeoutMs: 100 });
    expect(wrongQos).toMatchObject({ ok: false, error: { code: 'bad-input', message: 'rpc.request.send: qos: QoS must be 0, 1 or 2.' } });
    const notJson = await transport.invoke('rpc.request.send', { topic: 'rpc_queue', qos: 1, strategy: 'shared', payloadText: '{oops', timeoutMs: 100 });
    expect(notJson).toMatchObject({ ok: false, error: { code: 'bad-input', message: expect.stringMatching(/^The payload is not valid JSON/) } });
    expect(await transport.invoke('server.start', { queue: 'q' })).toMatchObject({ ok: false, error: { code: 'bad-input' } });
  });

  it('starts the server, sends a request, streams its trace steps, and stops the server', async () => {
    const queue = uniqueName('rpc_queue');
    expect(await transport.invoke('server.start', { exchange: 'amq.direct', queue, workers: 2, prefetch: 1, handler: 'echo' })).toMatchObject({ ok: true, result: { state: 'running' } });
    const stepsArrived = transport.next('trace.steps.added', ({ steps }) => steps.some((step) => step.kind === 'mqtt.reply.received'));
    const reply = await transport.invoke('rpc.request.send', { topic: queue, qos: 1, strategy: 'shared', payloadText: '{"params": [1, 2]}', timeoutMs: 5000 });
    expect(reply).toMatchObject({ ok: true, result: { result: [1, 2] } });
    const { steps } = await stepsArrived;
    const id = reply.ok ? (reply.result as { id: string }).id : '';
    expect(steps.some((step) => step.rpcId === id)).toBe(true);
    expect(await transport.invoke('server.stop', {})).toMatchObject({ ok: true, result: { state: 'stopped' } });
  });

  it('exports the trace and imports it back with the same RPCs', async () => {
    const exported = await transport.invoke('trace.export.create', {});
    expect(exported).toMatchObject({ ok: true, result: { format: 'bridgescope-trace', version: TRACE_EXPORT_VERSION } });
    const trace = exported.ok ? (exported.result as { steps: Array<{ seq: number }> }) : { steps: [] };
    expect(trace.steps.length).toBeGreaterThan(0);
    const imported = await transport.invoke('trace.import.load', { trace });
    expect(imported.ok).toBe(true);
    // The store renumbers steps on import: everything else of every step comes back, in the same order.
    const withoutSeq = (steps: Array<{ seq: number }>) => steps.map(({ seq: _seq, ...step }) => step);
    expect(withoutSeq(imported.ok ? (imported.result as { steps: Array<{ seq: number }> }).steps : [])).toEqual(withoutSeq(trace.steps));
    expect(await transport.invoke('trace.import.load', { trace: { format: 'nope' } })).toMatchObject({ ok: false, error: { code: 'bad-input' } });
  });
});

describe('the WebSocket host', () => {
  async function upgrade(path: string, origin: string | undefined): Promise<number> {
    const socket = new WebSocket(`${host.origin.replace('http', 'ws')}${path}`, origin ? { origin } : {});
    return new Promise((resolve) => {
      socket.on('open', () => {
        socket.close();
        resolve(101);
      });
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.on('error', () => undefined);
    });
  }

  it('accepts its own origin with its token', async () => {
    expect(await upgrade(`/ws?token=${host.token}`, host.origin)).toBe(101);
  });

  it('refuses a foreign origin, a missing token and a wrong token', async () => {
    expect(await upgrade(`/ws?token=${host.token}`, 'http://evil.example')).toBe(403);
    expect(await upgrade('/ws', host.origin)).toBe(403);
    expect(await upgrade('/ws?token=guess', host.origin)).toBe(403);
    expect(await upgrade(`/ws?token=${host.token}`, undefined)).toBe(403);
  });

  it('serves the renderer with a strict CSP and nothing outside its folder', async () => {
    const page = await fetch(`${host.origin}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'(;|$)/);
    expect(page.headers.get('content-security-policy')).not.toMatch(/unsafe-eval/);
    const escape = await fetch(`${host.origin}/..%2f..%2fpackage.json`);
    expect([403, 404]).toContain(escape.status);
  });
});
