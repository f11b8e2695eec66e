/** Several broker URLs in one text (the nodes of a cluster): how a list is split, shown and redacted, for the CLI and the app alike. */
import { parsedAsTyped, redactUrl, splitTypedUrl } from './redact';

const SEPARATOR = /[,\r\n]+(?=\s*(?:amqps?|mqtts?|wss?|tcp|https?):\/\/)/gi;

/** A host and port with nothing after them but a path, query or fragment: `h1:5672`, `[::1]:1883/`, `h:15672?x`. */
const HOST_AND_PORT = /^(?:[^:/?#@[\]]+|\[[^\]]*\]):\d{1,5}(?:[/?#].*)?$/s;

/**
 * Whether a piece may be the start of a URL whose raw password went on past a separator: `scheme://user:pass` without
 * `@`, or with nothing after its last `@` (no host). A `host:port` (then nothing, `/`, `?` or `#`) is a whole URL.
 */
function unfinishedUserinfo(piece: string): boolean {
  const { prefix, userinfo, rest } = splitTypedUrl(piece);
  if (prefix === '') return false;
  return userinfo === undefined ? rest.includes(':') && !HOST_AND_PORT.test(rest) : rest === '';
}

/** Whether a piece's user-info is a user name only (so the text before it may have been the rest of a password). */
function userOnly(piece: string): boolean {
  const { userinfo } = splitTypedUrl(piece);
  return userinfo !== undefined && !userinfo.includes(':');
}

/**
 * The URLs of a list, separated by commas or line breaks, each starting with its scheme. A separator inside a raw
 * password (`amqp://u:a,amqp://b@host`) cannot be told from two URLs; it is read as one URL, so no part of that password
 * is ever shown as a URL of its own.
 */
export function splitUrls(text: string): string[] {
  // Each piece as a span of the text, so a merged URL keeps exactly what was typed between its pieces.
  const spans: Array<{ start: number; end: number }> = [];
  let start = 0;
  for (const match of text.matchAll(SEPARATOR)) {
    spans.push({ start, end: match.index });
    start = match.index + match[0].length;
  }
  spans.push({ start, end: text.length });
  const pieces = spans.map((span) => ({ ...span, text: text.slice(span.start, span.end).trim() })).filter((piece) => piece.text.length > 0);
  const urls: string[] = [];
  for (let index = 0; index < pieces.length; index += 1) {
    const piece = pieces[index] as (typeof pieces)[number];
    let url = piece.text;
    if (unfinishedUserinfo(url)) {
      const end = pieces.findIndex((candidate, at) => at > index && candidate.text.includes('@'));
      const last = pieces[end];
      if (last && userOnly(last.text)) {
        url = text.slice(piece.start, last.end).trim();
        index = end;
      }
    }
    urls.push(url);
  }
  return urls;
}

/** Whether a URL reads the same to a parser as it was typed, with a plain host: then its password is exactly where redactUrl looks. */
function readsAsTyped(url: string): boolean {
  try {
    const parsed = new URL(url);
    return /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$/.test(parsed.hostname) && parsedAsTyped(url, parsed);
  } catch {
    return false;
  }
}

/** A URL's login as typed: none, a user with a password, a user alone (as a saved profile keeps it), or an empty password. */
function loginOf(url: string): 'none' | 'password' | 'user' | 'empty' {
  const { userinfo } = splitTypedUrl(url);
  if (userinfo === undefined) return 'none';
  const colon = userinfo.indexOf(':');
  if (colon < 0) return 'user';
  return colon < userinfo.length - 1 ? 'password' : 'empty';
}

/**
 * Whether the URLs of a list log in differently: every one with a password, every one with a user alone (a saved
 * profile's list, its passwords kept apart), or none with a login, is how a cluster's list is typed. Anything else, or an
 * empty password, may be a raw password that went on past a separator and was read as the next URL's start
 * (`amqp://u:1234,amqp://secret@h` is one URL whose password is `1234,amqp://secret`; `amqp://a:@0, amqp://0@h` one whose
 * password is `@0, amqp://0`).
 */
function loginsDiffer(urls: readonly string[]): boolean {
  const first = loginOf(urls[0] ?? '');
  return first === 'empty' || urls.some((url) => loginOf(url) !== first);
}

/**
 * A list as typed, shown with every URL's password replaced by ***; one per line when it was typed so, else comma-separated.
 * A list whose URLs do not all read as typed (a raw password holding a separator, an `@` or a scheme), one of whose URLs
 * may be the start of a password that went on past a separator (`amqp://u:` then `, amqp://x:@host`), or whose URLs log
 * in differently (see loginsDiffer), is redacted as one URL, from its first `://` to its last `@`: over-redacting is the
 * safe side.
 */
export function redactUrlList(text: string): string {
  const urls = splitUrls(text);
  if (urls.length < 2 || !urls.every(readsAsTyped) || urls.some(unfinishedUserinfo) || loginsDiffer(urls)) return redactUrl(text.trim());
  return urls.map((url) => redactUrl(url)).join(text.includes('\n') ? '\n' : ', ');
}

/** `host:port` of the first URL of a list (the node tried first), or undefined when it is not a URL yet. */
export function firstEndpoint(list: string): string | undefined {
  const first = splitUrls(list)[0]?.trim();
  if (!first) return undefined;
  try {
    const url = new URL(first);
    if (url.hostname === '') return undefined;
    const defaults: Record<string, string> = { 'amqp:': '5672', 'amqps:': '5671', 'mqtt:': '1883', 'tcp:': '1883', 'mqtts:': '8883', 'ssl:': '8883', 'ws:': '80', 'wss:': '443', 'http:': '80', 'https:': '443' };
    return `${url.hostname}:${url.port || defaults[url.protocol] || '?'}`;
  } catch {
    return undefined;
  }
}

/** Which broker a profile reaches, in a few words: "127.0.0.1:5672 (AMQP), :1883 (MQTT)"; the MQTT host is left out when it is the AMQP one. */
export function brokerEndpoints(profile: { amqpUrl: string; mqttUrl: string }): string | undefined {
  const amqp = firstEndpoint(profile.amqpUrl);
  const mqtt = firstEndpoint(profile.mqttUrl);
  if (amqp === undefined || mqtt === undefined) return undefined;
  const amqpHost = amqp.slice(0, amqp.lastIndexOf(':'));
  const mqttShown = mqtt.startsWith(`${amqpHost}:`) ? mqtt.slice(amqpHost.length) : mqtt;
  return `${amqp} (AMQP), ${mqttShown} (MQTT)`;
}
