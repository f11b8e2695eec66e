/** How every CLI command ends: one line on stderr for errors and an exit code a script can branch on. */
import { InvalidArgumentError } from 'commander';
import type { ErrorCode } from '../shared/errors';
import { toErrorShape } from '../core/errors';
import { MAX_TIMER_MS } from '../core/contract-schemas';

export const ExitCode = { ok: 0, failure: 1, usage: 2, timeout: 3, unreachable: 4 } as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'bad-input':
    case 'too-large':
      return ExitCode.usage;
    case 'timeout':
      return ExitCode.timeout;
    case 'unreachable':
    case 'auth':
      return ExitCode.unreachable;
    default:
      return ExitCode.failure;
  }
}

/** Wraps a command action: failures become `bridgescope: <sentence>` and the mapped exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? ExitCode.ok;
    } catch (err) {
      const shape = toErrorShape(err);
      process.stderr.write(`bridgescope: ${shape.message.replace(/\s*\n\s*/g, ' ')}\n`);
      process.exitCode = exitCodeFor(shape.code);
    }
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A commander option parser for whole numbers above zero; a bad value is a usage error (exit 2). */
export function parsePositiveInt(flag: string): (value: string) => number {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0) {
      throw new InvalidArgumentError(`${flag} takes a whole number above 0, not "${value}".`);
    }
    return parsed;
  };
}

/** A commander parser for a duration in ms; past what a Node timer holds it would fire at once, so that is a usage error too. */
export function parseDurationMs(flag: string): (value: string) => number {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0 || parsed > MAX_TIMER_MS) {
      throw new InvalidArgumentError(
        `${flag} takes a whole number above 0 and at most ${MAX_TIMER_MS} (milliseconds, about 24.8 days), not "${value}".`,
      );
    }
    return parsed;
  };
}

/** A commander parser for one of a fixed set of values. */
export function parseChoice<T extends string>(flag: string, choices: readonly T[]): (value: string) => T {
  return (value: string) => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`${flag} takes one of ${choices.join(', ')}, not "${value}".`);
    }
    return value as T;
  };
}

export function warn(message: string): void {
  process.stderr.write(`warning: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
}
