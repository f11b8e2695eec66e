/** Why a reply was not confirmed, read from what the broker and amqplib said: pure, so it is tested without a broker. */
import { AMQPLIB_NACKED, RABBITMQ_TOO_LARGE } from '../links/amqp-link';
import { createHash } from 'node:crypto';
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
  /** the broker refused it (a publisher-confirm nack), rather than the channel closing under it */
  nacked: boolean;
  /** for the user: what went wrong */
  reason: string;
  /**
   * what to answer a redelivery of the request with, when the broker tied the refusal to this reply; `resend`: the reply
   * itself may go again (a nack: a queue went down or was full for a moment), not an error in its place
   */
  remember: { code: 'reply-failed' | 'reply-too-large'; reason: string; resend: boolean } | undefined;
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
  // refused one, a lost connection) is handled again on redelivery (at least once). A nack says nothing against the
  // reply itself: RabbitMQ nacks when a queue it was routed to went down before taking it (4.x does so for the device's
  // subscription queue while the node shuts down) or was full (reject-publish). The redelivered request is then answered
  // with the same reply, once, without running the handler again; a channel error blamed on the reply gets an error.
  const remember =
    tooLarge || nacked || blamed
      ? {
          code: tooLarge ? ('reply-too-large' as const) : ('reply-failed' as const),
          reason: tooLarge ? `The reply was ${bodyBytes} bytes, over the broker's max_message_size (${maxMessageBytes})` : `The reply could not be published (${reason})`,
          resend: nacked && !tooLarge && !blamed,
        }
      : undefined;
  return { tooLarge, blamed, nacked, reason, remember, maxMessageBytes };
}

/**
 * A reply that could not be published, remembered so its redelivery is answered without running the handler again:
 * with the reply itself when it was kept (`body`), else with an error.
 */
export interface FailedReply {
  reason: string;
  code: Extract<ServerReplyErrorCode, 'reply-failed' | 'reply-too-large'>;
  /** the request's fingerprint: a later request that reuses the id and the reply topic is not taken for this one */
  request: string;
  /** the reply as the handler made it, to publish again (kept within the byte budget), and what the handler answered */
  body?: Buffer;
  answer?: { outcome: 'result' | 'error'; errorCode?: string };
  /** answers given from memory that the broker refused too: after one, the request is rejected so it cannot loop */
  attempts: number;
}

/** Bytes of replies kept to publish again, at most: past it a refused reply's redelivery gets an error reply instead. */
export const KEPT_REPLY_BYTES = 16 * 1024 * 1024;

/** What is known of a refused answer when it is remembered. */
export interface RefusedAnswer {
  /** the answer was itself given from memory (a kept reply published again, or an error reply) */
  again: boolean;
  /** the reply to keep for the request's redelivery, and what the handler answered */
  body?: Buffer;
  answer?: FailedReply['answer'];
}

function fingerprint(request: Uint8Array): string {
  return createHash('sha1').update(request).digest('base64');
}

/**
 * The requests whose reply the broker refused, by reply routing key and id (ids are the clients' own: two devices may
 * both send id 1), checked against the request's own bytes. Only the failure path and redeliveries come here.
 */
export class FailedReplies {
  private readonly entries: BoundedMap<string, FailedReply>;
  private keptBytes = 0;

  constructor(
    limit: number,
    private readonly budgetBytes = KEPT_REPLY_BYTES,
  ) {
    this.entries = new BoundedMap(limit, (_key, evicted) => (this.keptBytes -= evicted.body?.byteLength ?? 0));
  }

  /** The refusal remembered for this request (same id, reply key and bytes), if any. */
  find(rpcId: string, replyRoutingKey: string, request: Uint8Array): FailedReply | undefined {
    const entry = this.entries.get(`${replyRoutingKey}\u0000${rpcId}`);
    return entry !== undefined && entry.request === fingerprint(request) ? entry : undefined;
  }

  /** bytes of replies kept now */
  get bytes(): number {
    return this.keptBytes;
  }

  /**
   * Remembers a refusal. An answer given from memory and refused too counts one more attempt (and keeps no reply: it is
   * not tried a third time); a first refusal starts over at 0, with the reply kept when one is given and the budget has room.
   */
  remember(rpcId: string, replyRoutingKey: string, refusal: { code: FailedReply['code']; reason: string }, request: Uint8Array, refused: RefusedAnswer): FailedReply {
    const key = `${replyRoutingKey}\u0000${rpcId}`;
    const earlier = this.entries.get(key);
    this.keptBytes -= earlier?.body?.byteLength ?? 0;
    const entry: FailedReply = { code: refusal.code, reason: refusal.reason, request: fingerprint(request), attempts: refused.again ? (earlier?.attempts ?? 0) + 1 : 0 };
    const { body } = refused;
    if (!refused.again && body !== undefined && this.keptBytes + body.byteLength <= this.budgetBytes) {
      // A copy of its own: a small Buffer is a slice of a shared 8 KiB pool, which it would keep alive whole.
      entry.body = Buffer.allocUnsafeSlow(body.byteLength);
      body.copy(entry.body);
      if (refused.answer) entry.answer = refused.answer;
      this.keptBytes += body.byteLength;
    }
    this.entries.set(key, entry);
    return entry;
  }

  /** The request got its answer (or was rejected for good): nothing of it is kept. */
  forget(rpcId: string, replyRoutingKey: string): void {
    const key = `${replyRoutingKey}\u0000${rpcId}`;
    this.keptBytes -= this.entries.get(key)?.body?.byteLength ?? 0;
    this.entries.delete(key);
  }
}
