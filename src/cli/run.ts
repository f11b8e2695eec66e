/** How every CLI command ends: one line on stderr for errors and an exit code a script can branch on. */
import { InvalidArgumentError } from 'commander';
import type { ErrorCode } from '../shared/errors';
import { toErrorShape } from '../core/errors';
import { passwordForms, redactDeep, redactUrlsInText, scrubSecrets } from '../shared/redact';
import { MAX_TIMER_MS } from '../shared/durations';
import { jsonForTerminal, terminalSafe } from './terminal';
import { splitUrls } from '../shared/url-list';
import { forgetGivenUrls, noteGivenUrls } from './given-urls';
import { noteTls } from './tls';

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
    case 'not-connected':
      return ExitCode.unreachable;
    default:
      return ExitCode.failure;
  }
}

/** Passwords of the URLs this command was given (flags and BRIDGESCOPE_*_URL), kept out of every line it prints. */
const knownSecrets = new Set<string>();

function rememberSecrets(args: unknown[]): void {
  const values = [process.env.BRIDGESCOPE_AMQP_URL, process.env.BRIDGESCOPE_MQTT_URL, process.env.BRIDGESCOPE_MANAGEMENT_URL];
  for (const arg of args) {
    if (typeof arg === 'string') values.push(arg);
    else if (arg !== null && typeof arg === 'object') values.push(...Object.values(arg).filter((value): value is string => typeof value === 'string'));
  }
  // Only URLs: a payload such as {"to":"a:b@c"} has no password to hide.
  // A flag may hold several URLs of one cluster: each has its own password.
  for (const value of values) for (const url of value?.includes('://') ? splitUrls(value) : []) for (const secret of passwordForms(url)) knownSecrets.add(secret);
}

/** Just after a URL already shown as `scheme://***@` or `scheme://user:***@`: nothing before it is left to hide. */
const AFTER_REDACTED_URL = /(?<=:\/\/(?:[A-Za-z0-9._~-]*:)?\*\*\*@)/;

/**
 * Text with no password: neither one of a URL this command was given (passwords under 3 characters are not scrubbed:
 * they would blank ordinary words) nor one inside any URL in it. Cut after each URL already redacted, so the search for
 * a raw password (which runs to the last @) does not swallow the rest of a sentence that names such a URL.
 */
export function withoutSecrets(text: string): string {
  return scrubSecrets(text.split(AFTER_REDACTED_URL).map(redactUrlsInText).join(''), [...knownSecrets]);
}

/** A message on its way to the terminal: one line, no password, no raw control character from the network. */
export function printable(message: string): string {
  return terminalSafe(withoutSecrets(message).replace(/\s*\n\s*/g, ' '));
}

/** One line of text for stderr, made printable: every CLI status line goes through here. */
export function say(message: string): void {
  process.stderr.write(`${printable(message)}\n`);
}

/** A JSON value with no password in any of its strings (keys included). */
function jsonWithoutSecrets(value: unknown): unknown {
  const redacted: unknown = redactDeep(value);
  if (knownSecrets.size === 0) return redacted;
  const scrub = (item: unknown): unknown => {
    if (typeof item === 'string') return scrubSecrets(item, [...knownSecrets]);
    if (Array.isArray(item)) return item.map(scrub);
    if (item !== null && typeof item === 'object') return Object.fromEntries(Object.entries(item).map(([key, inner]) => [scrubSecrets(key, [...knownSecrets]), scrub(inner)]));
    return item;
  };
  return scrub(redacted);
}

/** One compact JSON line for stdout (trace and serve --json), safe on a terminal and with no password. */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${jsonForTerminal(jsonWithoutSecrets(value))}\n`);
}

/** Wraps a command action: failures become `bridgescope: <sentence>` and the mapped exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    rememberSecrets(args);
    // A URL flag not given follows the broker the others name (see resolveUrls): this command's flags, not a previous one's.
    forgetGivenUrls();
    noteGivenUrls(args);
    try {
      // TLS files are read before anything connects: a wrong path is one sentence (exit 2).
      await noteTls(args);
      const code = await fn(...args);
      process.exitCode = code ?? ExitCode.ok;
    } catch (err) {
      const shape = toErrorShape(err);
      process.stderr.write(`bridgescope: ${printable(shape.message)}\n`);
      process.exitCode = exitCodeFor(shape.code);
    }
  };
}

/** JSON output, with no password in any string: bidi and C1 characters from the network are written as \\uXXXX escapes, which every JSON reader reads back the same. */
export function printJson(value: unknown): void {
  process.stdout.write(`${jsonForTerminal(jsonWithoutSecrets(value), 2)}\n`);
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

/** A commander parser for a TCP port (1 to 65535). */
export function parsePort(flag: string): (value: string) => number {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0 || parsed > 65_535) {
      throw new InvalidArgumentError(`${flag} takes a port number from 1 to 65535, not "${value}".`);
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
  process.stderr.write(`warning: ${printable(message)}\n`);
}
