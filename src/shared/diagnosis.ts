/** "Why no reply?": the verdict on one RPC (code, hop, one sentence, evidence), decided purely from collected evidence. */
import type { BrokerParty, TraceMessage, TraceStep, TraceStepDraft } from './trace';
import type { FailureReason } from './errors';
import { isSubscriptionQueue, isWatchTapQueue, REASON, withoutWatchTaps } from './rabbitmq-mqtt';
import { HOPS, type Hop, type Verdict, type VerdictCode } from './verdict';

// The verdict's own types and lists live in the leaf module verdict.ts (trace, rpc and errors need them too).
export { HOPS, VERDICT_CODES, VERDICT_WORDS, latestVerdict, verdictWordOf, type Hop, type Verdict, type VerdictCode, type VerdictSources } from './verdict';

/** One queue the request key routes to, with its counts as asked after the failure. */
export interface QueueFact {
  name: string;
  consumers: number;
  /** messages waiting for a consumer */
  ready: number;
  /** delivered, not yet acked; from the management API only, so it can be a stats interval (~5 s) old */
  unacked?: number;
  /** true when consumers and ready were asked over AMQP (live), false when from the management API (lagging) */
  live: boolean;
}

/** What the broker answered when asked after the failure (bindings, queues, connections). */
export interface BrokerFacts {
  /** the exchange the MQTT plugin publishes to, as configured */
  exchange: string;
  /** non-MQTT queues bound on `exchange` for the request key */
  requestQueues: QueueFact[];
  /** the other keys bound on `exchange`, closest to the request key first */
  closestKeys: string[];
  /** queues bound for the request key on other exchanges */
  elsewhere: Array<{ exchange: string; queue: string }>;
  /** whether this broker knows our MQTT client (connection list or its subscription queue); undefined when it could not be asked */
  clientSeen?: boolean;
  /** our MQTT client id, as looked for */
  mqttClientId?: string;
  /** a permission of the MQTT user that the RPC needs and does not have (RabbitMQ closes the connection on such a refusal) */
  accessProblem?: { hop: Hop; message: string };
  /** what could not be asked, one short line each */
  unavailable: string[];
}

export interface DiagnosisInput {
  rpcId: string;
  /** the RPC's trace steps: the client's, the embedded server's and, with the firehose on, the broker's */
  steps: ReadonlyArray<TraceStep | TraceStepDraft>;
  /** whether the broker's firehose was on for this RPC (its record then decides) */
  firehose: boolean;
  request?: { topic: string; routingKey: string };
  reply?: { topic: string; routingKey: string };
  timeoutMs?: number;
  /** the reply, when one arrived */
  outcome?: {
    replyTopic: string;
    arrivedOn: string;
    topicMismatch: boolean;
    durationMs?: number;
    error?: { code: string; message: string };
    /** the worker the reply names itself (its own word, in its body) */
    worker?: string;
  };
  /** how the call failed, when it did */
  failure?: { code: string; message: string; reason?: FailureReason };
  /** a reply for this RPC that arrived after the client gave up */
  /** a reply that came after the wait: where and when; a watch knows how long after the request (`afterMs`) and who published it */
  lateReply?: {
    topic: string;
    at: number;
    afterMs?: number;
    worker?: string;
    /** a watch saw the broker route it to no device's queue (to none, or to a BridgeScope watch's tap only) */
    dropped?: boolean;
    /** a watch saw the broker route it to this MQTT client's subscription (the client id its queue names) */
    toSubscription?: string;
  };
  /** the first loss of the MQTT link while the RPC was in flight */
  linkLost?: { at: number; reason: string };
  facts?: BrokerFacts;
  /**
   * the broker was asked, but not all it takes to decide could be (see `diagnoseWithFacts`): what could not be asked, one
   * line each; the verdict says it (the CLI prints the message, not the evidence) and does not advise giving the URLs
   * that were given
   */
  factsIncomplete?: string[];
  /**
   * where the user reads the remedies: 'app' points at its panels (Server, Trace); 'watch' at what a watcher of other
   * clients' traffic has (their worker, watch's firehose mode); otherwise (the command line) at commands
   */
  remedies?: 'app' | 'cli' | 'watch';
  /**
   * for remedies 'watch': what waited for the reply and how to wait longer (default: the watch's timeout, `--timeout` or
   * Timeout in the Watch panel); the Trace panel and `bridgescope trace` judge other teams' RPCs with a wait of their own
   */
  timeoutRemedy?: TimeoutRemedy;
}

/** What waited for a reply another's RPC did not get in time, and how to make it wait longer (see DiagnosisInput). */
export interface TimeoutRemedy {
  /** e.g. "the watch's timeout" */
  name: string;
  /** what to do, in parentheses after "slower than that", e.g. "raise it with --timeout if that is normal for it" */
  raise: string;
}

/** A watch's own wait: `watch --timeout` or the Watch panel's Timeout. */
export const WATCH_TIMEOUT_REMEDY: TimeoutRemedy = { name: "the watch's timeout", raise: "raise the watch's timeout, --timeout or Timeout in the Watch panel, if that is normal for it" };

/**
 * A late reply to a request that nobody consumed when the wait ended (its first verdict: no consumer): the reply is late
 * because a worker came late (the workers were down, or started after the request), not because one was slow, and
 * raising the timeout is not the remedy. The verdict says so instead of "answered after the client gave up".
 */
export function lateBecauseNoConsumer(verdict: Verdict, how: { topic: string; afterMs?: number; waited: string; timeoutMs: number; whoGaveUp: string }): Verdict {
  const after = how.afterMs !== undefined ? ` and answered after ${Math.round(how.afterMs)} ms` : ' and answered';
  return {
    ...verdict,
    message: `A worker took the request on "${how.topic}"${after}, but when ${how.waited} of ${how.timeoutMs} ms ended none consumed it yet (the verdict then: no consumer): the workers were down or started late, and ${how.whoGaveUp} had given up. Keep a worker consuming it while devices send.`,
    evidence: [...verdict.evidence, `${how.whoGaveUp === 'the call' ? 'client' : 'watch'}: when the wait ended, nothing consumed the request's queue (no consumer)`],
  };
}

