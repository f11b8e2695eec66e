import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  hasBlockingIssue,
  lintTopic,
  mapTopic,
  routingKeyToTopic,
  topicToRoutingKey,
  type TopicRole,
} from '../../src/shared/topic-map';

const codes = (topic: string, role: TopicRole, sparkplug = false): string[] =>
  lintTopic(topic, role, { sparkplug }).map((issue) => issue.code);

describe('topicToRoutingKey', () => {
  it.each([
    ['rpc_queue', 'rpc_queue'],
    ['reply/abc-123', 'reply.abc-123'],
    ['a/b/c', 'a.b.c'],
    ['sensors/+/temp', 'sensors.*.temp'],
    ['sensors/#', 'sensors.#'],
    ['/leading', '.leading'],
    ['a//b', 'a..b'],
    ['reply/v1.2/abc', 'reply.v1.2.abc'],
  ])('maps %s to %s', (topic, key) => {
    expect(topicToRoutingKey(topic)).toBe(key);
  });

  it('special-cases the Sparkplug prefix only when enabled', () => {
    expect(topicToRoutingKey('spBv1.0/group/NDATA/node', { sparkplug: true })).toBe('spBv1___0.group.NDATA.node');
    expect(topicToRoutingKey('spBv1.0/group/NDATA/node')).toBe('spBv1.0.group.NDATA.node');
  });
});

describe('routingKeyToTopic', () => {
  it.each([
    ['reply.abc-123', 'reply/abc-123'],
    ['sensors.*.temp', 'sensors/+/temp'],
    ['sensors.#', 'sensors/#'],
    ['reply.v1.2.abc', 'reply/v1/2/abc'],
  ])('maps %s back to %s', (key, topic) => {
    expect(routingKeyToTopic(key)).toBe(topic);
  });

  it('restores the Sparkplug prefix when enabled', () => {
    expect(routingKeyToTopic('spBv1___0.group.NDATA.node', { sparkplug: true })).toBe('spBv1.0/group/NDATA/node');
  });
});

describe('lintTopic', () => {
  it('finds nothing wrong with the seed topics', () => {
    expect(codes('rpc_queue', 'publish')).toEqual([]);
    expect(codes('reply/7d9f1c2e-8a4b-4c1d-9e2f-0a1b2c3d4e5f', 'reply')).toEqual([]);
  });

  it('flags a dot in a reply topic as an error naming the topic the reply will arrive on', () => {
    const [issue] = lintTopic('reply/v1.2/abc', 'reply');
    expect(issue?.code).toBe('dot-in-level');
    expect(issue?.severity).toBe('error');
    expect(issue?.message).toContain('reply/v1/2/abc');
  });

  it('flags a dot in a request topic as a warning', () => {
    expect(lintTopic('rpc.queue', 'publish')).toMatchObject([{ code: 'dot-in-level', severity: 'warning' }]);
  });

  it('flags a star inside a level, which comes back as a + wildcard', () => {
    expect(codes('reply/a*b', 'reply')).toContain('star-in-level');
  });

  it('refuses wildcards in publish and reply topics but accepts them in filters', () => {
    expect(codes('rpc/+', 'publish')).toContain('wildcard-in-topic');
    expect(codes('reply/#', 'reply')).toContain('wildcard-in-topic');
    expect(codes('sensors/+/temp', 'filter')).toEqual([]);
    expect(codes('sensors/#', 'filter')).toEqual([]);
  });

  it('refuses malformed filters', () => {
    expect(codes('sensors/a+', 'filter')).toContain('plus-not-whole-level');
    expect(codes('sensors/#/x', 'filter')).toContain('hash-not-last');
  });

  it('warns about empty levels and leading or trailing slashes', () => {
    expect(codes('a//b', 'publish')).toContain('empty-level');
    expect(codes('/a', 'publish')).toContain('leading-slash');
    expect(codes('a/', 'publish')).toContain('trailing-slash');
  });

  it('warns about $ topics reserved for the broker', () => {
    expect(codes('$SYS/broker', 'publish')).toContain('dollar-prefix');
  });

  it('refuses empty topics and NUL characters', () => {
    expect(codes('', 'publish')).toEqual(['empty-topic']);
    expect(codes('a\u0000b', 'publish')).toContain('null-character');
  });

  it('refuses a topic whose routing key exceeds 255 bytes, counting UTF-8 bytes', () => {
    expect(codes(`reply/${'x'.repeat(249)}`, 'reply')).toEqual([]);
    expect(codes(`reply/${'x'.repeat(250)}`, 'reply')).toContain('key-too-long');
    expect(codes(`reply/${'é'.repeat(125)}`, 'reply')).toContain('key-too-long');
  });

  it('explains the Sparkplug special case when enabled', () => {
    expect(codes('spBv1.0/g/NDATA/n', 'publish', true)).toEqual(['sparkplug-prefix']);
    expect(codes('spBv1.0/g/NDATA/n', 'publish', false)).toContain('dot-in-level');
  });
});

