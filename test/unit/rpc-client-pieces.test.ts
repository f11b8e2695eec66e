/** The RPC client's pieces without a broker: reply matching, send limits, the typed outcome, the call's deadline. */
import type { IPublishPacket } from 'mqtt';
import { describe, expect, it, vi } from 'vitest';
import { ReplyMatcher, type Reply } from '../../src/core/rpc/reply-matcher';
import { RecentIds } from '../../src/core/recent-ids';
import { admit, allowedQos, explainMqtt5Refusal, mqtt5NotSent } from '../../src/core/rpc/send-limits';
import { buildOutcome, DOWNGRADED_REPLY_WARNING, type CallFacts } from '../../src/core/rpc/call-outcome';
import { CallGuard } from '../../src/core/rpc/call-guard';
import { brokerRules } from '../../src/shared/broker-versions';
import { defaultEnvelopeFields } from '../../src/shared/rpc';
import { BridgeError } from '../../src/core/errors';

const matcher = (): ReplyMatcher =>
  new ReplyMatcher(
    () => defaultEnvelopeFields,
    (topic) => topic.replaceAll('/', '.'),
  );
const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

describe('the reply matcher', () => {
  it('hands a reply to the call with its id, and calls a second reply with that id a duplicate', async () => {
    const replies = matcher();
    const waiting = replies.wait('a', 'reply.x');
    expect(replies.size).toBe(1);
    expect(replies.match('reply/x', json({ id: 'a', result: 1 }))).toBeUndefined();
    expect((await waiting).fields.result).toBe(1);
    replies.done('a', 'replied');
    expect(replies.match('reply/x', json({ id: 'a', result: 2 }))).toMatchObject({ id: 'a', duplicate: true });
  });

  it('calls a second reply a duplicate even when it comes in the same socket read as the first, before the call ended', () => {
    const replies = matcher();
    void replies.wait('c', 'reply.x');
    expect(replies.match('reply/x', json({ id: 'c', result: 'forged' }))).toBeUndefined();
    // The call's continuation (which ends it with done) has not run yet.
    expect(replies.match('reply/x', json({ id: 'c', result: 'true' }))).toMatchObject({ id: 'c', duplicate: true });
    replies.done('c', 'replied');
    expect(replies.match('reply/x', json({ id: 'c', result: 'third' }))).toMatchObject({ id: 'c', duplicate: true });
  });

  it('calls a reply to a call that failed late, not a duplicate, and one without a call foreign', () => {
    const replies = matcher();
    void replies.wait('b', 'reply.x');
    replies.done('b', 'failed');
    expect(replies.size).toBe(0);
    expect(replies.match('reply/x', json({ id: 'b' }))).toMatchObject({ id: 'b', duplicate: false });
    expect(replies.match('reply/y', Buffer.from('plain text'))).toMatchObject({ id: undefined, duplicate: false });
  });

  it('matches a reply without an id by its MQTT 5 Correlation Data, else by routing key, oldest call first', async () => {
    const replies = matcher();
    const first = replies.wait('1', 'reply.x');
    const second = replies.wait('2', 'reply.x');
    const byCorrelation = { properties: { correlationData: Buffer.from('2') }, qos: 1 } as unknown as IPublishPacket;
    replies.match('reply/x', Buffer.from('text'), byCorrelation);
    expect((await second).packet).toBe(byCorrelation);
    replies.match('reply/x', Buffer.from('text'));
    expect((await first).topic).toBe('reply/x');
  });

  it('remembers at least the last `limit` outcomes', () => {
    const recent = new RecentIds(2);
    for (const id of ['1', '2', '3']) recent.set(id, 'replied');
    expect(['1', '2', '3'].map((id) => recent.get(id))).toEqual(['replied', 'replied', 'replied']);
    recent.set('4', 'failed');
    recent.set('5', 'failed');
    expect(recent.get('1')).toBeUndefined();
    expect(recent.get('5')).toBe('failed');
  });
});

