/** What the CLI may write to a terminal: text from the network with control characters, escapes and bidi overrides made visible. */

/**
 * C0 controls (newline included: the printer adds the line's own), DEL, C1 controls, the line/paragraph separators,
 * the bidi embeddings, overrides and isolates, and the invisible direction marks.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same set without C0, which JSON.stringify has already escaped inside strings (a raw \n there is layout). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeCharacter(character: string): string {
  const named = NAMED[character];
  if (named) return named;
  const code = character.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** Text from the network, safe to print: every unsafe character becomes a visible escape (`\x1b`, `\n`, `\u202e`); printable text is unchanged. */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, escapeCharacter);
}

/**
 * JSON that is safe on a terminal and means the same to any JSON reader: JSON.stringify already escapes C0 controls,
 * and the other unsafe characters can only sit inside strings, where `\uXXXX` is an equivalent spelling.
 */
export function jsonForTerminal(value: unknown, indent?: number): string {
  return (JSON.stringify(value, null, indent) ?? 'null').replace(UNSAFE_IN_JSON, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Whether stdout is a terminal; a pipe gets a reply body byte for byte, because scripts need it. */
export function stdoutIsTerminal(): boolean {
  return process.stdout.isTTY === true;
}
