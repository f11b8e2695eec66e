import { describe, expect, it } from 'vitest';
import { commandNames, eventNames, type Handlers } from '../../src/shared/contract';
import { Session } from '../../src/core/session';
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

  it('does not compile a core that lacks a command (checked by npm run typecheck)', () => {
    const incomplete = { 'app.state.get': async () => ({}) };
    // @ts-expect-error every command of the contract must have a handler
    const handlers: Handlers = incomplete;
    expect(handlers).toBe(incomplete);
  });
});
