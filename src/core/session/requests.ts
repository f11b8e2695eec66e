/** One request from Compose: sent, then diagnosed like `bridgescope call` (a verdict on the outcome, in the trace and on the error). */
import { randomUUID } from 'node:crypto';
import type { SendRequestArgs } from '../../shared/contract';
import type { Verdict } from '../../shared/diagnosis';
import type { RpcOutcome } from '../../shared/rpc';
import type { TraceStep } from '../../shared/trace';
import { BridgeError, toErrorShape } from '../errors';
import { CallWitness, diagnoseRpc, diagnosisBroker, type RpcDiagnosisOptions } from '../diagnosis/evidence';
import { callOptionsFromSendRequest as callOptions } from '../rpc/call-options';
import { reachedUrls, type Connection } from './connection';
import { brokerTargets } from '../connection-details';
import type { MqttLink } from '../links/mqtt-link';
import { topicToRoutingKey } from '../../shared/topic-map';
import type { OtelExport } from '../otel/export';
import { RpcSpans } from '../otel/rpc-spans';
import { lateReplyTold, REVISABLE_BY_LATE_REPLY, reviseAsStepsCome, reviseOnLateReply, StepWatches } from './step-watch';

export interface RequestsControllerOptions {
  /** the open connection (throws not-connected) */
  connection: () => Connection;
  /** the steps the trace store holds for one RPC */
  steps: (rpcId: string) => TraceStep[];
  /** whether the broker's firehose feeds the trace now */
  firehoseOn: () => boolean;
  addVerdict: (rpcId: string, verdict: Verdict) => void;
  /** every step the trace store adds from now on (returns the unsubscribe): a reply published after the verdict revises it */
  onStep?: (listener: (step: TraceStep) => void) => () => void;
  /** how long after a failure a late reply still revises the verdict (default 60 s) */
  lateWatchMs?: number;
  /** default: `diagnoseRpc`, which asks the broker after a failure (bounded, ~6 s) */
  diagnose?: (options: RpcDiagnosisOptions) => Promise<Verdict>;
  newId?: () => string;
  /**
   * A raw body (no id) is about to be sent on `routingKey` as `rpcId`: the embedded server's steps for it join that RPC.
   * Returns the cancel, called once the send settled.
   */
  expectRaw?: (routingKey: string, bytes: number, rpcId: string) => () => void;
  /** told once per send when it settles, replied or failed (the history records it here, so a page reloaded mid-send loses nothing) */
  onSettled?: (settled: SettledRequest) => void;
  /** when set, each send is one OpenTelemetry trace (src/core/otel/rpc-spans.ts) */
  otel?: () => OtelExport | undefined;
}

/** One Compose send as it ended: the reply, or the failure's sentence; the verdict either way when there was an RPC. */
export interface SettledRequest {
  at: number;
  request: SendRequestArgs;
  rpcId?: string;
  outcome?: RpcOutcome;
  verdict?: Verdict;
  error?: string;
  /** the reply topic used, from the trace when the call did not say it */
  replyTopic?: string;
}

/** The call's error, now carrying its RPC id and verdict (the message stays the one the user saw so far). */
export function failedRpcError(err: unknown, rpcId: string, verdict: Verdict): BridgeError {
  const shape = toErrorShape(err);
  return new BridgeError(shape.code, shape.message, { cause: err, rpcId, verdict });
}

/**
 * Where the broker is asked why a call failed: the nodes the links really reached and the first management URL, each
 * with the profile's user name and password fields applied (the profile's own URLs may be lists, without the login).
 */
export function whereToAsk(connection: Connection): Parameters<typeof diagnosisBroker>[0] {
  const targets = brokerTargets(connection.profile);
  const reached = reachedUrls(connection);
  return {
    vhost: connection.profile.vhost,
    exchange: connection.profile.exchange,
    managementUrl: reached.managementUrl ?? connection.profile.managementUrl,
    amqpUrl: reached.amqpUrl ?? connection.profile.amqpUrl,
    // the node the MQTT link is on now (failover may have moved it), else the first of the list
    mqttUrl: (connection.client.link as MqttLink | undefined)?.currentUrl ?? targets.mqtt[0] ?? connection.profile.mqttUrl,
  };
}

export class RequestsController {
  /** the RPCs whose later steps are watched (late replies, records of a reply taken): one store listener for them all */
  private readonly watches: StepWatches;

  constructor(private readonly options: RequestsControllerOptions) {
    this.watches = new StepWatches(options.onStep, options.steps);
  }

  async send(args: SendRequestArgs): Promise<RpcOutcome> {
    const at = Date.now();
    const id = (this.options.newId ?? randomUUID)();
    const onSettled = this.options.onSettled;
    if (!onSettled) return this.sendAndDiagnose(args, id);
    try {
      const outcome = await this.sendAndDiagnose(args, id);
      onSettled({ at, request: args, rpcId: id, outcome, replyTopic: outcome.replyTopic, ...(outcome.verdict ? { verdict: outcome.verdict } : {}) });
      return outcome;
    } catch (err) {
      const shape = toErrorShape(err);
      const replyTopic = shape.rpcId === undefined ? undefined : this.options.steps(shape.rpcId).find((step) => step.kind === 'composed')?.detail.replyTopic;
      onSettled({
        at,
        request: args,
        error: shape.message,
        ...(shape.rpcId !== undefined ? { rpcId: shape.rpcId } : {}),
        ...(shape.verdict ? { verdict: shape.verdict } : {}),
        ...(replyTopic !== undefined ? { replyTopic } : {}),
      });
      throw err;
    }
  }

