/** The request and reply envelopes: parsing what a device sent and encoding what a server answers. */
import { isAscii } from 'node:buffer';
import { TextDecoder } from 'node:util';
import { z } from 'zod';
import { defaultEnvelopeFields, type EnvelopeFields, type ReplyBody, type RpcErrorBody } from '../../shared/rpc';
import { BridgeError } from '../errors';
import { blockingIssue, lintTopic, MAX_ROUTING_KEY_BYTES, topicToRoutingKey, type TopicMapOptions } from '../../shared/topic-map';

export interface RpcRequest {
  id: string | undefined;
  /** the MQTT topic the reply goes to (body field), or undefined when only the MQTT 5 header gave a routing key */
  replyTopic: string | undefined;
  /** the routing key the reply is published with */
  replyRoutingKey: string;
  replySource: 'body' | 'mqtt5-header';
  method: string | undefined;
  params: unknown;
  body: unknown;
  correlationId: string | undefined;
  /**
   * MQTT 5 Correlation Data that was not a short UTF-8 string reaches AMQP as this header (RabbitMQ 3.13+, mc_mqtt.erl),
   * echoed on the reply as it came. amqplib reads an AMQP string header as UTF-8 text, so Correlation Data that is not
   * UTF-8 arrives with U+FFFD in place of its bytes: see `correlationLost`.
   */
  correlationHeader: string | Buffer | undefined;
}

