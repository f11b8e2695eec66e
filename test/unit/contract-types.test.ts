import { describe, expect, it } from 'vitest';
import { commandNames, eventNames, type Handlers } from '../../src/shared/contract';
import { Session } from '../../src/core/session';
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

  it('does not compile a core that lacks a command (checked by npm run typecheck)', () => {
    const incomplete = { 'app.state.get': async () => ({}) };
    // @ts-expect-error every command of the contract must have a handler
    const handlers: Handlers = incomplete;
    expect(handlers).toBe(incomplete);
  });
});
