import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commandNames } from '../../src/shared/contract';
import { validateArgs } from '../../src/core/contract-schemas';
import { BridgeError } from '../../src/core/errors';
import { BoundedMap } from '../../src/core/bounded-map';
import { reconnectDelay } from '../../src/core/links/mqtt-link';
import { hasBlockingIssue, lintTopic, mapTopic, routingKeyToTopic, topicToRoutingKey, type TopicRole } from '../../src/shared/topic-map';
import { mqtt5ReplyKey, parseRequest } from '../../src/core/rpc/envelope';

describe('fuzzing the boundary (10,000 generated inputs each)', () => {
  it('maps any string as any role so that it comes back unchanged unless a finding says why not', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 80 }), fc.constantFrom<TopicRole>('publish', 'reply', 'filter'), fc.boolean(), (topic, role, sparkplug) => {
        const mapping = mapTopic(topic, role, { sparkplug });
        expect(mapping.backToTopic).toBe(routingKeyToTopic(mapping.routingKey, { sparkplug }));
        expect(mapping.roundTrips).toBe(mapping.backToTopic === topic);
        // Only "." and "*" (and, with Sparkplug, "___") change on the way back; anything else survives byte for byte.
        if (!/[.*]/.test(topic) && !(sparkplug && topic.includes('___'))) expect(mapping.backToTopic).toBe(topic);
        if (!mapping.roundTrips) expect(mapping.issues.some((issue) => issue.severity !== 'info')).toBe(true);
        expect(mapping.issues).toEqual(lintTopic(topic, role, { sparkplug }));
      }),
      { numRuns: 10_000 },
    );
  });

  it('answers any JSON-ish request with any headers exactly when it names a usable reply topic, never throwing', () => {
    const body = fc.oneof(
      fc.record({ id: fc.oneof(fc.string(), fc.integer(), fc.constant(null)), reply_to: fc.oneof(fc.string(), fc.integer(), fc.constant(undefined)), params: fc.anything() }),
      fc.anything(),
    );
    fc.assert(
      fc.property(body, fc.dictionary(fc.string(), fc.anything()), (value, headers) => {
        const text = JSON.stringify(value) ?? '';
        const parsed = parseRequest(Buffer.from(text), { headers });
        // What the request says, read independently: a JSON object whose reply_to is a usable topic, or none and an MQTT 5 header.
        const sent: unknown = text === '' ? undefined : JSON.parse(text);
        const record = typeof sent === 'object' && sent !== null && !Array.isArray(sent) ? (sent as Record<string, unknown>) : undefined;
        const replyTo = record?.reply_to;
        const headerKey = mqtt5ReplyKey(headers);
        const answerable = record !== undefined && (typeof replyTo === 'string' ? !hasBlockingIssue(lintTopic(replyTo, 'reply')) : replyTo === undefined && headerKey !== undefined);
        expect(parsed.ok).toBe(answerable);
        if (parsed.ok) {
          expect(parsed.request.body).toEqual(sent);
          expect(parsed.request.replyRoutingKey).toBe(typeof replyTo === 'string' ? topicToRoutingKey(replyTo) : headerKey);
        } else {
          expect(parsed.reason).not.toBe('');
        }
      }),
      { numRuns: 10_000 },
    );
  });
});

describe('every contract command', () => {
  it.each(commandNames.map((name) => [name]))('%s refuses arguments of the wrong type with one sentence', (name) => {
    let failure: unknown;
    try {
      validateArgs(name, 'not an object');
    } catch (err) {
      failure = err;
    }
    expect(failure).toBeInstanceOf(BridgeError);
    expect((failure as BridgeError).code).toBe('bad-input');
    expect((failure as BridgeError).message).toMatch(new RegExp(`^${name.replaceAll('.', '\\.')}: `));
    expect((failure as BridgeError).message.split('\n')).toHaveLength(1);
  });

  it('names the field and what it expects', () => {
    expect(() => validateArgs('server.start', { exchange: 'amq.direct', queue: 'q', workers: 0, prefetch: 1, handler: 'echo' })).toThrow(
      'server.start: workers: At least 1 worker.',
    );
    expect(() => validateArgs('load.run.start', { topic: 't', qos: 1, strategy: 'shared', payloadText: '', timeoutMs: 10, count: 0, concurrency: 1 })).toThrow(
      'load.run.start: count: Send at least 1 request.',
    );
  });
});

describe('reconnect delays', () => {
  it('double from the first delay up to the maximum, each within +-30% jitter', () => {
    const low = (attempt: number): number => reconnectDelay(attempt, 200, 5000, () => 0);
    const high = (attempt: number): number => reconnectDelay(attempt, 200, 5000, () => 1);
    expect([1, 2, 3, 4].map(low)).toEqual([140, 280, 560, 1120]);
    expect(high(1)).toBe(260);
    expect(high(20)).toBe(6500);
    expect(low(20)).toBe(3500);
  });
});

describe('BoundedMap', () => {
  it('evicts the oldest entry past its limit and says which', () => {
    const evicted: string[] = [];
    const map = new BoundedMap<string, number>(2, (key) => evicted.push(key));
    map.set('a', 1);
    map.set('b', 2);
    map.delete('a');
    map.set('c', 3);
    map.set('d', 4);
    expect([...map.keys()]).toEqual(['c', 'd']);
    expect(evicted).toEqual(['b']);
  });
});
