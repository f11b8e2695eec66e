/** The embedded RPC server of a session: one at a time, its panel view following its own AMQP link. */
import { SERVER_LOG_LINES, type ServerLogLine, type ServerSettings, type ServerView } from '../../shared/contract';
import type { TraceStepDraft } from '../../shared/trace';
import type { LinkStatus } from '../../shared/rpc';
import { toErrorShape } from '../errors';
import type { RpcServer, RpcServerOptions, ServerProblem } from '../rpc/server';

export interface ServerControllerOptions {
  /** builds the server for these settings (the handler spec is resolved by the factory) */
  createServer(options: Omit<RpcServerOptions, 'handler'> & { handlerSpec: string }): Promise<RpcServer>;
  /** feeds the server's trace steps into the trace store; returns the unsubscribe */
  attachSteps: (server: RpcServer) => () => void;
  /** the RPC id the trace files a server id under (a raw send's delivery is the sender's RPC): the log links the same */
  rpcIdOf?: (rpcId: string) => string;
  onChange: () => void;
}

export const emptyStats = (): ServerView['stats'] => ({ received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} });

/** The log line for one of the server's steps: only a handler's outcome makes one (the rest is in the trace). */
export function logLineOfStep(step: TraceStepDraft): ServerLogLine | undefined {
  if (step.kind !== 'handler.finished') return undefined;
  const { worker, durationMs, outcome, errorCode } = step.detail;
  if (step.detail.keptReply) {
    const was = outcome === 'error' ? `its error ${errorCode ?? '?'}` : 'its reply';
    return { at: step.at, rpcId: step.rpcId, worker, outcome, text: `came back after the broker nacked ${was}: published again, handler not run` };
  }
  // A handler like echo answers in well under a millisecond: "in 0 ms" would read as not timed.
  const took = durationMs < 1 ? 'in under 1 ms' : `in ${Math.round(durationMs)} ms`;
  return { at: step.at, rpcId: step.rpcId, worker, outcome, text: outcome === 'error' ? `answered with error ${errorCode ?? '?'} ${took}` : `answered ${took}` };
}

/** What the server panel says for a state of the server's AMQP link (undefined: no change, e.g. while starting). */
export function serverStateFor(status: LinkStatus): Pick<ServerView, 'state' | 'message'> | undefined {
  switch (status.state) {
    case 'connected':
      return { state: 'running' };
    case 'reconnecting':
      return { state: 'reconnecting', message: `The broker connection dropped (${status.lastError}); reconnecting, attempt ${status.attempt}.` };
    case 'failed':
      return { state: 'failed', message: status.message };
    default:
      return undefined;
  }
}

export class ServerController {
  private server: RpcServer | undefined;
  private current: ServerView = { state: 'stopped', stats: emptyStats() };
  private detach: (() => void) | undefined;
  /** newest first, at most SERVER_LOG_LINES; kept across stops and starts (a handler changed by stop and start keeps what came before) */
  private log: ServerLogLine[] = [];

  constructor(private readonly options: ServerControllerOptions) {}

  /** The panel's view, with the running server's live counters. */
  view(): ServerView {
    const server = this.server;
    // A copy per view (at most one every 50 ms under a stream), not a new array per step: the log itself changes in place.
    return { ...this.current, stats: server ? { ...server.stats, perWorker: { ...server.stats.perWorker } } : this.current.stats, log: this.log.slice() };
  }

  /** Whether a server is starting or running (something to drain). */
  get active(): boolean {
    return this.current.state === 'starting' || this.current.state === 'running';
  }

  private set(view: ServerView): void {
    this.current = view;
    this.options.onChange();
  }

  /** Stops any running server, then starts one with `settings` on `amqpUrl`. */
  async start(amqpUrl: string, settings: ServerSettings): Promise<ServerView> {
    await this.stop();
    const { handler: handlerSpec, ...rest } = settings;
    const server = await this.options.createServer({ amqpUrl, ...rest, handlerSpec, name: 'bridgescope-app-server' });
    const detachSteps = this.options.attachSteps(server);
    const onChange = (): void => this.options.onChange();
    const addLine = (found: ServerLogLine | undefined): void => {
      if (!found) return;
      const rpcId = found.rpcId ? (this.options.rpcIdOf?.(found.rpcId) ?? found.rpcId) : found.rpcId;
      const line = rpcId === found.rpcId ? found : { ...found, rpcId, text: found.text.replaceAll(found.rpcId, rpcId) };
      this.log.unshift(line);
      if (this.log.length > SERVER_LOG_LINES) this.log.length = SERVER_LOG_LINES;
    };
    const onStep = (step: TraceStepDraft): void => {
      addLine(logLineOfStep(step));
      onChange();
    };
    const onProblem = (problem: ServerProblem): void => {
      addLine({ at: Date.now(), rpcId: problem.rpcId, worker: problem.worker, outcome: 'problem', text: problem.message });
      onChange();
    };
    // The panel follows the server's own link: never "running" while its connection is gone.
    const onStatus = (status: LinkStatus): void => {
      const next = serverStateFor(status);
      const state = this.current.state;
      if (next && this.server === server && (state === 'running' || state === 'reconnecting' || state === 'failed')) {
        const { message: _previous, ...kept } = this.current;
        this.current = { ...kept, ...next };
      }
      this.options.onChange();
    };
    server.on('status', onStatus);
    server.on('step', onStep);
    server.on('problem', onProblem);
    const detach = (): void => {
      detachSteps();
      server.off('status', onStatus);
      server.off('step', onStep);
      server.off('problem', onProblem);
    };
    this.set({ state: 'starting', settings, stats: emptyStats() });
    try {
      await server.start();
    } catch (err) {
      detach();
      this.set({ state: 'failed', settings, message: toErrorShape(err).message, stats: emptyStats() });
      throw err;
    }
    this.server = server;
    this.detach = detach;
    this.set({ state: 'running', settings, stats: server.stats, ...serverStateFor(server.status) });
    return this.view();
  }

  /** Drains and stops the running server, if any; the view keeps its last counters. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.set({ ...this.current, state: 'stopping' });
    await server.stop();
    this.detach?.();
    this.detach = undefined;
    const { message: _reason, ...kept } = this.current;
    this.set({ ...kept, state: 'stopped', stats: { ...server.stats } });
  }
}
