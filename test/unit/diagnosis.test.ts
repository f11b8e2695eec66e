import { TRACE_PANEL_TIMEOUT_REMEDY } from '../../src/core/session/external-verdicts';
import { describe, expect, it } from 'vitest';
import { closestKeys, diagnose, editDistance, HOPS, VERDICT_CODES, type BrokerFacts, type DiagnosisInput, type VerdictCode } from '../../src/shared/diagnosis';
import type { TraceStepDraft } from '../../src/shared/trace';
import { amqpMessage, mqttMessage } from '../../src/core/trace/message-view';
import { diagnoseWithFacts } from '../../src/core/diagnosis/evidence';

const rpcId = 'rpc-1';
const composed: TraceStepDraft = { rpcId, at: 1, source: 'client', kind: 'composed', detail: { topic: 'orders/new', qos: 1, replyTopic: 'reply/abc', replyStrategy: 'per-request', bytes: 10 } };
const published: TraceStepDraft = { rpcId, at: 2, source: 'client', kind: 'mqtt.published', detail: { topic: 'orders/new', qosAsked: 1, predictedRoutingKey: 'orders.new' } };
const acked: TraceStepDraft = { rpcId, at: 3, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } };
const failed = (at = 1000, code = 'timeout', message = 'No reply within 1000 ms.'): TraceStepDraft => ({ rpcId, at, source: 'client', kind: 'rpc.failed', detail: { code, message } });
const brokerRequest = (routedQueues: string[]): TraceStepDraft => ({
  rpcId, at: 4, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['orders.new'], routedQueues, leg: 'request' },
});
const brokerDelivered: TraceStepDraft = { rpcId, at: 5, source: 'broker', kind: 'broker.delivered', detail: { queue: 'orders.new', routingKeys: ['orders.new'], redelivered: false, leg: 'request' } };
const replyPublished = (at: number): TraceStepDraft => ({
  rpcId,
  at,
  source: 'server',
  kind: 'reply.published',
  detail: { worker: 'worker-1', exchange: 'amq.direct', routingKey: 'reply.abc', replyTopic: 'reply/abc', mandatory: true },
});
const replyConfirmed = (at: number, outcome: 'routed' | 'returned' | 'nacked' | 'lost'): TraceStepDraft => ({ rpcId, at, source: 'server', kind: 'reply.confirmed', detail: { worker: 'worker-1', outcome } });
const brokerReply = (at: number, routedQueues: string[], key = 'reply.abc'): TraceStepDraft => ({
  rpcId, at, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: [key], routedQueues, leg: 'reply' },
});
const sent = [composed, published, acked];

function input(extra: Partial<DiagnosisInput>): DiagnosisInput {
  return {
    rpcId,
    steps: [...sent, failed()],
    firehose: false,
    request: { topic: 'orders/new', routingKey: 'orders.new' },
    reply: { topic: 'reply/abc', routingKey: 'reply.abc' },
    timeoutMs: 1000,
    failure: { code: 'timeout', message: 'No reply within 1000 ms.' },
    ...extra,
  };
}

function facts(extra: Partial<BrokerFacts>): BrokerFacts {
  return { exchange: 'amq.direct', requestQueues: [], closestKeys: [], elsewhere: [], clientSeen: true, unavailable: [], ...extra };
}

