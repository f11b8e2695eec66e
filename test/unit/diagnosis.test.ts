import { describe, expect, it } from 'vitest';
import { closestKeys, diagnose, editDistance, HOPS, VERDICT_CODES, type BrokerFacts, type DiagnosisInput } from '../../src/shared/diagnosis';
import type { TraceStepDraft } from '../../src/shared/trace';

const rpcId = 'rpc-1';
const composed: TraceStepDraft = { rpcId, at: 1, source: 'client', kind: 'composed', detail: { topic: 'orders/new', qos: 1, replyTopic: 'reply/abc', replyStrategy: 'per-request', bytes: 10 } };
const published: TraceStepDraft = { rpcId, at: 2, source: 'client', kind: 'mqtt.published', detail: { topic: 'orders/new', qosAsked: 1, predictedRoutingKey: 'orders.new' } };
const acked: TraceStepDraft = { rpcId, at: 3, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } };
const failed = (at = 1000, code = 'timeout', message = 'No reply within 1000 ms.'): TraceStepDraft => ({ rpcId, at, source: 'client', kind: 'rpc.failed', detail: { code, message } });
const brokerRequest = (routedQueues: string[]): TraceStepDraft => ({
  rpcId, at: 4, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['orders.new'], routedQueues, leg: 'request' },
});
const brokerDelivered: TraceStepDraft = { rpcId, at: 5, source: 'broker', kind: 'broker.delivered', detail: { queue: 'orders.new', routingKeys: ['orders.new'], redelivered: false, leg: 'request' } };
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
  it('names the codes and the seven hops of the issue', () => {
    expect(VERDICT_CODES).toEqual(expect.arrayContaining(['replied', 'replied-error', 'request-unroutable', 'no-consumer', 'server-slow', 'request-rejected', 'reply-unroutable', 'reply-on-other-topic', 'late-reply', 'wrong-exchange', 'not-this-broker', 'access-refused', 'link-down']));
    expect(HOPS).toEqual(['mqtt-publish', 'exchange', 'queue', 'server', 'reply-exchange', 'reply-queue', 'mqtt-deliver']);
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

  it('firehose: delivered and no reply published is server-slow', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, failed()] }));
    expect(verdict).toMatchObject({ code: 'server-slow', hop: 'server' });
  });

  it('firehose: a reply routed nowhere is reply-unroutable, with the key it should have used', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, brokerReply(50, [], 'reply/abc'), failed()] }));
    expect(verdict).toMatchObject({ code: 'reply-unroutable', hop: 'reply-exchange' });
    expect(verdict.message).toContain('"reply/abc"');
    expect(verdict.message).toContain('"reply.abc"');
  });

  it('a reply published after the client gave up is late-reply', () => {
    const verdict = diagnose(input({ firehose: true, steps: [...sent, brokerRequest(['orders.new']), brokerDelivered, failed(1000), brokerReply(1500, ['mqtt-subscription-xqos1'])] }));
    expect(verdict).toMatchObject({ code: 'late-reply', hop: 'server' });
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
    expect(verdict.message).toContain('3 message(s)');
  });

  it('no firehose: a consumed queue is server-slow, honestly pointing at the firehose for the reply path', () => {
    const verdict = diagnose(input({ facts: facts({ requestQueues: [{ name: 'orders', consumers: 2, ready: 0, live: true }] }) }));
    expect(verdict).toMatchObject({ code: 'server-slow', hop: 'server' });
    expect(verdict.message).toContain('firehose');
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
