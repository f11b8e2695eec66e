/** Trace steps: immutable, appended events of one RPC, as the client, the server and the broker saw it. */
import type { QoS, ReplyStrategy } from './rpc';
import type { Verdict } from './diagnosis';

export interface TraceStepDetails {
  composed: { topic: string; qos: QoS; replyTopic: string; replyStrategy: ReplyStrategy; bytes: number; method?: string };
  'mqtt.published': { topic: string; qosAsked: QoS; predictedRoutingKey: string };
  /** the broker's PUBACK (QoS 1) or PUBREC (QoS 2): RabbitMQ answers a QoS 2 publish with PUBACK */
  'mqtt.acknowledged': {
    qosAsked: QoS;
    acknowledgedAs: QoS;
    packet: 'puback' | 'pubrec';
    /** MQTT 5 only: the ack's reason code; 0x10 "No matching subscribers" means RabbitMQ (3.13+) routed the request nowhere */
    reasonCode?: number;
  };
  'mqtt.subscribed': { topic: string; qosAsked: QoS; qosGranted: QoS | 'refused' };
  'broker.published': {
    exchange: string;
    routingKeys: string[];
    routedQueues: string[];
    predictedRoutingKey?: string;
    matchesPrediction?: boolean;
    leg: 'request' | 'reply';
    /** the cluster node that saw the publish */
    node?: string;
  };
  'broker.delivered': {
    queue: string;
    routingKeys: string[];
    redelivered: boolean;
    leg: 'request' | 'reply';
    /** the cluster node that delivered it (where the consumer's channel is) */
    node?: string;
  };
  'worker.received': { worker: string; consumerTag: string; queue: string; routingKey: string; redelivered: boolean };
  'handler.finished': { worker: string; durationMs: number; outcome: 'result' | 'error'; errorCode?: string };
  'reply.published': { worker: string; exchange: string; routingKey: string; replyTopic: string; mandatory: boolean };
  /** the broker's publisher confirm; a mandatory reply nothing was bound for comes back first as a basic.return */
  'reply.confirmed': { worker: string; outcome: 'routed' | 'returned' | 'nacked'; returnReason?: string };
  'request.rejected': { worker: string; reason: string; bytes: number };
  'mqtt.reply.received': { topic: string; replyTopic: string; topicMismatch: boolean; bytes: number };
  'rpc.failed': { code: string; message: string };
  /** where the RPC stopped and why, decided after it settled (replied, failed or timed out); the last step of an RPC */
  'rpc.diagnosed': { verdict: Verdict };
}

export type TraceStepKind = keyof TraceStepDetails;
export type TraceSource = 'client' | 'server' | 'broker';

/** Immutable by type (no freeze at run time: a step is built per hop of every RPC, and nothing changes it). */
export type TraceStep = {
  [K in TraceStepKind]: {
    readonly rpcId: string;
    readonly seq: number;
    readonly at: number;
    readonly source: TraceSource;
    readonly kind: K;
    readonly detail: Readonly<TraceStepDetails[K]>;
  };
}[TraceStepKind];

/** A step before the tracer numbered it. */
export type TraceStepDraft = {
  [K in TraceStepKind]: { rpcId: string; at: number; source: TraceSource; kind: K; detail: TraceStepDetails[K] };
}[TraceStepKind];

/** Where a step sits in the nine-step flow of docs/ARCHITECTURE.md; a trace lists steps by phase, then arrival. */
export function stepPhase(step: TraceStep | TraceStepDraft): number {
  switch (step.kind) {
    case 'composed':
      return 1;
    case 'mqtt.subscribed':
      return 1.5;
    case 'mqtt.published':
    case 'mqtt.acknowledged':
      return 2;
    case 'broker.published':
      return step.detail.leg === 'request' ? 3 : 8;
    case 'broker.delivered':
      return step.detail.leg === 'request' ? 4 : 8.5;
    case 'worker.received':
    case 'request.rejected':
      return 5;
    case 'handler.finished':
      return 6;
    case 'reply.published':
    case 'reply.confirmed':
      return 7;
    case 'mqtt.reply.received':
      return 9;
    case 'rpc.failed':
      return 10;
    case 'rpc.diagnosed':
      return 11;
  }
}

/** What one RPC's steps add up to, with every warning a user should read. */
export interface RpcTraceSummary {
  rpcId: string;
  startedAt: number;
  durationMs?: number;
  state: 'pending' | 'replied' | 'failed' | 'rejected';
  requestTopic?: string;
  predictedRequestKey?: string;
  brokerRequestKeys?: string[];
  requestRoutedQueues?: string[];
  worker?: string;
  redelivered: boolean;
  replyTopic?: string;
  replyKey?: string;
  brokerReplyKeys?: string[];
  replyRoutedQueues?: string[];
  arrivedOn?: string;
  topicMismatch: boolean;
  /** whether any broker (firehose) step was seen; false means client and server steps only */
  brokerSeen: boolean;
  warnings: string[];
  /** the verdict, once the RPC has settled and been diagnosed (its `rpc.diagnosed` step) */
  verdict?: Verdict;
}

export const TRACE_EXPORT_FORMAT = 'bridgescope-trace';
/** 2: steps may hold `rpc.diagnosed` (verdicts); version 1 files still import. */
export const TRACE_EXPORT_VERSION = 2;

export interface TraceExport {
  format: typeof TRACE_EXPORT_FORMAT;
  version: typeof TRACE_EXPORT_VERSION;
  exportedAt: string;
  dropped: { rpcs: number; steps: number };
  steps: TraceStep[];
  /** summaries of load runs, kept with the trace they produced */
  loadRuns?: unknown[];
}
