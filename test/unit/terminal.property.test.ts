import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RpcOutcome } from '../../src/shared/rpc';
import type { TraceStep } from '../../src/shared/trace';
import { formatTimeline } from '../../src/shared/describe';
import { jsonForTerminal, oncePerOutage, terminalSafe } from '../../src/cli/terminal';
import { action, printJson, warn } from '../../src/cli/run';
import { printReply } from '../../src/cli/commands/rpc';

/** Characters a terminal must never receive raw from the network. */
const controls = fc.constantFrom('\u001b[31m', '\u001b]0;pwned\u0007', '\u001b[2J', '\r', '\n', '\t', '\b', '\u0000', '\u007f', '\u0085', '\u009b', '\u2028', '\u2029', '\u202a', '\u202e', '\u2066', '\u2069', '\u200f');
const hostile = fc.array(fc.oneof(controls, fc.string({ unit: 'binary', maxLength: 4 }), fc.string({ unit: 'grapheme', maxLength: 4 })), { maxLength: 12 }).map((parts) => parts.join(''));

/** Code points that may not appear in printed output (the line's own \n is checked apart). */
function unsafeCharacters(text: string): string[] {
  return [...text].filter((character) => {
    const code = character.codePointAt(0) ?? 0;
    return (
      (code < 0x20 && character !== '\n') ||
      (code >= 0x7f && code <= 0x9f) ||
      code === 0x2028 ||
      code === 0x2029 ||
      (code >= 0x202a && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069)
    );
  });
}

/** Printable ASCII and ordinary unicode (letters, marks, symbols, emoji), nothing to escape. */
const printable = fc
  .string({ unit: 'grapheme', maxLength: 40 })
  .map((text) =>
    [...text]
      // Backslashes are escaped where they could be read as an escape; the invisibles are tested on their own.
      .filter((character) => unsafeCharacters(character).length === 0 && character !== '\n' && character !== '\\' && !/[\u061c\u200b-\u200f\u2060-\u2064\ufeff\u{e0000}-\u{e007f}]/u.test(character))
      .join(''),
  );

function captureWrites(stream: NodeJS.WriteStream): string[] {
  const written: string[] = [];
  vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  });
  return written;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('oncePerOutage', () => {
  it('says a lost link once per outage, though the close and each retry report it (the trial: "Tracing paused" twice)', () => {
    const outage = oncePerOutage();
    expect([outage.lost(), outage.lost(), outage.lost()]).toEqual([true, false, false]);
    outage.back();
    expect([outage.lost(), outage.lost()]).toEqual([true, false]);
  });
});

describe('terminalSafe', () => {
  it('leaves no control character, DEL, C1 code point or bidi control in any string', () => {
    fc.assert(
      fc.property(hostile, (text) => {
        const safe = terminalSafe(text);
        expect(unsafeCharacters(safe)).toEqual([]);
        expect(safe).not.toContain('\n');
      }),
      { numRuns: 5000 },
    );
  });

  it('returns printable ASCII and ordinary unicode unchanged', () => {
    fc.assert(
      fc.property(printable, (text) => {
        expect(terminalSafe(text)).toBe(text);
      }),
      { numRuns: 5000 },
    );
  });

  it('shows an escape sequence as readable text', () => {
    expect(terminalSafe('key\u001b[31m\u202e\n')).toBe('key\\x1b[31m\\u202e\\n');
  });
});

/** Reads terminalSafe's output back: \\ is a backslash, \n \r \t \xHH \uHHHH \u{H..} are escapes, any other backslash is itself. */
function readBack(safe: string): string {
  return safe.replace(/\\(\\|n|r|t|x[0-9a-f]{2}|u\{[0-9a-f]+\}|u[0-9a-f]{4})/g, (_, escape: string) => {
    if (escape === '\\') return '\\';
    if (escape === 'n') return '\n';
    if (escape === 'r') return '\r';
    if (escape === 't') return '\t';
    if (escape.startsWith('u{')) return String.fromCodePoint(parseInt(escape.slice(2, -1), 16));
    return String.fromCodePoint(parseInt(escape.slice(1), 16));
  });
}

