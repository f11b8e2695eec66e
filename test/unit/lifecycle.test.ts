import { describe, expect, it } from 'vitest';
import { StopSignals } from '../../src/cli/lifecycle';

function harness(boundMs = 1000): { signals: StopSignals; lines: string[]; exits: number[] } {
  const lines: string[] = [];
  const exits: number[] = [];
  const signals = new StopSignals({ boundMs, write: (line) => lines.push(line), exit: (code) => exits.push(code), signals: [] });
  return { signals, lines, exits };
}

describe('StopSignals', () => {
  it('treats the echoes of one Ctrl-C sent to a whole process group as one signal', async () => {
    const { signals, lines, exits } = harness();
    signals.onSignal('SIGINT', 1000);
    signals.onSignal('SIGINT', 1010);
    signals.onSignal('SIGTERM', 1200);
    await expect(signals.stopped).resolves.toBe('SIGINT');
    expect(lines).toEqual([]);
    expect(exits).toEqual([]);
  });

  it('names what is still being cleaned up on a second signal and keeps going', async () => {
    const { signals, lines, exits } = harness();
    let release!: () => void;
    signals.onSignal('SIGTERM', 0);
    const done = signals.cleanup([{ what: 'turn tracing off again', run: () => new Promise<void>((resolve) => (release = resolve)) }]);
    signals.onSignal('SIGTERM', 5000);
    expect(lines.join('\n')).toMatch(/Still cleaning up \(turn tracing off again\)/);
    expect(exits).toEqual([]);
    release();
    await expect(done).resolves.toEqual({ state: 'clean' });
  });

  it('forces the exit on a third deliberate signal and says what was left', () => {
    const { signals, lines, exits } = harness();
    signals.onSignal('SIGINT', 0);
    void signals.cleanup([{ what: 'stop the sandbox broker', run: () => new Promise<void>(() => undefined) }]);
    signals.onSignal('SIGINT', 2000);
    signals.onSignal('SIGINT', 4000);
    expect(exits).toEqual([130]);
    expect(lines.at(-1)).toBe('Forced exit; left undone: stop the sandbox broker.');
  });

  it('bounds the cleanup and names the tasks it did not finish', async () => {
    const { signals } = harness(50);
    const ran: string[] = [];
    const outcome = await signals.cleanup([
      { what: 'drain the server', run: async () => void ran.push('drain') },
      { what: 'close the links', run: () => new Promise<void>(() => undefined) },
      { what: 'stop the sandbox broker', run: async () => void ran.push('stop') },
    ]);
    expect(ran).toEqual(['drain']);
    expect(outcome).toEqual({ state: 'timed-out', leftUndone: ['close the links', 'stop the sandbox broker'] });
  });

  it('runs every task even when one fails, and says which failed', async () => {
    const { signals, lines } = harness();
    const ran: string[] = [];
    const outcome = await signals.cleanup([
      { what: 'restore tracing', run: async () => { throw new Error('management API refused'); } },
      { what: 'close the links', run: async () => void ran.push('close') },
    ]);
    expect(outcome.state).toBe('clean');
    expect(ran).toEqual(['close']);
    expect(lines).toEqual(['warning: could not restore tracing: management API refused']);
  });
});
