import { describe, expect, expectTypeOf, it } from 'vitest';
import { commandNames, eventNames, type CommandArgs, type CommandName, type Handlers } from '../../src/shared/contract';
import { isCommandName, validateArgs } from '../../src/core/contract-schemas';
import { Session } from '../../src/core/session/session';
import { dispatch } from '../../src/core/dispatch';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';

describe('the contract', () => {
  it('lists every command once at run time, so transports can refuse any other name', () => {
    expect(new Set(commandNames).size).toBe(commandNames.length);
    expect(new Set(eventNames).size).toBe(eventNames.length);
  });

  it('is implemented by the session for exactly the commands it lists, no more and no fewer', () => {
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    expect(Object.keys(session.handlers).sort()).toEqual([...commandNames].sort());
  });

  it('answers a command that needs a connection, sent before any, with not-connected (not a usage error)', async () => {
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    const reply = await dispatch(session.handlers, 'rpc.request.send', { topic: 'rpc_queue', qos: 1, strategy: 'shared', payloadText: '{}', timeoutMs: 1000 });
    expect(reply).toEqual({ ok: false, error: { code: 'not-connected', message: 'Not connected: open a connection (or start the sandbox broker) first.' } });
    await session.dispose();
  });

  it('lets in exactly the names commandNames lists: nothing inherited, nothing near', () => {
    for (const name of commandNames) expect(isCommandName(name)).toBe(true);
    const strangers: unknown[] = ['', 'toString', '__proto__', 'constructor', 'hasOwnProperty', 'rpc.request', 'RPC.REQUEST.SEND', 'rpc.request.send ', 42, null, undefined];
    for (const name of strangers) expect(isCommandName(name)).toBe(false);
  });

  it("has a schema for every command that takes any arguments of the command's type, unchanged", () => {
    for (const name of commandNames) expect(validateArgs(name, validArgs[name])).toEqual(validArgs[name]);
  });

  it('does not compile a core that lacks a command (a type-level check: npm run typecheck fails otherwise)', () => {
    expectTypeOf<{ 'app.state.get': Handlers['app.state.get'] }>().not.toExtend<Handlers>();
    expectTypeOf<Omit<Handlers, 'rpc.request.send'>>().not.toExtend<Handlers>();
  });
});

const profile = { name: 'p', amqpUrl: 'amqp://h', mqttUrl: 'mqtt://h', managementUrl: 'http://h:15672', vhost: '/', exchange: 'amq.direct' };
const send = { topic: 'rpc_queue', qos: 1 as const, strategy: 'shared' as const, replyTopic: 'reply/x', method: 'm', payloadText: '{}', timeoutMs: 1000 };

/** One example of arguments per command, typed by the contract: each must pass its schema as it is. */
const validArgs: { [K in CommandName]: CommandArgs<K> } = {
  'app.state.get': {},
  'broker.sandbox.start': {},
  'broker.sandbox.stop': {},
  'connection.open': { profile },
  'connection.close': {},
  'connection.test': { profile: { ...profile, amqpUrl: 'amqp://a,amqp://b', mqttClientId: 'me', username: 'u', password: 'p', keepaliveSeconds: 10, cleanSession: false, mqttVersion: 'auto' } },
  'profile.list': {},
  'profile.save': { profile },
  'profile.delete': { name: 'p' },
  'profile.load': { name: 'p' },
  'server.start': { exchange: 'amq.direct', queue: 'rpc_queue', workers: 2, prefetch: 1, handler: 'echo' },
  'server.stop': {},
  'rpc.request.send': send,
  'rpc.preflight.run': { topic: 'rpc_queue', strategy: 'per-request', replyTopic: 'reply/x' },
  'topic.mapping.get': { topic: 'sensors/+/temp', role: 'filter' },
  'broker.bindings.list': { exchange: 'amq.direct' },
  'broker.probe.run': {},
  'trace.tracing.set': { on: true },
  'trace.snapshot.get': {},
  'trace.export.create': {},
  'trace.import.load': { trace: { steps: [] } },
  'trace.store.clear': {},
  'load.run.start': { ...send, count: 10, concurrency: 2 },
  'load.run.cancel': {},
  'load.run.last': {},
  'workspace.history.list': { search: 'rpc', limit: 10 },
  'workspace.history.delete': { id: 'x' },
  'workspace.history.clear': {},
  'workspace.templates.list': {},
  'workspace.template.save': { template: { name: 't', request: send } },
  'workspace.template.rename': { from: 't', to: 'u' },
  'workspace.template.delete': { name: 't' },
  'workspace.export.create': { includePasswords: false },
  'workspace.import.load': { file: { format: 'bridgescope-workspace', version: 1, profiles: [], templates: [] } },
  'watch.start': { mode: 'tap', timeoutMs: 5000, requestKeys: ['rpc_queue'] },
  'watch.stop': {},
  'watch.snapshot.get': {},
  'watch.rpc.open': { key: 'w1' },
  'otel.export.get': {},
  'otel.export.set': { url: 'http://localhost:4318' },
};