describe('mapTopic', () => {
  it('shows the dot pitfall as a topic that does not round-trip', () => {
    const mapping = mapTopic('reply/v1.2/x', 'reply');
    expect(mapping).toMatchObject({ routingKey: 'reply.v1.2.x', backToTopic: 'reply/v1/2/x', roundTrips: false });
    expect(mapping.issues).toMatchObject([{ code: 'dot-in-level', severity: 'error' }]);
  });
});

describe('blocking', () => {
  it('blocks a request topic on every error and on nothing else', () => {
    expect(hasBlockingIssue(lintTopic('rpc/+', 'publish'))).toBe(true);
    expect(hasBlockingIssue(lintTopic('', 'publish'))).toBe(true);
    expect(hasBlockingIssue(lintTopic('rpc.queue', 'publish'))).toBe(false);
    expect(hasBlockingIssue(lintTopic('/rpc//queue/', 'publish'))).toBe(false);
  });

  it('lets a reply topic with "." or "*" through (the reply comes back on another topic, matched by id) but blocks every other error', () => {
    expect(hasBlockingIssue(lintTopic('reply/v1.2/x', 'reply'))).toBe(false);
    expect(hasBlockingIssue(lintTopic('reply/a*b', 'reply'))).toBe(false);
    expect(hasBlockingIssue(lintTopic('reply/#', 'reply'))).toBe(true);
    expect(hasBlockingIssue(lintTopic('reply/a\u0000b', 'reply'))).toBe(true);
    expect(hasBlockingIssue(lintTopic(`reply/${'x'.repeat(250)}`, 'reply'))).toBe(true);
  });

  it('blocks a malformed filter but not a dot in it', () => {
    expect(hasBlockingIssue(lintTopic('sensors/#/x', 'filter'))).toBe(true);
    expect(hasBlockingIssue(lintTopic('sensors/v1.2/+', 'filter'))).toBe(false);
  });
});

const levelChars = fc.constantFrom('a', 'b', 'Z', '0', '-', '_', '.', '*', '+', '#', '$', 'é', ' ');
const level = fc.string({ unit: levelChars, minLength: 0, maxLength: 6 });
const topic = fc.array(level, { minLength: 1, maxLength: 6 }).map((levels) => levels.join('/'));
const roles = fc.constantFrom<TopicRole>('publish', 'reply', 'filter');

describe('round trip (property)', () => {
  it('holds exactly for every topic the lint finds clean, with and without Sparkplug', () => {
    fc.assert(
      fc.property(topic, roles, fc.boolean(), (candidate, role, sparkplug) => {
        const mapping = mapTopic(candidate, role, { sparkplug });
        const clean = mapping.issues.every((issue) => issue.severity === 'info');
        if (clean) expect(mapping.backToTopic).toBe(candidate);
      }),
      { numRuns: 5000 },
    );
  });

  it('never lets a topic that changes on the way back pass without an issue', () => {
    fc.assert(
      fc.property(topic, roles, fc.boolean(), (candidate, role, sparkplug) => {
        const mapping = mapTopic(candidate, role, { sparkplug });
        if (!mapping.roundTrips) expect(mapping.issues.some((issue) => issue.severity !== 'info')).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('blocking (property)', () => {
  it('marks a finding blocking exactly when it is an error, save "." and "*" in a reply topic', () => {
    fc.assert(
      fc.property(topic, roles, fc.boolean(), (candidate, role, sparkplug) => {
        for (const issue of lintTopic(candidate, role, { sparkplug })) {
          const tolerated = role === 'reply' && (issue.code === 'dot-in-level' || issue.code === 'star-in-level');
          expect(issue.blocking).toBe(issue.severity === 'error' && !tolerated);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
