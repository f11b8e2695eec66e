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

/** A delivery being handled: `ready` once its reply is confirmed (its ack may go), `settled` once acked or rejected. */
export interface Delivery<M> {
  message: M;
  ready: boolean;
  settled: boolean;
}

export class AckBatcher<M extends Tagged> {
  /** deliveries not yet acked or rejected, by delivery tag in arrival order */
  private readonly unacked = new Map<number, Delivery<M>>();
  private flushScheduled = false;

  constructor(private readonly channel: AckChannel<M>) {}

  /** Starts following a delivery; its `settled` flag tells later whether it was acked or rejected. */
  track(message: M): Delivery<M> {
    const delivery: Delivery<M> = { message, ready: false, settled: false };
    this.unacked.set(message.fields.deliveryTag, delivery);
    return delivery;
  }

  /** deliveries neither acked nor rejected yet */
  get pending(): number {
    return this.unacked.size;
  }

  /**
   * Acks or rejects a delivery once. A reject goes out at once; an ack waits for the end of this turn of the event loop
   * (see flush), or goes now with `now` (a stopping server).
   */
  settle(message: M, outcome: 'ack' | 'reject', now: boolean): void {
    const tag = message.fields.deliveryTag;
    const entry = this.unacked.get(tag);
    if (entry) entry.settled = true;
    if (outcome === 'reject') {
      this.unacked.delete(tag);
      safely(() => this.channel.nack(message, false, false));
      // Its slot at the head of the line may have held back acks ready behind it.
      if (this.unacked.size > 0) this.schedule();
      return;
    }
    if (entry) entry.ready = true;
    else safely(() => this.channel.ack(message));
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
    process.nextTick(() => this.flush());
  }

  flush(): void {
    this.flushScheduled = false;
    let last: M | undefined;
    let count = 0;
    // Delivery tags grow on a channel and the map keeps their order: `multiple` acks exactly the ready prefix.
    for (const [tag, entry] of this.unacked) {
      if (!entry.ready) break;
      this.unacked.delete(tag);
      last = entry.message;
      count += 1;
    }
    if (last) {
      const upTo = last;
      safely(() => this.channel.ack(upTo, count > 1));
    }
    // Ready ones behind a request still being handled are acked alone: a slow handler must not hold their prefetch slots.
    for (const [tag, entry] of this.unacked) {
      if (!entry.ready) continue;
      this.unacked.delete(tag);
      safely(() => this.channel.ack(entry.message));
    }
  }
}

function safely(operation: () => void): void {
  try {
    operation();
  } catch {
    // The channel closed under us; the broker requeues unacked deliveries.
  }
}
