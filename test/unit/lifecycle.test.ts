import { describe, expect, it, vi } from 'vitest';
import { runUntilStopped, StopSignals } from '../../src/cli/lifecycle';

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
    await expect(done).resolves.toEqual({ state: 'clean', failed: [] });
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
    expect(outcome).toEqual({ state: 'timed-out', leftUndone: ['close the links', 'stop the sandbox broker'], failed: [] });
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

describe('StopSignals, round 2', () => {
  it('runs the cleanup to its end under a bound longer than a Node timer holds', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.name);
    process.on('warning', onWarning);
    const { signals } = harness(2_147_483_647 + 10_000);
    // A task slower than the 1 ms an overflowed timer fires after.
    const outcome = await signals.cleanup([{ what: 'drain the server', run: () => new Promise<void>((resolve) => setTimeout(resolve, 30)) }]);
    process.off('warning', onWarning);
    expect(outcome.state).toBe('clean');
    expect(warnings).not.toContain('TimeoutOverflowWarning');
  });

  it('names the tasks that failed in the outcome', async () => {
    const { signals } = harness();
    const outcome = await signals.cleanup([
      { what: 'restore tracing', run: async () => { throw new Error('management API refused'); } },
      { what: 'close the links', run: async () => undefined },
    ]);
    expect(outcome).toMatchObject({ state: 'clean', failed: ['restore tracing'] });
  });

  it('makes runUntilStopped exit 1 through the injected exit when a cleanup task failed', async () => {
    const { signals, lines, exits } = harness();
    signals.onSignal('SIGTERM', 0);
    await runUntilStopped(signals, () => undefined, () => [{ what: 'restore tracing', run: async () => { throw new Error('refused'); } }]);
    expect(exits).toEqual([1]);
    expect(lines.at(-1)).toMatch(/could not: restore tracing/);
  });

  it('makes runUntilStopped report a timed-out cleanup through the injected write and exit', async () => {
    const { signals, lines, exits } = harness(20);
    signals.onSignal('SIGINT', 0);
    await runUntilStopped(signals, () => undefined, () => [{ what: 'close the links', run: () => new Promise<void>(() => undefined) }]);
    expect(exits).toEqual([1]);
    expect(lines.at(-1)).toMatch(/left undone: close the links/);
  });

  it('exits 143 when the forcing third signal is SIGTERM', () => {
    const { signals, exits } = harness();
    signals.onSignal('SIGTERM', 0);
    void signals.cleanup([{ what: 'stop the sandbox broker', run: () => new Promise<void>(() => undefined) }]);
    signals.onSignal('SIGTERM', 2000);
    signals.onSignal('SIGTERM', 4000);
    expect(exits).toEqual([143]);
  });

  it('reads the echo window from BRIDGESCOPE_SIGNAL_ECHO_MS', () => {
    process.env.BRIDGESCOPE_SIGNAL_ECHO_MS = '5';
    try {
      const { signals, lines } = harness();
      signals.onSignal('SIGINT', 0);
      void signals.cleanup([{ what: 'stop the sandbox broker', run: () => new Promise<void>(() => undefined) }]);
      signals.onSignal('SIGINT', 10);
      expect(lines.join('\n')).toMatch(/Still cleaning up/);
    } finally {
      delete process.env.BRIDGESCOPE_SIGNAL_ECHO_MS;
    }
  });

  it('still names the second of two tasks with the same name once the first is done', async () => {
    const { signals, lines } = harness();
    let release!: () => void;
    signals.onSignal('SIGINT', 0);
    const done = signals.cleanup([
      { what: 'close a link', run: async () => undefined },
      { what: 'close a link', run: () => new Promise<void>((resolve) => (release = resolve)) },
    ]);
    await vi.waitFor(() => expect(release).toBeTypeOf('function'));
    signals.onSignal('SIGINT', 2000);
    expect(lines.join('\n')).toMatch(/Still cleaning up \(close a link\)/);
    release();
    await done;
  });

  it('writes a failed task\'s message to stderr with its escape characters made visible by default', async () => {
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      const signals = new StopSignals({ signals: [], exit: () => undefined });
      await signals.cleanup([{ what: 'restore tracing', run: async () => { throw new Error('refused \u001b[2J by amqp://guest:hunter2@host'); } }]);
      signals.dispose();
    } finally {
      spy.mockRestore();
    }
    expect(written.join('')).toContain('\\x1b[2J');
    expect(written.join('')).not.toContain('\u001b');
    expect(written.join('')).not.toContain('hunter2');
  });

  it('counts a closed stdout pipe (EPIPE) as a stop and drops later writes to it instead of throwing', async () => {
    const { PassThrough } = await import('node:stream');
    const stdout = new PassThrough() as unknown as NodeJS.WriteStream;
    const signals = new StopSignals({ signals: [], write: () => undefined, exit: () => undefined, outputs: [stdout] });
    stdout.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    await expect(signals.stopped).resolves.toBe('SIGPIPE');
    expect(() => stdout.write('more\n')).not.toThrow();
    signals.dispose();
  });

  it('counts a closed terminal (EIO on stderr) as SIGHUP', async () => {
    const { PassThrough } = await import('node:stream');
    const stderr = new PassThrough() as unknown as NodeJS.WriteStream;
    const signals = new StopSignals({ signals: [], write: () => undefined, exit: () => undefined, outputs: [stderr] });
    stderr.emit('error', Object.assign(new Error('write EIO'), { code: 'EIO' }));
    await expect(signals.stopped).resolves.toBe('SIGHUP');
    signals.dispose();
  });
});
