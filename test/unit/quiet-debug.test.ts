import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { contenderEnv } from '../../src/cli/bench/contenders';

type Logger = ((...args: unknown[]) => void) & { enabled: boolean; namespace: string; extend(suffix: string): Logger };
const createDebug = createRequire(import.meta.url)('../../src/cli/quiet-debug.cjs') as ((namespace: string) => Logger) & { enable(namespaces: string): void };

const debugBefore = process.env.DEBUG;
afterEach(() => {
  if (debugBefore === undefined) delete process.env.DEBUG;
  else process.env.DEBUG = debugBefore;
});

describe("the command line's `debug` (what mqtt.js and mqtt-packet log through)", () => {
  it('hands out loggers that do nothing while DEBUG is unset or empty', () => {
    for (const unset of [undefined, '']) {
      if (unset === undefined) delete process.env.DEBUG;
      else process.env.DEBUG = unset;
      const log = createDebug('mqtt-packet:parser');
      expect(log('parse: %s', 'anything')).toBeUndefined();
      expect(log.enabled).toBe(false);
      expect(log.namespace).toBe('mqtt-packet:parser');
      expect(log.extend('state').namespace).toBe('mqtt-packet:parser:state');
    }
  });

  it("is the real package once DEBUG is set: its patterns decide, as in any program", () => {
    process.env.DEBUG = 'bridgescope,mqttjs*';
    // The package reads DEBUG when it is loaded (at a program's start); this process loaded it earlier.
    createDebug.enable(process.env.DEBUG);
    expect(createDebug('mqttjs:client').enabled).toBe(true);
    expect(createDebug('mqtt-packet:parser').enabled).toBe(false);
    createDebug.enable('');
  });
});

describe("the bench's contenders", () => {
  it("run the raw loops with the real `debug` (DEBUG=-*: no namespace on), BridgeScope with the bundle's, and keep a DEBUG the user set", () => {
    expect(contenderEnv('raw-reliable', {}).DEBUG).toBe('-*');
    expect(contenderEnv('raw-traced', {}).DEBUG).toBe('-*');
    expect(contenderEnv('bridgescope', {}).DEBUG).toBeUndefined();
    expect(contenderEnv('raw', { DEBUG: 'mqttjs*' }).DEBUG).toBe('mqttjs*');
  });
});
