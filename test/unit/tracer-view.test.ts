import { describe, expect, it } from 'vitest';
import { tracerViewFor } from '../../src/core/session/session';

describe("the tracer's status events as the trace panel sees them", () => {
  it('maps on, reconnecting (with its reason), off and unavailable (with its reason)', () => {
    expect(tracerViewFor({ state: 'on', since: 5, turnedOnByUs: true, resumed: true })).toEqual({ state: 'on', since: 5 });
    expect(tracerViewFor({ state: 'reconnecting', since: 6, attempt: 2, reason: 'ECONNREFUSED' })).toEqual({ state: 'reconnecting', since: 6, reason: 'ECONNREFUSED' });
    expect(tracerViewFor({ state: 'off' })).toEqual({ state: 'off' });
    expect(tracerViewFor({ state: 'unavailable', reason: 'no permission', code: 'auth' })).toEqual({ state: 'unavailable', reason: 'no permission' });
  });
});
