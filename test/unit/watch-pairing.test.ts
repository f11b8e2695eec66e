import { describe, expect, it } from 'vitest';
import { asRequest, RpcPairing, type ObservedMessage, type WatchEvent } from '../../src/core/watch/pairing';
import { observedFromFirehose } from '../../src/core/watch/firehose-source';

const msg = (at: number, routingKey: string, body: unknown, extra: Partial<ObservedMessage> = {}): ObservedMessage => ({
  at,
  exchange: 'amq.topic',
  routingKey,
  body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
  ...extra,
});
const of = <T extends WatchEvent['type']>(events: WatchEvent[], type: T) => events.filter((event) => event.type === type) as Array<Extract<WatchEvent, { type: T }>>;

describe('passive RPC pairing', () => {
  it('recognises the three request patterns and ignores other messages', () => {
    expect(asRequest(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/dev-1' }))).toEqual({ pattern: 'seed', topic: 'rpc_queue', id: 'a', replyKey: 'reply.dev-1', replyTopic: 'reply/dev-1' });
    expect(asRequest(msg(0, 'rpc_queue', 'raw', { headers: { 'x-reply-to-topic': 'reply.d5' }, correlationId: 'c5' }))).toEqual({ pattern: 'mqtt5', topic: 'rpc_queue', id: 'c5', replyKey: 'reply.d5', replyTopic: 'reply/d5' });
    expect(asRequest(msg(0, 'rpc_queue', 'raw', { headers: { 'x-reply-to-topic': 'reply.d5', 'x-correlation-id': Buffer.from('bin') } }))?.id).toBe('bin');
    expect(asRequest(msg(0, 'rpc_queue', 'raw', { replyTo: 'amq.gen-1', correlationId: 'c1' }))).toEqual({ pattern: 'amqp', topic: 'rpc_queue', id: 'c1', replyKey: 'amq.gen-1' });
    expect(asRequest(msg(0, 'rpc_queue', { id: 'a' }))).toBeUndefined();
    expect(asRequest(msg(0, 'rpc_queue', '{not json'))).toBeUndefined();
    expect(asRequest(msg(0, 'rpc_queue', [1, 2]))).toBeUndefined();
    // A reply address no routing key can carry is not followed (a bind for it would close the tap's channel).
    expect(asRequest(msg(0, 'rpc_queue', { id: 'x', reply_to: 'r/'.repeat(200) }))).toBeUndefined();
    expect(asRequest(msg(0, 'rpc_queue', 'raw', { headers: { 'x-reply-to-topic': { nested: true } }, correlationId: 'c' }))).toBeUndefined();
  });

  it('says and counts a message on a named request key that is no request (not JSON, no id, no reply topic); under "#" it stays quiet', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000 });
    const notJson = pairing.observe(msg(0, 'rpc_queue', 'not json at all'), true, true);
    expect(notJson).toEqual([{ type: 'not-request', topic: 'rpc_queue', reason: expect.stringMatching(/^its body is not a JSON object \(15 bytes\)/) }]);
    expect(of(pairing.observe(msg(1, 'rpc_queue', { id: 'x' }), true, true), 'not-request')[0]?.reason).toMatch(/no "reply_to"/);
    expect(of(pairing.observe(msg(2, 'rpc_queue', { reply_to: 'r/x' }), true, true), 'not-request')[0]?.reason).toMatch(/no "id"/);
    // Every key watched under "#" (a reply, anything else): not the watcher's to call malformed.
    expect(pairing.observe(msg(3, 'other.key', 'hello'), true, false)).toEqual([]);
    expect(pairing.stats(10)[0]).toMatchObject({ topic: 'rpc_queue', requests: 0, notRequests: 3 });
  });

  it('counts the replies a 3.13+ broker delivers at QoS 0 (published non-persistent) and names each worker once per topic; not on older brokers', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000 });
    pairing.brokerVersion('4.3.6', true);
    pairing.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/dev' }));
    const first = pairing.observe(msg(5, 'reply.dev', { id: 'a', worker: 'their-worker' }, { persistent: false }));
    expect(of(first, 'qos0-replies')).toEqual([{ type: 'qos0-replies', topic: 'rpc_queue', replyKey: 'reply.dev', worker: 'their-worker', brokerVersion: '4.3.6' }]);
    pairing.observe(msg(10, 'rpc_queue', { id: 'b', reply_to: 'reply/dev' }));
    expect(of(pairing.observe(msg(15, 'reply.dev', { id: 'b', worker: 'their-worker' }, { persistent: false })), 'qos0-replies')).toEqual([]);
    // Another worker on the same topic is named too.
    pairing.observe(msg(16, 'rpc_queue', { id: 'b2', reply_to: 'reply/dev' }));
    expect(of(pairing.observe(msg(17, 'reply.dev', { id: 'b2', worker: 'js-worker' }, { persistent: false })), 'qos0-replies')).toEqual([expect.objectContaining({ worker: 'js-worker' })]);
    pairing.observe(msg(20, 'rpc_queue', { id: 'c', reply_to: 'reply/dev' }));
    pairing.observe(msg(25, 'reply.dev', { id: 'c' }, { persistent: true }));
    // An observer that did not read the properties says nothing of them.
    pairing.observe(msg(30, 'rpc_queue', { id: 'd', reply_to: 'reply/dev' }));
    pairing.observe(msg(35, 'reply.dev', { id: 'd' }));
    expect(pairing.stats(100)[0]).toMatchObject({ replies: 5, qos0Replies: 3 });
    // Seen by the firehose routed to no QoS 1 subscription (an AMQP consumer, a QoS 0 one): nothing below its QoS.
    pairing.observe(msg(40, 'rpc_queue', { id: 'e', reply_to: 'reply/dev' }));
    pairing.observe(msg(45, 'reply.dev', { id: 'e' }, { persistent: false, routedQueues: ['mqtt-subscription-devqos0', 'audit'] }));
    pairing.observe(msg(50, 'rpc_queue', { id: 'f', reply_to: 'reply/dev' }));
    pairing.observe(msg(55, 'reply.dev', { id: 'f' }, { persistent: false, routedQueues: ['mqtt-subscription-devqos1'] }));
    expect(pairing.stats(100)[0]).toMatchObject({ replies: 7, qos0Replies: 4 });

    const old = new RpcPairing({ timeoutMs: 1000 });
    old.brokerVersion('3.10.8', false);
    old.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/dev' }));
    expect(of(old.observe(msg(5, 'reply.dev', { id: 'a' }, { persistent: false })), 'qos0-replies')).toEqual([]);
    expect(old.stats(100)[0]).toMatchObject({ replies: 1, qos0Replies: 0 });
  });

  it('reads whether a firehose publish was persistent from its properties', () => {
    const event = (properties: Record<string, unknown>) => ({ type: 'publish' as const, name: 'amq.direct', routingKeys: ['reply.dev'], routedQueues: ['q'], redelivered: false, properties, body: Buffer.from('{}') });
    expect(observedFromFirehose(event({ delivery_mode: 2 }), 'amq.direct', 0)?.persistent).toBe(true);
    expect(observedFromFirehose(event({}), 'amq.direct', 0)?.persistent).toBe(false);
    // An MQTT client's QoS 1 publish before 4.0 says so in a header.
    expect(observedFromFirehose(event({ headers: { 'x-mqtt-publish-qos': 1 } }), 'amq.direct', 0)?.persistent).toBe(true);
    // RabbitMQ's copy of the properties unreadable: nothing claimed.
    expect(observedFromFirehose({ ...event({}), properties: Buffer.from([0, 0, 0, 9, 1]) }, 'amq.direct', 0)?.persistent).toBeUndefined();
  });

  it('a request whose id comes again before its reply is counted retried, so the figures add up', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000 });
    // A device that reuses one id and reply topic: its second request came while the first still waited.
    pairing.observe(msg(0, 'rpc_queue', { id: 'same', reply_to: 'reply/dev' }));
    pairing.observe(msg(10, 'rpc_queue', { id: 'same', reply_to: 'reply/dev' }));
    expect(of(pairing.observe(msg(20, 'reply.dev', { id: 'same', result: 1 })), 'pair')[0]).toMatchObject({ id: 'same', rttMs: 10 });
    pairing.observe(msg(30, 'rpc_queue', { id: 'same', reply_to: 'reply/dev' }));
    pairing.observe(msg(35, 'reply.dev', { id: 'same', result: 2 }));
    const [stats] = pairing.stats(100);
    expect(stats).toMatchObject({ requests: 3, replies: 2, unanswered: 0, unseen: 0, waiting: 0, retried: 1, duplicates: 0 });
    expect((stats?.replies ?? 0) + (stats?.unanswered ?? 0) + (stats?.unseen ?? 0) + (stats?.waiting ?? 0) + (stats?.retried ?? 0)).toBe(stats?.requests);
  });

  it('two devices that both count from id 1, each on its own reply topic, are two requests: neither is a retry of the other', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000 });
    pairing.observe(msg(0, 'rpc_queue', { id: 1, reply_to: 'reply/dev-a' }));
    pairing.observe(msg(2, 'rpc_queue', { id: 1, reply_to: 'reply/dev-b' }));
    expect(of(pairing.observe(msg(30, 'reply.dev-b', { id: 1, result: 'b' })), 'pair')).toEqual([expect.objectContaining({ id: '1', replyKey: 'reply.dev-b', rttMs: 28 })]);
    expect(of(pairing.observe(msg(40, 'reply.dev-a', { id: 1, result: 'a' })), 'pair')).toEqual([expect.objectContaining({ id: '1', replyKey: 'reply.dev-a', rttMs: 40 })]);
    expect(pairing.stats(100)[0]).toMatchObject({ requests: 2, replies: 2, retried: 0, duplicates: 0 });
    // Both again; a reply with id 1 on a key neither waits on answers one of them on a wrong key (the oldest), not both.
    pairing.observe(msg(200, 'rpc_queue', { id: 1, reply_to: 'reply/dev-a' }));
    pairing.observe(msg(201, 'rpc_queue', { id: 1, reply_to: 'reply/dev-b' }));
    pairing.observe(msg(210, 'reply.elsewhere', { id: 1 }));
    pairing.observe(msg(220, 'reply.dev-b', { id: 1 }));
    const unanswered = of(pairing.tick(1300), 'unanswered');
    expect(unanswered).toEqual([expect.objectContaining({ id: '1', replyKey: 'reply.dev-a', wrongKey: expect.objectContaining({ routingKey: 'reply.elsewhere' }) })]);
  });

  it('a request on a key not watched is no wrong-key reply; a second timeout of the same id and reply key lets the first go', () => {
    const pairing = new RpcPairing({ timeoutMs: 100, lateWindowMs: 1000 });
    pairing.observe(msg(0, 'rpc', { id: 1, reply_to: 'reply/a' }));
    // Another topic's request with the same id, seen by a firehose that follows only "rpc": not A's reply on a wrong key.
    pairing.observe(msg(5, 'other_rpc', { id: 1, reply_to: 'reply/x' }), false);
    expect(of(pairing.tick(100), 'unanswered')).toEqual([expect.not.objectContaining({ wrongKey: expect.anything() })]);
    // The device tries again with the same id; that one times out too, inside the first one's late window.
    pairing.observe(msg(200, 'rpc', { id: 1, reply_to: 'reply/a' }));
    expect(of(pairing.tick(300), 'unanswered')).toHaveLength(1);
    // Both late windows over: nothing is waited on, and the reply key is let go.
    pairing.tick(2000);
    expect(pairing.watchedKeys()).toEqual([]);
  });

  it('pairs a seed request with its reply (a body without id included), counts workers and keeps percentiles', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000 });
    const opened = pairing.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/x' }));
    expect(opened).toEqual([{ type: 'watch-key', key: 'reply.x' }]);
    const closed = pairing.observe(msg(40, 'reply.x', { id: 'a', result: 1, worker: 'w1' }));
    expect(of(closed, 'pair')).toEqual([expect.objectContaining({ pattern: 'seed', id: 'a', topic: 'rpc_queue', rttMs: 40, worker: 'w1' })]);
    expect(of(closed, 'unwatch-key')).toEqual([{ type: 'unwatch-key', key: 'reply.x' }]);
    pairing.observe(msg(100, 'rpc_queue', { id: 'b', reply_to: 'reply/y' }));
    expect(of(pairing.observe(msg(110, 'reply.y', 'done', { connection: 'conn-9' })), 'pair')[0]).toMatchObject({ id: 'b', rttMs: 10, worker: 'conn-9' });
    const [stats] = pairing.stats(2000);
    expect(stats).toMatchObject({ topic: 'rpc_queue', requests: 2, replies: 2, unanswered: 0, p50: 10, p99: 40, workers: { w1: 1, 'conn-9': 1 } });
  });

  it('pairs a request and reply of any size (a 2 MB echo), and a request whose JSON breaks after its id and reply_to, as the trace joins them', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000 });
    const big = 'x'.repeat(2_000_000);
    expect(pairing.observe(msg(0, 'rpc_queue', { id: 'big', reply_to: 'reply/big', params: { blob: big } }))).toEqual([{ type: 'watch-key', key: 'reply.big' }]);
    const closed = pairing.observe(msg(30, 'reply.big', { id: 'big', result: { blob: big }, worker: 'w2' }));
    expect(of(closed, 'pair')).toEqual([expect.objectContaining({ id: 'big', rttMs: 30, worker: 'w2' })]);
    // Broken after the fields it names: still the request it says it is (a worker that cannot parse it will not answer).
    expect(asRequest(msg(0, 'rpc_queue', '{"id": "U-malformed", "reply_to": "reply/dev-mal", broken'))).toEqual({ pattern: 'seed', topic: 'rpc_queue', id: 'U-malformed', replyKey: 'reply.dev-mal', replyTopic: 'reply/dev-mal' });
    // A number id reads as its text, as before.
    expect(asRequest(msg(0, 'rpc_queue', { id: 7, reply_to: 'reply/n' }))?.id).toBe('7');
  });

  it('tells a second reply to an answered request: counted, with who sent each, never paired again', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000, keyLingerMs: 30_000 });
    pairing.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/x' }));
    expect(of(pairing.observe(msg(40, 'reply.x', { id: 'a', worker: 'w1' })), 'pair')).toHaveLength(1);
    // Two servers took the request (or one was redelivered it): the device, still subscribed, gets both.
    const second = pairing.observe(msg(55, 'reply.x', { id: 'a', worker: 'w2' }));
    expect(second).toEqual([expect.objectContaining({ type: 'duplicate', id: 'a', topic: 'rpc_queue', replyKey: 'reply.x', rttMs: 55, worker: 'w2', firstWorker: 'w1' })]);
    expect(of(pairing.observe(msg(70, 'reply.x', { id: 'a' })), 'duplicate')).toHaveLength(1);
    // A reply naming no id on that key cannot be told from another device's: not counted.
    expect(pairing.observe(msg(80, 'reply.x', 'no id'))).toEqual([]);
    expect(pairing.stats(100)[0]).toMatchObject({ requests: 1, replies: 1, duplicates: 2, workers: { w1: 1 } });
  });

  it('says when the broker dropped a second reply, and takes a new request reusing an answered id and reply key as new', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000, keyLingerMs: 30_000 });
    pairing.observe(msg(0, 'rpc_a', { id: '1', reply_to: 'reply/dev' }));
    expect(of(pairing.observe(msg(10, 'reply.dev', { id: '1', worker: 'wa' }, { routedQueues: ['mqtt-subscription-devqos1'] })), 'pair')).toHaveLength(1);
    // The device left: the firehose sees the second reply routed to no queue.
    expect(of(pairing.observe(msg(20, 'reply.dev', { id: '1', worker: 'wb' }, { routedQueues: [] })), 'duplicate')[0]).toMatchObject({ id: '1', worker: 'wb', firstWorker: 'wa', dropped: true });
    // The same device's next request on another topic reuses id 1: its reply is its answer, not an extra one.
    pairing.observe(msg(30, 'rpc_b', { id: '1', reply_to: 'reply/dev' }));
    expect(of(pairing.observe(msg(45, 'reply.dev', { id: '1', worker: 'wb' })), 'pair')[0]).toMatchObject({ topic: 'rpc_b', rttMs: 15 });
    expect(pairing.stats(100).map((line) => [line.topic, line.replies, line.duplicates])).toEqual([
      ['rpc_a', 1, 1],
      ['rpc_b', 1, 0],
    ]);
  });

  it('tells a second reply by correlation id on a shared key, and one after a late reply', () => {
    const pairing = new RpcPairing({ timeoutMs: 100, lateWindowMs: 500, keyLingerMs: 1000 });
    pairing.observe(msg(0, 'rpc_queue', 'one', { headers: { 'x-reply-to-topic': 'r.shared' }, correlationId: 'c1' }));
    pairing.observe(msg(1, 'rpc_queue', 'two', { headers: { 'x-reply-to-topic': 'r.shared' }, correlationId: 'c2' }));
    expect(of(pairing.observe(msg(5, 'r.shared', 'ok', { correlationId: 'c1' })), 'pair')).toHaveLength(1);
    // c2 still waits on the key: c1's second reply is no answer to it.
    expect(of(pairing.observe(msg(6, 'r.shared', 'again', { correlationId: 'c1' })), 'duplicate')[0]).toMatchObject({ pattern: 'mqtt5', id: 'c1', rttMs: 6 });
    expect(of(pairing.tick(101), 'unanswered').map((event) => event.id)).toEqual(['c2']);
    expect(of(pairing.observe(msg(300, 'r.shared', 'late', { correlationId: 'c2', routedQueues: ['mqtt-subscription-dqos1'] })), 'late')).toEqual([expect.objectContaining({ id: 'c2', replyRoutedQueues: ['mqtt-subscription-dqos1'] })]);
    expect(of(pairing.observe(msg(310, 'r.shared', 'late again', { correlationId: 'c2' })), 'duplicate')[0]).toMatchObject({ id: 'c2', rttMs: 309 });
    expect(pairing.stats(400)[0]).toMatchObject({ replies: 1, late: 1, duplicates: 2 });
  });

  it('pairs MQTT 5 and AMQP replies by correlation id among several on one key', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000 });
    pairing.observe(msg(0, 'rpc_queue', 'one', { headers: { 'x-reply-to-topic': 'r.shared' }, correlationId: 'c1' }));
    pairing.observe(msg(1, 'rpc_queue', 'two', { headers: { 'x-reply-to-topic': 'r.shared' }, correlationId: 'c2' }));
    expect(of(pairing.observe(msg(5, 'r.shared', 'ok', { correlationId: 'c2' })), 'pair')[0]).toMatchObject({ pattern: 'mqtt5', id: 'c2', rttMs: 4 });
    pairing.observe(msg(10, 'jobs', 'x', { replyTo: 'amq.gen-A', correlationId: 'k' }));
    expect(of(pairing.observe(msg(30, 'amq.gen-A', 'y', { correlationId: 'k' })), 'pair')[0]).toMatchObject({ pattern: 'amqp', id: 'k', rttMs: 20 });
    expect(pairing.watchedKeys()).toEqual(['r.shared']);
  });

  it('says unanswered at the timeout, names a reply that came on the wrong key, and recognises a late reply', () => {
    const pairing = new RpcPairing({ timeoutMs: 100, lateWindowMs: 500 });
    pairing.observe(msg(0, 'rpc_queue', { id: 'late', reply_to: 'reply/l' }));
    pairing.observe(msg(0, 'rpc_queue', { id: 'wrong', reply_to: 'reply/w' }));
    expect(pairing.observe(msg(10, 'oops.key', { id: 'wrong', worker: 'py' }))).toEqual([]);
    expect(pairing.tick(99)).toEqual([]);
    const expired = of(pairing.tick(100), 'unanswered');
    expect(expired.map((event) => event.id)).toEqual(['late', 'wrong']);
    expect(expired[1]?.wrongKey).toEqual({ routingKey: 'oops.key', at: 10, worker: 'py' });
    // The reply key stays watched through the late window, so a late reply is seen.
    const late = pairing.observe(msg(300, 'reply.l', { id: 'late' }));
    expect(of(late, 'late')[0]).toMatchObject({ id: 'late', rttMs: 300 });
    expect(of(pairing.tick(601), 'unwatch-key')).toEqual([{ type: 'unwatch-key', key: 'reply.w' }]);
    expect(pairing.watchedKeys()).toEqual([]);
    expect(pairing.stats(1000)[0]).toMatchObject({ requests: 2, replies: 0, unanswered: 2, late: 1 });
  });

  it('is bounded: past the pending cap the oldest request is dropped and said', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000, maxPending: 2, maxTopics: 1 });
    pairing.observe(msg(0, 'rpc_queue', { id: '1', reply_to: 'r/1' }));
    pairing.observe(msg(0, 'rpc_queue', { id: '2', reply_to: 'r/2' }));
    const events = pairing.observe(msg(0, 'rpc_queue', { id: '3', reply_to: 'r/3' }));
    expect(of(events, 'dropped')).toEqual([expect.objectContaining({ what: 'pending', count: 1 })]);
    expect(of(events, 'unwatch-key')).toEqual([{ type: 'unwatch-key', key: 'r.1' }]);
    expect(pairing.pendingCount).toBe(2);
    expect(of(pairing.observe(msg(0, 'other', { id: '4', reply_to: 'r/4' })), 'dropped').map((event) => event.what)).toEqual(['pending', 'topic']);
    expect(pairing.close()).toHaveLength(2);
  });
});