/** Levenshtein distance, for "did you mean" lists of bound keys. */
export function editDistance(from: string, to: string): number {
  let previous = Array.from({ length: to.length + 1 }, (_, index) => index);
  for (let i = 1; i <= from.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= to.length; j += 1) {
      const substitution = (previous[j - 1] as number) + (from[i - 1] === to[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitution));
    }
    previous = current;
  }
  return previous[to.length] as number;
}

/** The keys closest to `target` first (ties in name order), at most `limit`. */
export function closestKeys(target: string, keys: Iterable<string>, limit = 5): string[] {
  return [...new Set(keys)]
    .map((key) => ({ key, distance: editDistance(target, key) }))
    .sort((a, b) => a.distance - b.distance || a.key.localeCompare(b.key))
    .slice(0, limit)
    .map((entry) => entry.key);
}

function quoted(names: readonly string[]): string {
  return names.map((name) => `"${name}"`).join(', ');
}

function stepOf<K extends TraceStep['kind']>(steps: DiagnosisInput['steps'], kind: K, leg?: 'request' | 'reply'): Extract<TraceStep | TraceStepDraft, { kind: K }> | undefined {
  return steps.find((step) => step.kind === kind && (leg === undefined || ('leg' in step.detail && step.detail.leg === leg))) as
    | Extract<TraceStep | TraceStepDraft, { kind: K }>
    | undefined;
}

function lastStepOf<K extends TraceStep['kind']>(steps: DiagnosisInput['steps'], kind: K): Extract<TraceStep | TraceStepDraft, { kind: K }> | undefined {
  return steps.findLast((step) => step.kind === kind) as Extract<TraceStep | TraceStepDraft, { kind: K }> | undefined;
}

/**
 * A reply whose topic has a "." inside a level: RabbitMQ delivers it on another topic (`reply/v1.2/x` on `reply/v1/2/x`),
 * where a device that dispatches by the exact topic drops it. `arrived` for a reply seen at the client, `arrives` for one
 * the broker's record shows routed to the device.
 */
export function otherTopicSentence(replyTopic: string, arrivedOn: string, tense: 'arrived' | 'arrives'): string {
  return `The reply to "${replyTopic}" ${tense} on "${arrivedOn}": RabbitMQ turns a "." inside a topic level into a level separator, so use a reply topic without "." (e.g. "${replyTopic.replaceAll('.', '_')}").`;
}

/** A queue's count as one moment's (a run's failures, asked again every few seconds, each get their own): "3 messages were". */
function waitingCount(ready: number): string {
  return ready === 1 ? '1 message was' : `${ready} messages were`;
}

/**
 * The queues a reply was routed to that could bring it to a device: a BridgeScope watch's tap queue (bound to every reply
 * key it follows) takes a reply no subscription would have, and delivers it to nobody.
 */
function deviceQueues(step: { detail: { routedQueues: readonly string[] } }): string[] {
  return withoutWatchTaps(step.detail.routedQueues);
}

/**
 * How far a reply the client no longer waited for went (it was published: the late-reply branch needs it): dropped at
 * the exchange (returned, or routed to no queue), refused at its queue (nacked), in a queue (routed), or published with
 * nothing known past the exchange yet.
 */
function lateReplyReached(
  brokerReply: Extract<TraceStep | TraceStepDraft, { kind: 'broker.published' }> | undefined,
  replyConfirmed: Extract<TraceStep | TraceStepDraft, { kind: 'reply.confirmed' }> | undefined,
): NonNullable<Verdict['replyReached']> {
  const outcome = replyConfirmed?.detail.outcome;
  // Routed only to a watch's tap: the broker confirmed it as routed, but no device's queue had it.
  const toDevices = brokerReply !== undefined ? deviceQueues(brokerReply) : undefined;
  if (outcome === 'returned' || toDevices?.length === 0) return { hop: 'reply-exchange', stopped: true };
  if (outcome === 'nacked') return { hop: 'reply-queue', stopped: true };
  if (outcome === 'routed' || (toDevices?.length ?? 0) > 0) return { hop: 'reply-queue', stopped: false };
  return { hop: 'reply-exchange', stopped: false };
}

/** Where a watched late reply went, as far as the watch saw: the device can have got it, or not. */
function watchedLateReach(lateReply: DiagnosisInput['lateReply'], dropped: boolean): string {
  if (dropped) return "the broker routed the reply to no device's queue, so the device had unsubscribed or disconnected by then and never got it";
  if (lateReply?.toSubscription !== undefined) return `the broker routed the reply to the subscription of MQTT client "${lateReply.toSubscription}", which gets it if it is still there (a device that waits no longer than that had given up)`;
  return 'a device that waits no longer than that has given up by then';
}

