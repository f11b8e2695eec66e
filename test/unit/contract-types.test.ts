import { describe, expect, it } from 'vitest';
import { commandNames, type Handlers } from '../../src/shared/contract';

describe('the contract', () => {
  it('lists every command at run time, so transports can refuse any other name', () => {
    expect(new Set(commandNames).size).toBe(commandNames.length);
    expect(commandNames).toContain('rpc.request.send');
  });

  it('does not compile a core that lacks a command (checked by npm run typecheck)', () => {
    const incomplete = {
      'app.state.get': async () => {
        throw new Error('not used');
      },
    };
    // @ts-expect-error every command of the contract must have a handler
    const handlers: Handlers = incomplete;
    expect(Object.keys(handlers)).toEqual(['app.state.get']);
  });
});
