/** Publishing one reply on a worker's confirm channel: its AMQP properties, and the confirm it waits for. */
import type { ConfirmChannel, Options } from 'amqplib';
import { messageOf } from '../../shared/thrown';
import type { EnvelopeFields } from '../../shared/rpc';
import { encodeReply, type RpcRequest } from './envelope';
import type { HandlerSettled } from './handler-runner';
import type { ServerReplyErrorCode } from './server-types';

/** A reply's AMQP properties: the request's correlation (id or header) is copied back, so the device can match it. */
export function replyProperties(request: RpcRequest, messageId: string, deliveryMode: 1 | 2): Record<string, unknown> {
  return request.correlationId
    ? { messageId, contentType: 'application/json', deliveryMode, correlationId: request.correlationId }
    : request.correlationHeader
      ? { messageId, contentType: 'application/json', deliveryMode, headers: { 'x-correlation-id': request.correlationHeader } }
      : { messageId, contentType: 'application/json', deliveryMode };
}

/** Told once, by the broker's confirm: undefined, or why the reply was not taken (a nack, a closed channel). */
export type ReplyConfirmed = (failure: Error | undefined) => void;

/**
 * Publishes with `mandatory` (an unroutable reply comes back as basic.return) and the trace context's headers, if any.
 * `confirmed` is called once, by the confirm (no promise per reply: the caller's callback does what follows). Returns
 * false when the socket's buffer is full (wait for the channel's 'drain' before taking more work), or the error the
 * publish threw: the channel is closed and `confirmed` is never called.
 */
export function publishReply(
  channel: Pick<ConfirmChannel, 'publish'>,
  exchange: string,
  request: RpcRequest,
  messageId: string,
  deliveryMode: 1 | 2,
  body: Buffer,
  traceHeaders: Record<string, string> | undefined,
  confirmed: ReplyConfirmed,
): boolean | Error {
  let told = false;
  const tell = (err: unknown): void => {
    // amqplib may call back for a publish that threw (the channel's close fails every unconfirmed one): once only.
    if (told) return;
    told = true;
    confirmed(err ? asError(err) : undefined);
  };
  const options = replyProperties(request, messageId, deliveryMode) as Options.Publish;
  options.mandatory = true;
  if (traceHeaders) options.headers = { ...options.headers, ...traceHeaders };
  try {
    return channel.publish(exchange, request.replyRoutingKey, body, options, tell);
  } catch (err) {
    // The channel closed under us (the broker requeues the request): said by the return value, `confirmed` is not called.
    told = true;
    return asError(err);
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(messageOf(err));
}

/** The reply a handler's outcome is answered with: its result, or an error when it failed or its result cannot go. */
export interface EncodedReply {
  body: Buffer;
  error: { code: string; message: string } | undefined;
  /** the result's size, when it was over the broker's limit and answered with an error instead */
  tooLargeBytes: number | undefined;
}

export function encodeHandlerReply(settled: HandlerSettled, request: RpcRequest, worker: string, fields: EnvelopeFields, maxMessageBytes: number): EncodedReply {
  let body: Buffer | undefined;
  let error = settled.ok ? undefined : settled.error;
  let tooLargeBytes: number | undefined;
  if (settled.ok) {
    try {
      body = encodeReply({ id: request.id, result: settled.result, worker }, fields);
    } catch (err) {
      error = { code: 'unserializable-result' satisfies ServerReplyErrorCode, message: `The handler's result cannot be sent as JSON: ${messageOf(err)}` };
    }
    if (body && body.byteLength > maxMessageBytes) {
      error = { code: 'reply-too-large' satisfies ServerReplyErrorCode, message: `The reply is ${body.byteLength} bytes; the broker accepts at most ${maxMessageBytes} (max_message_size).` };
      tooLargeBytes = body.byteLength;
    }
  }
  if (error) body = encodeReply({ id: request.id, error, worker }, fields);
  return { body: body as Buffer, error, tooLargeBytes };
}
