/** Reads a few top-level fields of a JSON object body without parsing (or even decoding) the rest of it. */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isSpace(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

function skipSpace(bytes: Buffer, at: number): number {
  let i = at;
  while (isSpace(bytes[i])) i += 1;
  return i;
}

/** Strings up to this long are scanned byte by byte; longer ones are searched for their quote (a call into native code). */
const SHORT_STRING = 48;

/** The index just past the string that opens at `at`; -1 when it never closes. */
function skipString(bytes: Buffer, at: number): number {
  // Keys, ids and reply topics are short: a loop here costs less than a call into Buffer#indexOf.
  const end = Math.min(bytes.length, at + 1 + SHORT_STRING);
  for (let i = at + 1; i < end; i += 1) {
    const byte = bytes[i];
    if (byte === QUOTE) return i + 1;
    if (byte === BACKSLASH) {
      if (i + 1 >= bytes.length) return -1;
      i += 1;
    }
  }
  if (end === bytes.length) return -1;
  let from = end;
  for (;;) {
    const quote = bytes.indexOf(QUOTE, from);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (bytes[quote - 1 - backslashes] === BACKSLASH) backslashes += 1;
    if (backslashes % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The index just past the value that starts at `at`; -1 when the body ends first. Nested values are skipped, not read. */
function skipValue(bytes: Buffer, at: number): number {
  const first = bytes[at];
  if (first === QUOTE) return skipString(bytes, at);
  if (first === 0x7b || first === 0x5b) {
    let depth = 0;
    let i = at;
    while (i < bytes.length) {
      const byte = bytes[i] as number;
      if (byte === QUOTE) {
        i = skipString(bytes, i);
        if (i < 0) return -1;
        continue;
      }
      if (byte === 0x7b || byte === 0x5b) depth += 1;
      else if (byte === 0x7d || byte === 0x5d) {
        depth -= 1;
        if (depth === 0) return i + 1;
      }
      i += 1;
    }
    return -1;
  }
  let i = at;
  while (i < bytes.length && bytes[i] !== 0x2c && bytes[i] !== 0x7d && bytes[i] !== 0x5d && !isSpace(bytes[i])) i += 1;
  return i > at ? i : -1;
}

/** What `parseSlice` returns for a slice that is not JSON. */
const NOT_JSON = Symbol('not JSON');

function parseSlice(bytes: Buffer, start: number, end: number): unknown {
  // An ASCII string without escapes (an id, a reply topic: nearly every value read here) is its bytes between the quotes.
  if (bytes[start] === QUOTE && end - start >= 2 && bytes[end - 1] === QUOTE) {
    let plain = true;
    for (let i = start + 1; i < end - 1 && plain; i += 1) {
      const byte = bytes[i] as number;
      plain = byte !== BACKSLASH && byte >= 0x20 && byte < 0x80;
    }
    if (plain) return bytes.toString('latin1', start + 1, end - 1);
  }
  try {
    return JSON.parse(bytes.toString('utf8', start, end)) as unknown;
  } catch {
    return NOT_JSON;
  }
}

const quotedNames = new Map<string, { name: string; bytes: Buffer }>();

/** A field name as it appears in a body without escapes, kept for the next body (the names are a handful, set by config). */
function quotedName(name: string): { name: string; bytes: Buffer } {
  let quoted = quotedNames.get(name);
  if (!quoted) {
    quoted = { name, bytes: Buffer.from(JSON.stringify(name)) };
    if (quotedNames.size < 64) quotedNames.set(name, quoted);
  }
  return quoted;
}

/**
 * Which wanted field the key between `start` and `end` (quotes included) names: null for none, undefined when it is not
 * a valid string. Compared byte by byte, so the keys of a body are never turned into strings; an escaped key is parsed.
 */
function keyName(bytes: Buffer, start: number, end: number, quoted: ReadonlyArray<{ name: string; bytes: Buffer }>): string | null | undefined {
  let escaped = false;
  for (let i = start + 1; i < end - 1 && !escaped; i += 1) escaped = bytes[i] === BACKSLASH;
  if (!escaped) {
    for (const candidate of quoted) if (sameBytes(candidate.bytes, bytes, start, end)) return candidate.name;
    return null;
  }
  const name = parseSlice(bytes, start, end);
  if (typeof name !== 'string') return undefined;
  return quoted.some((candidate) => candidate.name === name) ? name : null;
}

/** Whether `bytes` between `start` and `end` are `expected` (a key of a few bytes: compared here, not in native code). */
function sameBytes(expected: Buffer, bytes: Buffer, start: number, end: number): boolean {
  if (expected.length !== end - start) return false;
  for (let i = 0; i < expected.length; i += 1) if (expected[i] !== bytes[start + i]) return false;
  return true;
}

/** The quoted names of the last `wanted` list: the firehose asks for the same two names for every message. */
let lastWanted: readonly string[] = [];
let lastQuoted: ReadonlyArray<{ name: string; bytes: Buffer }> = [];

function quotedList(wanted: readonly string[]): ReadonlyArray<{ name: string; bytes: Buffer }> {
  if (wanted.length !== lastWanted.length || wanted.some((name, index) => name !== lastWanted[index])) {
    lastWanted = [...wanted];
    lastQuoted = wanted.map(quotedName);
  }
  return lastQuoted;
}

/**
 * The `wanted` top-level fields of a JSON object, read up to the last of them; undefined when the body is not a JSON
 * object (as far as it was read). Only the wanted values are parsed; the scan stops once all of them are found.
 */
export function readTopLevelFields(body: Uint8Array, wanted: readonly string[]): Map<string, unknown> | undefined {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const found = new Map<string, unknown>();
  const quoted = quotedList(wanted);
  let i = skipSpace(bytes, 0);
  if (bytes[i] !== 0x7b) return undefined;
  i = skipSpace(bytes, i + 1);
  if (bytes[i] === 0x7d) return found;
  for (;;) {
    if (bytes[i] !== QUOTE) return undefined;
    const keyEnd = skipString(bytes, i);
    if (keyEnd < 0) return undefined;
    const name = keyName(bytes, i, keyEnd, quoted);
    if (name === undefined) return undefined;
    i = skipSpace(bytes, keyEnd);
    if (bytes[i] !== 0x3a) return undefined;
    i = skipSpace(bytes, i + 1);
    const valueEnd = skipValue(bytes, i);
    if (valueEnd < 0) return undefined;
    if (name !== null && !found.has(name)) {
      const value = parseSlice(bytes, i, valueEnd);
      if (value === NOT_JSON) return undefined;
      found.set(name, value);
      if (found.size === wanted.length) return found;
    }
    i = skipSpace(bytes, valueEnd);
    if (bytes[i] === 0x7d) return found;
    if (bytes[i] !== 0x2c) return undefined;
    i = skipSpace(bytes, i + 1);
  }
}
