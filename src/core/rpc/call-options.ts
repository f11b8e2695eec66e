/** The one way a user's request (the app's compose form or the CLI's flags) becomes an RpcClient call, the reply-topic rule included. */
import type { SendRequestArgs } from '../../shared/contract';
import { defaultEnvelopeFields, type EnvelopeFields, type QoS, type ReplyStrategy } from '../../shared/rpc';
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
  return {
    topic: request.topic,
    qos: request.qos,
    timeoutMs: request.timeoutMs,
    ...(request.strategy !== undefined ? { strategy: request.strategy } : {}),
    ...(replyTopic !== undefined ? { replyTopic } : {}),
    ...(request.method ? { method: request.method } : {}),
    ...(request.payload !== undefined ? { payload: request.payload } : {}),
    ...(request.params !== undefined ? { params: request.params } : {}),
    ...(request.signal !== undefined ? { signal: request.signal } : {}),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}

/** The app's request (`rpc.request.send`, and each request of a load run) as call options; throws bad-input for a payload that is not JSON. */
export function callOptionsFromSendRequest(args: SendRequestArgs, fields: EnvelopeFields = defaultEnvelopeFields): RpcCallOptions {
  const { payload, params } = parsePayloadText(args.payloadText);
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
    },
    fields,
  );
}
