/** What one RPC's steps add up to: pure, so the terminal and the inspector read the same verdicts. */
import type { RpcTraceSummary, TraceStep } from './trace';
import { mqttDelivery, transientReplySentence, type MqttDelivery } from './broker-qos';
import { routingKeyToTopic, topicToRoutingKey } from './topic-map';
import { REPLY_ARRIVED_CODES, replyArrived } from './verdict';
import { withoutWatchTaps } from './rabbitmq-mqtt';

export function summarize(rpcId: string, steps: TraceStep[]): RpcTraceSummary {
  const summary: RpcTraceSummary = {
    rpcId,
    startedAt: steps[0]?.at ?? 0,
    state: 'pending',
    redelivered: false,
    topicMismatch: false,
    brokerSeen: false,
    warnings: [],
  };
  let replyReturned = false;
  let replyNacked = false;
  let receivedQos: number | undefined;
  /** sent from here (a composed step): the app's own client, not a device of someone else's */
  let sentHere = false;
  /** the connection that published the request, and each delivery of a reply to an MQTT client's subscription */
  let requestConnection: string | undefined;
  let namedByVerdict: string | undefined;
  /** the step of the latest verdict: steps of the request's own way that came after it are not in it */
  let verdictStep: TraceStep | undefined;
  const replyDeliveries: Array<{ delivery: MqttDelivery; connection: string | undefined; step: Extract<TraceStep, { kind: 'broker.delivered' }> }> = [];
  for (const step of steps) {
    switch (step.kind) {
      case 'composed':
        sentHere = true;
        summary.requestTopic = step.detail.topic;
        summary.replyTopic = step.detail.replyTopic;
        if (step.detail.loadRun) summary.loadRun = step.detail.loadRun;
        break;
      case 'mqtt.published':
        summary.predictedRequestKey = step.detail.predictedRoutingKey;
        break;
      case 'broker.published':
        summary.brokerSeen = true;
        if (step.detail.leg === 'request') {
          summary.brokerRequestKeys = step.detail.routingKeys;
          summary.requestRoutedQueues = step.detail.routedQueues;
          // An RPC not sent here has no composed step: the reply topic its request named is the broker's word for it.
          summary.replyTopic ??= step.detail.replyTopic;
          summary.device ??= step.detail.publisher?.mqttClientId;
          requestConnection ??= step.detail.publisher?.connection;
        } else if (!summary.replyRoutedQueues?.length) {
          // With more than one reply (a forged one, a second one), the reply that was routed is the one to show.
          summary.brokerReplyKeys = step.detail.routingKeys;
          summary.replyRoutedQueues = step.detail.routedQueues;
        }
        break;
      case 'broker.delivered': {
        summary.brokerSeen = true;
        if (step.detail.redelivered) summary.redelivered = true;
        const delivery = step.detail.leg === 'reply' ? mqttDelivery(step.detail) : undefined;
        if (delivery) replyDeliveries.push({ delivery, connection: step.detail.consumer?.connection, step });
        break;
      }
      case 'worker.received':
        summary.worker = step.detail.worker;
        if (step.detail.redelivered) summary.redelivered = true;
        break;
      case 'reply.published':
        summary.replyKey = step.detail.routingKey;
        summary.replyTopic ??= step.detail.replyTopic;
        break;
      case 'reply.confirmed':
        if (step.detail.outcome === 'returned') replyReturned = true;
        if (step.detail.outcome === 'nacked') replyNacked = true;
        break;
      case 'request.rejected':
        summary.state = 'rejected';
        summary.warnings.push(`The server rejected the request: ${step.detail.reason}`);
        break;
      case 'mqtt.reply.received':
        receivedQos = step.detail.qos;
        summary.state = 'replied';
        summary.arrivedOn = step.detail.topic;
        summary.topicMismatch = step.detail.topicMismatch;
        break;
      case 'rpc.failed':
        if (summary.state === 'pending') summary.state = 'failed';
        summary.warnings.push(step.detail.message);
        break;
      case 'rpc.diagnosed':
        summary.verdict = step.detail.verdict;
        verdictStep = step;
        // A device named after its publish (see Verdict.device): its request step does not say, its verdict does.
        if (step.detail.verdict.device !== undefined) namedByVerdict = step.detail.verdict.device;
        break;
      default:
        break;
    }
  }
  // An RPC not sent here (a watch's) has no client steps to settle it: its verdict does. Its round trip is known only
  // when its reply was seen (the reply's publish, late or not); an unanswered one, or one whose reply went astray, has none.
  let settledByVerdict = false;
  if (summary.state === 'pending' && summary.verdict !== undefined && summary.requestTopic === undefined) {
    // Any verdict of a reply that reached the device (one on another topic too) settles it as replied.
    summary.state = REPLY_ARRIVED_CODES.has(summary.verdict.code) ? 'replied' : 'failed';
    settledByVerdict = true;
  }
  // The verdict is decided after the RPC settled (evidence is gathered then): it does not lengthen the round trip.
  const last = steps.findLast((step) => step.kind !== 'rpc.diagnosed');
  const timed = !settledByVerdict || summary.state === 'replied' || summary.verdict?.code === 'late-reply';
  if (last && steps[0] && summary.state !== 'pending' && timed) summary.durationMs = last.at - steps[0].at;
  // An RPC sent here and answered: from its publish to its reply, as the call itself (Compose, `call`) counts it; its
  // subscribing before and its server's confirm after are the steps' (the detail's total), not the round trip.
  if (summary.state === 'replied') {
    const published = steps.find((step) => step.kind === 'mqtt.published');
    const received = steps.find((step) => step.kind === 'mqtt.reply.received');
    if (published !== undefined && received !== undefined && received.at >= published.at) summary.durationMs = received.at - published.at;
  }
  // A late reply's steps come after the client's timeout, which is listed last (the flow's order): its round trip runs
  // to the latest of them, not to the timeout (the trial's "4000 ms" was the timeout's).
  if (summary.verdict?.code === 'late-reply' && steps[0] && summary.durationMs !== undefined) {
    let latest = steps[0].at;
    for (const step of steps) if (step.kind !== 'rpc.diagnosed' && step.at > latest) latest = step.at;
    summary.durationMs = latest - steps[0].at;
  }
  const predicted = summary.predictedRequestKey;
  const observed = summary.brokerRequestKeys?.[0];
  if (predicted !== undefined && observed !== undefined && predicted !== observed) {
    summary.warnings.push(`Predicted routing key "${predicted}", but the broker used "${observed}".`);
  }
  if (summary.requestRoutedQueues && summary.requestRoutedQueues.length === 0) {
    summary.warnings.push('The broker dropped the request as unroutable: no queue is bound for its routing key (routed_queues is empty).');
  }
  // Routed only to a BridgeScope watch's tap: the broker kept it for the watch, but no device's queue had it.
  const tapOnly = summary.replyRoutedQueues !== undefined && summary.replyRoutedQueues.length > 0 && withoutWatchTaps(summary.replyRoutedQueues).length === 0;
  if ((summary.replyRoutedQueues && summary.replyRoutedQueues.length === 0) || replyReturned || tapOnly) {
    const key = summary.replyKey ?? summary.brokerReplyKeys?.[0] ?? '?';
    // The key the reply topic maps to, when the reply went to another: the server's mistake, not the device's subscription.
    const expected = summary.replyTopic !== undefined ? topicToRoutingKey(summary.replyTopic) : undefined;
    // A key with "/" is never an MQTT subscription's (the plugin binds "reply/x" as "reply.x"): the server kept the topic as it is.
    // A reply after the client gave up finds its per-request subscription gone with the call: that is why, not a mistake.
    const why = key.includes('/')
      ? `a routing key with "/" is never an MQTT subscription's: the device's "${key}" is bound as "${key.replaceAll('/', '.')}"`
      : summary.verdict?.code === 'late-reply'
        ? sentHere
          ? 'it came after the client had given up, and the reply subscription was gone by then'
          : 'nothing was subscribed to it when it came: the device had unsubscribed or disconnected'
        : expected !== undefined && key !== '?' && expected !== key
          ? `the reply topic "${summary.replyTopic}" is bound as "${expected}": the server replied with another key`
          : 'was the reply topic subscribed?';
    summary.warnings.push(
      tapOnly
        ? `No device got the reply: only a BridgeScope watch's tap is bound for "${key}" (${why}).`
        : `The broker dropped the reply as unroutable: nothing is bound for "${key}" (${why}).`,
    );
  }
  if (summary.topicMismatch && summary.replyTopic && summary.arrivedOn) summary.warnings.push(otherTopicWarning(summary.replyTopic, summary.arrivedOn));
  // The reply's delivery to the requester: the one on the connection that published the request (a shared reply topic
  // has other subscribers), else the first.
  const toRequester = replyDeliveries.find((item) => requestConnection !== undefined && item.connection === requestConnection);
  const replyDelivery = toRequester ?? replyDeliveries[0];
  if (!sentHere) summary.device ??= namedByVerdict;
  if (sentHere) {
    // The app's own client is no device of someone else's: its RPCs keep their id in the list.
    delete summary.device;
  } else if (summary.device === undefined && toRequester !== undefined) {
    // A device the management API had not listed yet is named by the subscription its reply reached on its connection.
    summary.device = toRequester.delivery.clientId;
  }
  // Not sent here: the broker's delivery of the reply to the requester's subscription says on which topic it arrived
  // (the routing key as the MQTT plugin gives it to the device), as the app's own client says for its RPCs.
  const deliveredKey = (toRequester ?? (requestConnection === undefined ? replyDeliveries[0] : undefined))?.step.detail.routingKeys[0];
  if (!sentHere && summary.arrivedOn === undefined && deliveredKey !== undefined) {
    summary.arrivedOn = routingKeyToTopic(deliveredKey);
    // A "." inside a level of the reply topic the device named: the broker delivered the reply, on the key that topic
    // maps to, on another topic (a reply on another key, reaching a wildcard subscriber, is no such case).
    if (summary.replyTopic !== undefined && summary.arrivedOn !== summary.replyTopic && topicToRoutingKey(summary.replyTopic) === deliveredKey) {
      summary.topicMismatch = true;
      summary.warnings.push(otherTopicWarning(summary.replyTopic, summary.arrivedOn));
    }
  }
  // Predicted from the broker's record and its version; the client's own packet (an RPC sent here) says for certain, and
  // the call's outcome warns of it then.
  if (replyDelivery?.delivery.transient && receivedQos === undefined) summary.warnings.push(transientReplySentence(replyDelivery.delivery.clientId, replyDelivery.step.detail.wire));
  const unseen = verdictStep !== undefined ? laterThanVerdict(steps, verdictStep) : undefined;
  if (unseen) summary.warnings.push(unseen);
  if (summary.redelivered) {
    summary.warnings.push(
      replyNacked
        ? 'The request was redelivered: the server put it back on its queue when the broker nacked its reply, to publish that reply again.'
        : 'The request was redelivered (a worker died or its channel closed before acking).',
    );
  }
  return summary;
}