/** Decides the verdict: a reply first, then how the call failed, then the broker's record, the server's events, the facts asked after. */
export function diagnose(input: DiagnosisInput): Verdict {
  const { steps } = input;
  const evidence: string[] = [];
  const verdict = (code: VerdictCode, hop: Hop, message: string): Verdict => ({ code, hop, message, evidence });

  const composed = stepOf(steps, 'composed');
  const published = stepOf(steps, 'mqtt.published');
  const requestTopic = input.request?.topic ?? composed?.detail.topic ?? '?';
  const requestKey = input.request?.routingKey ?? published?.detail.predictedRoutingKey ?? requestTopic;
  // An RPC not sent here has no composed step: the reply topic its request named, as the broker carried it.
  const replyTopic = input.reply?.topic ?? input.outcome?.replyTopic ?? composed?.detail.replyTopic ?? stepOf(steps, 'broker.published', 'request')?.detail.replyTopic ?? '?';
  const exchange = input.facts?.exchange ?? stepOf(steps, 'broker.published', 'request')?.detail.exchange ?? 'the MQTT exchange';
  const waited = input.timeoutMs !== undefined ? `${input.timeoutMs} ms` : 'the timeout';

  if (published) evidence.push(`client: published "${requestTopic}" (routing key "${requestKey}")`);
  const acknowledged = stepOf(steps, 'mqtt.acknowledged');
  if (acknowledged) evidence.push(`client: the broker acknowledged the request (${acknowledged.detail.packet.toUpperCase()})`);

  // 1. A reply arrived: first whether it can be trusted (who published it, whether it was the only one), then what it says.
  const outcome = input.outcome;
  if (outcome) {
    evidence.push(`client: reply received on "${outcome.arrivedOn}"${outcome.durationMs !== undefined ? ` after ${Math.round(outcome.durationMs)} ms` : ''}`);
    const doubt = replyDoubt(input, requestTopic, evidence);
    if (doubt) return verdict(doubt.code, doubt.hop, doubt.message);
    if (outcome.error) {
      evidence.push(`server: error ${outcome.error.code}: ${outcome.error.message}`);
      return verdict('replied-error', 'server', `The server answered "${requestTopic}" with error ${outcome.error.code} ("${outcome.error.message}"): the path works, fix the request or the handler.`);
    }
    if (outcome.topicMismatch) return verdict('reply-on-other-topic', 'mqtt-deliver', otherTopicSentence(outcome.replyTopic, outcome.arrivedOn, 'arrived'));
    return verdict('replied', 'mqtt-deliver', `A reply to "${requestTopic}" arrived on "${outcome.arrivedOn}".`);
  }

  // 2. How the call failed, when that alone decides.
  const failure = input.failure ?? stepOf(steps, 'rpc.failed')?.detail;
  // Watching other clients' traffic, the timeout is the watch's own, not a client's.
  if (failure) evidence.push(`${input.remedies === 'watch' ? 'watch' : 'client'}: ${failure.code}: ${failure.message}`);
  const subscribed = stepOf(steps, 'mqtt.subscribed');
  if (subscribed?.detail.qosGranted === 'refused') {
    evidence.push(`client: the broker refused the subscription to "${subscribed.detail.topic}"`);
    return verdict('access-refused', 'reply-queue', `The broker refused the subscription to the reply topic "${subscribed.detail.topic}": give the MQTT user read permission on ${exchange} for that topic (RabbitMQ topic permissions).`);
  }
  if (failure?.code === 'auth') {
    return verdict('access-refused', 'mqtt-publish', `Access refused: ${failure.message.replace(/\.$/, '')}; check the user's password and its permissions on the vhost.`);
  }
  if (failure?.code === 'unreachable' && !published) {
    return verdict('link-down', 'mqtt-publish', `The request to "${requestTopic}" was never published: ${failure.message.replace(/\.$/, '')}; check the MQTT URL and that the broker runs.`);
  }
  if (failure?.code === 'unreachable' || (failure?.code === 'timeout' && failure.reason === 'link-down')) {
    return verdict('link-down', 'mqtt-publish', `The MQTT connection was lost while the request to "${requestTopic}" was in flight (${failure.message.replace(/\.$/, '')}); check the broker and the network, then send it again.`);
  }
  if (failure?.code === 'bad-input' || failure?.code === 'too-large') {
    return verdict('not-sent', 'mqtt-publish', `The request to "${requestTopic}" was not sent: ${failure.message}`);
  }

  // 3. The path, from the broker's record (firehose), the embedded server's events and the facts asked after.
  const failedAt = stepOf(steps, 'rpc.failed')?.at ?? input.lateReply?.at;
  const brokerRequest = stepOf(steps, 'broker.published', 'request');
  const brokerReply = stepOf(steps, 'broker.published', 'reply');
  // A server took it: a copy delivered to an MQTT subscriber of the request topic (a device) is no consumer's of the queue.
  const requestDelivered = steps.find((step) => step.kind === 'broker.delivered' && step.detail.leg === 'request' && !isSubscriptionQueue(step.detail.queue) && !isWatchTapQueue(step.detail.queue)) as
    | Extract<TraceStep | TraceStepDraft, { kind: 'broker.delivered' }>
    | undefined;
  const received = stepOf(steps, 'worker.received');
  const rejected = stepOf(steps, 'request.rejected');
  // The last publish: a reply the broker nacked is published again (kept by the server) when its request comes back.
  const replyPublished = lastStepOf(steps, 'reply.published');
  // The last confirm: a reply the broker nacked may have gone again (kept by the server) and been routed then.
  const replyConfirmed = lastStepOf(steps, 'reply.confirmed');
  // Routed only to MQTT subscriptions (a device subscribed to the request topic) or a watcher's tap is routed to no server.
  const serverQueues = brokerRequest?.detail.routedQueues.filter((queue) => !isSubscriptionQueue(queue) && !isWatchTapQueue(queue));
  const deliveredQueue = requestDelivered?.detail.queue ?? received?.detail.queue ?? serverQueues?.[0] ?? input.facts?.requestQueues[0]?.name;
  const queueName = deliveredQueue !== undefined ? `queue "${deliveredQueue}"` : `the queue bound for "${requestKey}"`;
  // The remedies name what the user has at hand: the app's panels in the app, the commands on the command line.
  const inApp = input.remedies === 'app';
  const watching = input.remedies === 'watch';
  const startServer = (queue: string): string =>
    watching ? `start the worker that consumes it` : inApp ? `start a server on it (the Server panel, queue "${queue}")` : `start a server on it (bridgescope serve --queue ${queue})`;
  const firehoseSwitch = watching ? `watch --mode firehose, or Mode in the Watch panel` : inApp ? `the Trace panel's "Broker firehose"` : 'call --trace';
  // The embedded server's own events (source "server") say it took the request: its log is the Server panel's.
  const serverLog = inApp && received?.source === 'server' ? "the Server panel's log says which" : 'its own log says which';

  // MQTT 5 on RabbitMQ 3.13+: the PUBACK itself says the request reached no queue; no firehose needed.
  // MQTT 5: a PUBACK with an error reason code says a queue refused the request (0x83 on 4.0.5, 0x97 on 4.3.6 for a
  // full reject-publish queue); the broker did route it, so this is the queue's refusal, not the exchange's.
  const refusedCode = acknowledged?.detail.reasonCode;
  if (refusedCode !== undefined && refusedCode >= 0x80) {
    evidence.push(`client: the broker answered PUBACK 0x${refusedCode.toString(16)}: a queue refused the request`);
    return verdict('request-rejected', 'queue', `A queue bound for "${requestKey}" on ${exchange} refused the request (PUBACK 0x${refusedCode.toString(16)}): it is full with x-overflow reject-publish, or at a limit of its queue type; make its consumers keep up, or raise its x-max-length.`);
  }
  if (acknowledged?.detail.reasonCode === REASON.noMatchingSubscribers) {
    evidence.push('client: the broker answered PUBACK "No matching subscribers" (0x10): the request reached no queue');
    if (input.facts) pushFactEvidence(input.facts, requestKey, evidence);
    return unroutable(input, input.facts, exchange, requestKey, evidence);
  }
  if (brokerRequest) {
    const routed = brokerRequest.detail.routedQueues;
    evidence.push(`broker: request published on ${brokerRequest.detail.exchange} with key "${brokerRequest.detail.routingKeys[0] ?? ''}", routed to ${routed.length > 0 ? quoted(routed) : 'no queue'}`);
  }
  if (requestDelivered) evidence.push(`broker: request delivered from queue "${requestDelivered.detail.queue}" to ${requestDelivered.detail.consumer ? partyText(requestDelivered.detail.consumer) : 'a consumer'}`);
  if (received) evidence.push(`server: ${received.detail.worker} received the request from "${received.detail.queue}"`);
  if (replyPublished) evidence.push(`server: ${replyPublished.detail.worker} published the reply on ${replyPublished.detail.exchange} with key "${replyPublished.detail.routingKey}"`);
  if (replyConfirmed) evidence.push(`server: the broker ${replyConfirmed.detail.outcome} the reply${replyConfirmed.detail.returnReason ? ` (${replyConfirmed.detail.returnReason})` : ''}`);
  if (brokerReply) {
    const routed = brokerReply.detail.routedQueues;
    evidence.push(`broker: reply published on ${brokerReply.detail.exchange} with key "${brokerReply.detail.routingKeys[0] ?? ''}", routed to ${routed.length > 0 ? quoted(routed) : 'no queue'}`);
  }
  // A watch says when it saw the late reply itself (it has no client that gave up).
  if (input.lateReply && !watching) evidence.push(`client: the reply arrived on "${input.lateReply.topic}" after the call had given up`);
  const facts = input.facts;
  if (facts) pushFactEvidence(facts, requestKey, evidence);

  // RabbitMQ answers a refused publish or subscribe by closing the connection: the permissions say why.
  if (facts?.accessProblem && failure !== undefined) {
    return verdict('access-refused', facts.accessProblem.hop, facts.accessProblem.message);
  }

  // The reply came, or was published, after the client gave up.
  // The latest publish of a reply: one nacked and published again later counts from the second publish.
  const replyAt = brokerReply !== undefined || replyPublished !== undefined ? Math.max(brokerReply?.at ?? 0, replyPublished?.at ?? 0) : undefined;
  if (input.lateReply || (failedAt !== undefined && replyAt !== undefined && replyAt > failedAt && failure?.code === 'timeout')) {
    // Seen at the device (a client that got it late; a watch that saw it routed), or not: a watch sees a late reply the
    // broker dropped too (routed nowhere), which went no further than the exchange.
    // Every publish of the reply routed nowhere (a first one dropped and a later one routed reached the device).
    const replyPublishes = steps.filter((step) => step.kind === 'broker.published' && step.detail.leg === 'reply') as Array<Extract<TraceStep | TraceStepDraft, { kind: 'broker.published' }>>;
    const droppedLate = input.lateReply?.dropped === true || (replyPublishes.length > 0 && replyPublishes.every((step) => deviceQueues(step).length === 0));
    const atDevice = input.lateReply !== undefined && !droppedLate;
    const late = verdict(
      'late-reply',
      atDevice ? 'mqtt-deliver' : 'server',
      input.remedies === 'watch'
        ? `The server on ${queueName}${input.lateReply?.worker !== undefined ? ` (${input.lateReply.worker})` : ''} answered after ${input.lateReply?.afterMs !== undefined ? `${Math.round(input.lateReply.afterMs)} ms, past ` : ''}${(input.timeoutRemedy ?? WATCH_TIMEOUT_REMEDY).name} of ${waited}: slower than that (${(input.timeoutRemedy ?? WATCH_TIMEOUT_REMEDY).raise}); ${watchedLateReach(input.lateReply, droppedLate)}.`
        : `The server on ${queueName} answered after the client gave up at ${waited}: raise the timeout or make the handler faster.`,
    );
    if (!atDevice) late.replyReached = droppedLate ? { hop: 'reply-exchange', stopped: true } : lateReplyReached(brokerReply, replyConfirmed);
    return late;
  }

  // A lost link loses more than time: a clean session's reply subscription goes with it, so a reply published meanwhile is dropped.
  const requestDropped = brokerRequest !== undefined && brokerRequest.detail.routedQueues.length === 0;
  if (input.linkLost && failure?.code === 'timeout' && !requestDropped) {
    const startedAt = composed?.at;
    const when = startedAt !== undefined ? ` ${Math.max(0, input.linkLost.at - startedAt)} ms into the call` : '';
    evidence.push(`client: the MQTT link was lost${when} (${input.linkLost.reason})`);
    return verdict(
      'link-down',
      furthestHop(steps),
      `The MQTT connection was lost${when} while waiting for the reply on "${replyTopic}" (${input.linkLost.reason}); a reply published while it was down is dropped with its subscription, so send the request again.`,
    );
  }

  if (failure?.code === 'cancelled') {
    return verdict('cancelled', furthestHop(steps), `The call to "${requestTopic}" was cancelled before a reply came.`);
  }

  const replyKey = replyPublished?.detail.routingKey ?? brokerReply?.detail.routingKeys[0];
  const expectedReplyKey = input.reply?.routingKey;
  // AMQP's own RPC convention: reply to the default exchange with the request's reply_to property as the key. RabbitMQ
  // never sets reply_to on a request from MQTT (an MQTT 5 Response Topic becomes the header x-reply-to-topic:
  // deps/rabbitmq_mqtt/src/mc_mqtt.erl at v3.13.0), and the default exchange routes to no MQTT subscription.
  if (brokerReply !== undefined && (brokerReply.detail.exchange === '' || brokerReply.detail.exchange === 'amq.default')) {
    const target = expectedReplyKey !== undefined ? `${exchange} with key "${expectedReplyKey}"` : exchange;
    return verdict(
      'reply-to-property',
      'reply-exchange',
      `The server published its reply to the default exchange with key "${replyKey ?? ''}": that is AMQP's reply_to convention, but RabbitMQ never sets reply_to on a request from MQTT, and the default exchange reaches no MQTT subscription. Publish the reply to ${target} (the request body's reply_to field with "/" turned into ".", or an MQTT 5 request's x-reply-to-topic header).`,
    );
  }
  const replyDropped = replyConfirmed?.detail.outcome === 'returned' || (brokerReply !== undefined && deviceQueues(brokerReply).length === 0);
  if (replyDropped) {
    const replyExchange = brokerReply?.detail.exchange ?? replyPublished?.detail.exchange ?? exchange;
    const fix =
      expectedReplyKey !== undefined && replyKey !== undefined && replyKey !== expectedReplyKey
        ? `fix the server to reply with key "${expectedReplyKey}" (the reply_to "${replyTopic}" with "/" turned into ".")`
        : `the reply subscription to "${replyTopic}" was gone when the reply came (not made yet, unsubscribed, or gone with a clean session's connection), so subscribe before sending and stay connected and subscribed until the reply`;
    // A watch's tap took it (the broker routed it there, and confirmed it as routed): to the device, it was dropped all the same.
    const tapOnly = brokerReply !== undefined && brokerReply.detail.routedQueues.length > 0 && deviceQueues(brokerReply).length === 0;
    const bound = tapOnly ? `which only a BridgeScope watch's tap queue is bound to (${quoted(brokerReply.detail.routedQueues)}: it delivers to no device)` : 'which nothing is bound to';
    return verdict('reply-unroutable', 'reply-exchange', `The server replied on ${replyExchange} with key "${replyKey ?? '?'}", ${bound}, so the broker ${tapOnly ? 'delivered the reply to no device' : 'dropped the reply'}: ${fix}.`);
  }
  if (replyConfirmed?.detail.outcome === 'nacked') {
    const replyExchange = replyPublished?.detail.exchange ?? brokerReply?.detail.exchange ?? exchange;
    const routedTo = brokerReply && brokerReply.detail.routedQueues.length > 0 ? ` to ${quoted(brokerReply.detail.routedQueues)}` : '';
    return verdict(
      'reply-refused',
      'reply-queue',
      `The broker refused the server's reply on ${replyExchange} with key "${replyKey ?? '?'}"${routedTo} (a publisher-confirm nack): a queue it was routed to was full and rejects new messages (x-overflow reject-publish), or went down (its node stopping); send the request again, and check that queue's length limit if it keeps happening.`,
    );
  }
  if (brokerReply) {
    return verdict(
      'undetermined',
      'reply-queue',
      `The broker routed the reply to ${quoted(brokerReply.detail.routedQueues)}, but it did not reach the client on "${replyTopic}" within ${waited}; check that subscription's client.`,
    );
  }
  if (rejected) {
    evidence.push(`server: rejected the request: ${rejected.detail.reason}`);
    return verdict('request-rejected', 'server', `The server on ${queueName} rejected the request (${rejected.detail.reason.replace(/\.$/, '')}): fix the request's body or fields.`);
  }
  if (brokerRequest && serverQueues?.length === 0) {
    const verdict = unroutable(input, facts, brokerRequest.detail.exchange, requestKey, evidence);
    if (verdict.code === 'request-unroutable' && brokerRequest.detail.routedQueues.length > 0) {
      const who = brokerRequest.detail.routedQueues.some(isWatchTapQueue) ? "Only MQTT subscriptions or a BridgeScope watch's tap" : 'Only MQTT subscriptions';
      verdict.message = `${who} (${quoted(brokerRequest.detail.routedQueues)}) are bound on ${brokerRequest.detail.exchange} for routing key "${requestKey}", no server's queue: start a server on a queue bound for it or fix the topic.`;
    }
    return verdict;
  }
  // A body sent as given over MQTT 3.1.1 names no reply topic at all: a server that reads it from the body cannot answer.
  const nowhereToReply = composed?.detail.asGiven === 'without-reply-topic';
  const noReplyTopic = (queue: string): Verdict => {
    evidence.push('client: the body was sent as given (no id, no reply_to) over MQTT 3.1.1, which has no Response Topic');
    return verdict(
      'request-rejected',
      'server',
      `A consumer of ${queue} took the request but no reply came within ${waited}: its body was sent as given, with no id and no reply_to, over MQTT 3.1.1, which has no Response Topic, so the server had no reply topic to answer on (BridgeScope's own server rejects such a request and says so in its log). Send the body as JSON (it gets id and reply_to), or over MQTT 5, whose Response Topic carries the reply topic.`,
    );
  };
  if (nowhereToReply && (requestDelivered || received)) return noReplyTopic(queueName);
  if (requestDelivered || received) {
    // The firehose names the connection that took it; a queue with no consumer now says that worker is gone with it.
    const taker = requestDelivered?.detail.consumer ? ` (${partyText(requestDelivered.detail.consumer)})` : '';
    const nowIdle = facts?.requestQueues.find((queue) => queue.name === deliveredQueue && queue.consumers === 0);
    if (nowIdle) {
      return verdict(
        'server-slow',
        'server',
        `A consumer of ${queueName}${taker} took the request, but no reply came within ${waited} and the queue has no consumer now: the worker that took it stopped (it crashed, or was stopped) without replying; ${nowIdle.ready > 0 ? `${waitingCount(nowIdle.ready)} waiting there when the broker was asked, the request among them if it was not acked` : 'if it had acked the request, the request is gone with it'}. ${startServer(deliveredQueue ?? requestKey).replace(/^./, (first) => first.toUpperCase())}, and check its log for why it stopped.`,
      );
    }
    return verdict('server-slow', 'server', `A consumer of ${queueName}${taker} took the request but no reply came within ${waited}: the server is slow, stuck or rejected it (${serverLog}); raise the timeout or check the server's handler.`);
  }
  if (brokerRequest && input.firehose) {
    const waiting = facts?.requestQueues.find((queue) => brokerRequest.detail.routedQueues.includes(queue.name));
    const count = waiting ? `; ${waitingCount(waiting.ready)} waiting there when the broker was asked` : '';
    return verdict('no-consumer', 'queue', `The request reached ${queueName} but nobody consumed it within ${waited}${count}: ${startServer(deliveredQueue ?? requestKey)}.`);
  }

  // Firehose off (or it missed the request): what was asked after the timeout.
  if (!facts) {
    const hop = acknowledged ? 'exchange' : 'mqtt-publish';
    if (input.factsIncomplete) {
      const path = input.firehose ? '' : ` Turn on the firehose (${firehoseSwitch}) to see the request's path.`;
      return verdict('undetermined', hop, `No reply to "${requestTopic}" within ${waited}, and the broker could not tell why; not asked: ${input.factsIncomplete.join('; ').replace(/\.$/, '')}.${path}`);
    }
    return verdict(
      'undetermined',
      hop,
      `No reply to "${requestTopic}" within ${waited}, and the broker could not be asked why; give management and AMQP URLs${input.firehose ? '' : `, or turn on the firehose (${firehoseSwitch}) to see the request's path`}.`,
    );
  }
  if (facts.clientSeen === false) {
    return verdict(
      'not-this-broker',
      'mqtt-publish',
      `The RabbitMQ asked (its management API and AMQP) never saw MQTT client${facts.mqttClientId !== undefined ? ` "${facts.mqttClientId}"` : ''}, so the MQTT URL points at another broker (a Mosquitto on 1883?): point the MQTT URL at this RabbitMQ's MQTT listener.`,
    );
  }
  if (facts.requestQueues.length === 0) return unroutable(input, facts, facts.exchange, requestKey, evidence);
  // A queue with no consumer where messages wait first: that is where the request waits.
  const idle = facts.requestQueues.find((queue) => queue.consumers === 0 && queue.ready > 0) ?? facts.requestQueues.find((queue) => queue.consumers === 0);
  // No consumer, and nothing waiting in it, asked live (the management API's counts lag up to ~5 s: a request published
  // after them is not in them): a consumer took the request and stopped consuming since, or it left the queue otherwise;
  // it does not wait there (the trial: a server stopping, finishing the request it held).
  if (idle && idle.ready === 0 && idle.live) {
    const held = idle.unacked ?? 0;
    return verdict(
      'server-slow',
      'server',
      held > 0
        ? `Queue "${idle.name}" has no consumer now and no message waiting, but ${held === 1 ? '1 message' : `${held} messages`} taken from it ${held === 1 ? 'is' : 'are'} not acked yet: a worker took the request and stopped consuming before replying within ${waited} (a server that stops finishes what it holds first), so its reply may still come (if not, that worker's log says why); requests sent now wait there: ${startServer(idle.name)}.`
        : `Queue "${idle.name}" has no consumer now and no message waiting: a consumer took the request and has gone since without a reply within ${waited} (stopped or crashed, having acked it), or the queue let it go (a message TTL, a length limit, dead-lettering); ${startServer(idle.name)}, check its log for why it stopped, and send the request again.`,
    );
  }
  if (idle) {
    return verdict(
      'no-consumer',
      'queue',
      `Queue "${idle.name}" (bound on ${facts.exchange} for "${requestKey}") has no consumer, so the request waits there (${waitingCount(idle.ready)} waiting in it when the broker was asked): ${startServer(idle.name)}.`,
    );
  }
  const busy = facts.requestQueues[0] as QueueFact;
  if (nowhereToReply) return noReplyTopic(`queue "${busy.name}"`);
  // With the firehose on, it saw nothing of this RPC's path (a body it could not join): advising it would say nothing.
  const next = input.firehose ? `raise the timeout, or look at the server's log` : `raise the timeout, or turn on the firehose (${firehoseSwitch}) to see the reply's path`;
  return verdict('server-slow', 'server', `Queue "${busy.name}" has ${busy.consumers} consumer(s) and one of them took the request, but no reply came within ${waited}: the server is slow or its reply was lost; ${next}.`);
}