describe('the verdict engine', () => {
  it('a request the firehose saw routed nowhere is unroutable, though a queue is bound for its key by the time the facts are asked (watch)', () => {
    const droppedThen: TraceStepDraft = { rpcId, at: 1, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['orders.new'], routedQueues: [], leg: 'request' } };
    const verdict = diagnose(input({ steps: [droppedThen], remedies: 'watch', firehose: true, facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 0, live: true }] }) }));
    expect(verdict.code).toBe('request-unroutable');
  });

  it('names the seven hops from the device to the reply', () => {
    expect(HOPS).toEqual(['mqtt-publish', 'exchange', 'queue', 'server', 'reply-exchange', 'reply-queue', 'mqtt-deliver']);
  });

  /*
   * Every code a user can get, each produced by the engine from one fixture. The table is typed by VerdictCode, so a new
   * code without a fixture does not compile, and a fixture that stops producing its code fails here.
   */
  const producedBy: Record<VerdictCode, DiagnosisInput> = {
    replied: input({ steps: sent, failure: undefined, outcome: { replyTopic: 'reply/abc', arrivedOn: 'reply/abc', topicMismatch: false } }),
    'replied-error': input({ steps: sent, failure: undefined, outcome: { replyTopic: 'reply/abc', arrivedOn: 'reply/abc', topicMismatch: false, error: { code: 'E42', message: 'no stock' } } }),
    'reply-foreign': input({
      firehose: true,
      failure: undefined,
      outcome: { replyTopic: 'reply/abc', arrivedOn: 'reply/abc', topicMismatch: false },
      steps: [
        ...sent,
        { rpcId, at: 5, source: 'broker', kind: 'broker.delivered', detail: { queue: 'orders.new', routingKeys: ['orders.new'], redelivered: false, leg: 'request', consumer: { connection: '127.0.0.1:1 -> 127.0.0.1:5672', channel: 1, user: 'guest' } } },
        { rpcId, at: 9, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['reply.abc'], routedQueues: ['q'], leg: 'reply', publisher: { connection: '10.0.0.9:2 -> 10.0.0.1:5672', channel: 1, user: 'guest' } } },
      ],
    }),
    'replied-twice': input({
      failure: undefined,
      outcome: { replyTopic: 'reply/abc', arrivedOn: 'reply/abc', topicMismatch: false },
      steps: [
        ...sent,
        { rpcId, at: 20, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/abc', replyTopic: 'reply/abc', topicMismatch: false, bytes: 2, wire: mqttMessage({ qos: 1, retain: false }, Buffer.from('{}')) } },
        { rpcId, at: 30, source: 'client', kind: 'mqtt.reply.ignored', detail: { topic: 'reply/abc', bytes: 2, reason: 'second-reply', wire: mqttMessage({ qos: 1, retain: false }, Buffer.from('{}')) } },
      ],
    }),
    'request-unroutable': input({ firehose: true, steps: [...sent, brokerRequest([]), failed()] }),
    'no-consumer': input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), failed()] }),
    'server-slow': input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, failed()] }),
    'request-rejected': input({ steps: [...sent, { rpcId, at: 6, source: 'server', kind: 'request.rejected', detail: { worker: 'worker-1', reason: 'no reply_to field', bytes: 10 } }, failed()] }),
    'reply-unroutable': input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, brokerReply(50, []), failed()] }),
    'reply-refused': input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, replyPublished(40), replyConfirmed(45, 'nacked'), brokerReply(44, ['mqtt-subscription-sensor7qos1']), failed()] }),
    'reply-to-property': input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, { rpcId, at: 50, source: 'broker', kind: 'broker.published', detail: { exchange: '', routingKeys: ['reply/abc'], routedQueues: [], leg: 'reply' } }, failed()] }),
    'reply-on-other-topic': input({ steps: sent, failure: undefined, outcome: { replyTopic: 'reply/v1.2', arrivedOn: 'reply/v1/2', topicMismatch: true } }),
    'late-reply': input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, failed(1000), brokerReply(1500, ['mqtt-subscription-xqos1'])] }),
    'wrong-exchange': input({ facts: facts({ elsewhere: [{ exchange: 'amq.topic', queue: 'orders' }] }) }),
    'not-this-broker': input({ facts: facts({ clientSeen: false }) }),
    'access-refused': input({ steps: [], failure: { code: 'auth', message: 'The broker refused the MQTT credentials.' } }),
    'link-down': input({ steps: sent, failure: { code: 'unreachable', message: 'The MQTT connection closed.' } }),
    undetermined: input({}),
    cancelled: input({ steps: [...sent, failed(40, 'cancelled', 'The call was cancelled.')], failure: { code: 'cancelled', message: 'The call was cancelled.' } }),
    'not-sent': input({ steps: [composed], failure: { code: 'too-large', message: 'The request is 20 MiB, larger than the 16 MiB the broker takes.' } }),
  };

  it('produces every verdict code from its fixture, and each code has one', () => {
    expect(Object.keys(producedBy).sort()).toEqual([...VERDICT_CODES].sort());
  });

  it.each(VERDICT_CODES.map((code) => [code]))('produces %s', (code) => {
    const verdict = diagnose(producedBy[code]);
    expect(verdict.code).toBe(code);
    expect(verdict.message.length).toBeGreaterThan(0);
  });

  // A timeout while the link was down, told by its reason, not its words.
  const linkDownTimeout = input({ steps: sent, failure: { code: 'timeout', message: 'No reply within 1000 ms: the MQTT link is down.', reason: 'link-down' } });

  it('decides from codes and reasons, never our sentences: every fixture keeps its verdict with every message scrambled', () => {
    const scramble = (fixture: DiagnosisInput): DiagnosisInput => ({
      ...fixture,
      ...(fixture.failure ? { failure: { ...fixture.failure, message: 'zzz reworded zzz' } } : {}),
      steps: fixture.steps.map((step) => (step.kind === 'rpc.failed' ? { ...step, detail: { ...step.detail, message: 'zzz reworded zzz' } } : step)),
    });
    for (const code of VERDICT_CODES) expect({ code, got: diagnose(scramble(producedBy[code])).code }).toEqual({ code, got: code });
    expect(diagnose(scramble(linkDownTimeout)).code).toBe('link-down');
    expect(diagnose(linkDownTimeout).code).toBe('link-down');
  });

  it('says not-sent, naming why, for a request refused before it left (bad input or too large)', () => {
    const tooLarge = diagnose(producedBy['not-sent']);
    expect(tooLarge).toMatchObject({ code: 'not-sent', hop: 'mqtt-publish' });
    expect(tooLarge.message).toBe('The request to "orders/new" was not sent: The request is 20 MiB, larger than the 16 MiB the broker takes.');
    const badInput = diagnose(input({ steps: [composed], failure: { code: 'bad-input', message: 'The topic "a/+" has a wildcard.' } }));
    expect(badInput).toMatchObject({ code: 'not-sent', hop: 'mqtt-publish' });
    expect(badInput.message).toContain('The topic "a/+" has a wildcard.');
  });

  it('says replied for a reply on the asked topic', () => {
    const verdict = diagnose(input({ steps: sent, failure: undefined, outcome: { replyTopic: 'reply/abc', arrivedOn: 'reply/abc', topicMismatch: false } }));
    expect(verdict).toMatchObject({ code: 'replied', hop: 'mqtt-deliver' });
  });

  it('says replied-error, not replied, for an error object', () => {
    const verdict = diagnose(input({ steps: sent, failure: undefined, outcome: { replyTopic: 'reply/abc', arrivedOn: 'reply/abc', topicMismatch: false, error: { code: 'E42', message: 'no stock' } } }));
    expect(verdict).toMatchObject({ code: 'replied-error', hop: 'server' });
    expect(verdict.message).toContain('E42');
  });

  it('says reply-on-other-topic for the dot pitfall and suggests a topic without a dot', () => {
    const verdict = diagnose(input({ steps: sent, failure: undefined, outcome: { replyTopic: 'reply/v1.2', arrivedOn: 'reply/v1/2', topicMismatch: true } }));
    expect(verdict).toMatchObject({ code: 'reply-on-other-topic', hop: 'mqtt-deliver' });
    expect(verdict.message).toContain('"reply/v1_2"');
  });

  it('MQTT 5: a PUBACK with an error code (a queue refused it) is request-rejected at the queue, not a lost link', () => {
    const refused: TraceStepDraft = { rpcId, at: 3, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback', reasonCode: 0x97 } };
    const verdict = diagnose(input({ steps: [composed, published, refused, failed(4, 'unroutable', 'refused')], failure: { code: 'unroutable', message: 'refused' } }));
    expect(verdict).toMatchObject({ code: 'request-rejected', hop: 'queue' });
    expect(verdict.message).toContain('(PUBACK 0x97)');
  });

  it('firehose: an empty routed_queues is request-unroutable, naming the closest bound keys', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest([]), failed()], facts: facts({ closestKeys: ['orders.news', 'billing'] }) }));
    expect(verdict).toMatchObject({ code: 'request-unroutable', hop: 'exchange' });
    expect(verdict.message).toContain('"orders.new"');
    expect(verdict.message).toContain('"orders.news", "billing"');
  });

  it('firehose: routed only to MQTT subscription queues is request-unroutable, naming them', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['mqtt-subscription-sensor7qos1']), failed()] }));
    expect(verdict).toMatchObject({ code: 'request-unroutable', hop: 'exchange' });
    expect(verdict.message).toContain('"mqtt-subscription-sensor7qos1"');
  });

  it('firehose: routed but never delivered is no-consumer', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), failed()] }));
    expect(verdict).toMatchObject({ code: 'no-consumer', hop: 'queue' });
    expect(verdict.message).toContain('"orders.new"');
  });

  it("firehose: a watcher's tap among the queues is never named as the request's queue", () => {
    const nobodyConsumed = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['bridgescope.watch-tap.1', 'orders.new']), failed()] }));
    expect(nobodyConsumed).toMatchObject({ code: 'no-consumer', hop: 'queue' });
    expect(nobodyConsumed.message).toContain('"orders.new"');
    expect(nobodyConsumed.message).not.toContain('watch-tap');
    const onlyTheTap = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['bridgescope.watch-tap.1']), failed()] }));
    expect(onlyTheTap.code).toBe('request-unroutable');
    expect(onlyTheTap.message).toMatch(/^Only MQTT subscriptions or a BridgeScope watch's tap \("bridgescope\.watch-tap\.1"\)/);
  });

  it('firehose: delivered and no reply published is server-slow', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, failed()] }));
    expect(verdict).toMatchObject({ code: 'server-slow', hop: 'server' });
  });

  it('a reply the broker nacked is reply-refused, naming the queue it was routed to; published again and routed, it is not', () => {
    const nacked = [...sent, brokerRequest(['orders.new']), brokerDelivered, replyPublished(40), brokerReply(41, ['mqtt-subscription-sensor7qos1']), replyConfirmed(45, 'nacked')];
    const verdict = diagnose(input({ firehose: true, steps: [...nacked, failed()] }));
    expect(verdict).toMatchObject({ code: 'reply-refused', hop: 'reply-queue' });
    expect(verdict.message).toContain('"mqtt-subscription-sensor7qos1"');
    expect(verdict.message).toContain('x-overflow reject-publish');
    expect(verdict.evidence).toContain('server: the broker nacked the reply');
    // The server kept the reply and published it again when the request came back: routed, then lost on the way.
    const again = [...nacked, replyPublished(60), brokerReply(61, ['mqtt-subscription-sensor7qos1']), replyConfirmed(65, 'routed'), failed()];
    expect(diagnose(input({ firehose: true, steps: again })).code).toBe('undetermined');
    // Published again after the client gave up: late, counted from the second publish.
    const late = [...nacked, failed(1000), replyPublished(1200), replyConfirmed(1205, 'routed')];
    expect(diagnose(input({ firehose: true, steps: late })).code).toBe('late-reply');
    // A channel that closed before the confirm is no refusal of the broker's.
    const lost = [...sent, brokerRequest(['orders.new']), brokerDelivered, replyPublished(40), replyConfirmed(45, 'lost'), failed()];
    expect(diagnose(input({ firehose: true, steps: lost })).code).not.toBe('reply-refused');
  });

  it('firehose: a reply routed nowhere is reply-unroutable, with the key it should have used', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, brokerReply(50, [], 'reply/abc'), failed()] }));
    expect(verdict).toMatchObject({ code: 'reply-unroutable', hop: 'reply-exchange' });
    expect(verdict.message).toContain('"reply/abc"');
    expect(verdict.message).toContain('"reply.abc"');
  });

  it("a reply only a watch's tap took reached no device: dropped at the exchange, late or not (the trial: 'subscription passed')", () => {
    const tap = 'bridgescope.watch-tap.6d82768d-0b1c';
    // Late: the client gave up at 1000 ms, the reply came at 1500 and the broker routed it (and confirmed it) to the tap only.
    const late = [...sent, brokerRequest(['orders.new']), brokerDelivered, failed(1000), replyPublished(1490), brokerReply(1500, [tap]), replyConfirmed(1505, 'routed')];
    expect(diagnose(input({ firehose: true, steps: late }))).toMatchObject({ code: 'late-reply', hop: 'server', replyReached: { hop: 'reply-exchange', stopped: true } });
    // In time but to the tap only (the device unsubscribed): reply-unroutable, saying whose queue took it.
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, brokerReply(50, [tap]), failed()] }));
    expect(verdict).toMatchObject({ code: 'reply-unroutable', hop: 'reply-exchange' });
    expect(verdict.message).toContain(`which only a BridgeScope watch's tap queue is bound to ("${tap}": it delivers to no device), so the broker delivered the reply to no device`);
    // A device's subscription beside the tap: it reached the device's queue.
    expect(diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, failed(1000), brokerReply(1500, [tap, 'mqtt-subscription-xqos1'])] })).replyReached).toEqual({ hop: 'reply-queue', stopped: false });
  });

  it('a reply routed nowhere on the right key names every way the subscription can be gone, a disconnected device among them', () => {
    const steps = [...sent, brokerRequest(['orders.new']), brokerDelivered, brokerReply(50, []), failed()];
    const verdict = diagnose(input({ firehose: true, steps }));
    expect(verdict.code).toBe('reply-unroutable');
    expect(verdict.message).toContain('was gone when the reply came (not made yet, unsubscribed, or gone with a clean session\'s connection)');
    expect(verdict.message).toContain('stay connected and subscribed until the reply');
  });

  it('a reply published after the client gave up is late-reply, and says how far the reply went without the client', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, failed(1000), brokerReply(1500, ['mqtt-subscription-xqos1'])] }));
    expect(verdict).toMatchObject({ code: 'late-reply', hop: 'server', replyReached: { hop: 'reply-queue', stopped: false } });
    const late = [...sent, brokerRequest(['orders.new']), brokerDelivered, failed(1000), replyPublished(1200)];
    // Published, the broker's answer not come yet: the exchange, nothing known past it.
    expect(diagnose(input({ steps: late })).replyReached).toEqual({ hop: 'reply-exchange', stopped: false });
    // Returned (the client's subscription gone with it) or routed nowhere: dropped at the exchange.
    expect(diagnose(input({ steps: [...late, replyConfirmed(1205, 'returned')] })).replyReached).toEqual({ hop: 'reply-exchange', stopped: true });
    expect(diagnose(input({ firehose: true, steps: [...late, brokerReply(1201, [])] })).replyReached).toEqual({ hop: 'reply-exchange', stopped: true });
    expect(diagnose(input({ steps: [...late, replyConfirmed(1205, 'nacked')] })).replyReached).toEqual({ hop: 'reply-queue', stopped: true });
    expect(diagnose(input({ steps: [...late, replyConfirmed(1205, 'routed')] })).replyReached).toEqual({ hop: 'reply-queue', stopped: false });
    // One the client received after all went the whole way: the path needs nothing more.
    const received = diagnose(input({ steps: late, lateReply: { at: 1210, topic: 'reply/abc' } }));
    expect(received).toMatchObject({ code: 'late-reply', hop: 'mqtt-deliver' });
    expect(received.replyReached).toBeUndefined();
    // A watch sees a late reply the broker dropped too (the device's subscription gone): late at the server, stopped at
    // the exchange, not "arrived" (the trial's path said every hop passed beside evidence saying "routed to DROPPED").
    const dropped = diagnose(input({ firehose: true, remedies: 'watch', steps: [...late, brokerReply(1201, [])], lateReply: { at: 1201, topic: 'reply/abc' } }));
    expect(dropped).toMatchObject({ code: 'late-reply', hop: 'server', replyReached: { hop: 'reply-exchange', stopped: true } });
  });

  it('the embedded server rejecting the request is request-rejected', () => {
    const rejected: TraceStepDraft = { rpcId, at: 6, source: 'server', kind: 'request.rejected', detail: { worker: 'worker-1', reason: 'no reply_to field', bytes: 10 } };
    const verdict = diagnose(input({ steps: [...sent, rejected, failed()] }));
    expect(verdict).toMatchObject({ code: 'request-rejected', hop: 'server' });
    expect(verdict.message).toContain('no reply_to field');
  });

  it('no firehose: no binding for the key is request-unroutable', () => {
    const verdict = diagnose(input({ facts: facts({ closestKeys: ['orders.neww'] }) }));
    expect(verdict).toMatchObject({ code: 'request-unroutable', hop: 'exchange' });
    expect(verdict.message).toContain('amq.direct');
  });

  it('no firehose: the key bound only on another exchange is wrong-exchange', () => {
    const verdict = diagnose(input({ facts: facts({ elsewhere: [{ exchange: 'amq.topic', queue: 'orders' }] }) }));
    expect(verdict).toMatchObject({ code: 'wrong-exchange', hop: 'exchange' });
    expect(verdict.message).toContain('amq.topic');
  });

  it('no firehose: a bound queue without consumers is no-consumer, saying how many wait', () => {
    const verdict = diagnose(input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 3, live: true }] }) }));
    expect(verdict).toMatchObject({ code: 'no-consumer', hop: 'queue' });
    // A count of one moment (a run's failures, asked again every 2 s, give different ones): said as that.
    expect(verdict.message).toContain('so the request waits there (3 messages were waiting in it when the broker was asked)');
    const one = diagnose(input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 1, live: true }] }) }));
    expect(one.message).toContain('(1 message was waiting in it when the broker was asked)');
  });

  it("no firehose: a queue with no consumer and nothing waiting is not 'the request waits there': a worker took it and stopped consuming (the trial: a server stopping with the request in hand)", () => {
    const held = diagnose(input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 0, unacked: 1, live: true }] }) }));
    expect(held).toMatchObject({ code: 'server-slow', hop: 'server' });
    expect(held.message).toContain('Queue "orders" has no consumer now and no message waiting, but 1 message taken from it is not acked yet: a worker took the request and stopped consuming before replying');
    expect(held.message).toContain('so its reply may still come');
    const gone = diagnose(input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 0, live: true }] }) }));
    expect(gone).toMatchObject({ code: 'server-slow', hop: 'server' });
    expect(gone.message).toContain('a consumer took the request and has gone since');
    expect(gone.message).not.toContain('waits there');
    // The management API's counts alone (up to ~5 s old), unacked or not: the request may have come after them.
    expect(diagnose(input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 0, live: false }] }) })).code).toBe('no-consumer');
    expect(diagnose(input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 0, unacked: 1, live: false }] }) })).code).toBe('no-consumer');
    // Two queues bound for the key, neither consumed: the one where messages wait is where the request waits.
    const two = diagnose(input({ facts: facts({ requestQueues: [{ name: 'audit', consumers: 0, ready: 0, live: true }, { name: 'orders', consumers: 0, ready: 2, live: true }] }) }));
    expect(two).toMatchObject({ code: 'no-consumer' });
    expect(two.message).toContain('Queue "orders"');
  });

  it('no firehose: a consumed queue is server-slow, honestly pointing at the firehose for the reply path', () => {
    const verdict = diagnose(input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 2, ready: 0, live: true }] }) }));
    expect(verdict).toMatchObject({ code: 'server-slow', hop: 'server' });
    expect(verdict.message).toContain('firehose');
  });

  it('with the firehose on but blind to this RPC, a consumed queue is server-slow without advising the firehose', () => {
    const verdict = diagnose(input({ firehose: true, facts: facts({ requestQueues: [{ name: 'orders', consumers: 2, ready: 0, live: true }] }) }));
    expect(verdict).toMatchObject({ code: 'server-slow', hop: 'server' });
    expect(verdict.message).not.toContain('firehose');
    expect(diagnose(input({ firehose: true })).message).not.toContain('firehose');
  });

  it("a body sent as given over MQTT 3.1.1 and taken by a consumer: no reply topic to answer on, whether the firehose saw it or the queue's counts say it", () => {
    const asGiven: TraceStepDraft = { ...composed, detail: { ...composed.detail, asGiven: 'without-reply-topic' } } as TraceStepDraft;
    const traced = diagnose(input({ firehose: true, steps: [asGiven, published, acked, brokerRequest(['orders.new']), brokerDelivered, failed()] }));
    const asked = diagnose(input({ steps: [asGiven, published, acked, failed()], facts: facts({ requestQueues: [{ name: 'orders', consumers: 2, ready: 0, live: true }] }) }));
    for (const verdict of [traced, asked]) {
      expect(verdict).toMatchObject({ code: 'request-rejected', hop: 'server' });
      expect(verdict.message).toMatch(/sent as given, with no id and no reply_to, over MQTT 3\.1\.1.*Send the body as JSON.*or over MQTT 5/);
    }
    // Over MQTT 5 its Response Topic names the reply topic: a consumer that did not answer is just slow.
    const withResponseTopic: TraceStepDraft = { ...composed, detail: { ...composed.detail, asGiven: 'with-response-topic' } } as TraceStepDraft;
    expect(diagnose(input({ firehose: true, steps: [withResponseTopic, published, acked, brokerRequest(['orders.new']), brokerDelivered, failed()] })).code).toBe('server-slow');
    // Nobody consuming is still no-consumer, whatever the body.
    expect(diagnose(input({ steps: [asGiven, published, acked, failed()], facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 1, live: true }] }) })).code).toBe('no-consumer');
  });

  it('a broker that never saw our client is not-this-broker', () => {
    const verdict = diagnose(input({ facts: facts({ clientSeen: false }) }));
    expect(verdict).toMatchObject({ code: 'not-this-broker', hop: 'mqtt-publish' });
  });

  it('refused credentials are access-refused; a lost link is link-down', () => {
    expect(diagnose(input({ steps: [], failure: { code: 'auth', message: 'The broker refused the MQTT credentials.' } }))).toMatchObject({ code: 'access-refused', hop: 'mqtt-publish' });
    expect(diagnose(input({ steps: sent, failure: { code: 'unreachable', message: 'The MQTT connection closed.' } }))).toMatchObject({ code: 'link-down' });
  });

  it('a link lost during the call is link-down, even when the broker facts would say server-slow', () => {
    const verdict = diagnose(input({ linkLost: { at: 40, reason: 'connection lost' }, facts: facts({ requestQueues: [{ name: 'orders', consumers: 2, ready: 0, live: true }] }) }));
    expect(verdict).toMatchObject({ code: 'link-down' });
    expect(verdict.message).toContain('39 ms into the call');
  });

  it('says undetermined, not a guess, when nothing could be asked', () => {
    const verdict = diagnose(input({}));
    expect(verdict).toMatchObject({ code: 'undetermined' });
    expect(verdict.message).toContain('could not be asked');
  });
});

