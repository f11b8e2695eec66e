/** Runs a request's handler under the handler timeout, and keeps the running and abandoned ones to name on stop. */
import { messageOf } from '../../shared/thrown';
import { thrownCode, type HandlerContext, type RpcHandler } from './handlers';
import type { RpcRequest } from './envelope';
import type { ServerReplyErrorCode } from './server-types';

/** How a handler ended: its result, or the error its request is answered with. */
export type HandlerSettled = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

/** One request a handler is working on. */
export interface Running {
  rpcId: string;
  worker: string;
  abandoned: boolean;
  /**
   * the handler's signal: aborted at its timeout or when the server stops. Made only when the handler reads it (most
   * handlers never do, and one per request is measurable); `aborted` remembers an abort that came before.
   */
  controller?: AbortController;
  aborted: boolean;
}

export interface HandlerRunnerOptions {
  handler: RpcHandler;
  timeoutMs: number;
  /** abandoned handlers still listed; beyond this the oldest are forgotten */
  maxAbandoned: number;
  /** told once per handler that timed out, with the sentence its request is answered with */
  onTimeout: (entry: Running, message: string) => void;
}

/** Aborts a request's signal, or makes sure it is born aborted if the handler reads it later. */
function abortRunning(entry: Running): void {
  entry.aborted = true;
  entry.controller?.abort();
}

function signalOf(entry: Running): AbortSignal {
  if (!entry.controller) {
    entry.controller = new AbortController();
    if (entry.aborted) entry.controller.abort();
  }
  return entry.controller.signal;
}

function failedWith(thrown: unknown): HandlerSettled {
  return { ok: false, error: { code: thrownCode(thrown), message: messageOf(thrown, 'the handler') } };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

export class HandlerRunner {
  /** by the server's delivery ticket (rpc ids are the clients' and may repeat) */
  private readonly running = new Map<number, Running>();
  private forgotten = 0;

  constructor(private readonly options: HandlerRunnerOptions) {}

  /**
   * Runs the handler. Whatever it throws (even `undefined`) becomes an error; one that does not settle in time is
   * abandoned (its signal aborted) and stays listed until it returns.
   */
  run(ticket: number, rpcId: string, worker: string, request: RpcRequest): HandlerSettled | Promise<HandlerSettled> {
    const entry: Running = { rpcId, worker, abandoned: false, aborted: false };
    this.running.set(ticket, entry);
    // A literal with its getter as an own property: a handler may spread the context ({ ...context, log }) and keep
    // the signal (a class's prototype getter would be lost by the spread).
    const context: HandlerContext = {
      worker,
      get signal(): AbortSignal {
        return signalOf(entry);
      },
    };
    let value: unknown;
    try {
      value = this.options.handler(request, context);
    } catch (thrown) {
      return failedWith(thrown);
    }
    // A synchronous handler (echo, most real ones) has finished: no timer, no race. Its time cannot be cut short anyway,
    // the event loop was its own until it returned.
    if (!isThenable(value)) return { ok: true, result: value };
    return this.raceTimeout(Promise.resolve(value), ticket, entry);
  }

  /** One promise and one timer per asynchronous handler (no race, no async frame): the first of the two to come wins. */
  private raceTimeout(pending: Promise<unknown>, ticket: number, entry: Running): Promise<HandlerSettled> {
    return new Promise<HandlerSettled>((resolve) => {
      let over = false;
      const timer = setTimeout(() => {
        over = true;
        entry.abandoned = true;
        abortRunning(entry);
        this.forgetOldestAbandoned();
        const message = `The handler did not answer ${entry.rpcId} within ${this.options.timeoutMs} ms; it was abandoned and the request answered with an error.`;
        this.options.onTimeout(entry, message);
        resolve({ ok: false, error: { code: 'handler-timeout' satisfies ServerReplyErrorCode, message } });
      }, this.options.timeoutMs);
      const settle = (settled: HandlerSettled): void => {
        // Abandoned: its request was answered already; it is forgotten now that it returned.
        if (over) {
          this.running.delete(ticket);
          return;
        }
        over = true;
        clearTimeout(timer);
        resolve(settled);
      };
      pending.then(
        (result) => settle({ ok: true, result }),
        (thrown: unknown) => settle(failedWith(thrown)),
      );
    });
  }

  /** The request is done with: forgotten unless abandoned (an abandoned one is forgotten when its handler returns). */
  finished(ticket: number): void {
    const entry = this.running.get(ticket);
    if (entry && !entry.abandoned) this.running.delete(ticket);
  }

  /** Ids of the requests being handled now (abandoned handlers included). */
  get ids(): string[] {
    return [...this.running.values()].map((entry) => entry.rpcId);
  }

  /** What a stop leaves: still running (back on the queue), abandoned, and how many abandoned were forgotten. */
  report(): { unfinished: string[]; abandoned: string[]; abandonedForgotten: number } {
    const entries = [...this.running.values()];
    return {
      unfinished: entries.filter((entry) => !entry.abandoned).map((entry) => entry.rpcId),
      abandoned: entries.filter((entry) => entry.abandoned).map((entry) => entry.rpcId),
      abandonedForgotten: this.forgotten,
    };
  }

  /** The server stops: every handler's signal is aborted. */
  abortAll(): void {
    for (const entry of this.running.values()) abortRunning(entry);
  }

  /** A handler that hangs on every request would grow `running` for good: past the cap, the oldest abandoned are forgotten. */
  private forgetOldestAbandoned(): void {
    let abandoned = 0;
    for (const entry of this.running.values()) if (entry.abandoned) abandoned += 1;
    // Map order is insertion order: the first abandoned entries are the oldest.
    for (const [ticket, entry] of this.running) {
      if (abandoned <= this.options.maxAbandoned) break;
      if (!entry.abandoned) continue;
      this.running.delete(ticket);
      this.forgotten += 1;
      abandoned -= 1;
    }
  }
}