/** How much of a reply's body a verdict quotes. */
const QUOTED_BODY_CHARS = 120;

/** A connection as the firehose names it, with its user. */
function partyText(who: BrokerParty): string {
  return `${who.user !== undefined ? `user "${who.user}" on ` : ''}connection "${who.connection}"${who.connectionName !== undefined ? ` named "${who.connectionName}"` : ''}`;
}

function quotedBody(message: TraceMessage | undefined): string {
  if (!message || message.body.dropped) return '';
  if (message.body.encoding === 'binary') return ` (${message.body.bytes} bytes, binary)`;
  const text = message.body.preview.replace(/\s+/g, ' ');
  return `: ${text.length > QUOTED_BODY_CHARS ? `${text.slice(0, QUOTED_BODY_CHARS)}...` : text}`;
}

/** Whether two steps carried the same body, as far as their kept previews tell. */
function sameBody(a: TraceMessage | undefined, b: TraceMessage | undefined): boolean {
  return a !== undefined && b !== undefined && !a.body.dropped && !b.body.dropped && a.body.bytes === b.body.bytes && a.body.preview === b.body.preview;
}

/** The peer's address of a connection named "peer address:port -> listener address:port". */
function peerHost(connection: string): string {
  const peer = connection.split(' -> ')[0] ?? connection;
  const colon = peer.lastIndexOf(':');
  return colon > 0 ? peer.slice(0, colon) : peer;
}