export type ParseResult =
  | { ok: true; request: RpcRequest }
  | { ok: false; reason: string; id?: string };

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes bytes as UTF-8 text, or undefined when they are not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  // Nearly every body is ASCII (JSON): then latin1 reads the same text, without the strict decoder's work.
  if (isAscii(bytes)) return (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString('latin1');
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Reads a reply or request body: JSON when it parses, text when it is UTF-8, bytes otherwise. */
export function readBody(bytes: Uint8Array): ReplyBody {
  const text = decodeUtf8(bytes);
  if (text === undefined) return { kind: 'binary', base64: Buffer.from(bytes).toString('base64'), bytes: bytes.byteLength };
  try {
    return { kind: 'json', value: JSON.parse(text) as unknown, text };
  } catch {
    return { kind: 'text', text };
  }
}

const headerString = z.union([z.string(), z.instanceof(Buffer).transform((buffer) => buffer.toString('utf8'))]);

/** MQTT 5 Response Topic reaches AMQP 0-9-1 as this header, already dot-translated (RabbitMQ >= 3.13). */
export function mqtt5ReplyKey(headers: Record<string, unknown> | undefined): string | undefined {
  if (!headers) return undefined;
  const raw = headers['x-reply-to-topic'] ?? headers['x-opt-reply-to-topic'];
  // Most requests carry no such header: skip the schema (and its error object) on the hot path.
  if (raw === undefined) return undefined;
  const parsed = headerString.safeParse(raw);
  return parsed.success && parsed.data.length > 0 ? parsed.data : undefined;
}

export interface ParseContext {
  fields?: EnvelopeFields;
  headers?: Record<string, unknown>;
  correlationId?: string;
  topicMap?: TopicMapOptions;
}

/** The `x-correlation-id` header as it came (text, or bytes from a byte-array header), or undefined. */
function correlationHeaderOf(headers: Record<string, unknown> | undefined): string | Buffer | undefined {
  const raw = headers?.['x-correlation-id'];
  return typeof raw === 'string' || Buffer.isBuffer(raw) ? raw : undefined;
}

/**
 * Whether an `x-correlation-id` text lost bytes on the way: RabbitMQ sends a non-UTF-8 MQTT 5 Correlation Data as an AMQP
 * long string, and amqplib decodes every long string as UTF-8, replacing each invalid byte with U+FFFD.
 */
export function correlationLost(header: string | Buffer | undefined): boolean {
  return typeof header === 'string' && header.includes('\uFFFD');
}

/**
 * A request that names its reply only in MQTT 5 properties (Response Topic -> `x-reply-to-topic`) and whose body is not a
 * JSON object: empty, text, bytes or another JSON value. MQTT 5's own request/response needs no envelope: the body is
 * the request's params as they are (text as a string, bytes as base64, nothing as null).
 */
function nativeMqtt5Request(bytes: Uint8Array, replyRoutingKey: string, context: ParseContext): ParseResult {
  let params: unknown = null;
  if (bytes.byteLength > 0) {
    const text = decodeUtf8(bytes);
    if (text === undefined) params = { base64: Buffer.from(bytes).toString('base64') };
    else {
      try {
        params = JSON.parse(text);
      } catch {
        params = text;
      }
    }
  }
  const correlationHeader = context.correlationId === undefined ? correlationHeaderOf(context.headers) : undefined;
  return { ok: true, request: { id: undefined, method: undefined, params, body: params, correlationId: context.correlationId, correlationHeader, replyTopic: undefined, replyRoutingKey, replySource: 'mqtt5-header' } };
}

/** Parses one request as delivered to the server; never throws, whatever the bytes. */
export function parseRequest(bytes: Uint8Array, context: ParseContext = {}): ParseResult {
  const fields = context.fields ?? defaultEnvelopeFields;
  const headerKey = mqtt5ReplyKey(context.headers);
  if (bytes.byteLength === 0) return headerKey !== undefined ? nativeMqtt5Request(bytes, headerKey, context) : { ok: false, reason: 'The request body is empty.' };
  const text = decodeUtf8(bytes);
  if (text === undefined) {
    if (headerKey !== undefined) return nativeMqtt5Request(bytes, headerKey, context);
    return { ok: false, reason: `The request body is binary (${bytes.byteLength} bytes), not UTF-8 JSON.` };
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    if (headerKey !== undefined) return nativeMqtt5Request(bytes, headerKey, context);
    return { ok: false, reason: `The request body is not valid JSON (${(err as Error).message}).` };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    if (headerKey !== undefined) return nativeMqtt5Request(bytes, headerKey, context);
    return { ok: false, reason: 'The request body must be a JSON object.' };
  }
  const record = body as Record<string, unknown>;
  const rawId = record[fields.id];
  const id = typeof rawId === 'string' || typeof rawId === 'number' ? String(rawId) : undefined;
  const rawReplyTo = record[fields.replyTo];
  const method = typeof record[fields.method] === 'string' ? (record[fields.method] as string) : undefined;
  const params = record[fields.params];
  const correlationId = context.correlationId;
  const correlationHeader = correlationId === undefined && context.headers !== undefined ? correlationHeaderOf(context.headers) : undefined;

  if (rawReplyTo === undefined && headerKey !== undefined) {
    return { ok: true, request: { id, method, params, body, correlationId, correlationHeader, replyTopic: undefined, replyRoutingKey: headerKey, replySource: 'mqtt5-header' } };
  }
  if (rawReplyTo === undefined) {
    return { ok: false, id, reason: `The request has no "${fields.replyTo}" field, so there is nowhere to send the reply.` };
  }
  if (typeof rawReplyTo !== 'string') {
    return { ok: false, id, reason: `The request's "${fields.replyTo}" must be a topic string.` };
  }
  const replyKey = replyKeyOf(rawReplyTo, context.topicMap);
  if (replyKey.reason !== undefined) return { ok: false, id, reason: replyKey.reason };
  return { ok: true, request: { id, method, params, body, correlationId, correlationHeader, replyTopic: rawReplyTo, replyRoutingKey: replyKey.routingKey, replySource: 'body' } };
}

/** A reply topic's routing key, or why the topic cannot be used. */
type ReplyKey = { routingKey: string; reason: undefined } | { routingKey: undefined; reason: string };

/**
 * Reply topics already seen, by topic map (the lint and the key depend on `sparkplug` only, as lintTopic's cache says):
 * devices mostly reuse one reply topic, and linting it and mapping it again cost several strings per request. Bounded:
 * past the limit the cache starts over, as lintTopic's does; a long topic is not kept (an MQTT topic may be 64 KB).
 */
const replyKeys = [new Map<string, ReplyKey>(), new Map<string, ReplyKey>()] as const;
const REPLY_KEY_CACHE_LIMIT = 256;
const REPLY_KEY_CACHED_LENGTH = 512;

function replyKeyOf(topic: string, topicMap: TopicMapOptions | undefined): ReplyKey {
  if (topic.length > REPLY_KEY_CACHED_LENGTH) return computeReplyKey(topic, topicMap);
  const cache = replyKeys[topicMap?.sparkplug ? 1 : 0];
  let key = cache.get(topic);
  if (key === undefined) {
    key = computeReplyKey(topic, topicMap);
    if (cache.size >= REPLY_KEY_CACHE_LIMIT) cache.clear();
    cache.set(topic, key);
  }
  return key;
}

function computeReplyKey(topic: string, topicMap: TopicMapOptions | undefined): ReplyKey {
  const blocking = blockingIssue(lintTopic(topic, 'reply', topicMap));
  if (blocking) return { routingKey: undefined, reason: `The reply topic "${topic.slice(0, 80)}" cannot be used: ${blocking.message}` };
  const routingKey = topicToRoutingKey(topic, topicMap);
  if (Buffer.byteLength(routingKey) > MAX_ROUTING_KEY_BYTES) {
    return { routingKey: undefined, reason: `The reply topic maps to a routing key over ${MAX_ROUTING_KEY_BYTES} bytes.` };
  }
  return { routingKey, reason: undefined };
}

export interface ReplyEnvelope {
  id: string | undefined;
  result?: unknown;
  error?: RpcErrorBody;
  worker: string;
}

/** The reply body: `{"id", "result"}` or `{"id", "error": {"code", "message"}}`, plus the worker that answered. */
export function encodeReply(reply: ReplyEnvelope, fields: EnvelopeFields = defaultEnvelopeFields): Buffer {
  const body: Record<string, unknown> = { [fields.id]: reply.id ?? null };
  if (reply.error) body.error = reply.error;
  else body.result = reply.result ?? null;
  body.worker = reply.worker;
  return Buffer.from(JSON.stringify(body));
}

export interface RequestDraft {
  id: string;
  replyTopic: string;
  method?: string;
  params?: unknown;
  /** extra fields a device puts in its request, kept as they are */
  extra?: Record<string, unknown>;
}

export function encodeRequest(draft: RequestDraft, fields: EnvelopeFields = defaultEnvelopeFields): Buffer {
  const body: Record<string, unknown> = { ...draft.extra, [fields.id]: draft.id, [fields.replyTo]: draft.replyTopic };
  if (draft.method !== undefined) body[fields.method] = draft.method;
  if (draft.params !== undefined) body[fields.params] = draft.params;
  return Buffer.from(JSON.stringify(body));
}

/** Reads id, result and error out of a reply body, whatever its shape. */
export function readReplyFields(
  body: ReplyBody,
  fields: EnvelopeFields = defaultEnvelopeFields,
): { id?: string; result?: unknown; error?: RpcErrorBody; worker?: string } {
  if (body.kind !== 'json' || typeof body.value !== 'object' || body.value === null) return {};
  const record = body.value as Record<string, unknown>;
  const rawId = record[fields.id];
  const out: { id?: string; result?: unknown; error?: RpcErrorBody; worker?: string } = {};
  if (typeof rawId === 'string' || typeof rawId === 'number') out.id = String(rawId);
  if ('result' in record) out.result = record.result;
  const error = record.error as { code?: unknown; message?: unknown } | undefined;
  if (error && typeof error === 'object') {
    out.error = { code: String(error.code ?? 'error'), message: String(error.message ?? '') };
  }
  if (typeof record.worker === 'string') out.worker = record.worker;
  return out;
}

/** What a user typed as a request: a JSON object is the request body, any other JSON value its params, empty text nothing. */
export function parsePayloadText(text: string, label = 'The payload'): { payload?: Record<string, unknown>; params?: unknown } {
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BridgeError('bad-input', `${label} is not valid JSON (${(err as Error).message}).`);
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return { payload: value as Record<string, unknown> };
  return { params: value };
}
