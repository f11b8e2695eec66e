import { describe, expect, it } from 'vitest';
import { createQuitSequence } from '../../src/main/quit';

describe('the app quit sequence', () => {
  it('runs the cleanup once however many quits arrive while it runs, then exits 0', async () => {
    let cleanups = 0;
    let release!: () => void;
    const exits: number[] = [];
    const quit = createQuitSequence({
      cleanup: () => {
        cleanups += 1;
        return new Promise<void>((resolve) => (release = resolve));
      },
      exit: (code) => exits.push(code),
    });
    expect(quit.onBeforeQuit()).toBe(true);
    expect(quit.onBeforeQuit()).toBe(true);
    expect(quit.onBeforeQuit()).toBe(true);
    expect(exits).toEqual([]);
    release();
    await quit.done;
    expect(cleanups).toBe(1);
    expect(exits).toEqual([0]);
    expect(quit.onBeforeQuit()).toBe(false);
  });

  it('exits 1 and says so when the cleanup outlasts its bound', async () => {
    const exits: number[] = [];
    const lines: string[] = [];
    const quit = createQuitSequence({ cleanup: () => new Promise(() => undefined), exit: (code) => exits.push(code), boundMs: 20, log: (line) => lines.push(line) });
    quit.onBeforeQuit();
    await quit.done;
    expect(exits).toEqual([1]);
    expect(lines[0]).toMatch(/did not finish in 0 s; quitting anyway/);
  });

  it('waits for the cleanup under a bound longer than a Node timer holds, then exits 0', async () => {
    const exits: number[] = [];
    // A cleanup slower than the 1 ms an overflowed timer fires after.
    const quit = createQuitSequence({ cleanup: () => new Promise((resolve) => setTimeout(resolve, 30)), exit: (code) => exits.push(code), boundMs: 2_147_483_647 + 10_000, log: () => undefined });
    quit.onBeforeQuit();
    await quit.done;
    expect(exits).toEqual([0]);
  });

  it('exits 1 and says so when the cleanup failed', async () => {
    const exits: number[] = [];
    const lines: string[] = [];
    const quit = createQuitSequence({ cleanup: () => Promise.reject(new Error('management API refused')), exit: (code) => exits.push(code), log: (line) => lines.push(line) });
    quit.onBeforeQuit();
    await quit.done;
    expect(exits).toEqual([1]);
    expect(lines[0]).toMatch(/cleanup on quit failed: management API refused/);
  });
});
