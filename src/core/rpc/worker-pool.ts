/** The server's workers: one competing consumer per confirm channel; a channel the broker closes is reopened. */
import { once } from 'node:events';
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import { messageOf } from '../../shared/thrown';
import { AckBatcher } from './ack-batcher';
import type { ServerProblem } from './server-types';

/** How often, and from which delay (doubled each time), a worker whose channel the broker closed is reopened. */
const REOPEN_ATTEMPTS = 5;
const REOPEN_FIRST_DELAY_MS = 100;

/** What the pool uses of a connection (a test gives a fake). */
export type WorkerModel = Pick<ChannelModel, 'createConfirmChannel'>;

export interface Worker {
  name: string;
  channel: ConfirmChannel;
  consumerTag: string;
  /** basic.return reasons by the returned reply's message id */
  returned: Map<string, string>;
  /** why the broker closed this channel, when it did */
  closeReason?: string;
  /** the channel's next 'drain', shared by every reply waiting for it */
  drained?: Promise<void>;
  /** set once a failed reply took the blame for closeReason (when it does not name a size) */
  blamed?: boolean;
  acks: AckBatcher<ConsumeMessage>;
}

/** What the pool asks of the server that owns it. */
export interface WorkerPoolHost {
  queue: string;
  prefetch: number;
  /** a stop began: no new consumer starts, nothing is reopened */
  stopping(): boolean;
  /** the connection is up: a closed channel is then the pool's to reopen (a lost connection is the link's) */
  connected(): boolean;
  /** a delivery (null: the broker cancelled the consumer) */
  deliver(worker: Worker, message: ConsumeMessage | null): void;
  problem(problem: ServerProblem): void;
  /** the broker closed a channel, saying why */
  channelError(reason: string): void;
  /** a worker consumes from now on */
  opened(name: string): void;
  /** opens one worker: the pool's `open`, through its owner (which a test may stand in for) */
  openWorker(model: WorkerModel, name: string): Promise<Worker | undefined>;
}

export class WorkerPool {
  workers: Worker[] = [];
  private model: WorkerModel | undefined;

  constructor(private readonly host: WorkerPoolHost) {}

  /** Opens `count` workers on a (new) connection; none is left consuming if a stop began meanwhile. */
  async start(model: WorkerModel, count: number): Promise<void> {
    this.model = model;
    const workers: Worker[] = [];
    for (let index = 0; index < count; index += 1) {
      const worker = await this.host.openWorker(model, `worker-${index + 1}`);
      // Stopped meanwhile: open closed the new channel itself; the ones already opened are closed here.
      if (worker === undefined) {
        await Promise.all(workers.map((opened) => opened.channel.close().catch(() => undefined)));
        return;
      }
      workers.push(worker);
    }
    this.workers = workers;
  }

  /** Stops every consumer (the drain begins); deliveries already taken are still handled. */
  async cancelAll(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.channel.cancel(worker.consumerTag).catch(() => undefined)));
  }

  /** Acks still waiting for the end of the turn go out now. */
  flushAll(): void {
    for (const worker of this.workers) worker.acks.flush();
  }

  /**
   * Acks go out on each channel's own buffer and a connection.close can overtake them: a channel.close, queued behind
   * them and answered by the broker, proves they were processed. Unacked requests go back to the queue.
   */
  async closeAll(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.channel.close().catch(() => undefined)));
  }

  /**
   * One competing consumer on its own confirm channel. Resolves with undefined (its channel closed) when a stop began
   * meanwhile: the drain would never cancel it.
   */
  async open(model: WorkerModel, name: string): Promise<Worker | undefined> {
    const channel = await model.createConfirmChannel();
    const abandonIfStopping = async (): Promise<boolean> => {
      if (!this.host.stopping()) return false;
      await channel.close().catch(() => undefined);
      return true;
    };
    if (await abandonIfStopping()) return undefined;
    const returned = new Map<string, string>();
    const worker: Worker = { name, channel, consumerTag: '', returned, acks: new AckBatcher<ConsumeMessage>(channel) };
    channel.on('error', (err: Error) => {
      worker.closeReason = err.message;
      this.host.channelError(err.message);
    });
    await channel.prefetch(this.host.prefetch);
    if (await abandonIfStopping()) return undefined;
    channel.on('return', (message: Message) => {
      // amqplib's types omit the basic.return fields that are there at run time.
      const fields = message.fields as Message['fields'] & { replyCode?: number; replyText?: string };
      const id = message.properties.messageId as string | undefined;
      if (id) returned.set(id, `${fields.replyCode ?? ''} ${fields.replyText ?? 'returned'}`.trim());
    });
    channel.on('close', () => {
      // A whole-connection loss is the link's to recover (setUp runs again): wait a moment to tell the two apart.
      setTimeout(() => {
        if (this.host.stopping() || this.model !== model || !this.host.connected()) return;
        this.host.problem({ kind: 'channel-reopened', worker: name, rpcId: '', message: `The broker closed ${name}'s channel; reopening it on the same connection.` });
        void this.reopen(model, worker);
      }, 100).unref();
    });
    const { consumerTag } = await channel.consume(this.host.queue, (message) => this.host.deliver(worker, message), { noAck: false });
    worker.consumerTag = consumerTag;
    // A request it took before this close goes back to the queue, unanswered and unhandled.
    if (await abandonIfStopping()) return undefined;
    this.host.opened(name);
    return worker;
  }

  /** Replaces a worker whose channel the broker closed, retrying with backoff; says so when it gives up. */
  private async reopen(model: WorkerModel, worker: Worker): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      // The connection went meanwhile (start opens every worker again) or the server is stopping.
      if (this.host.stopping() || this.model !== model) return;
      try {
        const replacement = await this.host.openWorker(model, worker.name);
        if (replacement) this.workers = this.workers.map((existing) => (existing === worker ? replacement : existing));
        return;
      } catch (err) {
        if (this.host.stopping() || this.model !== model) return;
        if (attempt >= REOPEN_ATTEMPTS) {
          const message = `${worker.name} is gone: its channel could not be reopened after ${attempt} attempts (${messageOf(err)}); the other workers keep serving.`;
          this.host.problem({ kind: 'worker-lost', worker: worker.name, rpcId: '', message });
          return;
        }
        const delayMs = REOPEN_FIRST_DELAY_MS * 2 ** (attempt - 1);
        const message = `${worker.name}'s channel could not be reopened (${messageOf(err)}); retrying in ${delayMs} ms.`;
        this.host.problem({ kind: 'channel-reopened', worker: worker.name, rpcId: '', message });
        await new Promise<void>((resolve) => setTimeout(resolve, delayMs).unref());
      }
    }
  }
}

/**
 * Resolves at the worker's channel's next 'drain'. Every reply waiting on the same channel shares one listener (one per
 * reply would pass Node's limit of 10 with prefetch > 10); it is removed when the drain comes or the channel closes.
 */
export function channelDrained(worker: Worker): Promise<void> {
  if (worker.drained) return worker.drained;
  const channel = worker.channel;
  const stopWaiting = new AbortController();
  const onClose = (): void => stopWaiting.abort();
  channel.once('close', onClose);
  worker.drained = once(channel, 'drain', { signal: stopWaiting.signal })
    .then(
      () => undefined,
      () => undefined,
    )
    .finally(() => {
      channel.off('close', onClose);
      worker.drained = undefined;
    });
  return worker.drained;
}