/** Invisible characters that can hide text or smuggle instructions: zero-width spaces and joiners, word joiner, invisible operators, BOM, tags. */
const invisibles = fc.constantFrom('\u200b', '\u200c', '\u200d', '\u2060', '\u2061', '\u2064', '\ufeff', '\u{e0001}', '\u{e0041}', '\u{e007f}');

describe('terminalSafe, round 2', () => {
  it('escapes zero-width characters, the BOM and tag characters', () => {
    expect(terminalSafe('a\u200bb\u2060c\ufeffd\u{e0041}e')).toBe('a\\u200bb\\u2060c\\ufeffd\\u{e0041}e');
  });

  it('leaves no invisible character in any string but inside an emoji sequence', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(invisibles, fc.string({ unit: 'binary-ascii', maxLength: 3 })), { maxLength: 10 }).map((parts) => parts.join('')), (text) => {
        expect(terminalSafe(text)).not.toMatch(/[\u200b-\u200d\u2060-\u2064\ufeff\u{e0000}-\u{e007f}]/u);
      }),
      { numRuns: 3000 },
    );
  });

  it('keeps emoji joined by a zero-width joiner and flag tag sequences as they are', () => {
    for (const emoji of ['\u{1f468}\u200d\u{1f469}\u200d\u{1f467}', '\u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}', '\u{1f44d}\u{1f3fd}\u200d\u{1f525}']) {
      expect(terminalSafe(emoji)).toBe(emoji);
    }
  });

  it('can be read back to the very text it was given, backslashes included, so an escape shown is never text that looked like one', () => {
    const withBackslashes = fc.array(fc.oneof(controls, invisibles, fc.constantFrom('\\', '\\x1b', '\\n', '\\u202e', 'x', 'u{'), fc.string({ unit: 'binary', maxLength: 3 })), { maxLength: 12 }).map((parts) => parts.join(''));
    fc.assert(
      fc.property(withBackslashes, (text) => {
        expect(readBack(terminalSafe(text))).toBe(text);
      }),
      { numRuns: 5000 },
    );
    expect(terminalSafe('\\x1b')).not.toBe(terminalSafe('\u001b'));
  });

  it('writes invisible characters in JSON as \\u escapes that parse back to the same value', () => {
    const value = { text: 'a\u200bb\ufeff\u{e0041}' };
    const json = jsonForTerminal(value);
    expect(json).not.toMatch(/[\u200b\ufeff\u{e0041}]/u);
    expect(JSON.parse(json)).toEqual(value);
  });
});

