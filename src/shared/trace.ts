/** Trace steps: immutable, appended events of one RPC, as the client, the server and the broker saw it. */
import type { QoS, ReplyStrategy } from './rpc';

export interface TraceStepDetails {
  composed: { topic: string; qos: QoS; replyTopic: string; replyStrategy: ReplyStrategy; bytes: number; method?: string };
  'mqtt.published': { topic: string; qosAsked: QoS; predictedRoutingKey: string };
  /** the broker's PUBACK (QoS 1) or PUBREC (QoS 2): RabbitMQ answers a QoS 2 publish with PUBACK */
  'mqtt.acknowledged': { qosAsked: QoS; acknowledgedAs: QoS; packet: 'puback' | 'pubrec' };
  'mqtt.subscribed': { topic: string; qosAsked: QoS; qosGranted: QoS | 'refused' };
  'broker.published': {
    exchange: string;
    routingKeys: string[];
    routedQueues: string[];
    predictedRoutingKey?: string;
    matchesPrediction?: boolean;
    leg: 'request' | 'reply';
  };
  'broker.delivered': { queue: string; routingKeys: string[]; redelivered: boolean; leg: 'request' | 'reply' };
  'worker.received': { worker: string; consumerTag: string; queue: string; routingKey: string; redelivered: boolean };
  'handler.finished': { worker: string; durationMs: number; outcome: 'result' | 'error'; errorCode?: string };
  'reply.published': {
    worker: string;
    exchange: string;
    routingKey: string;
    replyTopic: string;
    outcome: 'routed' | 'returned';
    returnReason?: string;
  };
  'request.rejected': { worker: string; reason: string; bytes: number };
  'mqtt.reply.received': { topic: string; replyTopic: string; topicMismatch: boolean; bytes: number };
  'rpc.failed': { code: string; message: string };
}

export type TraceStepKind = keyof TraceStepDetails;
export type TraceSource = 'client' | 'server' | 'broker';

export type TraceStep = {
  [K in TraceStepKind]: { rpcId: string; seq: number; at: number; source: TraceSource; kind: K; detail: TraceStepDetails[K] };
}[TraceStepKind];

/** A step before the tracer numbered it. */
export type TraceStepDraft = {
  [K in TraceStepKind]: { rpcId: string; at: number; source: TraceSource; kind: K; detail: TraceStepDetails[K] };
}[TraceStepKind];
