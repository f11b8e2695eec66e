/** The server's events, emitted so that a listener that throws cannot cut a request short. */
import { EventEmitter } from 'node:events';
import type { LinkStatus } from '../../shared/rpc';
import type { TraceStepDraft } from '../../shared/trace';
import { messageOf } from '../../shared/thrown';
import type { ServerProblem } from './server-types';
import type { PendingDraft } from '../trace/message-view';

export interface RpcServerEvents {
  step: [TraceStepDraft];
  status: [LinkStatus];
  problem: [ServerProblem];
}

export class ServerEvents extends EventEmitter<RpcServerEvents> {
  /** Whether anyone listens to steps: when nobody does, no step object is built at all. */
  protected get traced(): boolean {
    return this.listenerCount('step') > 0;
  }

  /** emitSafely for the hot path: several steps per request, without the rest-arguments array. */
  protected step(draft: PendingDraft): void {
    try {
      this.emit('step', draft);
    } catch (err) {
      this.listenerThrew('step', err);
    }
  }

  protected problem(problem: ServerProblem): void {
    this.emitSafely('problem', problem);
  }

  /** A listener that throws must not cut a request short (its delivery would stay unacked and jam the worker): report it instead. */
  protected emitSafely<K extends keyof RpcServerEvents>(event: K, ...args: RpcServerEvents[K]): void {
    try {
      (this.emit as (name: K, ...rest: RpcServerEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.listenerThrew(event, err);
    }
  }

  private listenerThrew(event: keyof RpcServerEvents, err: unknown): void {
    if (event === 'problem') return;
    this.emitSafely('problem', { kind: 'internal', worker: '', rpcId: '', message: `A listener of the server's ${event} events threw: ${messageOf(err, 'the listener')}` });
  }
}