type ReplyPublish = Extract<TraceStep | TraceStepDraft, { kind: 'broker.published' }>;
type Delivery = Extract<TraceStep | TraceStepDraft, { kind: 'broker.delivered' }>;

const isSubscription = isSubscriptionQueue;

/**
 * The doubts about a reply that arrived, from the broker's record (firehose) and the client's: the reply taken was
 * published on a connection that did not take the request from a server's queue (a forged reply, or a server that
 * publishes on a connection of its own), or more than one reply came. Says nothing when the record cannot tell.
 */
function replyDoubt(input: DiagnosisInput, requestTopic: string, evidence: string[]): { code: VerdictCode; hop: Hop; message: string } | undefined {
  const { steps } = input;
  const publishes = steps.filter((step): step is ReplyPublish => step.kind === 'broker.published' && step.detail.leg === 'reply');
  const deliveries = steps.filter((step): step is Delivery => step.kind === 'broker.delivered' && step.detail.leg === 'request');
  const taken = stepOf(steps, 'mqtt.reply.received');
  const ignored = steps.filter((step): step is Extract<TraceStep | TraceStepDraft, { kind: 'mqtt.reply.ignored' }> => step.kind === 'mqtt.reply.ignored');
  const serverReplies = steps.filter((step): step is Extract<TraceStep | TraceStepDraft, { kind: 'reply.published' }> => step.kind === 'reply.published');
  const replies = Math.max(publishes.length, (taken ? 1 : 0) + ignored.length);
  if (replies < 2 && publishes.length === 0) return undefined;

  // Which publish record is the reply the client took: the one with its body (previews are the same bytes at both hops).
  const takenWire = taken?.detail.wire;
  let takenPublish = publishes.find((step) => sameBody(step.detail.wire, takenWire));
  if (!takenPublish && publishes.length === 1 && replies === 1) takenPublish = publishes[0];

  // A watcher's tap consumes a copy too, and serves nobody: not a consumer of the request.
  const consumers = deliveries.filter((step) => step.detail.consumer !== undefined && !isSubscription(step.detail.queue) && !isWatchTapQueue(step.detail.queue));
  const subscribers = deliveries.filter((step) => step.detail.consumer !== undefined && isSubscription(step.detail.queue));
  for (const delivery of deliveries) {
    if (delivery.detail.consumer) evidence.push(`broker: request delivered from queue "${delivery.detail.queue}" to ${partyText(delivery.detail.consumer)}`);
  }
  publishes.forEach((step, index) => {
    const who = step.detail.publisher ? partyText(step.detail.publisher) : 'a connection the firehose did not name';
    const routed = step.detail.routedQueues.length > 0 ? quoted(step.detail.routedQueues) : 'no queue';
    const role = step === takenPublish ? ' (the reply the client took)' : '';
    evidence.push(`broker: reply ${index + 1} of ${publishes.length} published by ${who}, routed to ${routed}${role}${quotedBody(step.detail.wire)}`);
  });
  for (const step of ignored) {
    evidence.push(`client: another reply arrived on "${step.detail.topic}" after the first and was ignored${quotedBody(step.detail.wire)}`);
  }
  // Without the firehose, the embedded server's own record still tells whether the reply taken was its reply.
  const serverWorker = serverReplies[0]?.detail.worker;
  const takenIsServers = serverReplies.some((step) => sameBody(step.detail.wire, takenWire));
  const notServers = serverWorker !== undefined && takenWire !== undefined && !takenWire.body.dropped && !takenIsServers;
  if (notServers) evidence.push(`server: the embedded server's reply (${serverWorker}) is not the one the client took`);

  const named = input.outcome?.worker !== undefined ? `, which names itself worker "${input.outcome.worker}"` : '';
  const second = replies >= 2 ? ` The client took it because it came first; ${replies - 1} more ${replies === 2 ? 'reply' : 'replies'} to the same id came after and ${replies === 2 ? 'was' : 'were'} not used (see the evidence).` : ' The client took it: it was the only reply.';

  // The firehose can tell who published the reply taken and who the request was delivered to: judge it.
  const publisher = takenPublish?.detail.publisher;
  if (publisher && deliveries.some((step) => step.detail.consumer !== undefined)) {
    const fromConsumer = consumers.some((step) => step.detail.consumer?.connection === publisher.connection);
    if (!fromConsumer) {
      const asSubscriber = subscribers.find((step) => step.detail.consumer?.connection === publisher.connection);
      const went =
        consumers.length > 0
          ? `it went to ${consumers.map((step) => `queue "${step.detail.queue}" on connection "${step.detail.consumer?.connection ?? '?'}"`).join(', ')}`
          : 'it reached no server queue';
      const how = asSubscriber
        ? `that connection got the request only as an MQTT subscriber of "${requestTopic}" (its queue "${asSubscriber.detail.queue}"), not from a server's queue`
        : 'the broker never delivered the request to that connection';
      // A server may publish on a second connection of its own: from the consumer's host, as its user, it could be that.
      const host = peerHost(publisher.connection);
      const sibling = asSubscriber
        ? undefined
        : consumers.find((step) => step.detail.consumer && peerHost(step.detail.consumer.connection) === host && step.detail.consumer.user === publisher.user);
      const trust = sibling
        ? `Unless your server publishes its replies on a second connection (this one comes from the consumer's host ${host} as the same user), do not trust its content.`
        : 'Do not trust its content.';
      evidence.push(
        'firehose: a server that publishes its replies on a connection other than the one it consumes on would look the same; the embedded server and most clients use one',
      );
      return {
        code: 'reply-foreign',
        hop: 'reply-exchange',
        message: `The reply taken for "${requestTopic}" did not come from a consumer of the request: it was published by ${partyText(publisher)}${named}, and ${how}; ${went}. ${trust}${second}`,
      };
    }
  }
  if (replies < 2) return undefined;
  const takenFrom = publisher ? ` (published by ${partyText(publisher)}${named})` : named ? ` (${named.slice(2)})` : '';
  const why = notServers ? ` The embedded server's own reply (${serverWorker}) is not the one taken${input.firehose ? '' : ': turn on the firehose to see who published each'}.` : '';
  return {
    code: 'replied-twice',
    hop: 'mqtt-deliver',
    message: `${replies} replies to one request on "${requestTopic}" arrived: the client took the first${takenFrom} and did not use the rest. A request handled twice (redelivered, sent again, or bound to two server queues) or a forged reply does this; the evidence lists each.${why}`,
  };
}

