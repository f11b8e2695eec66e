/** Acks and rejects on one channel, with the acks of a turn of the event loop batched into one `basic.ack multiple`. */

/** The two calls the batcher makes on a channel: amqplib's Channel has them, a test gives a fake. */
export interface AckChannel<M> {
  ack(message: M, allUpTo?: boolean): void;
  nack(message: M, allUpTo?: boolean, requeue?: boolean): void;
}

/** What the batcher needs of a delivery: its tag, which grows on a channel. */
export interface Tagged {
  fields: { deliveryTag: number };
}

/** How a delivery ends: acked, rejected without requeue, or put back on its queue (it comes again, redelivered). */
export type Settlement = 'ack' | 'reject' | 'requeue';

/** A delivery being handled: `ready` once its reply is confirmed (its ack may go), `settled` once acked or rejected. */
export interface Delivery<M> {
  message: M;
  ready: boolean;
  settled: boolean;
}

/**
 * A tracked delivery, linked in arrival order: the flush walks the links (a `for...of` over a Map allocated an iterator
 * and an entry array per delivery, on every flush of every turn).
 */
interface Link<M> extends Delivery<M> {
  /** the batcher that tracks it, until it is acked or rejected */
  linked: AckBatcher<Tagged> | undefined;
  previous: Link<M> | undefined;
  next: Link<M> | undefined;
}

export class AckBatcher<M extends Tagged> {
  /**
   * The deliveries not yet acked or rejected, in arrival order (delivery tags grow on a channel): the oldest and the
   * newest. No Map by tag: the server settles the Delivery that track gave it.
   */
  private head: Link<M> | undefined;
  private tail: Link<M> | undefined;
  private count = 0;
  /** how many of them are ready: the flush stops looking once it has acked them all */
  private readyCount = 0;
  private flushScheduled = false;
  private readonly scheduledFlush = (): void => this.flush();

  constructor(private readonly channel: AckChannel<M>) {}

  /** Starts following a delivery; its `settled` flag tells later whether it was acked or rejected. */
  track(message: M): Delivery<M> {
    const link: Link<M> = { message, ready: false, settled: false, linked: this, previous: this.tail, next: undefined };
    if (this.tail) this.tail.next = link;
    else this.head = link;
    this.tail = link;
    this.count += 1;
    return link;
  }

  /** deliveries neither acked nor rejected yet */
  get pending(): number {
    return this.count;
  }

  /** `settleDelivery` for a message: its delivery is looked up by tag (a message never tracked is acked or rejected alone). */
  settle(message: M, outcome: Settlement, now: boolean): void {
    const tag = message.fields.deliveryTag;
    let entry = this.head;
    while (entry && entry.message.fields.deliveryTag !== tag) entry = entry.next;
    this.settleDelivery(entry ?? { message, ready: false, settled: false }, outcome, now);
  }

  /**
   * Acks or rejects a delivery once. A reject (or a requeue) goes out at once; an ack waits for the end of this turn of
   * the event loop (see flush), or goes now with `now` (a stopping server).
   */
  settleDelivery(delivery: Delivery<M>, outcome: Settlement, now: boolean): void {
    const entry = (delivery as Partial<Link<M>>).linked === this ? (delivery as Link<M>) : undefined;
    delivery.settled = true;
    if (outcome !== 'ack') {
      if (entry) this.unlink(entry);
      safelyNack(this.channel, delivery.message, outcome === 'requeue');
      // Its slot at the head of the line may have held back acks ready behind it.
      if (this.count > 0) this.schedule();
      return;
    }
    if (entry) {
      if (!entry.ready) this.readyCount += 1;
      entry.ready = true;
    } else safelyAck(this.channel, delivery.message, false);
    if (now) this.flush();
    else this.schedule();
  }

  /**
   * Every ack that became ready in this turn (a batch of confirms arrives in one socket read) goes out once the turn's
   * promise continuations have run: one `basic.ack multiple` for the run of ready deliveries at the head of the line,
   * written with the replies published meanwhile. Never before the reply's own confirm.
   */
  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(this.scheduledFlush);
  }

  flush(): void {
    this.flushScheduled = false;
    let last: M | undefined;
    let count = 0;
    // Delivery tags grow on a channel and the links keep their order: `multiple` acks exactly the ready prefix.
    while (this.head?.ready) {
      last = this.head.message;
      this.unlink(this.head);
      count += 1;
    }
    if (last) safelyAck(this.channel, last, count > 1);
    // Ready ones behind a request still being handled are acked alone: a slow handler must not hold their prefetch slots.
    for (let entry = this.head; entry && this.readyCount > 0; ) {
      const next = entry.next;
      if (entry.ready) {
        this.unlink(entry);
        safelyAck(this.channel, entry.message, false);
      }
      entry = next;
    }
  }

  /** The delivery is acked or rejected: no longer followed. */
  private unlink(entry: Link<M>): void {
    if (entry.linked !== this) return;
    entry.linked = undefined;
    this.count -= 1;
    if (entry.ready) this.readyCount -= 1;
    if (entry.previous) entry.previous.next = entry.next;
    else this.head = entry.next;
    if (entry.next) entry.next.previous = entry.previous;
    else this.tail = entry.previous;
    entry.previous = undefined;
    entry.next = undefined;
  }
}

// The channel closed under us (amqplib throws): the broker requeues unacked deliveries. No closure per call.
function safelyAck<M>(channel: AckChannel<M>, message: M, allUpTo: boolean): void {
  try {
    channel.ack(message, allUpTo);
  } catch {
    // see above
  }
}

function safelyNack<M>(channel: AckChannel<M>, message: M, requeue: boolean): void {
  try {
    channel.nack(message, false, requeue);
  } catch {
    // see above
  }
}
