import { afterEach, describe, expect, it } from 'vitest';
import { quietLog } from '../../src/core/links/mqtt-link';

const debugBefore = process.env.DEBUG;
afterEach(() => {
  if (debugBefore === undefined) delete process.env.DEBUG;
  else process.env.DEBUG = debugBefore;
});

describe("mqtt.js's own log", () => {
  it('is a function that does nothing unless asked for, and mqtt.js\'s debug log when DEBUG names it', () => {
    delete process.env.DEBUG;
    expect(quietLog().log).toBeTypeOf('function');
    process.env.DEBUG = 'bridgescope,mqttjs*';
    // No log option: mqtt.js falls back to its `debug` logger, which DEBUG switches on.
    expect(quietLog()).toEqual({});
    process.env.DEBUG = '*';
    expect(quietLog()).toEqual({});
    process.env.DEBUG = 'bridgescope:*';
    expect(quietLog().log).toBeTypeOf('function');
  });
});
