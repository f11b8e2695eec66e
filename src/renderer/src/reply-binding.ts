/** Which binding a reply needs, and when the trace says it existed: the reply subscription of one RPC. */
import type { ReplyStrategy } from '../../shared/rpc';
import type { TraceStep } from '../../shared/trace';
import { topicToRoutingKey } from '../../shared/topic-map';
import { isSubscriptionQueue } from '../../shared/rabbitmq-mqtt';

export interface ReplyBindingNeed {
  rpcId: string;
  replyTopic: string;
  /** the binding key the reply's routing key must meet on the MQTT exchange */
  replyKey: string;
  strategy?: ReplyStrategy;
  pending: boolean;
  /** from the trace: when the client subscribed to the reply topic, and when the call ended (a per-request subscription goes then) */
  subscribedAt?: number;
  endedAt?: number;
  /** the queue the broker delivered the reply to (firehose), i.e. the binding's destination */
  queue?: string;
}

/** The need of one RPC from its steps; undefined before its reply topic is known. */
export function replyBindingNeed(rpcId: string, steps: TraceStep[]): ReplyBindingNeed | undefined {
  let replyTopic: string | undefined;
  let strategy: ReplyStrategy | undefined;
  let subscribedAt: number | undefined;
  let endedAt: number | undefined;
  let queue: string | undefined;
  for (const step of steps) {
    // The client's MQTT subscription queue: a copy to another queue (a watcher's tap) is not the binding the client needs.
    if (step.kind === 'broker.delivered' && step.detail.leg === 'reply' && isSubscriptionQueue(step.detail.queue)) queue = step.detail.queue;
    if (step.kind === 'composed') {
      replyTopic = step.detail.replyTopic;
      strategy = step.detail.replyStrategy;
    } else if (step.kind === 'mqtt.subscribed' && step.detail.qosGranted !== 'refused') {
      subscribedAt = Math.min(subscribedAt ?? step.at, step.at);
    } else if (step.kind === 'mqtt.reply.received' || step.kind === 'rpc.failed') {
      endedAt = Math.max(endedAt ?? step.at, step.at);
    }
  }
  if (replyTopic === undefined) return undefined;
  return {
    rpcId,
    replyTopic,
    replyKey: topicToRoutingKey(replyTopic),
    ...(strategy ? { strategy } : {}),
    pending: endedAt === undefined,
    ...(subscribedAt !== undefined ? { subscribedAt } : {}),
    ...(endedAt !== undefined ? { endedAt } : {}),
    ...(queue !== undefined ? { queue } : {}),
  };
}

/** BridgeScope's clients name themselves `bridgescope-<8 hex>` (src/core/rpc/client.ts). */
export function isBridgescopeClient(mqttClientId: string | undefined): boolean {
  return mqttClientId !== undefined && /^bridgescope-[0-9a-f]{8}$/.test(mqttClientId);
}
