/** Matches replies to the calls waiting for them: by the id in the reply, its MQTT 5 Correlation Data, or its topic. */
import type { IPublishPacket } from 'mqtt';
import type { EnvelopeFields, ReplyBody } from '../../shared/rpc';
import { readBody, readReplyFields } from './envelope';
import { RecentIds } from '../recent-ids';

export interface Reply {
  topic: string;
  payload: Buffer;
  body: ReplyBody;
  packet?: IPublishPacket;
  /** read once, when the reply was matched by its id */
  fields: ReturnType<typeof readReplyFields>;
}

/** A call waiting for its reply: the reply is handed to `resolve` once there is one, or kept in `reply` until then. */
export interface ReplySlot {
  id: string;
  replyRoutingKey: string;
  reply?: Reply;
  resolve?: (reply: Reply) => void;
}

type PendingCall = ReplySlot;

/** A reply that matched no waiting call: late (after a timeout), duplicate (at least once), or foreign. */
export interface StrayReply {
  id: string | undefined;
  /** the call with this id already took a reply */
  duplicate: boolean;
  body: ReplyBody;
}

export class ReplyMatcher {
  private readonly pending = new Map<string, PendingCall>();
  /** how recent calls ended, to tell a duplicate reply (at-least-once) from a late one */
  private readonly recentlyDone: RecentIds;

  constructor(
    private readonly fields: () => EnvelopeFields,
    /** the routing key a topic maps to (a reply without an id is matched by it) */
    private readonly routingKeyOf: (topic: string) => string,
    recentIds = 10_000,
  ) {
    this.recentlyDone = new RecentIds(recentIds);
  }

  /** calls waiting for their reply */
  get size(): number {
    return this.pending.size;
  }

  /** Resolves with the call's reply; it never rejects (the call's guard ends a wait that lasts too long). */
  wait(id: string, replyRoutingKey: string): Promise<Reply> {
    return new Promise<Reply>((resolve) => (this.expect(id, replyRoutingKey).resolve = resolve));
  }

  /**
   * As `wait`, without a promise: the slot keeps a reply that comes before anyone waits (during the publish), and hands
   * a later one to the `resolve` the caller sets (a call that waits through its guard then makes one promise, not two).
   */
  expect(id: string, replyRoutingKey: string): ReplySlot {
    const slot: ReplySlot = { id, replyRoutingKey };
    this.pending.set(id, slot);
    return slot;
  }

  /** The call ended (replied or not): a later reply with its id is a stray, a duplicate when it had replied. */
  done(id: string, outcome: 'replied' | 'failed'): void {
    // A call that took a reply was marked at once, in `match` (see there).
    if (this.pending.delete(id) || outcome === 'failed') this.recentlyDone.set(id, outcome);
  }

  /** Hands a reply to its call; a reply without a call is returned as a stray. Replies without an id (plain text) go by routing key, oldest call first. */
  match(topic: string, payload: Buffer, packet?: IPublishPacket): StrayReply | undefined {
    const body = readBody(payload);
    const fields = readReplyFields(body, this.fields());
    const { id } = fields;
    let call = id !== undefined ? this.pending.get(id) : undefined;
    // An MQTT 5 reply to a body without an id (text, bytes) may still carry the request's Correlation Data: the id.
    const correlation = id === undefined ? packet?.properties?.correlationData : undefined;
    if (!call && correlation !== undefined) call = this.pending.get(correlation.toString('utf8'));
    if (!call && id === undefined) {
      const key = this.routingKeyOf(topic);
      for (const candidate of this.pending.values()) {
        if (candidate.replyRoutingKey === key) {
          call = candidate;
          break;
        }
      }
    }
    if (!call) return { id, duplicate: id !== undefined && this.recentlyDone.get(id) === 'replied', body };
    this.pending.delete(call.id);
    // Marked now, not when the call's continuation runs: a second reply in the same socket read (a forged one and the
    // server's, a redelivered request's) comes before that, and is a duplicate, not a foreign stray.
    this.recentlyDone.set(call.id, 'replied');
    const reply: Reply = { topic, payload, body, fields };
    if (packet) reply.packet = packet;
    if (call.resolve) call.resolve(reply);
    else call.reply = reply;
    return undefined;
  }
}