describe('closest bound keys', () => {
  it('orders keys by edit distance', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(closestKeys('rpc_queue', ['billing', 'rpc_queues', 'rpc_queue_xyz', 'rpc-queue2'])).toEqual(['rpc_queues', 'rpc-queue2', 'rpc_queue_xyz', 'billing']);
  });
});

/*
 * Who published the reply taken, and whether it was the only one. The fixtures copy the firehose records measured on
 * RabbitMQ 3.10.8 (docs/RABBITMQ.md): `connection` is "peer -> listener", an MQTT client's publishes and deliveries
 * carry the same connection on different channels, and an MQTT client subscribed to the request topic gets a copy of
 * the request in its own mqtt-subscription queue.
 */
describe('a reply that arrived: who published it, and whether it was the only one', () => {
  const serverConnection = '127.0.0.1:59314 -> 127.0.0.1:5672';
  const evilConnection = '127.0.0.1:54538 -> 127.0.0.1:1883';
  const spoofBody = Buffer.from(JSON.stringify({ id: rpcId, result: 'INJECTED-42', worker: 'evil-worker' }));
  const realBody = Buffer.from(JSON.stringify({ id: rpcId, result: { n: 1 }, worker: 'worker-1' }));
  const requestTo = (queue: string, connection: string, at = 5): TraceStepDraft => ({
    rpcId, at, source: 'broker', kind: 'broker.delivered',
    detail: { queue, routingKeys: ['orders.new'], redelivered: false, leg: 'request', consumer: { connection, channel: 1, user: 'guest' } },
  });
  const replyBy = (connection: string, body: Buffer, at: number): TraceStepDraft => ({
    rpcId, at, source: 'broker', kind: 'broker.published',
    detail: { exchange: 'amq.direct', routingKeys: ['reply.abc'], routedQueues: ['mqtt-subscription-deviceqos1'], leg: 'reply', publisher: { connection, channel: 3, user: 'guest' }, wire: amqpMessage({}, body) },
  });
  const taken = (body: Buffer, at = 20): TraceStepDraft => ({
    rpcId, at, source: 'client', kind: 'mqtt.reply.received', detail: { topic: 'reply/abc', replyTopic: 'reply/abc', topicMismatch: false, bytes: body.byteLength, wire: mqttMessage({ qos: 1, retain: false }, body) },
  });
  const ignored = (body: Buffer, at = 30): TraceStepDraft => ({
    rpcId, at, source: 'client', kind: 'mqtt.reply.ignored', detail: { topic: 'reply/abc', bytes: body.byteLength, reason: 'second-reply', wire: mqttMessage({ qos: 1, retain: false }, body) },
  });
  const replied = (steps: TraceStepDraft[], firehose: boolean, worker?: string): DiagnosisInput =>
    input({ steps: [...sent, ...steps], firehose, failure: undefined, outcome: { replyTopic: 'reply/abc', arrivedOn: 'reply/abc', topicMismatch: false, ...(worker ? { worker } : {}) } });

  it('flags the reply taken as foreign when its publisher got the request only as an MQTT subscriber, naming it, and lists the true reply that came second', () => {
    const verdict = diagnose(
      replied(
        [requestTo('orders.new', serverConnection), requestTo('mqtt-subscription-evilqos1', evilConnection), replyBy(evilConnection, spoofBody, 10), replyBy(serverConnection, realBody, 3010), taken(spoofBody), ignored(realBody, 3020)],
        true,
        'evil-worker',
      ),
    );
    expect(verdict).toMatchObject({ code: 'reply-foreign', hop: 'reply-exchange' });
    expect(verdict.message).toContain(`user "guest" on connection "${evilConnection}"`);
    expect(verdict.message).toContain('worker "evil-worker"');
    expect(verdict.message).toContain('only as an MQTT subscriber of "orders/new" (its queue "mqtt-subscription-evilqos1"), not from a server\'s queue');
    expect(verdict.message).toContain(`queue "orders.new" on connection "${serverConnection}"`);
    expect(verdict.message).toContain('The client took it because it came first; 1 more reply to the same id came after and was not used');
    const evidence = verdict.evidence.join('\n');
    expect(evidence).toContain(`reply 1 of 2 published by user "guest" on connection "${evilConnection}", routed to "mqtt-subscription-deviceqos1" (the reply the client took): {"id":"rpc-1","result":"INJECTED-42"`);
    expect(evidence).toContain(`reply 2 of 2 published by user "guest" on connection "${serverConnection}"`);
    expect(evidence).toContain('another reply arrived on "reply/abc" after the first and was ignored: {"id":"rpc-1","result":{"n":1}');
  });

  it('flags a reply from a connection the request was never delivered to, even when it is the only reply', () => {
    const elsewhere = '10.0.0.9:41000 -> 10.0.0.1:5672';
    const verdict = diagnose(replied([requestTo('orders.new', serverConnection), replyBy(elsewhere, spoofBody, 10), taken(spoofBody)], true, 'evil-worker'));
    expect(verdict.code).toBe('reply-foreign');
    expect(verdict.message).toContain('the broker never delivered the request to that connection');
    expect(verdict.message).toContain('. Do not trust its content. The client took it: it was the only reply.');
  });

  it('from the consumer\'s host as its user, says it may be the server\'s own second connection for publishing', () => {
    const sameHost = '127.0.0.1:61000 -> 127.0.0.1:5672';
    const verdict = diagnose(replied([requestTo('orders.new', serverConnection), replyBy(sameHost, realBody, 10), taken(realBody)], true));
    expect(verdict.code).toBe('reply-foreign');
    expect(verdict.message).toContain('Unless your server publishes its replies on a second connection (this one comes from the consumer\'s host 127.0.0.1 as the same user), do not trust its content.');
  });

  it('says replied, with the publisher in the evidence, when the consumer of the request published the only reply', () => {
    const verdict = diagnose(replied([requestTo('orders.new', serverConnection), replyBy(serverConnection, realBody, 10), taken(realBody)], true, 'worker-1'));
    expect(verdict.code).toBe('replied');
    expect(verdict.evidence.join('\n')).toContain(`reply 1 of 1 published by user "guest" on connection "${serverConnection}"`);
  });

  it('says replied-twice, naming the one taken, when two consumers of the request both replied', () => {
    const other = '127.0.0.1:60000 -> 127.0.0.1:5672';
    const secondBody = Buffer.from(JSON.stringify({ id: rpcId, result: { n: 2 } }));
    const verdict = diagnose(
      replied([requestTo('orders.new', serverConnection), requestTo('orders.audit', other), replyBy(serverConnection, realBody, 10), replyBy(other, secondBody, 12), taken(realBody), ignored(secondBody)], true),
    );
    expect(verdict).toMatchObject({ code: 'replied-twice', hop: 'mqtt-deliver' });
    expect(verdict.message).toContain(`2 replies to one request on "orders/new" arrived: the client took the first (published by user "guest" on connection "${serverConnection}")`);
  });

  it('without the firehose, says replied-twice from the client alone and that the embedded server\'s reply is not the one taken, never foreign', () => {
    const serverReply: TraceStepDraft = {
      rpcId, at: 9, source: 'server', kind: 'reply.published',
      detail: { worker: 'worker-1', exchange: 'amq.direct', routingKey: 'reply.abc', replyTopic: 'reply/abc', mandatory: true, wire: amqpMessage({}, realBody) },
    };
    const verdict = diagnose(replied([serverReply, taken(spoofBody), ignored(realBody)], false, 'evil-worker'));
    expect(verdict.code).toBe('replied-twice');
    expect(verdict.message).toContain('the client took the first (which names itself worker "evil-worker")');
    expect(verdict.message).toContain("The embedded server's own reply (worker-1) is not the one taken: turn on the firehose to see who published each.");
  });

  it('says nothing of the publisher when the firehose recorded no delivery of the request (it cannot tell)', () => {
    const verdict = diagnose(replied([replyBy(evilConnection, spoofBody, 10), taken(spoofBody)], true));
    expect(verdict.code).toBe('replied');
    const offVerdict = diagnose(replied([taken(spoofBody)], false));
    expect(offVerdict.code).toBe('replied');
  });
});

