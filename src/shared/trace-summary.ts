/** What one RPC's steps add up to: pure, so the terminal and the inspector read the same verdicts. */
import type { RpcTraceSummary, TraceStep } from './trace';
import { mqttDelivery, transientReplySentence } from './broker-qos';

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
  /** the warning of a reply the broker delivered at QoS 0 below its QoS 1 subscription (the broker's record, by its version) */
  let transientReply: string | undefined;
  let receivedQos: number | undefined;
  /** the connection that published the request, and the MQTT client whose subscription got a reply, with its connection */
  let requestConnection: string | undefined;
  let replyOwner: { clientId: string; connection: string | undefined } | undefined;
  for (const step of steps) {
    switch (step.kind) {
      case 'composed':
        summary.requestTopic = step.detail.topic;
        summary.replyTopic = step.detail.replyTopic;
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
        if (delivery?.transient) transientReply ??= transientReplySentence(delivery.clientId, step.detail.wire);
        if (delivery) replyOwner ??= { clientId: delivery.clientId, connection: step.detail.consumer?.connection };
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
        break;
      default:
        break;
    }
  }
  // An RPC not sent here (a watch's) has no client steps to settle it: its verdict does. Its round trip is known only
  // when its reply was seen (the reply's publish, late or not); an unanswered one, or one whose reply went astray, has none.
  let settledByVerdict = false;
  if (summary.state === 'pending' && summary.verdict !== undefined && summary.requestTopic === undefined) {
    summary.state = summary.verdict.code === 'replied' ? 'replied' : 'failed';
    settledByVerdict = true;
  }
  // The verdict is decided after the RPC settled (evidence is gathered then): it does not lengthen the round trip.
  const last = steps.findLast((step) => step.kind !== 'rpc.diagnosed');
  const timed = !settledByVerdict || summary.state === 'replied' || summary.verdict?.code === 'late-reply';
  if (last && steps[0] && summary.state !== 'pending' && timed) summary.durationMs = last.at - steps[0].at;
  const predicted = summary.predictedRequestKey;
  const observed = summary.brokerRequestKeys?.[0];
  if (predicted !== undefined && observed !== undefined && predicted !== observed) {
    summary.warnings.push(`Predicted routing key "${predicted}", but the broker used "${observed}".`);
  }
  if (summary.requestRoutedQueues && summary.requestRoutedQueues.length === 0) {
    summary.warnings.push('The broker dropped the request as unroutable: no queue is bound for its routing key (routed_queues is empty).');
  }
  if ((summary.replyRoutedQueues && summary.replyRoutedQueues.length === 0) || replyReturned) {
    const key = summary.replyKey ?? summary.brokerReplyKeys?.[0] ?? '?';
    // A key with "/" is never an MQTT subscription's (the plugin binds "reply/x" as "reply.x"): the server kept the topic as it is.
    const why = key.includes('/') ? `a routing key with "/" is never an MQTT subscription's: the device's "${key}" is bound as "${key.replaceAll('/', '.')}"` : 'was the reply topic subscribed?';
    summary.warnings.push(`The broker dropped the reply as unroutable: nothing is bound for "${key}" (${why}).`);
  }
  if (summary.topicMismatch && summary.replyTopic && summary.arrivedOn) {
    summary.warnings.push(`asked ${summary.replyTopic}, arrived on ${summary.arrivedOn}: a "." in a topic level is a level separator for RabbitMQ.`);
  }
  // A device the management API had not listed yet is still named by the subscription its reply reached, when that
  // subscription's connection is the one that published the request.
  if (summary.device === undefined && replyOwner !== undefined && requestConnection !== undefined && replyOwner.connection === requestConnection) {
    summary.device = replyOwner.clientId;
  }
  // Predicted from the broker's record and its version; the client's own packet (an RPC sent here) says for certain, and
  // the call's outcome warns of it then.
  if (transientReply !== undefined && receivedQos === undefined) summary.warnings.push(transientReply);
  if (summary.redelivered) {
    summary.warnings.push(
      replyNacked
        ? 'The request was redelivered: the server put it back on its queue when the broker nacked its reply, to publish that reply again.'
        : 'The request was redelivered (a worker died or its channel closed before acking).',
    );
  }
  return summary;
}