describe('what the CLI prints from the network', () => {
  it('writes a warning with the password of any URL in it as ***, even one this command was not given', () => {
    const written = captureWrites(process.stderr);
    warn('the broker at amqps://plant:Zq9-secret@10.0.0.7:5671 refused');
    expect(written.join('')).not.toContain('Zq9-secret');
    expect(written.join('')).toContain('amqps://***@10.0.0.7:5671');
  });

  it('writes --json output with the password of a URL given to the command as ***, however deep it sits', async () => {
    const written = captureWrites(process.stdout);
    // action() remembers the passwords of the URLs a command was given, as for a real command.
    await action(async (_options: { amqp: string }) => {
      printJson({ outer: [{ detail: { echoed: 'pw is Kx7-known-pw' } }] });
    })({ amqp: 'amqp://guest:Kx7-known-pw@localhost' });
    expect(written.join('')).not.toContain('Kx7-known-pw');
    expect(JSON.parse(written.join(''))).toEqual({ outer: [{ detail: { echoed: 'pw is ***' } }] });
  });

  it('writes a warning as one safe line, whatever the message holds', () => {
    const written = captureWrites(process.stderr);
    fc.assert(
      fc.property(hostile, (message) => {
        written.length = 0;
        warn(message);
        const line = written.join('');
        expect(line.endsWith('\n') && line.indexOf('\n') === line.length - 1).toBe(true);
        expect(unsafeCharacters(line)).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });

  it('writes the error line of a failed command as one safe line', async () => {
    const written = captureWrites(process.stderr);
    const exitCode = process.exitCode;
    try {
      await fc.assert(
        fc.asyncProperty(hostile, async (message) => {
          written.length = 0;
          await action(async () => {
            throw new Error(`broker said: ${message}`);
          })();
          const line = written.join('');
          expect(line.indexOf('\n')).toBe(line.length - 1);
          expect(unsafeCharacters(line)).toEqual([]);
        }),
        { numRuns: 1000 },
      );
    } finally {
      process.exitCode = exitCode;
    }
  });

  it('writes --json output with every unsafe character as a \\u escape that parses back to the same value', () => {
    const written = captureWrites(process.stdout);
    fc.assert(
      fc.property(fc.jsonValue(), hostile, (value, text) => {
        written.length = 0;
        printJson({ value, text });
        const output = written.join('');
        expect(unsafeCharacters(output)).toEqual([]);
        expect(JSON.parse(output)).toEqual(JSON.parse(JSON.stringify({ value, text })));
      }),
      { numRuns: 2000 },
    );
  });

  it('writes a trace timeline made safe line by line, one line per step', () => {
    fc.assert(
      fc.property(hostile, hostile, hostile, (topic, routingKey, reason) => {
        const steps: TraceStep[] = [
          { rpcId: 'a', seq: 1, at: 1000, source: 'client', kind: 'mqtt.published', detail: { topic, qosAsked: 1, predictedRoutingKey: routingKey } },
          { rpcId: 'a', seq: 2, at: 1001, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: [routingKey], routedQueues: [], leg: 'request' } },
          { rpcId: 'a', seq: 3, at: 1002, source: 'server', kind: 'request.rejected', detail: { worker: 'w1', reason, bytes: 1 } },
        ];
        const timeline = formatTimeline(steps, terminalSafe);
        expect(timeline.split('\n')).toHaveLength(3);
        expect(unsafeCharacters(timeline)).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('the reply body `call` prints', () => {
  const outcome = (text: string): RpcOutcome => ({
    id: 'a',
    replyTopic: 'reply/a',
    arrivedOn: 'reply/a',
    topicMismatch: false,
    body: { kind: 'text', text },
    durationMs: 1,
    publishQos: { asked: 1, acknowledgedAs: 1 },
    subscriptionQos: { asked: 1, granted: 1 },
    warnings: [],
  });

  it('is escaped when stdout is a terminal', () => {
    const written = captureWrites(process.stdout);
    fc.assert(
      fc.property(hostile, (text) => {
        written.length = 0;
        printReply(outcome(text), true);
        printReply({ ...outcome(''), body: { kind: 'json', value: { text } } }, true);
        expect(unsafeCharacters(written.join(''))).toEqual([]);
        expect(written.join('').split('\n')).toHaveLength(3);
      }),
      { numRuns: 2000 },
    );
  });

  it('is escaped by default exactly when process.stdout is a TTY', () => {
    const written = captureWrites(process.stdout);
    const wasTty = process.stdout.isTTY;
    try {
      process.stdout.isTTY = true;
      printReply(outcome('\u001b[2J'));
      process.stdout.isTTY = false;
      printReply(outcome('\u001b[2J'));
    } finally {
      process.stdout.isTTY = wasTty;
    }
    expect(written).toEqual(['\\x1b[2J\n', '\u001b[2J\n']);
  });

  it('writes a body that is not UTF-8 byte for byte into a pipe (no base64, no newline added), and as base64 on a terminal', () => {
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x1b, 0x5b, 0x32, 0x4a, 0xc3, 0x28, 0x0a]);
    const chunks: Buffer[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      chunks.push(Buffer.from(chunk));
      return true;
    });
    const binary: RpcOutcome = { ...outcome(''), body: { kind: 'binary', base64: bytes.toString('base64'), bytes: bytes.length } };
    printReply(binary, false);
    expect(Buffer.concat(chunks)).toEqual(bytes);
    chunks.length = 0;
    printReply(binary, true);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(`${bytes.toString('base64')}\n`);
  });

  it('keeps its bytes when stdout is a pipe, for scripts', () => {
    const written = captureWrites(process.stdout);
    fc.assert(
      fc.property(hostile, (text) => {
        written.length = 0;
        printReply(outcome(text), false);
        expect(written.join('')).toBe(`${text}\n`);
      }),
      { numRuns: 1000 },
    );
  });
});
