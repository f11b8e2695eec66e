/** One readable line per trace step, shared by the terminal timeline and the inspector. */
import { isWatchTapQueue, REASON, withoutWatchTaps } from './rabbitmq-mqtt';
import { lateReplyReach, type Verdict } from './verdict';
import type { BrokerParty, LoadRunMark, TraceStep } from './trace';
import { mqttDelivery, publishedQos } from './broker-qos';

/** " at node", shown only when the broker named the node (in a cluster, it says which node saw the event) */
const at = (node: string | undefined): string => (node === undefined ? '' : ` at ${node}`);

/** A connection as the firehose names it, with its user: who published or consumed a message. */
export function party(who: BrokerParty): string {
  const client = who.mqttClientId !== undefined ? `MQTT client "${who.mqttClientId}", ` : '';
  const name = who.connectionName !== undefined ? ` named "${who.connectionName}"` : '';
  return `${client}${who.user !== undefined ? `user "${who.user}" on ` : ''}connection "${who.connection}"${name}${who.channel !== undefined ? ` (channel ${who.channel})` : ''}`;
}

const list = (items: string[]): string => (items.length === 0 ? 'nothing' : items.join(', '));

/** Why the trace kept a load run's request, in one clause (the Trace panel, `describeStep`, the CLI). */
export function loadRunText(mark: LoadRunMark): string {
  const sample = mark.every === 1 ? 'the run traced every request in full' : `the run traced 1 request in ${mark.every} in full`;
  switch (mark.kept) {
    case 'chosen':
      return mark.every === 1 ? "a load run's request, traced in full (the run traced every request)" : `a load run's request, traced in full (1 in ${mark.every})`;
    case 'firehose':
      return "a load run's request, traced in full (the firehose was on: every request sent while it ran was)";
    case 'failed':
      return `a load run's request, kept without its messages because it failed (${sample})`;
    case 'slow':
      return `a load run's request, kept without its messages because it was slow: slower than 99 % of the run's recent replies (${sample})`;
  }
}

/**
 * Where a verdict says the RPC got to: a reply that reached the client (late or not) went the whole way, so its hop is
 * where it arrived; one the client no longer waited for was late at the server and went on as far as `replyReached` says.
 */
export function verdictHop(verdict: Pick<Verdict, 'code' | 'hop' | 'replyReached'>): string {
  if (verdict.code === 'replied' || (verdict.code === 'late-reply' && verdict.hop === 'mqtt-deliver')) return `arrived at ${verdict.hop}`;
  if (verdict.code !== 'late-reply') return `stopped at ${verdict.hop}`;
  const reached = lateReplyReach(verdict);
  return `late at ${verdict.hop}, the reply ${reached.stopped ? 'stopped at' : 'reached'} ${reached.hop}`;
}