describe('where the broker routed them (the firehose says)', () => {
  it('keeps the routed queues of a request and of its reply on the events; a tap, which does not know, gives none', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000 });
    pairing.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/x' }, { routedQueues: ['rpc_queue'] }));
    const [pair] = of(pairing.observe(msg(30, 'reply.x', { id: 'a' }, { routedQueues: ['mqtt-subscription-devqos1'] })), 'pair');
    expect(pair).toMatchObject({ routedQueues: ['rpc_queue'], replyRoutedQueues: ['mqtt-subscription-devqos1'] });
    pairing.observe(msg(100, 'rpc_queue', { id: 'b', reply_to: 'reply/y' }));
    const [unanswered] = of(pairing.tick(5000), 'unanswered');
    expect(unanswered).not.toHaveProperty('routedQueues');
  });
});

describe('the live rate', () => {
  it('counts the requests of the last 10 seconds, so a topic that went quiet reads 0/s', () => {
    const pairing = new RpcPairing({ timeoutMs: 100_000 });
    for (let i = 0; i < 20; i += 1) pairing.observe(msg(i * 100, 'rpc_queue', { id: `r${i}`, reply_to: 'r/x' }));
    expect(pairing.stats(2000)[0]?.rate).toBe(10);
    expect(pairing.stats(10_500)[0]?.rate).toBe(1);
    expect(pairing.stats(60_000)[0]?.rate).toBe(0);
  });

  it('is over the time watched, not since the first request: 5 requests at once 8 s into a watch are 0.5/s over 10 s', () => {
    const pairing = new RpcPairing({ timeoutMs: 100_000, startedAt: 0 });
    for (let i = 0; i < 5; i += 1) pairing.observe(msg(8000, 'rpc_queue', { id: `b${i}`, reply_to: 'r/x' }));
    expect(pairing.stats(8100)[0]).toMatchObject({ rate: 0.62, rateOverS: 8 });
    expect(pairing.stats(10_000)[0]).toMatchObject({ rate: 0.5, rateOverS: 10 });
    // Watched for less than a second: per second, not per fraction of one.
    const fresh = new RpcPairing({ timeoutMs: 100_000, startedAt: 8000 });
    for (let i = 0; i < 5; i += 1) fresh.observe(msg(8000, 'rpc_queue', { id: `c${i}`, reply_to: 'r/x' }));
    expect(fresh.stats(8100)[0]?.rate).toBe(5);
  });
});

