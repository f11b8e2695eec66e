/** The counts the UI and the CLI show ("1,234 steps"): one kept formatter, the same text `toLocaleString('en-US')` gave. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { counted, formatCount } from '../../src/shared/describe';

describe('counts shown to the user', () => {
  it('name the noun in the right number, with thousands separators', () => {
    expect(counted(1, 'RPC')).toBe('1 RPC');
    expect(counted(0, 'RPC')).toBe('0 RPCs');
    expect(counted(183_661, 'step')).toBe('183,661 steps');
    expect(counted(2, 'reply', 'replies')).toBe('2 replies');
  });

  it('write any number as toLocaleString("en-US") does', () => {
    fc.assert(fc.property(fc.oneof(fc.integer(), fc.double()), (value) => formatCount(value) === value.toLocaleString('en-US')));
  });
});