function unroutable(input: DiagnosisInput, facts: BrokerFacts | undefined, exchange: string, requestKey: string, evidence: string[]): Verdict {
  const elsewhere = facts?.elsewhere ?? [];
  if (elsewhere.length > 0) {
    const first = elsewhere[0] as { exchange: string; queue: string };
    return {
      code: 'wrong-exchange',
      hop: 'exchange',
      message: `Queue "${first.queue}" is bound for "${requestKey}" on ${first.exchange}, but the MQTT plugin publishes to ${exchange}, which dropped the request: bind the queue on ${exchange} (serve --exchange ${exchange}) or set mqtt.exchange = ${first.exchange}.`,
      evidence,
    };
  }
  const near = facts?.closestKeys ?? [];
  const hint = near.length > 0 ? `; bound keys, closest first: ${quoted(near)}` : '; nothing else is bound there either';
  return {
    code: 'request-unroutable',
    hop: 'exchange',
    message: `Nothing is bound on ${exchange} for routing key "${requestKey}" (topic "${input.request?.topic ?? requestKey}"), so the broker dropped the request${hint}: fix the topic or start a server on that queue.`,
    evidence,
  };
}

function pushFactEvidence(facts: BrokerFacts, requestKey: string, evidence: string[]): void {
  if (facts.requestQueues.length === 0) evidence.push(`bindings: no queue is bound on ${facts.exchange} for "${requestKey}"`);
  for (const queue of facts.requestQueues) {
    const unacked = queue.unacked !== undefined ? `; ${queue.unacked} unacked (management API, up to ~5 s old)` : '';
    evidence.push(`queue "${queue.name}": ${queue.consumers} consumer(s) and ${queue.ready} ready (${queue.live ? 'live over AMQP' : 'management API, up to ~5 s old'})${unacked}`);
  }
  if (facts.closestKeys.length > 0 && facts.requestQueues.length === 0) evidence.push(`bindings on ${facts.exchange}, closest first: ${quoted(facts.closestKeys)}`);
  for (const other of facts.elsewhere) evidence.push(`bindings: queue "${other.queue}" is bound for "${requestKey}" on ${other.exchange}`);
  if (facts.clientSeen !== undefined) evidence.push(`connections: this broker ${facts.clientSeen ? 'knows' : 'has no connection or subscription queue of'} our MQTT client`);
  if (facts.accessProblem) evidence.push(`permissions: ${facts.accessProblem.message}`);
  for (const line of facts.unavailable) evidence.push(`not asked: ${line}`);
}

/** The last hop the steps show the RPC reached. */
function furthestHop(steps: DiagnosisInput['steps']): Hop {
  let hop: Hop = 'mqtt-publish';
  const order = (candidate: Hop): void => {
    if (HOPS.indexOf(candidate) > HOPS.indexOf(hop)) hop = candidate;
  };
  for (const step of steps) {
    // The broker's PUBACK/PUBREC: the request reached the exchange.
    if (step.kind === 'mqtt.acknowledged') order('exchange');
    if (step.kind === 'broker.published') order(step.detail.leg === 'request' ? 'exchange' : 'reply-exchange');
    if (step.kind === 'broker.delivered') order(step.detail.leg === 'request' ? 'queue' : 'reply-queue');
    if (step.kind === 'worker.received' || step.kind === 'reply.published') order('server');
  }
  return hop;
}