describe('reply keys that linger', () => {
  it('keeps a reply key watched for the linger after its request closed, so the next request on it is not late to watch', () => {
    const pairing = new RpcPairing({ timeoutMs: 1000, keyLingerMs: 500, boundLate: () => true });
    expect(pairing.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/x' }))).toEqual([{ type: 'watch-key', key: 'reply.x' }]);
    expect(of(pairing.observe(msg(10, 'reply.x', { id: 'a' })), 'unwatch-key')).toEqual([]);
    expect(pairing.observe(msg(100, 'rpc_queue', { id: 'b', reply_to: 'reply/x' }))).toEqual([]);
    pairing.observe(msg(120, 'reply.x', { id: 'b' }));
    expect(pairing.tick(619)).toEqual([]);
    expect(pairing.tick(620)).toEqual([{ type: 'unwatch-key', key: 'reply.x' }]);
    pairing.observe(msg(700, 'rpc_queue', { id: 'c', reply_to: 'reply/x' }));
    const [first] = of(pairing.tick(1700), 'unanswered');
    expect(first).toMatchObject({ id: 'c', keyWatchedLate: true });
    // b and a were answered; c's key was bound only when c was seen: "not seen", not unanswered.
    expect(pairing.stats(1700)[0]).toMatchObject({ requests: 3, replies: 2, unanswered: 0, unseen: 1 });
  });

  it('counts a request unanswered, not "not seen", where its reply key needed no late bind (the firehose, a request key, #)', () => {
    const firehose = new RpcPairing({ timeoutMs: 100 });
    const tap = new RpcPairing({ timeoutMs: 100, boundLate: (key) => key !== 'rpc_queue' });
    for (const pairing of [firehose, tap]) {
      pairing.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/fresh' }));
      pairing.observe(msg(0, 'rpc_queue', { id: 'b', reply_to: 'rpc_queue' }));
      pairing.tick(100);
    }
    expect(firehose.stats(100)[0]).toMatchObject({ unanswered: 2, unseen: 0 });
    expect(tap.stats(100)[0]).toMatchObject({ unanswered: 1, unseen: 1 });
    // Its verdict found nothing consuming the request: no reply could have come, so it is unanswered after all.
    expect(tap.unseenWasUnanswered({ pattern: 'seed', id: 'a', replyKey: 'reply.fresh', sentAt: 0 })).toBe(true);
    expect(tap.unseenWasUnanswered({ pattern: 'seed', id: 'a', replyKey: 'reply.fresh', sentAt: 0 })).toBe(false);
    expect(tap.stats(100)[0]).toMatchObject({ unanswered: 2, unseen: 0 });
  });

  it('counts "not seen" a request on a reply key whose bind the broker has not confirmed yet, not only the first on it', () => {
    let pending = true;
    const tap = new RpcPairing({ timeoutMs: 100, boundLate: () => true, bindPending: () => pending });
    tap.observe(msg(0, 'rpc_queue', { id: 'a1', reply_to: 'reply/dev-a' }));
    // The device's next request, answered before the bind asked for the first was in place.
    tap.observe(msg(3, 'rpc_queue', { id: 'a2', reply_to: 'reply/dev-a' }));
    pending = false;
    tap.observe(msg(10, 'rpc_queue', { id: 'a3', reply_to: 'reply/dev-a' }));
    expect(of(tap.tick(200), 'unanswered').map((event) => [event.id, event.keyWatchedLate ?? false])).toEqual([
      ['a1', true],
      ['a2', true],
      ['a3', false],
    ]);
    expect(tap.stats(200)[0]).toMatchObject({ unanswered: 1, unseen: 2 });
  });

  it('counts a "not seen" request unanswered once its reply comes late (the bind was in place then)', () => {
    const tap = new RpcPairing({ timeoutMs: 100, lateWindowMs: 1000, boundLate: () => true });
    tap.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/fresh' }));
    tap.tick(100);
    expect(tap.stats(100)[0]).toMatchObject({ unanswered: 0, unseen: 1 });
    expect(of(tap.observe(msg(400, 'reply.fresh', { id: 'a' })), 'late')).toHaveLength(1);
    expect(tap.stats(400)[0]).toMatchObject({ unanswered: 1, unseen: 0, late: 1 });
  });

  it('moves only the request it is told of: a verdict after its late reply moves nothing, and leaves another not seen as it is', () => {
    const tap = new RpcPairing({ timeoutMs: 100, lateWindowMs: 1000, boundLate: () => true });
    tap.observe(msg(0, 'rpc_queue', { id: 'a', reply_to: 'reply/fresh-a' }));
    tap.observe(msg(0, 'rpc_queue', { id: 'b', reply_to: 'reply/fresh-b' }));
    tap.tick(100);
    expect(tap.stats(100)[0]).toMatchObject({ unanswered: 0, unseen: 2 });
    tap.observe(msg(300, 'reply.fresh-a', { id: 'a' }));
    expect(tap.isUnseen({ pattern: 'seed', id: 'a', replyKey: 'reply.fresh-a', sentAt: 0 })).toBe(false);
    // a's verdict, decided while its late reply came: nothing left to move, and b stays not seen.
    expect(tap.unseenWasUnanswered({ pattern: 'seed', id: 'a', replyKey: 'reply.fresh-a', sentAt: 0 })).toBe(false);
    expect(tap.stats(300)[0]).toMatchObject({ unanswered: 1, unseen: 1, late: 1 });
    expect(tap.isUnseen({ pattern: 'seed', id: 'b', replyKey: 'reply.fresh-b', sentAt: 0 })).toBe(true);
  });
});

describe('what the firehose adds', () => {
  it('takes a reply the broker routed to no queue as dropped, not as an answer, and follows no request off the watched keys', () => {
    const pairing = new RpcPairing({ timeoutMs: 100 });
    pairing.observe(msg(0, 'rpc_queue', { id: 'd', reply_to: 'reply/gone' }));
    expect(pairing.observe(msg(5, 'reply.gone', { id: 'd', worker: 'w' }, { routedQueues: [] }))).toEqual([]);
    const [unanswered] = of(pairing.tick(100), 'unanswered');
    expect(unanswered?.wrongKey).toEqual({ routingKey: 'reply.gone', at: 5, worker: 'w', dropped: true });
    expect(pairing.observe(msg(200, 'elsewhere', { id: 'e', reply_to: 'reply/e' }), false)).toEqual([]);
    expect(pairing.pendingCount).toBe(0);
  });

  it('reads a firehose publish record: properties, headers, connection and routed queues', () => {
    const event = {
      type: 'publish' as const,
      name: 'amq.direct',
      routingKeys: ['rpc_queue'],
      routedQueues: ['rpc_queue'],
      redelivered: false,
      properties: { correlation_id: 'c', reply_to: 'amq.gen-1', headers: { 'x-reply-to-topic': 'r.x' } },
      party: { connection: '127.0.0.1:5000 -> 127.0.0.1:5672' },
      body: Buffer.from('x'),
    };
    expect(observedFromFirehose(event, 'amq.direct', 7)).toMatchObject({ at: 7, routingKey: 'rpc_queue', correlationId: 'c', replyTo: 'amq.gen-1', headers: { 'x-reply-to-topic': 'r.x' }, connection: '127.0.0.1:5000 -> 127.0.0.1:5672', routedQueues: ['rpc_queue'] });
    expect(observedFromFirehose({ ...event, type: 'deliver' }, 'amq.direct', 7)).toBeUndefined();
    expect(observedFromFirehose({ ...event, name: 'amq.topic' }, 'amq.direct', 7)).toBeUndefined();
  });
});