export function describeStep(step: TraceStep): string {
  switch (step.kind) {
    case 'composed': {
      const { asGiven } = step.detail;
      const given = asGiven === undefined ? '' : asGiven === 'with-response-topic' ? ', body as given: the reply topic only in its MQTT 5 Response Topic' : ', body as given: no id, no reply_to';
      const load = step.detail.loadRun ? `; ${loadRunText(step.detail.loadRun)}` : '';
      return `request on "${step.detail.topic}" (QoS ${step.detail.qos}, ${step.detail.bytes} bytes${given}), reply to "${step.detail.replyTopic}" (${step.detail.replyStrategy})${load}`;
    }
    case 'mqtt.subscribed':
      return `subscribed "${step.detail.topic}": asked QoS ${step.detail.qosAsked}, granted ${step.detail.qosGranted}`;
    case 'mqtt.published':
      return `MQTT PUBLISH "${step.detail.topic}" QoS ${step.detail.qosAsked}; predicted routing key "${step.detail.predictedRoutingKey}"`;
    case 'mqtt.acknowledged': {
      const unrouted = step.detail.reasonCode === REASON.noMatchingSubscribers ? ' -- "No matching subscribers" (0x10): DROPPED as unroutable' : '';
      return `broker answered ${step.detail.packet.toUpperCase()}: delivered as QoS ${step.detail.acknowledgedAs} (asked ${step.detail.qosAsked})${unrouted}`;
    }
    case 'broker.published': {
      const routed = step.detail.routedQueues;
      const dropped = routed.length === 0 ? ' -- DROPPED as unroutable' : withoutWatchTaps(routed).length === 0 ? " -- only a BridgeScope watch's tap took it: no device or server queue did" : '';
      const qos = publishedQos(step.detail);
      const by = step.detail.publisher ? `; published${qos !== undefined ? ` at QoS ${qos}` : ''} by ${party(step.detail.publisher)}` : '';
      const prediction =
        step.detail.matchesPrediction === false ? ` (predicted "${step.detail.predictedRoutingKey}")` : step.detail.matchesPrediction ? ' (as predicted)' : '';
      return `broker${at(step.detail.node)}: ${step.detail.leg} on ${step.detail.exchange} with key "${list(step.detail.routingKeys)}"${prediction} routed to ${list(step.detail.routedQueues)}${dropped}${by}`;
    }
    case 'broker.delivered': {
      // To an MQTT client's subscription: the QoS it gets, which on RabbitMQ 3.13+ drops to 0 for a non-persistent message.
      const delivery = mqttDelivery(step.detail);
      const qos =
        delivery?.deliveredQos === undefined
          ? ''
          : delivery.transient
            ? ` at QoS 0 (subscribed at QoS 1; published non-persistent)`
            : delivery.subscribedQos === 0
              ? ' at QoS 0 (subscribed at QoS 0)'
              : ` at QoS ${delivery.deliveredQos}`;
      const to = step.detail.consumer ? ` to ${party(delivery && step.detail.consumer.mqttClientId === undefined ? { ...step.detail.consumer, mqttClientId: delivery.clientId } : step.detail.consumer)}` : '';
      // A watch's tap is no server and no device: named as such, so its copy is not read as a worker's or a device's.
      const tap = isWatchTapQueue(step.detail.queue) ? " (a BridgeScope watch's tap: a copy, not a server's or a device's)" : '';
      return `broker${at(step.detail.node)}: ${step.detail.leg} delivered from queue ${step.detail.queue}${tap}${step.detail.redelivered ? ' (redelivered)' : ''}${to}${qos}`;
    }
    case 'worker.received':
      return `${step.detail.worker} took it from ${step.detail.queue} (consumer ${step.detail.consumerTag})${step.detail.redelivered ? ', redelivered' : ''}`;
    case 'handler.finished': {
      if (step.detail.keptReply) return `${step.detail.worker}: handler not run again: the reply the broker nacked before goes again${step.detail.outcome === 'error' ? ` (error ${step.detail.errorCode ?? '?'})` : ''}`;
      // An echo answers in microseconds: "under 0.1 ms", not "0.0 ms" (read as not measured).
      const took = step.detail.durationMs < 0.05 ? 'under 0.1' : step.detail.durationMs.toFixed(1);
      return `${step.detail.worker}: handler ${step.detail.outcome === 'result' ? 'answered' : `failed (${step.detail.errorCode ?? 'error'})`} in ${took} ms`;
    }
    case 'reply.published':
      return `${step.detail.worker}: reply to ${step.detail.exchange} with key "${step.detail.routingKey}" (from reply topic "${step.detail.replyTopic}"), mandatory`;
    case 'reply.confirmed':
      return step.detail.outcome === 'routed'
        ? `${step.detail.worker}: broker confirmed the reply`
        : step.detail.outcome === 'returned'
          ? `${step.detail.worker}: broker RETURNED the reply as unroutable (${step.detail.returnReason ?? ''})`
          : step.detail.outcome === 'nacked'
            ? `${step.detail.worker}: broker refused the reply (nack)`
            : `${step.detail.worker}: the channel closed before the broker confirmed the reply`;
    case 'request.rejected':
      return `${step.detail.worker}: rejected without requeue: ${step.detail.reason}`;
    case 'mqtt.reply.received':
      return step.detail.topicMismatch
        ? `reply received on "${step.detail.topic}" -- asked "${step.detail.replyTopic}" (dot pitfall)`
        : `reply received on "${step.detail.topic}"${step.detail.qos !== undefined ? ` at QoS ${step.detail.qos}` : ''} (${step.detail.bytes} bytes)`;
    case 'mqtt.reply.ignored':
      return `second reply received on "${step.detail.topic}" (${step.detail.bytes} bytes): ignored, the call had taken the first`;
    case 'rpc.failed':
      return `failed (${step.detail.code}): ${step.detail.message}`;
    case 'rpc.diagnosed':
      return `verdict ${step.detail.verdict.code} (${verdictHop(step.detail.verdict)}): ${step.detail.verdict.message}`;
  }
}

