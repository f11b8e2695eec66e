/** Why a reply was not confirmed, read from what the broker and amqplib said: pure, so it is tested without a broker. */
import { AMQPLIB_NACKED, RABBITMQ_TOO_LARGE } from '../links/amqp-link';
import { BoundedMap } from '../bounded-map';
import type { ServerReplyErrorCode } from './server-types';

export interface ReplyFailureFacts {
  /** the error amqplib failed the publish with */
  failureMessage: string;
  /** the broker's reason for closing the channel, when it did (its 'error' comes before the close) */
  closeReason: string | undefined;
  bodyBytes: number;
  /** the limit known so far; a refusal that names the broker's real one lowers it */
  maxMessageBytes: number;
  /** a reply of this channel already took the blame for closeReason */
  blamedBefore: boolean;
}

export interface ReplyFailure {
  /** this reply's own size broke the broker's limit */
  tooLarge: boolean;
  /** this reply took the blame for a channel error that names no size (once per close) */
  blamed: boolean;
  /** for the user: what went wrong */
  reason: string;
  /** what to answer a redelivery of the request with, when the broker tied the refusal to this reply */
  remember: { code: 'reply-failed' | 'reply-too-large'; reason: string } | undefined;
  /** the limit to use from now on */
  maxMessageBytes: number;
}

/** Reads the broker's real limit out of its refusal ("message size N is larger than configured max size M"). */
export function learnMaxMessageSize(reason: string, known: number): number {
  const limit = RABBITMQ_TOO_LARGE.exec(reason);
  return limit ? Math.min(known, Number(limit[2])) : known;
}

export function classifyReplyFailure(facts: ReplyFailureFacts): ReplyFailure {
  const { closeReason, failureMessage, bodyBytes } = facts;
  const maxMessageBytes = closeReason === undefined ? facts.maxMessageBytes : learnMaxMessageSize(closeReason, facts.maxMessageBytes);
  // amqplib fails every unconfirmed publish of a closed channel with "channel closed": only the reply whose own size
  // breaks the named limit was refused.
  const sizeRefusal = closeReason !== undefined && RABBITMQ_TOO_LARGE.test(closeReason);
  const tooLarge = sizeRefusal && bodyBytes > maxMessageBytes;
  const nacked = failureMessage === AMQPLIB_NACKED;
  // Any other channel error is blamed on the oldest unconfirmed reply (the broker works in order), once per close:
  // remembering it bounds the loop of a reply that always fails, and its siblings are merely lost.
  const blamed = closeReason !== undefined && !sizeRefusal && !facts.blamedBefore;
  const reason = tooLarge || closeReason === undefined ? (closeReason ?? failureMessage) : `${failureMessage}; the broker closed the channel: ${closeReason}`;
  // Only a refusal the broker tied to this reply (too large, a nack) is remembered; any other lost reply (a sibling of a
  // refused one, a lost connection) is handled again on redelivery (at least once).
  const remember =
    tooLarge || nacked || blamed
      ? {
          code: tooLarge ? ('reply-too-large' as const) : ('reply-failed' as const),
          reason: tooLarge ? `The reply was ${bodyBytes} bytes, over the broker's max_message_size (${maxMessageBytes})` : `The reply could not be published (${reason})`,
        }
      : undefined;
  return { tooLarge, blamed, reason, remember, maxMessageBytes };
}

/** A reply that could not be published, remembered so its redelivery is answered with an error instead of running the handler again. */
export interface FailedReply {
  reason: string;
  code: Extract<ServerReplyErrorCode, 'reply-failed' | 'reply-too-large'>;
  /** error replies already tried for it: a second failure rejects the request so it cannot loop */
  attempts: number;
}

/** The requests whose reply the broker refused, by reply routing key and id (ids are the clients' own: two devices may both send id 1). */
export class FailedReplies {
  private readonly entries: BoundedMap<string, FailedReply>;

  constructor(limit: number) {
    this.entries = new BoundedMap(limit);
  }

  get(rpcId: string, replyRoutingKey: string): FailedReply | undefined {
    return this.entries.get(`${replyRoutingKey}\u0000${rpcId}`);
  }

  /** Remembers a refusal; a request refused again keeps its count of error replies already tried. */
  remember(rpcId: string, replyRoutingKey: string, refusal: { code: FailedReply['code']; reason: string }): void {
    const key = `${replyRoutingKey}\u0000${rpcId}`;
    this.entries.set(key, { code: refusal.code, reason: refusal.reason, attempts: this.entries.get(key)?.attempts ?? 0 });
  }
}
