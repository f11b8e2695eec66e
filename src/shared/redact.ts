/** The one redactor: takes passwords out of URLs and free text before anything is shown, logged, sent to the UI or exported. */

export const REDACTED = '***';

const SCHEME_SEPARATOR = '://';
/** A user name shown next to *** only when it is plainly one: unreserved, sub-delims and percent-escapes, no `:` or `@`. */
const PLAIN_USERNAME = /^[A-Za-z0-9._~!$&'()*+,;=%-]*$/;
const URL_START = /[A-Za-z][A-Za-z0-9+.-]*:\/\//g;

/** A URL split the way a user types it: the user-info is everything between `://` and the last `@`. */
export interface TypedUrl {
  /** `amqp://`, or '' when the text has no `://` */
  prefix: string;
  /** undefined when there is no `@` after the scheme */
  userinfo: string | undefined;
  /** the host and everything after it */
  rest: string;
}

export function splitTypedUrl(url: string): TypedUrl {
  const schemeEnd = url.indexOf(SCHEME_SEPARATOR);
  const prefix = schemeEnd === -1 ? '' : url.slice(0, schemeEnd + SCHEME_SEPARATOR.length);
  const afterPrefix = url.slice(prefix.length);
  // The last @ wins: a password typed raw may hold @, and the host never does.
  const at = afterPrefix.lastIndexOf('@');
  if (at === -1) return { prefix, userinfo: undefined, rest: afterPrefix };
  return { prefix, userinfo: afterPrefix.slice(0, at), rest: afterPrefix.slice(at + 1) };
}

/** The user name and password as typed (split at the first `:`, still percent-encoded), if the URL has user-info. */
export function typedCredentials(url: string): { username: string; password: string | undefined } | undefined {
  const { userinfo } = splitTypedUrl(url);
  if (userinfo === undefined) return undefined;
  const colon = userinfo.indexOf(':');
  return colon === -1 ? { username: userinfo, password: undefined } : { username: userinfo.slice(0, colon), password: userinfo.slice(colon + 1) };
}

/** decodeURIComponent that keeps a malformed escape (`%zz`) as typed instead of throwing. */
export function decodeUriPart(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A scheme and its `://`, as a URL starts: a `://` after anything else is no scheme's (a typo, or inside a password). */
const SCHEME_PREFIX = /^\s*[A-Za-z][A-Za-z0-9+.-]*:\/\/$/;

/**
 * A URL as it may be shown: the password replaced by ***. The user name stays only when it is plainly one; otherwise
 * everything between `://` and the last `@` is replaced, so no character a password may hold can leak.
 */
export function redactUrl(url: string): string {
  const { prefix, userinfo, rest } = splitTypedUrl(url);
  if (!SCHEME_PREFIX.test(prefix)) return redactMistyped(url);
  if (userinfo === undefined) return url;
  const credentials = typedCredentials(url);
  if (credentials?.password === undefined && PLAIN_USERNAME.test(userinfo)) return url;
  const shownUser = credentials && PLAIN_USERNAME.test(credentials.username) && credentials.username !== '' ? `${credentials.username}:` : '';
  return `${prefix}${shownUser}${REDACTED}@${rest}`;
}

/**
 * A URL typed without `://` after its scheme (`amqp//u:p@host`, `amqp:/u:p@host`): nothing says where its user-info
 * starts, but on every reading a password comes after a `:`. Everything from the first `:` to the last `@` is hidden,
 * the text before it shown: `amqp//u:***@host` keeps the typo in sight (masking it all, `***@host`, hid the very mistake
 * being reported); `amqp:/u:p@host` shows only `amqp:***@host`, as `/u` could as well be a password's start.
 */
function redactMistyped(url: string): string {
  const at = url.lastIndexOf('@');
  const colon = url.indexOf(':');
  return colon === -1 || colon > at ? url : `${url.slice(0, colon + 1)}${REDACTED}${url.slice(at)}`;
}

/** True when a URL parser read the user-info that was typed; a raw `/`, `?` or `#` in a password moves the host instead. */
export function parsedAsTyped(url: string, parsed: { username: string; password: string }): boolean {
  const typed = typedCredentials(url);
  if (typed === undefined) return parsed.username === '' && parsed.password === '';
  return decodeUriPart(parsed.username) === decodeUriPart(typed.username) && decodeUriPart(parsed.password) === decodeUriPart(typed.password ?? '');
}

/** Every form in which a URL's password could show up in text: as typed, decoded and percent-encoded. */
export function passwordForms(url: string): string[] {
  const typed = typedCredentials(url)?.password;
  if (!typed) return [];
  const decoded = decodeUriPart(typed);
  return [...new Set([typed, decoded, encodeURIComponent(decoded)])];
}

/** Replaces every occurrence of the given secrets; too-short ones are skipped, they would blank ordinary words. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let scrubbed = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (secret.length >= 3) scrubbed = scrubbed.split(secret).join(REDACTED);
  }
  return scrubbed;
}

/**
 * Free text (an error message, a body) with any URL password removed. A password typed raw can hold spaces and
 * `://`, so a URL's user-info runs from its `://` to the last `@` of the text; over-redacting is the safe side.
 */
export function redactUrlsInText(text: string): string {
  const lastAt = text.lastIndexOf('@');
  if (lastAt === -1) return text;
  for (const match of text.matchAll(URL_START)) {
    const start = match.index + match[0].length;
    if (start > lastAt) break;
    const userinfo = text.slice(start, lastAt);
    const colon = userinfo.indexOf(':');
    if (colon === -1) continue;
    // Already redacted (`user:***`): nothing left to hide in this URL.
    if (userinfo.slice(colon + 1) === REDACTED && PLAIN_USERNAME.test(userinfo.slice(0, colon))) continue;
    return `${text.slice(0, start)}${REDACTED}${text.slice(lastAt)}`;
  }
  return text;
}

/** Applies redactUrlsInText to every string inside a JSON-like value (keys included), returning a copy. */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return redactUrlsInText(value) as T;
  if (Array.isArray(value)) return value.map((item: unknown) => redactDeep(item)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [redactUrlsInText(key), redactDeep(item)])) as T;
  }
  return value;
}

/**
 * The sentence for a broker URL with nothing where its host belongs (`mqtt:/127.0.0.1:1883`, `amqp:host`, `amqp:///vh`):
 * a parser reads what follows the scheme as a path, and the client would connect to localhost's default port, which may
 * be another broker. `scheme` as the parser gives it (`mqtt:`).
 */
export function hostlessUrlMessage(url: string, scheme: string): string {
  const shown = redactUrl(url);
  const name = scheme.replace(/:$/, '');
  const afterScheme = shown.slice(shown.toLowerCase().startsWith(scheme.toLowerCase()) ? scheme.length : 0);
  if (afterScheme.startsWith('//')) return `"${shown}" has no host after "${name}://".`;
  return `"${shown}" has no host after the scheme: write ${name}://${afterScheme.replace(/^\/+/, '')} (two slashes after "${name}:").`;
}

/** The one sentence for a broker URL that cannot be read as typed; the URL in it is redacted. */
export function unreadableUrlMessage(url: string, what: string, example: string): string {
  // Without a scheme's `://` the mistake is there, not in the user-info (the example shows the form).
  const hint = typedCredentials(url) && SCHEME_PREFIX.test(splitTypedUrl(url).prefix)
    ? '; percent-encode special characters in the user name and password (/ as %2F, ? as %3F, # as %23, % as %25, space as %20)'
    : '';
  return `"${redactUrl(url)}" is not a valid ${what} URL (expected ${example})${hint}.`;
}