/**
 * Why a step listed below another carries an earlier time: the list follows the path (src/shared/trace.ts stepPhase),
 * and the client, the server and the firehose each stamp their own steps. Shared by the inspector's timeline and the
 * terminal's.
 */
export function clockNote(step: TraceStep, above: TraceStep, behindMs: number): string {
  const by = `Stamped ${behindMs} ms before the step above`;
  // A late reply: the client gave up first; the server's steps above came after (the path puts the failure last).
  if (step.kind === 'rpc.failed' && above.source !== 'client') {
    return `${by}: the client gave up then (its timeout); the ${above.source}'s steps above came after it, a late answer. The list follows the path, not the clocks.`;
  }
  // The client stamps an ack when it arrives; the broker had routed the request (and delivered it to a worker, whose
  // step can come first too: in the app the server and the client share one clock) before the ack got back.
  if (above.kind === 'mqtt.acknowledged' && (step.source === 'broker' || step.source === 'server')) {
    const passed = step.source === 'broker' ? 'routed the request' : 'delivered the request to the server';
    return `${by}: the broker ${passed} before its ${above.detail.packet.toUpperCase()} reached the client, which stamps the ack on arrival. The list follows the path, not the clocks.`;
  }
  // The same for the reply: the server stamps the broker's confirm when it arrives, after the broker passed the reply on.
  if (above.kind === 'reply.confirmed' && (step.source === 'client' || step.source === 'broker')) {
    const passed = step.source === 'client' ? 'delivered the reply to the client' : 'routed the reply';
    return `${by}: the broker ${passed} before its confirm reached the server, which stamps the confirm on arrival. The list follows the path, not the clocks.`;
  }
  if (step.source === 'broker' || above.source === 'broker') {
    return `${by}: broker steps carry the time BridgeScope read them from the firehose, the client's and the server's their own, so the two clocks disagree by a few ms. The list follows the path, not the clocks.`;
  }
  if (step.source !== above.source) return `${by}: the ${step.source} and the ${above.source} stamp their own steps, and their clocks disagree. The list follows the path, not the clocks.`;
  return `${by} by the same ${step.source}: recorded out of order.`;
}

/**
 * The terminal's timeline: one line per step in the path's order (offset from the earliest step, source, kind and the
 * readable line). A step stamped earlier than the one above it is marked `^`, and why is said under the list (as the
 * inspector's timeline does). `safe` escapes each line before the lines are joined (topics, keys and reasons come from
 * the network and may hold newlines or escape sequences).
 */
export function formatTimeline(steps: TraceStep[], safe: (line: string) => string = (line) => line): string {
  const path: TraceStep[] = steps.filter((step) => step.kind !== 'rpc.diagnosed');
  const first = path.reduce((earliest, step) => Math.min(earliest, step.at), path[0]?.at ?? 0);
  const notes: string[] = [];
  const lines = steps.map((step) => {
    const index = path.indexOf(step);
    const above = index > 0 ? path[index - 1] : undefined;
    const behind = above !== undefined && step.at < above.at;
    if (behind) notes.push(`^ ${step.kind}: ${clockNote(step, above, above.at - step.at)}`);
    return safe(`${`+${Math.max(0, step.at - first)}`.padStart(6)} ms${behind ? '^' : ' '} ${step.source.padEnd(6)}  ${step.kind.padEnd(19)}  ${describeStep(step)}`);
  });
  return [...lines, ...notes.map(safe)].join('\n');
}

/**
 * One formatter for every count shown: `Number#toLocaleString` builds a new one at each call, 14 us in Chromium against
 * 1 us (the Trace panel's counts are drawn at every batch of a stream).
 */
const countFormat = new Intl.NumberFormat('en-US');

/** "1,234": a count with thousands separators, as `count.toLocaleString('en-US')` writes it. */
export function formatCount(count: number): string {
  return countFormat.format(count);
}

/** "1 RPC", "2 RPCs", "1,234 steps": a count with its noun in the right number (plural: noun + "s" unless given). */
export function counted(count: number, noun: string, plural = `${noun}s`): string {
  return `${formatCount(count)} ${count === 1 ? noun : plural}`;
}