describe('remedies where the user is (issue 26)', () => {
  const workerReceived: TraceStepDraft = { rpcId, at: 6, source: 'server', kind: 'worker.received', detail: { worker: 'bridgescope-1', consumerTag: 'c1', queue: 'orders.new', routingKey: 'orders.new', redelivered: false } };
  const noConsumerFirehose = input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), failed()] });
  const noConsumerFacts = input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 0, ready: 3, live: true }] }) });
  const embeddedSlow = input({ steps: [...sent, workerReceived, failed()] });
  const otherSlow = input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, failed()] });
  const consumedNoFirehose = input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 2, ready: 0, live: true }] }) });

  it('in the app: no consumer points at the Server panel, not at bridgescope serve', () => {
    for (const asked of [noConsumerFirehose, noConsumerFacts]) {
      const verdict = diagnose({ ...asked, remedies: 'app' });
      expect(verdict.code).toBe('no-consumer');
      expect(verdict.message).toContain('Server panel');
      expect(verdict.message).not.toContain('bridgescope serve');
    }
  });

  it('in the app: a slow embedded server points at the Server panel\'s log; another server at its own log', () => {
    const embedded = diagnose({ ...embeddedSlow, remedies: 'app' });
    expect(embedded.code).toBe('server-slow');
    expect(embedded.message).toContain("the Server panel's log");
    const other = diagnose({ ...otherSlow, remedies: 'app' });
    expect(other.code).toBe('server-slow');
    expect(other.message).toContain('its own log');
    expect(other.message).not.toContain('Server panel');
  });

  it('in the app: the firehose is the Trace panel\'s switch, not call --trace', () => {
    const verdict = diagnose({ ...consumedNoFirehose, remedies: 'app' });
    expect(verdict.message).toContain('Trace panel');
    expect(verdict.message).not.toContain('--trace');
  });

  it('in watch (other clients\' traffic): the firehose is watch\'s mode, and a missing consumer is their worker, not a server of ours', () => {
    const slow = diagnose({ ...consumedNoFirehose, remedies: 'watch' });
    expect(slow.message).toContain('--mode firehose');
    expect(slow.message).not.toContain('call --trace');
    const noConsumer = diagnose({ ...noConsumerFacts, remedies: 'watch' });
    expect(noConsumer.code).toBe('no-consumer');
    expect(noConsumer.message).toContain('start the worker that consumes it');
    expect(noConsumer.message).not.toContain('bridgescope serve');
    // The timeout is the watch's own: its evidence and a late reply's sentence say so, not "the client".
    expect(slow.evidence).toContainEqual(expect.stringMatching(/^watch: timeout: /));
    const late = diagnose(input({ remedies: 'watch', lateReply: { topic: 'reply/abc', at: 2000 } }));
    expect(late.code).toBe('late-reply');
    expect(late.message).toMatch(/answered after the watch's timeout of 1000 ms: slower than that \(raise the watch's timeout, --timeout or Timeout in the Watch panel, if that is normal for it\)/);
    // The Trace panel and `bridgescope trace` judge other teams' RPCs with waits of their own: the sentence names theirs.
    const traced = diagnose(input({ remedies: 'watch', lateReply: { topic: 'reply/abc', at: 2000 }, timeoutRemedy: TRACE_PANEL_TIMEOUT_REMEDY }));
    expect(traced.message).toContain("answered after the Trace panel's wait of 1000 ms: slower than that (the Trace panel waits 5 s for a reply to another's request; `bridgescope trace --timeout MS` waits as long as you ask)");
    expect(traced.message).not.toContain('Watch panel');
    // A watch knows how long the reply took and who published it: the sentence says both.
    const timed = diagnose(input({ remedies: 'watch', lateReply: { topic: 'reply/abc', at: 2000, afterMs: 7020.4, worker: 'billing-worker-2' } }));
    expect(timed.message).toMatch(/ \(billing-worker-2\) answered after 7020 ms, past the watch's timeout of 1000 ms: slower than that \(.*\); a device that waits no longer than that has given up by then\.$/);
    // Where the late reply went, when the firehose saw it: the device's subscription (it may have got it), or nowhere (it did not).
    const delivered = diagnose(input({ remedies: 'watch', lateReply: { topic: 'reply/abc', at: 2000, afterMs: 8000, toSubscription: 'dev-7' } }));
    expect(delivered.message).toMatch(/; the broker routed the reply to the subscription of MQTT client "dev-7", which gets it if it is still there \(a device that waits no longer than that had given up\)\.$/);
    const dropped = diagnose(input({ remedies: 'watch', lateReply: { topic: 'reply/abc', at: 2000, afterMs: 8000, dropped: true } }));
    expect(dropped.message).toMatch(/; the broker routed the reply to no device's queue, so the device had unsubscribed or disconnected by then and never got it\.$/);
  });

  it('on the command line the remedies stay commands', () => {
    expect(diagnose(noConsumerFirehose).message).toContain('bridgescope serve --queue');
    expect(diagnose(consumedNoFirehose).message).toContain('call --trace');
  });
});