  private async sendAndDiagnose(args: SendRequestArgs, id: string): Promise<RpcOutcome> {
    const connection = this.options.connection();
    const call = callOptions(args);
    const client = connection.client;
    // A link lost mid-call, or a reply after the timeout (seen while the verdict is being gathered), decide the verdict.
    const witness = new CallWitness(client, () => id);
    // A body sent as given has no id: the embedded server's steps for it are joined to this RPC (RawRequestJoin).
    const unexpect = call.rawBody !== undefined ? this.options.expectRaw?.(topicToRoutingKey(args.topic), call.rawBody.byteLength, id) : undefined;
    let outcome: RpcOutcome | undefined;
    let failure: unknown;
    let verdict: Verdict | undefined;
    let asked: RpcDiagnosisOptions;
    const otel = this.options.otel?.();
    const topicRoutingKey = otel ? topicToRoutingKey(args.topic) : '';
    const spans = otel
      ? new RpcSpans(otel.tracer, { topic: args.topic, routingKey: topicRoutingKey, exchange: connection.profile.exchange, mqttVersion: client.link.protocolVersion, ...(args.method ? { method: args.method } : {}) })
      : undefined;
    try {
      try {
        outcome = await client.call({ ...call, id, ...(spans?.carrier ? { traceContext: spans.carrier } : {}) });
      } catch (err) {
        failure = err;
      }
      const steps = this.options.steps(id);
      // Refused before it was composed (a topic that cannot be used): its own sentence says it all, and there is no RPC to trace.
      if (outcome === undefined && steps.length === 0) throw failure;
      const diagnose = this.options.diagnose ?? diagnoseRpc;
      asked = {
        rpcId: id,
        steps,
        firehose: this.options.firehoseOn(),
        requestTopic: args.topic,
        timeoutMs: args.timeoutMs,
        // The session serves the app (window or browser): remedies name its panels, not commands.
        remedies: 'app',
        ...(outcome ? { outcome } : { error: failure }),
        ...(witness.linkLost ? { linkLost: witness.linkLost } : {}),
        ...(witness.lateReply ? { lateReply: witness.lateReply } : {}),
      };
      verdict = await diagnose(outcome ? asked : { ...asked, broker: diagnosisBroker(whereToAsk(connection), client, connection.tls) });
      // The reply came while the broker was being asked: it was late, whatever the broker said.
      if (!outcome && asked.lateReply === undefined && witness.lateReply !== undefined) {
        verdict = await diagnose({ ...asked, steps: this.options.steps(id), lateReply: witness.lateReply });
      }
    } finally {
      witness.stop();
      unexpect?.();
      spans?.end({ rpcId: id, steps: this.options.steps(id), ...(verdict ? { verdict } : {}), ...(outcome ? {} : { errorCode: toErrorShape(failure).code }) });
    }
    this.options.addVerdict(id, verdict);
    if (outcome) {
      this.watchReplyRecords(id, asked, verdict);
      return { ...outcome, verdict };
    }
    if (REVISABLE_BY_LATE_REPLY.has(verdict.code)) {
      const diagnose = this.options.diagnose ?? diagnoseRpc;
      const again = { ...asked, broker: undefined };
      reviseOnLateReply(this.watches, id, verdict, {
        seen: asked.steps,
        decide: async (steps) => lateReplyTold(verdict, await diagnose({ ...again, steps }), steps, { topic: args.topic, timeoutMs: args.timeoutMs }),
        addVerdict: this.options.addVerdict,
        steps: this.options.steps,
        ...this.watchFor(),
      });
    }
    throw failedRpcError(failure, id, verdict);
  }

  /**
   * The broker's record of a reply (firehose) often comes after the client took it, and a second reply (the true one,
   * after a forged one) later still: as they arrive, the verdict is decided again from the steps alone (no broker query)
   * and added as the RPC's last step when it says something new, so Reply, Trace and History flag a foreign or second reply.
   */
  private watchReplyRecords(rpcId: string, asked: RpcDiagnosisOptions, first: Verdict): void {
    const diagnose = this.options.diagnose ?? diagnoseRpc;
    reviseAsStepsCome(this.watches, rpcId, first, {
      seen: asked.steps,
      tells: tellsOfReplies,
      decide: (steps) => diagnose({ ...asked, steps }),
      addVerdict: this.options.addVerdict,
      steps: this.options.steps,
      maxRevisions: MAX_REPLY_REVISIONS,
      ...this.watchFor(),
    });
  }

  /** How long a verdict's later steps are watched, when told. */
  private watchFor(): { forMs?: number } {
    return this.options.lateWatchMs !== undefined ? { forMs: this.options.lateWatchMs } : {};
  }
}

/** The steps that can change what is known of a reply already taken: who published it, who got the request, a second reply. */
function tellsOfReplies(step: TraceStep): boolean {
  switch (step.kind) {
    case 'broker.published':
      return step.detail.leg === 'reply';
    case 'broker.delivered':
      return step.detail.leg === 'request';
    case 'mqtt.reply.ignored':
    case 'reply.published':
      return true;
    default:
      return false;
  }
}

/** How many times the verdict on one replied RPC may be revised as records come (each is a step of the RPC). */
const MAX_REPLY_REVISIONS = 8;
