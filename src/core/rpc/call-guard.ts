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

/** `expired` rejects when the call's time is up (`timeout`) or it is cancelled (`cancelled`); `clear` disarms it. */
export class CallGuard {
  readonly expired: Promise<never>;
  private timer: NodeJS.Timeout | undefined;
  private onAbort: (() => void) | undefined;
  private readonly signal: AbortSignal | undefined;

  constructor(options: CallGuardOptions) {
    const { id, replyTopic, replyRoutingKey, timeoutMs, signal, connected } = options;
    this.signal = signal;
    this.expired = new Promise<never>((_, reject) => {
      this.timer = setTimeout(() => {
        // No guess at the cause here: the verdict decided after the timeout says where the RPC stopped (a generic "is a
        // server consuming?" contradicted a verdict such as "rejected", where a server did consume).
        const base = `No reply to ${id} within ${timeoutMs} ms on "${replyTopic}" (routing key "${replyRoutingKey}")`;
        reject(
          connected()
            ? new BridgeError('timeout', `${base}.`)
            : new BridgeError('timeout', `${base}: the MQTT link is down and did not come back in time.`, { reason: 'link-down' }),
        );
      }, timeoutMs);
      if (!signal) return;
      this.onAbort = () => reject(new BridgeError('cancelled', `The request ${id} was cancelled.`));
      if (signal.aborted) this.onAbort();
      else signal.addEventListener('abort', this.onAbort, { once: true });
    });
    this.expired.catch(() => undefined);
  }

  clear(): void {
    clearTimeout(this.timer);
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
  }
}
