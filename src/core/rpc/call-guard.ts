/** A call's one deadline: its timeout and its caller's AbortSignal. */
import { BridgeError } from '../errors';

export interface CallGuardOptions {
  id: string;
  replyTopic: string;
  replyRoutingKey: string;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  /** read when the time is up: a link that is down is named in the error */
  connected: () => boolean;
}

/**
 * Ends a call when its time is up (`timeout`) or it is cancelled (`cancelled`); `clear` disarms it. What the call waits
 * for (its publish's acknowledgement, its reply) goes through `wait`, which the guard rejects itself: no race promise
 * per wait, and the `expired` promise is made only for the rare waits that race it (a subscription, a retry's timer).
 */
/** The timer's callback: one function for every guard (no closure per call). */
function timeUp(guard: CallGuard): void {
  guard.expire();
}

export class CallGuard {
  private timer: NodeJS.Timeout | undefined;
  private onAbort: (() => void) | undefined;
  private readonly signal: AbortSignal | undefined;
  /** why the call ended, once it did */
  private failure: BridgeError | undefined;
  /** rejects what the call waits for now */
  private rejectWaiting: ((err: BridgeError) => void) | undefined;
  private expiredPromise: Promise<never> | undefined;
  private rejectExpired: ((err: BridgeError) => void) | undefined;

  constructor(private readonly options: CallGuardOptions) {
    const { id, signal, timeoutMs } = options;
    this.signal = signal;
    this.timer = setTimeout(timeUp, timeoutMs, this);
    if (!signal) return;
    this.onAbort = () => this.fail(new BridgeError('cancelled', `The request ${id} was cancelled.`));
    if (signal.aborted) this.onAbort();
    else signal.addEventListener('abort', this.onAbort, { once: true });
  }

  /** The call's time is up (see `timeUp`). */
  expire(): void {
    const { id, replyTopic, replyRoutingKey, timeoutMs, connected } = this.options;
    // No guess at the cause here: the verdict decided after the timeout says where the RPC stopped (a generic "is a
    // server consuming?" contradicted a verdict such as "rejected", where a server did consume).
    const base = `No reply to ${id} within ${timeoutMs} ms on "${replyTopic}" (routing key "${replyRoutingKey}")`;
    this.fail(
      connected()
        ? new BridgeError('timeout', `${base}.`)
        : new BridgeError('timeout', `${base}: the MQTT link is down and did not come back in time.`, { reason: 'link-down' }),
    );
  }

  private fail(err: BridgeError): void {
    if (this.failure) return;
    this.failure = err;
    this.rejectWaiting?.(err);
    this.rejectExpired?.(err);
  }

  /**
   * Rejects when the call's time is up or it is cancelled; never resolves. Made on first use (most calls never race
   * it); it never counts as an unhandled rejection.
   */
  get expired(): Promise<never> {
    if (this.expiredPromise === undefined) {
      const failure = this.failure;
      this.expiredPromise = failure ? Promise.reject(failure) : new Promise<never>((_, reject) => (this.rejectExpired = reject));
      this.expiredPromise.catch(() => undefined);
    }
    return this.expiredPromise;
  }

  /**
   * Waits for what `start` settles, or rejects as soon as the call's time is up or it is cancelled (at once, if it
   * already is: `start` is then not run).
   */
  wait<T>(start: (resolve: (value: T) => void, reject: (err: unknown) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.failure) {
        reject(this.failure);
        return;
      }
      this.rejectWaiting = reject;
      start(resolve, reject);
    });
  }

  clear(): void {
    clearTimeout(this.timer);
    this.rejectWaiting = undefined;
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
  }
}
