import { createRequire } from 'node:module';
import { join } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { afterEach, describe, expect, it } from 'vitest';
import { contenderEnv } from '../../src/cli/bench/contenders';

type Logger = ((...args: unknown[]) => void) & { enabled: boolean; namespace: string; extend(suffix: string): Logger };
const createDebug = createRequire(import.meta.url)('../../src/cli/quiet-debug.cjs') as ((namespace: string) => Logger) & {
  enable(namespaces: string): void;
  disable(): string;
};

const debugBefore = process.env.DEBUG;
// What the real package had switched on (it reads DEBUG once, when loaded), given back after each test.
const enabledBefore = createDebug.disable();
createDebug.enable(enabledBefore);
afterEach(() => {
  createDebug.enable(enabledBefore);
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
  });

  it("is what the bundle gives mqtt.js and mqtt-packet, and only them (another library's `debug` is the real one)", async () => {
    const root = join(import.meta.dirname, '..', '..');
    const { quietDebug } = (await import(new URL('../../scripts/cli-bundle.mjs', import.meta.url).href)) as { quietDebug(root: string): Plugin };
    const bundled = await build({
      absWorkingDir: root,
      stdin: { contents: "require('mqtt-packet'); require('mqtt'); require('debug');", resolveDir: root, loader: 'js' },
      bundle: true,
      platform: 'node',
      write: false,
      metafile: true,
      logLevel: 'silent',
      plugins: [quietDebug(root)],
    });
    const importsOf = (input: string): string[] => (bundled.metafile.inputs[input]?.imports ?? []).map((imported) => imported.path);
    expect(importsOf('node_modules/mqtt-packet/parser.js')).toContain('src/cli/quiet-debug.cjs');
    expect(importsOf('node_modules/mqtt-packet/writeToStream.js')).toContain('src/cli/quiet-debug.cjs');
    expect(importsOf('node_modules/mqtt/build/lib/client.js')).toContain('src/cli/quiet-debug.cjs');
    expect(importsOf('<stdin>')).toContain('node_modules/debug/src/index.js');
    expect(importsOf('<stdin>')).not.toContain('src/cli/quiet-debug.cjs');
  });
});

describe("the bench's contenders", () => {
  it("run the raw loops with the real `debug` (DEBUG=-*: no namespace on), BridgeScope with the bundle's, and keep a DEBUG the user set", () => {
    expect(contenderEnv('raw-reliable', {}).DEBUG).toBe('-*');
    expect(contenderEnv('raw-traced', {}).DEBUG).toBe('-*');
    expect(contenderEnv('bridgescope', {}).DEBUG).toBeUndefined();
    expect(contenderEnv('raw', { DEBUG: 'mqttjs*' }).DEBUG).toBe('mqttjs*');
    expect(contenderEnv('raw', { DEBUG: '' }).DEBUG).toBe('-*');
  });
});
