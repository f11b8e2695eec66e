import { describe, expect, it } from 'vitest';
import { tracerViewFor } from '../../src/core/session';

describe("the tracer's status events as the trace panel sees them", () => {
  it('maps on, reconnecting, off with a reason and unavailable, and ignores anything else', () => {
    expect(tracerViewFor({ state: 'on', since: 5, turnedOnByUs: true })).toEqual({ state: 'on', since: 5 });
    expect(tracerViewFor({ state: 'reconnecting', since: 6, reason: 'ECONNREFUSED' })).toEqual({ state: 'reconnecting', since: 6, reason: 'ECONNREFUSED' });
    expect(tracerViewFor({ state: 'off', reason: 'could not resume: access refused' })).toEqual({ state: 'off', reason: 'could not resume: access refused' });
    expect(tracerViewFor({ state: 'off' })).toEqual({ state: 'off' });
    expect(tracerViewFor({ state: 'unavailable', reason: 'no permission' })).toEqual({ state: 'unavailable', reason: 'no permission' });
    expect(tracerViewFor({ state: 'exploded' })).toBeUndefined();
    expect(tracerViewFor(undefined)).toBeUndefined();
    expect(tracerViewFor('on')).toBeUndefined();
  });
});
