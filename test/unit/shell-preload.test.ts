/** The built preload (out/preload/index.cjs) run as Electron runs a sandboxed preload: a CommonJS script whose `require('electron')` is the renderer's. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeRenderer } from '../support/fake-electron';

const builtPreload = join(import.meta.dirname, '..', '..', 'out', 'preload', 'index.cjs');

interface Bridge {
  invoke(name: string, args?: unknown): Promise<unknown>;
  on(name: string, listener: (...payload: unknown[]) => void): () => void;
}

let renderer: FakeRenderer;
let bridge: Bridge;

beforeAll(() => {
  if (!existsSync(builtPreload)) throw new Error('Run `npm run build` first: these tests load the built out/preload/index.cjs');
});

beforeEach(() => {
  renderer = new FakeRenderer();
  // A sandboxed preload gets a limited require: `electron` and a few Node built-ins, no file system.
  const require = (id: string): unknown => {
    if (id === 'electron') return renderer.module;
    throw new Error(`The sandboxed preload cannot require ${id}`);
  };
  runInNewContext(readFileSync(builtPreload, 'utf8'), { require, module: { exports: {} }, exports: {}, console }, { filename: builtPreload });
  bridge = renderer.exposed.get('bridgescope') as Bridge;
});

describe('the built preload', () => {
  it('exposes one object to the page, with exactly invoke and on', () => {
    expect([...renderer.exposed.keys()]).toEqual(['bridgescope']);
    expect(Object.keys(bridge).sort()).toEqual(['invoke', 'on']);
  });

  it('forwards a contract command to the main process', async () => {
    expect(await bridge.invoke('rpc.request.send', { topic: 't' })).toEqual({ ok: true, result: { channel: 'rpc.request.send' } });
    expect(renderer.invoked).toEqual([{ channel: 'rpc.request.send', args: [{ topic: 't' }] }]);
  });

  it('refuses a command outside the contract without sending anything', async () => {
    await expect(bridge.invoke('bridgescope:event:app.state.changed')).rejects.toThrow(/Unknown command/);
    await expect(bridge.invoke('constructor')).rejects.toThrow(/Unknown command/);
    expect(renderer.invoked).toEqual([]);
  });

  it('refuses to listen to an event outside the contract', () => {
    expect(() => bridge.on('rpc.request.send', () => undefined)).toThrow(/Unknown event/);
    expect(renderer.ipc.eventNames()).toEqual([]);
  });

  it('hands the page the payload only, never the raw IPC event, and its unsubscribe stops the deliveries', () => {
    const received: unknown[][] = [];
    const unsubscribe = bridge.on('app.state.changed', (...args) => received.push(args));
    renderer.emitFromMain('bridgescope:event:app.state.changed', { mode: 'electron' });
    expect(received).toEqual([[{ mode: 'electron' }]]);
    unsubscribe();
    renderer.emitFromMain('bridgescope:event:app.state.changed', { mode: 'electron' });
    expect(received).toHaveLength(1);
    expect(renderer.ipc.listenerCount('bridgescope:event:app.state.changed')).toBe(0);
  });

  it('keeps two listeners of one event apart: unsubscribing one leaves the other', () => {
    const first: unknown[] = [];
    const second: unknown[] = [];
    const stopFirst = bridge.on('trace.steps.added', (payload) => first.push(payload));
    bridge.on('trace.steps.added', (payload) => second.push(payload));
    stopFirst();
    renderer.emitFromMain('bridgescope:event:trace.steps.added', { steps: [] });
    expect(first).toEqual([]);
    expect(second).toEqual([{ steps: [] }]);
  });
});
