/** What the CLI may write to a terminal: text from the network with control characters, escapes and bidi overrides made visible. */

/**
 * C0 controls (newline included: the printer adds the line's own), DEL, C1 controls, the line/paragraph separators,
 * the bidi embeddings, overrides and isolates, the invisible direction marks, and the invisibles that can hide or
 * smuggle text: zero-width space/non-joiner/joiner, word joiner and invisible operators, the BOM, tag characters.
 */
const UNSAFE_CLASS = String.raw`\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u{e0000}-\u{e007f}`;

/**
 * What terminalSafe matches, in order: an emoji flag tag sequence and a joiner between two emoji (kept: they draw one
 * picture), a backslash that could be read as the start of an escape (doubled), and any unsafe character (escaped).
 */
const UNSAFE = new RegExp(
  [
    String.raw`(?<flag>\u{1f3f4}[\u{e0020}-\u{e007e}]+\u{e007f})`,
    String.raw`(?<emojiJoiner>(?<=[\p{Extended_Pictographic}\p{Emoji_Modifier}\ufe0f])\u200d(?=\p{Extended_Pictographic}))`,
    String.raw`(?<backslash>\\(?=[\\nrtxu${UNSAFE_CLASS}]))`,
    `[${UNSAFE_CLASS}]`,
  ].join('|'),
  'gu',
);
/** The unsafe characters without C0 (JSON.stringify has escaped those inside strings; a raw \n there is layout), as UTF-16 code units. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]|\udb40[\udc00-\udc7f]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeCharacter(character: string): string {
  const named = NAMED[character];
  if (named) return named;
  const code = character.codePointAt(0) ?? 0;
  if (code > 0xffff) return `\\u{${code.toString(16)}}`;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * Text from the network, safe to print: every unsafe character becomes a visible escape (`\x1b`, `\n`, `\u202e`,
 * `\u{e0041}`); printable text is unchanged. A backslash is doubled only where it starts something that reads as an
 * escape (before n, r, t, x, u, a backslash or an unsafe character), so a shown `\x1b` always means the broker sent
 * ESC, never the four characters, while Windows paths and regexes mostly stay as typed.
 */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, (match: string, ...rest: unknown[]) => {
    const groups = rest.at(-1) as Record<string, string | undefined>;
    if (groups.flag !== undefined || groups.emojiJoiner !== undefined) return match;
    if (groups.backslash !== undefined) return '\\\\';
    return escapeCharacter(match);
  });
}

/**
 * JSON that is safe on a terminal and means the same to any JSON reader: JSON.stringify already escapes C0 controls,
 * and the other unsafe characters can only sit inside strings, where `\uXXXX` is an equivalent spelling.
 */
export function jsonForTerminal(value: unknown, indent?: number): string {
  // Each UTF-16 unit on its own: a tag character becomes its surrogate pair, which JSON reads back as the same character.
  return (JSON.stringify(value, null, indent) ?? 'null').replace(UNSAFE_IN_JSON, (units) =>
    units.split('').map((unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
  );
}

/** Whether stdout is a terminal; a pipe gets a reply body byte for byte, because scripts need it. */
export function stdoutIsTerminal(): boolean {
  return process.stdout.isTTY === true;
}

/**
 * Says a link's loss once per outage: a lost link reports its close and then each retry, and only the first of them is
 * news. `lost` answers whether to say it; `back` ends the outage.
 */
export function oncePerOutage(): { lost: () => boolean; back: () => void } {
  let out = false;
  return {
    lost: () => !out && (out = true),
    back: () => void (out = false),
  };
}

/** A broker's three URLs, a line each, their names aligned: what `broker start`, `broker status` and `ui` print. */
export function urlLines(urls: { amqp: string; mqtt: string; management: string }, indent = ''): string[] {
  return [`${indent}AMQP        ${urls.amqp}`, `${indent}MQTT        ${urls.mqtt}`, `${indent}Management  ${urls.management}`];
}
