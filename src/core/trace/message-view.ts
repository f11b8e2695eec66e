/**
 * What a trace step keeps of a message: its properties and headers (bounded) and the first bytes of its body, with the
 * full size and the encoding. Built on the hot path of every traced hop, so nothing here parses a body: a body is
 * cut, decoded as UTF-8 if it is, and kept as text or base64.
 */
import { isAscii } from 'node:buffer';
import { TextDecoder } from 'node:util';
import { TRACE_BODY_PREVIEW_BYTES, type TraceBody, type TraceMessage, type TraceStep, type TraceStepDraft, type TraceValue } from '../../shared/trace';
import { decodeFieldTable, type EncodedTable } from './field-table';

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
  return previewOfHead(body.byteLength > limit ? body.subarray(0, limit) : body, body.byteLength);
}

/** The preview of a body of `bytes` bytes from its first bytes (`head`, all of it when it is not cut). */
function previewOfHead(head: Uint8Array, bytes: number): TraceBody {
  const cut = bytes > head.byteLength;
  // Most bodies are ASCII (JSON): then one byte is one character, and latin1 reads them without the strict decoder.
  if (isAscii(head)) {
    const text = (Buffer.isBuffer(head) ? head : Buffer.from(head.buffer, head.byteOffset, head.byteLength)).toString('latin1');
    if (!CONTROL.test(text)) return { bytes, encoding: opensLikeJson(text) ? 'json' : 'text', preview: text, shown: head.byteLength };
  }
  const decoded = utf8Prefix(head, cut);
  if (decoded && !CONTROL.test(decoded.text)) {
    return { bytes, encoding: opensLikeJson(decoded.text) ? 'json' : 'text', preview: decoded.text, shown: decoded.shown };
  }
  return { bytes, encoding: 'binary', preview: Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('base64'), shown: head.byteLength };
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

/** An AMQP message's basic properties (headers apart) and headers, as amqplib decoded them. */
function amqpTables(given: Record<string, unknown> | EncodedTable | undefined): Pick<TraceMessage, 'properties' | 'headers'> {
  let properties = given as Record<string, unknown> | undefined;
  if (Buffer.isBuffer(given)) {
    try {
      properties = decodeFieldTable(given);
    } catch (err) {
      // Only the firehose's copy is kept as bytes, unread until now: a table that cannot be followed costs this view only.
      return { properties: { unreadable: `RabbitMQ's copy of this message's properties could not be decoded (${(err as Error).message}).` }, headers: {} };
    }
  }
  const headers = properties?.headers;
  return {
    properties: table(properties, AMQP_NOT_PROPERTIES),
    headers: table(typeof headers === 'object' && headers !== null ? (headers as Record<string, unknown>) : undefined),
  };
}

/** An AMQP message: its basic properties (headers apart) and headers, as amqplib decoded them. */
export function amqpMessage(properties: Record<string, unknown> | undefined, body: Uint8Array): TraceMessage {
  return { protocol: 'amqp', ...amqpTables(properties), body: bodyPreview(body) };
}

/** What an MQTT PUBLISH carried besides its payload: the fixed header's flags and the MQTT 5 properties. */
export interface MqttPublishFacts {
  qos: number;
  retain?: boolean;
  dup?: boolean;
  properties?: Record<string, unknown>;
}

/** An MQTT message's QoS, retain, dup and MQTT 5 properties; user properties as headers. */
function mqttTables(facts: MqttPublishFacts): Pick<TraceMessage, 'properties' | 'headers'> {
  const properties: Record<string, TraceValue> = { qos: facts.qos, retain: facts.retain ?? false };
  if (facts.dup !== undefined) properties.dup = facts.dup;
  let userProperties: unknown;
  // MQTT 3.1.1 (most traffic) has no properties: no copy, no rest object on that path.
  if (facts.properties) {
    const { userProperties: user, ...rest } = facts.properties;
    userProperties = user;
    Object.assign(properties, table(rest));
  }
  return { properties, headers: table(typeof userProperties === 'object' && userProperties !== null ? (userProperties as Record<string, unknown>) : undefined) };
}

/** An MQTT message: QoS, retain, dup and MQTT 5 properties; user properties as headers. */
export function mqttMessage(facts: MqttPublishFacts, body: Uint8Array): TraceMessage {
  return { protocol: 'mqtt', ...mqttTables(facts), body: bodyPreview(body) };
}

/**
 * What a step's wire is built from, kept on its draft until a reader asks for the step (most steps of an untraced app
 * call never are): the message's facts and the head of its body. The head a writer hands over is a view of the body
 * (no copy on the hot path); the trace store copies it when it keeps the step (see `ownedHead`), so a kept step never
 * holds someone else's memory (a socket's read buffer, a pool slab), only its preview's bytes.
 */
export type WireSource =
  /** properties: as amqplib decoded them, or (the firehose's) their field table's bytes, decoded when the wire is built */
  | ({ protocol: 'amqp'; properties: Record<string, unknown> | EncodedTable | undefined } & PendingBody)
  | ({ protocol: 'mqtt'; facts: MqttPublishFacts } & PendingBody);

interface PendingBody {
  /** the body's first bytes (at most TRACE_BODY_PREVIEW_BYTES): a view of the body until the store keeps it */
  head: Buffer;
  bytes: number;
  /** set once the trace's body budget took the preview: the head is gone, its encoding is kept */
  dropped?: TraceBody['encoding'];
}

/** The key of a draft's wire source: a symbol, so JSON, structured clone and spreads of the detail never see it. */
export const WIRE_SOURCE = Symbol('wire source');

/** A draft whose wire is still to be built from its source. */
export type PendingDraft = TraceStepDraft & { [WIRE_SOURCE]?: WireSource };



const NO_BYTES = Buffer.alloc(0);

/** The head of a body: a view of at most TRACE_BODY_PREVIEW_BYTES of its first bytes (no copy). */
function headOf(body: Uint8Array): Buffer {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return bytes.byteLength > TRACE_BODY_PREVIEW_BYTES ? bytes.subarray(0, TRACE_BODY_PREVIEW_BYTES) : bytes;
}

/**
 * A source whose head (and encoded properties) are copies of its own, for a draft that is kept as it is: a view of a
 * socket's read buffer or of a pool slab would hold all of that memory for as long as the step is kept.
 */
export function ownedHead(source: WireSource): void {
  // The firehose's copy of a message's properties, left as their table's bytes, is a view of the socket's read buffer too.
  if (source.protocol === 'amqp' && Buffer.isBuffer(source.properties)) source.properties = ownedCopy(source.properties);
  if (source.head.byteLength === 0) {
    // An empty view still holds all of its memory (mqtt.js gives an empty payload as a slice of the socket's chunk).
    source.head = NO_BYTES;
    return;
  }
  source.head = ownedCopy(source.head);
}

/**
 * The firehose's properties table, when longer than `limit` (what the trace store's tape copies; a longer Buffer it
 * keeps by reference), becomes a copy of its own before the tape takes the source apart: a view of the socket's read
 * would otherwise stay on the tape.
 */
export function ownedLongTable(source: WireSource, limit: number): void {
  if (source.protocol === 'amqp' && Buffer.isBuffer(source.properties) && source.properties.byteLength > limit) source.properties = ownedCopy(source.properties);
}

function ownedCopy(view: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(view.byteLength);
  view.copy(copy);
  return copy;
}

/**
 * An AMQP message's wire, to be built when its step is read: a writer puts it on the draft it emits, in the literal
 * (`{ ...step, [WIRE_SOURCE]: amqpWire(...) }`: a property added later costs the draft a second object).
 */
export function amqpWire(properties: Record<string, unknown> | EncodedTable | undefined, body: Uint8Array): WireSource {
  return { protocol: 'amqp', properties, head: headOf(body), bytes: body.byteLength };
}

/** An MQTT message's wire, to be built when its step is read (see `amqpWire`). */
export function mqttWire(facts: MqttPublishFacts, body: Uint8Array): WireSource {
  return { protocol: 'mqtt', facts, head: headOf(body), bytes: body.byteLength };
}

/** The wire a source describes; its body preview is marked dropped when the trace's body budget took it. */
export function buildWire(source: WireSource): TraceMessage {
  const body: TraceBody = source.dropped
    ? { bytes: source.bytes, encoding: source.dropped, preview: '', shown: 0, dropped: true }
    : previewOfHead(source.head, source.bytes);
  return source.protocol === 'amqp' ? { protocol: 'amqp', ...amqpTables(source.properties), body } : { protocol: 'mqtt', ...mqttTables(source.facts), body };
}

/** The draft with its wire built (itself when it has none pending): what a listener of 'step' that reads wires prints. */
export function withWire<D extends TraceStepDraft | TraceStep>(draft: D): D {
  const source = (draft as PendingDraft)[WIRE_SOURCE];
  if (source === undefined) return draft;
  const { [WIRE_SOURCE]: _source, ...rest } = draft as D & PendingDraft;
  return { ...rest, detail: { ...draft.detail, wire: buildWire(source) } } as unknown as D;
}

/** The wire source of a draft, if its wire is still to be built. */
export function wireSourceOf(draft: TraceStepDraft | TraceStep): WireSource | undefined {
  return (draft as PendingDraft)[WIRE_SOURCE];
}

/** The preview bytes a source will hold once built: what the trace's body budget counts for it (see `previewSize`). */
export function pendingPreviewBytes(source: WireSource): number {
  return source.dropped ? 0 : source.head.byteLength;
}

/** The budget took this preview: the head goes, its size and encoding stay. Returns the bytes freed. */
export function dropPendingPreview(source: WireSource): number {
  const freed = pendingPreviewBytes(source);
  if (freed === 0) return 0;
  source.dropped = previewOfHead(source.head, source.bytes).encoding;
  source.head = NO_BYTES;
  return freed;
}
