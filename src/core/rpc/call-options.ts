/** The one way a user's request (the app's compose form or the CLI's flags) becomes an RpcClient call, the reply-topic rule included. */
import type { SendRequestArgs } from '../../shared/contract';
import { defaultEnvelopeFields, type EnvelopeFields, type Mqtt5RequestOptions, type QoS, type ReplyStrategy } from '../../shared/rpc';
import { rawPayloadBytes, type PayloadFormat } from '../../shared/payload-format';
import { cleanMqtt5 } from '../../shared/mqtt5-options';
import { BridgeError } from '../errors';
import type { RpcCallOptions } from './client';
import { parsePayloadText } from './envelope';

/** What a user asked for, whichever face it came from; the payload already parsed. */
export interface CallRequest {
  topic: string;
  qos: QoS;
  strategy?: ReplyStrategy;
  /** the reply topic the user named explicitly (the form's field, `--reply-topic`); empty means none */
  replyTopic?: string;
  /** empty means none */
  method?: string;
  /** a JSON object typed as the request body */
  payload?: Record<string, unknown>;
  /** any other JSON value typed, sent as params */
  params?: unknown;
  /** a body sent exactly as given (text, hex, base64, a file): no id, no reply_to; payload and params are then unused */
  rawBody?: Uint8Array;
  /** MQTT 5 properties of the request (sent only over MQTT 5) */
  mqtt5?: Mqtt5RequestOptions;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Where the reply topic of a call comes from, and what the user is told about it. */
export interface ReplyTopicChoice {
  /** undefined: the client generates one (`reply/<uuid>`) or uses its shared reply topic */
  replyTopic: string | undefined;
  warnings: string[];
}

const quoted = (value: unknown): string => {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
};

/**
 * The reply-topic rule: an explicit reply topic wins; else the payload's own reply field (`reply_to`) when it is a
 * string; else the client generates one. A payload reply field that is overridden or unusable gets a warning, never
 * silence. Whatever wins is also what the request body carries, since the client writes it into the reply field.
 */
export function chooseReplyTopic(
  explicit: string | undefined,
  payload: Record<string, unknown> | undefined,
  fields: EnvelopeFields = defaultEnvelopeFields,
): ReplyTopicChoice {
  const named = explicit === '' ? undefined : explicit;
  const inPayload = payload !== undefined && Object.hasOwn(payload, fields.replyTo) ? payload[fields.replyTo] : undefined;
  if (named !== undefined) {
    const warnings =
      inPayload !== undefined && inPayload !== named
        ? [`The payload's "${fields.replyTo}" (${quoted(inPayload)}) is replaced by the reply topic ${quoted(named)}.`]
        : [];
    return { replyTopic: named, warnings };
  }
  if (typeof inPayload === 'string') return { replyTopic: inPayload, warnings: [] };
  if (inPayload !== undefined) {
    return { replyTopic: undefined, warnings: [`The payload's "${fields.replyTo}" (${quoted(inPayload)}) is not a topic string: a reply topic was generated instead.`] };
  }
  return { replyTopic: undefined, warnings: [] };
}

/** The options of one call from what the user asked for (CLI flags, or the app's form through callOptionsFromSendRequest). */
export function buildCallOptions(request: CallRequest, fields: EnvelopeFields = defaultEnvelopeFields): RpcCallOptions {
  const { replyTopic, warnings } = chooseReplyTopic(request.replyTopic, request.payload, fields);
  if (request.rawBody !== undefined) {
    if (request.method) warnings.push(`The method ${quoted(request.method)} is not sent: a non-JSON body is sent exactly as given.`);
    return {
      topic: request.topic,
      qos: request.qos,
      timeoutMs: request.timeoutMs,
      rawBody: request.rawBody,
      ...(request.strategy !== undefined ? { strategy: request.strategy } : {}),
      ...(replyTopic !== undefined ? { replyTopic } : {}),
      ...(request.mqtt5 !== undefined ? { mqtt5: request.mqtt5 } : {}),
      ...(request.signal !== undefined ? { signal: request.signal } : {}),
      ...(warnings.length > 0 ? { warnings } : {}),
    };
  }
  return {
    topic: request.topic,
    qos: request.qos,
    timeoutMs: request.timeoutMs,
    ...(request.strategy !== undefined ? { strategy: request.strategy } : {}),
    ...(replyTopic !== undefined ? { replyTopic } : {}),
    ...(request.method ? { method: request.method } : {}),
    ...(request.payload !== undefined ? { payload: request.payload } : {}),
    ...(request.params !== undefined ? { params: request.params } : {}),
    ...(request.mqtt5 !== undefined ? { mqtt5: request.mqtt5 } : {}),
    ...(request.signal !== undefined ? { signal: request.signal } : {}),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}

/**
 * What a body typed in a format becomes: JSON is parsed (an object is the body, anything else its params); text, hex,
 * base64 and a file's base64 become the exact bytes to send. Throws bad-input with one sentence for a body that is not
 * what its format says. `label` names the field in that sentence.
 */
export function readPayload(
  format: PayloadFormat | undefined,
  text: string,
  label = 'The payload',
): { payload?: Record<string, unknown>; params?: unknown; rawBody?: Uint8Array } {
  if (format === undefined || format === 'json') return parsePayloadText(text, label);
  const decoded = rawPayloadBytes(format, text);
  if (!decoded.ok) throw new BridgeError('bad-input', `${label}: ${decoded.message}`);
  return { rawBody: decoded.bytes };
}

/** The app's request (`rpc.request.send`, and each request of a load run) as call options; throws bad-input for a payload that is not what its format says. */
export function callOptionsFromSendRequest(args: SendRequestArgs, fields: EnvelopeFields = defaultEnvelopeFields): RpcCallOptions {
  const { payload, params, rawBody } = readPayload(args.payloadFormat, args.payloadText);
  const mqtt5 = cleanMqtt5(args.mqtt5);
  return buildCallOptions(
    {
      topic: args.topic,
      qos: args.qos,
      strategy: args.strategy,
      timeoutMs: args.timeoutMs,
      ...(args.replyTopic !== undefined ? { replyTopic: args.replyTopic } : {}),
      ...(args.method !== undefined ? { method: args.method } : {}),
      ...(payload !== undefined ? { payload } : {}),
      ...(params !== undefined ? { params } : {}),
      ...(rawBody !== undefined ? { rawBody } : {}),
      ...(mqtt5 !== undefined ? { mqtt5 } : {}),
    },
    fields,
  );
}