describe('facts the management API could not give (watch and call alike)', () => {
  const input = (): DiagnosisInput => ({
    rpcId: 'r1',
    steps: [],
    firehose: false,
    request: { topic: 'rpc/commands', routingKey: 'rpc.commands' },
    reply: { topic: 'reply/d1', routingKey: 'reply.d1' },
    timeoutMs: 800,
    failure: { code: 'timeout', message: 'no reply within 800 ms' },
  });
  const blind = (line: string): BrokerFacts => ({ exchange: 'amq.topic', requestQueues: [], closestKeys: [], elsewhere: [], unavailable: [line] });

  it.each(['the bindings on amq.topic: Cannot reach the management API (ECONNREFUSED)', 'the type of amq.topic: the management API did not answer', "the broker's facts: the broker did not answer within 6000 ms"])(
    'never reads "%s" as nothing bound: the verdict says what could not be asked',
    (line) => {
      const verdict = diagnoseWithFacts(input(), blind(line));
      expect(verdict.code).not.toBe('request-unroutable');
      expect(verdict.message).not.toMatch(/Nothing is bound/);
      expect(verdict.evidence).toContain(`not asked: ${line}`);
    },
  );

  it("a bound queue whose counts nobody gave is not read as having no consumer, and the verdict does not ask for URLs that were given", () => {
    const line = 'the consumers of queue "rpc_queue": the management API did not list the queues, and AMQP could not be asked';
    const verdict = diagnoseWithFacts(input(), blind(line));
    expect(verdict.code).toBe('undetermined');
    expect(verdict.message).toBe(`No reply to "rpc/commands" within 800 ms, and the broker could not tell why; not asked: ${line}. Turn on the firehose (call --trace) to see the request's path.`);
    expect(verdict.message).not.toContain('give management and AMQP URLs');
    expect(verdict.evidence).toContain(`not asked: ${line}`);
  });

  it('a known idle queue still decides no-consumer when another bound queue\'s counts are missing; lines that decide nothing stay out of the sentence', () => {
    const facts: BrokerFacts = {
      exchange: 'amq.topic',
      requestQueues: [{ name: 'rpc_a', consumers: 0, ready: 3, live: true }],
      closestKeys: [],
      elsewhere: [],
      unavailable: ['the consumers of queue "rpc_b": the management API does not list it', 'live queue counts over AMQP (could not connect); the management API counts are up to ~5 s old'],
    };
    expect(diagnoseWithFacts(input(), facts).code).toBe('no-consumer');
    const unknown = diagnoseWithFacts(input(), { ...facts, requestQueues: [{ name: 'rpc_a', consumers: 1, ready: 0, live: true }] });
    expect(unknown.code).toBe('undetermined');
    expect(unknown.message).toContain('not asked: the consumers of queue "rpc_b"');
    expect(unknown.message).not.toContain('live queue counts');
  });

  it('facts that were all asked still decide: an empty exchange is request-unroutable', () => {
    expect(diagnoseWithFacts(input(), { exchange: 'amq.topic', requestQueues: [], closestKeys: [], elsewhere: [], unavailable: [] }).code).toBe('request-unroutable');
  });
});
