/** Each code set means one thing, is a runtime list, and its codes are the ones the code produces. */
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, FAILURE_REASONS } from '../../src/shared/errors';
import { SERVER_PROBLEM_KINDS, SERVER_REPLY_ERROR_CODES } from '../../src/core/rpc/server-types';
import { VERDICT_CODES } from '../../src/shared/verdict';
import { VERSION_FINDING_CODES } from '../../src/shared/broker-versions';
import { TOPIC_ISSUE_CODES, lintTopic } from '../../src/shared/topic-map';
import { REPLY_STRATEGIES } from '../../src/shared/rpc';
import { thrownCode } from '../../src/core/rpc/handlers';
import { toErrorShape } from '../../src/core/errors';

describe('the code vocabularies', () => {
  it.each([
    ['ERROR_CODES', ERROR_CODES],
    ['FAILURE_REASONS', FAILURE_REASONS],
    ['SERVER_PROBLEM_KINDS', SERVER_PROBLEM_KINDS],
    ['SERVER_REPLY_ERROR_CODES', SERVER_REPLY_ERROR_CODES],
    ['VERDICT_CODES', VERDICT_CODES],
    ['VERSION_FINDING_CODES', VERSION_FINDING_CODES],
    ['TOPIC_ISSUE_CODES', TOPIC_ISSUE_CODES],
    ['REPLY_STRATEGIES', REPLY_STRATEGIES],
  ] as const)('%s lists each code once', (_, codes) => {
    expect(codes.length).toBeGreaterThan(0);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('answers a plain throw with a server reply code, and a network failure with an error code', () => {
    expect(SERVER_REPLY_ERROR_CODES).toContain(thrownCode(new Error('x')));
    expect(ERROR_CODES).toContain(toErrorShape(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })).code);
    expect(ERROR_CODES).toContain(toErrorShape('anything').code);
  });

  it('lints topics only with codes of its list', () => {
    const codes = ['', '/a//b/', 'a.b/*/#/x', '$SYS/x', 'spBv1.0/g'].flatMap((topic) => lintTopic(topic, 'publish').map((issue) => issue.code));
    expect(codes.length).toBeGreaterThan(3);
    for (const code of codes) expect(TOPIC_ISSUE_CODES).toContain(code);
  });
});