/** What each step of the request's own way says happened, furthest last (the client's and the server's own clock). */
const LATER_WAY: Partial<Record<TraceStep['kind'], string>> = {
  'worker.received': 'a worker took the request',
  'reply.published': 'a worker replied',
  'mqtt.reply.received': 'the reply reached the client',
};
const LATER_ORDER = ['worker.received', 'reply.published', 'mqtt.reply.received'];

/**
 * A verdict older than the steps after it: a failure decided before a worker took the request (it came back after the
 * late-reply watch ended, or past its cap), said beside the verdict, which does not count them. Only this process's
 * own steps (one clock): the firehose's times are the broker's.
 */
function laterThanVerdict(steps: readonly TraceStep[], verdictStep: TraceStep): string | undefined {
  if (verdictStep.kind !== 'rpc.diagnosed') return undefined;
  const verdict = verdictStep.detail.verdict;
  // A reply that reached the client: nothing of the request's way can come after it and matter.
  if (replyArrived(verdict)) return undefined;
  let furthest: TraceStep | undefined;
  for (const step of steps) {
    if (step.seq <= verdictStep.seq || step.at < verdictStep.at || LATER_WAY[step.kind] === undefined) continue;
    if (furthest === undefined || LATER_ORDER.indexOf(step.kind) > LATER_ORDER.indexOf(furthest.kind)) furthest = step;
  }
  // A late reply at the server already counts its reply's publish (and the worker's taking it).
  if (furthest === undefined || (verdict.code === 'late-reply' && furthest.kind !== 'mqtt.reply.received')) return undefined;
  const after = (furthest.at - verdictStep.at) / 1000;
  const when = after < 1 ? 'less than a second' : after < 120 ? `${Math.round(after)} s` : `${Math.round(after / 60)} min`;
  return `The verdict above was decided ${when} before ${LATER_WAY[furthest.kind]} (the steps after it): it does not count them, so read them for what happened next.`;
}

function otherTopicWarning(asked: string, arrivedOn: string): string {
  return `asked ${asked}, arrived on ${arrivedOn}: a "." in a topic level is a level separator for RabbitMQ.`;
}