describe('the send limits', () => {
  const caps = { maxPayloadBytes: 100, maxInFlight: 10, maxOfflineQueue: 2 };

  it('refuses a body over the broker limit, a full in-flight table, and a full offline queue, each in one sentence', () => {
    expect(() => admit(101, 0, true, caps)).toThrow(expect.objectContaining({ code: 'too-large' }));
    expect(() => admit(1, 10, true, caps)).toThrow(expect.objectContaining({ code: 'busy' }));
    expect(() => admit(1, 2, false, caps)).toThrow(expect.objectContaining({ code: 'unreachable' }));
    expect(() => admit(1, 2, true, caps)).not.toThrow();
  });

  it("lowers the QoS to the MQTT 5 CONNACK's Maximum QoS, with a warning", () => {
    const warnings: string[] = [];
    const link = { protocolVersion: 5 as const, serverLimits: { maximumQoS: 1 as const } };
    expect(allowedQos(link, brokerRules(undefined), { qos: 2, topic: 't', replyTopic: 'r', bodyBytes: 10 }, warnings)).toBe(1);
    expect(warnings).toEqual([expect.stringContaining('Maximum QoS 1')]);
  });

  it("refuses a packet over the CONNACK's Maximum Packet Size, and ignores CONNACK limits over MQTT 3.1.1", () => {
    const limits = { maximumPacketSize: 100 };
    expect(() => allowedQos({ protocolVersion: 5, serverLimits: limits }, brokerRules(undefined), { qos: 1, topic: 't', replyTopic: 'r', bodyBytes: 200 }, [])).toThrow(
      expect.objectContaining({ code: 'too-large' }),
    );
    expect(allowedQos({ protocolVersion: 4, serverLimits: limits }, brokerRules(undefined), { qos: 1, topic: 't', replyTopic: 'r', bodyBytes: 200 }, [])).toBe(1);
  });

  it("refuses over MQTT 3.1.1 a packet over a known version's limit", () => {
    const rules = brokerRules('4.1.0');
    const bodyBytes = rules.defaultMaxPacketBytes + 1;
    expect(() => allowedQos({ protocolVersion: 4, serverLimits: {} }, rules, { qos: 1, topic: 't', replyTopic: 'r', bodyBytes }, [])).toThrow(expect.objectContaining({ code: 'too-large' }));
  });

  it('explains a refused MQTT 5 CONNECT by the broker version, and leaves other errors alone', () => {
    const closed = new BridgeError('unreachable', 'closed', { reason: 'closed-before-connack' });
    const explained = explainMqtt5Refusal(closed, brokerRules('3.12.0'), 'mqtt://u:secret@host:1883') as BridgeError;
    expect(explained.message).toMatch(/^The broker at mqtt:\/\/u:\*\*\*@host:1883 closed the connection on an MQTT 5 CONNECT: .*3\.12\.0/);
    const other = new Error('other');
    expect(explainMqtt5Refusal(other, brokerRules(undefined), 'mqtt://host')).toBe(other);
    expect(mqtt5NotSent(brokerRules('3.12.0'))).toContain('RabbitMQ 3.12.0 has no MQTT 5');
  });
});

describe('the typed outcome', () => {
  const facts = (overrides: Partial<CallFacts> = {}): CallFacts => ({
    id: 'a',
    replyTopic: 'reply/x',
    mqttVersion: 4,
    durationMs: 5,
    publishQos: { asked: 1, acknowledgedAs: 1 },
    subscriptionQos: { asked: 1, granted: 1 },
    correlationData: undefined,
    warnings: ['said before'],
    ...overrides,
  });
  const reply = (topic: string, body: unknown, packet?: Partial<IPublishPacket>): Reply => {
    const fields = { id: 'a', result: (body as { result?: unknown }).result, error: undefined, worker: 'worker-1' } as Reply['fields'];
    const built: Reply = { topic, payload: json(body), body: { kind: 'json', value: body } as Reply['body'], fields };
    if (packet) built.packet = packet as IPublishPacket;
    return built;
  };

  it('has every required field, the reply fields it carried, and no optional field it did not', () => {
    const outcome = buildOutcome(reply('reply/x', { id: 'a', result: 3 }, { qos: 1 }), facts());
    expect(outcome).toEqual({
      id: 'a',
      replyTopic: 'reply/x',
      arrivedOn: 'reply/x',
      topicMismatch: false,
      body: { kind: 'json', value: { id: 'a', result: 3 } },
      bodyBytes: 21,
      mqttVersion: 4,
      durationMs: 5,
      publishQos: { asked: 1, acknowledgedAs: 1 },
      subscriptionQos: { asked: 1, granted: 1 },
      replyQos: 1,
      warnings: ['said before'],
      result: 3,
      worker: 'worker-1',
    });
    expect('error' in outcome).toBe(false);
  });

  it('warns of a topic changed on the way, a QoS downgrade, and Correlation Data that did not come back', () => {
    const outcome = buildOutcome(reply('reply.x', { id: 'a' }, { qos: 0 }), facts({ mqttVersion: 5, correlationData: 'a', warnings: [] }));
    expect(outcome.topicMismatch).toBe(true);
    expect(outcome.warnings).toEqual([expect.stringContaining('arrived on "reply.x"'), DOWNGRADED_REPLY_WARNING(1), expect.stringContaining('Correlation Data did not survive')]);
  });
});

describe('the call guard', () => {
  it('times out with the reply topic and routing key, naming a link that is down by reason', async () => {
    vi.useFakeTimers();
    try {
      const connected = false;
      const guard = new CallGuard({ id: 'a', replyTopic: 'reply/x', replyRoutingKey: 'reply.x', timeoutMs: 50, signal: undefined, connected: () => connected });
      const expired = guard.expired.catch((err: unknown) => err);
      await vi.advanceTimersByTimeAsync(50);
      expect(await expired).toMatchObject({ code: 'timeout', reason: 'link-down', message: expect.stringContaining('(routing key "reply.x")') });
    } finally {
      vi.useRealTimers();
    }
  });

  it('is cancelled by its signal, even one aborted before, and leaves no listener once cleared', async () => {
    const before = new AbortController();
    before.abort();
    const early = new CallGuard({ id: 'a', replyTopic: 'r', replyRoutingKey: 'r', timeoutMs: 1000, signal: before.signal, connected: () => true });
    await expect(early.expired).rejects.toMatchObject({ code: 'cancelled' });
    early.clear();
    const controller = new AbortController();
    const guard = new CallGuard({ id: 'b', replyTopic: 'r', replyRoutingKey: 'r', timeoutMs: 1000, signal: controller.signal, connected: () => true });
    controller.abort();
    await expect(guard.expired).rejects.toMatchObject({ code: 'cancelled', message: 'The request b was cancelled.' });
    guard.clear();
  });
});
