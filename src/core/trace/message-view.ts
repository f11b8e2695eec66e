/**
 * What a trace step keeps of a message: its properties and headers (bounded) and the first bytes of its body, with the
 * full size and the encoding. Built on the hot path of every traced hop, so nothing here parses a body: a body is
 * cut, decoded as UTF-8 if it is, and kept as text or base64.
 */
import { isAscii } from 'node:buffer';
import { TextDecoder } from 'node:util';
import { TRACE_BODY_PREVIEW_BYTES, type TraceBody, type TraceMessage, type TraceValue } from '../../shared/trace';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
/** Header and property values longer than this are cut (a header is read, not stored whole). */
const MAX_VALUE_CHARS = 512;
/** At most this many headers per message; the rest are counted in one entry. */
const MAX_HEADERS = 48;
// Control characters other than tab, newline and carriage return: UTF-8 that holds them is shown as bytes, not text.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/;

/** The UTF-8 text of `bytes`, allowing a character cut in two at the end (the body was cut there); undefined when not UTF-8. */
function utf8Prefix(bytes: Uint8Array, cut: boolean): { text: string; shown: number } | undefined {
  // A cut body may end inside a character of up to 4 bytes: try the last 0-3 bytes away.
  for (let back = 0; back <= (cut ? 3 : 0) && back < bytes.byteLength; back += 1) {
    try {
      const shown = bytes.byteLength - back;
      return { text: strictUtf8.decode(bytes.subarray(0, shown)), shown };
    } catch {
      // try one byte shorter
    }
  }
  return bytes.byteLength === 0 ? { text: '', shown: 0 } : undefined;
}

/** Whether text opens (after white space) with `{` or `[`. */
function opensLikeJson(text: string): boolean {
  const first = text.trimStart()[0];
  return first === '{' || first === '[';
}

/** The first `limit` bytes of a body, as text when it is UTF-8 (json when it opens like JSON), else base64. */
export function bodyPreview(body: Uint8Array, limit = TRACE_BODY_PREVIEW_BYTES): TraceBody {
  const cut = body.byteLength > limit;
  const head = cut ? body.subarray(0, limit) : body;
  // Most bodies are ASCII (JSON): then one byte is one character, and latin1 reads them without the strict decoder.
  if (isAscii(head)) {
    const text = (Buffer.isBuffer(head) ? head : Buffer.from(head.buffer, head.byteOffset, head.byteLength)).toString('latin1');
    if (!CONTROL.test(text)) return { bytes: body.byteLength, encoding: opensLikeJson(text) ? 'json' : 'text', preview: text, shown: head.byteLength };
  }
  const decoded = utf8Prefix(head, cut);
  if (decoded && !CONTROL.test(decoded.text)) {
    return { bytes: body.byteLength, encoding: opensLikeJson(decoded.text) ? 'json' : 'text', preview: decoded.text, shown: decoded.shown };
  }
  return { bytes: body.byteLength, encoding: 'binary', preview: Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('base64'), shown: head.byteLength };
}

function cutText(text: string): string {
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}… (${text.length} characters)` : text;
}

/** One header or property value, JSON-safe and short: bytes as UTF-8 (or base64), tables and lists as JSON text. */
export function traceValue(value: unknown): TraceValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return cutText(value);
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) {
    const decoded = utf8Prefix(value, false);
    return cutText(decoded && !CONTROL.test(decoded.text) ? decoded.text : `base64:${Buffer.from(value).toString('base64')}`);
  }
  if (value instanceof Date) return value.toISOString();
  try {
    return cutText(JSON.stringify(value, (_key, inner: unknown) => (inner instanceof Uint8Array ? Buffer.from(inner).toString('utf8') : inner)) ?? String(value));
  } catch {
    return cutText(String(value));
  }
}

/** The one table of a message without headers (most MQTT 3.1.1 traffic): shared and frozen, as steps are never changed. */
const NO_ENTRIES: Record<string, TraceValue> = Object.freeze({});

function table(source: Record<string, unknown> | undefined, skip?: ReadonlySet<string>): Record<string, TraceValue> {
  if (!source) return NO_ENTRIES;
  const out: Record<string, TraceValue> = {};
  let count = 0;
  let left = 0;
  for (const key in source) {
    const value = source[key];
    if (value === undefined || skip?.has(key)) continue;
    if (count >= MAX_HEADERS) {
      left += 1;
      continue;
    }
    out[key] = traceValue(value);
    count += 1;
  }
  if (left > 0) out['(more)'] = `${left} more not kept`;
  return out;
}

const AMQP_NOT_PROPERTIES = new Set(['headers']);

/** An AMQP message: its basic properties (headers apart) and headers, as amqplib decoded them. */
export function amqpMessage(properties: Record<string, unknown> | undefined, body: Uint8Array): TraceMessage {
  const headers = properties?.headers;
  return {
    protocol: 'amqp',
    properties: table(properties, AMQP_NOT_PROPERTIES),
    headers: table(typeof headers === 'object' && headers !== null ? (headers as Record<string, unknown>) : undefined),
    body: bodyPreview(body),
  };
}

/** What an MQTT PUBLISH carried besides its payload: the fixed header's flags and the MQTT 5 properties. */
export interface MqttPublishFacts {
  qos: number;
  retain?: boolean;
  dup?: boolean;
  properties?: Record<string, unknown>;
}

/** An MQTT message: QoS, retain, dup and MQTT 5 properties; user properties as headers. */
export function mqttMessage(facts: MqttPublishFacts, body: Uint8Array): TraceMessage {
  const properties: Record<string, TraceValue> = { qos: facts.qos, retain: facts.retain ?? false };
  if (facts.dup !== undefined) properties.dup = facts.dup;
  let userProperties: unknown;
  // MQTT 3.1.1 (most traffic) has no properties: no copy, no rest object on that path.
  if (facts.properties) {
    const { userProperties: user, ...rest } = facts.properties;
    userProperties = user;
    Object.assign(properties, table(rest));
  }
  return {
    protocol: 'mqtt',
    properties,
    headers: table(typeof userProperties === 'object' && userProperties !== null ? (userProperties as Record<string, unknown>) : undefined),
    body: bodyPreview(body),
  };
}
