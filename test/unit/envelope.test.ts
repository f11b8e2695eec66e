import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { correlationLost, encodeReply, encodeRequest, parseRequest, readBody, readReplyFields } from '../../src/core/rpc/envelope';
import { parseHandlerSpec } from '../../src/core/rpc/handlers';
import { hasBlockingIssue, lintTopic, topicToRoutingKey } from '../../src/shared/topic-map';

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

/** What the bytes say, read independently of parseRequest: a JSON object in strict UTF-8, or nothing. */
function readObject(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Reply topics a device would use, dots included (tolerated: the reply comes back on another topic, matched by id). */
const replyTopic = fc
  .array(fc.stringMatching(/^[a-z0-9._-]{1,8}$/), { minLength: 1, maxLength: 5 })
  .map((levels) => levels.join('/'));
/** JSON values as they come out of JSON (no -0, no undefined). */
const jsonSafe = fc.jsonValue().map((value) => JSON.parse(JSON.stringify(value)) as unknown);

describe('parseRequest', () => {
  it('reads the seed request and maps its reply topic to a routing key', () => {
    const parsed = parseRequest(json({ id: 'a1', reply_to: 'reply/abc-123', method: 'sum', params: [1, 2] }));
    expect(parsed).toMatchObject({
      ok: true,
      request: { id: 'a1', replyTopic: 'reply/abc-123', replyRoutingKey: 'reply.abc-123', replySource: 'body', method: 'sum', params: [1, 2] },
    });
  });

  it('accepts renamed fields for devices that use other names', () => {
    const parsed = parseRequest(json({ rid: 7, respond: 'r/x' }), { fields: { id: 'rid', replyTo: 'respond', method: 'op', params: 'args' } });
    expect(parsed).toMatchObject({ ok: true, request: { id: '7', replyTopic: 'r/x' } });
  });

  it('answers a dotted reply topic on the translated key instead of refusing it', () => {
    expect(parseRequest(json({ reply_to: 'reply/v1.2/x' }))).toMatchObject({ ok: true, request: { replyRoutingKey: 'reply.v1.2.x' } });
  });

  it.each([
    ['an empty body', Buffer.alloc(0), /empty/],
    ['binary bytes', Buffer.from([0xc3, 0x28]), /binary/],
    ['malformed JSON', Buffer.from('{"reply_to":'), /not valid JSON/],
    ['a JSON array', json([1]), /JSON object/],
    ['no reply_to', json({ id: 1 }), /no "reply_to"/],
    ['a numeric reply_to', json({ reply_to: 5 }), /topic string/],
    ['a wildcard reply_to', json({ reply_to: 'reply/+' }), /wildcard/],
    ['an over-long reply_to', json({ reply_to: `r/${'x'.repeat(300)}` }), /at most 255/],
  ])('refuses %s with a reason', (_label, bytes, reason) => {
    const parsed = parseRequest(bytes);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.reason).toMatch(reason);
  });

  it('answers a reply topic seen before as the first time, for each topic-map flavour (its key is cached)', () => {
    const sparkplug = { sparkplug: true };
    for (let round = 0; round < 2; round += 1) {
      expect(parseRequest(json({ reply_to: 'spBv1.0/g/DDATA' }))).toMatchObject({ ok: true, request: { replyRoutingKey: 'spBv1.0.g.DDATA' } });
      expect(parseRequest(json({ reply_to: 'spBv1.0/g/DDATA' }), { topicMap: sparkplug })).toMatchObject({ ok: true, request: { replyRoutingKey: 'spBv1___0.g.DDATA' } });
      const refused = parseRequest(json({ id: `r${round}`, reply_to: 'reply/#' }));
      expect(refused).toMatchObject({ ok: false, id: `r${round}` });
    }
  });

  it('takes the MQTT 5 response topic header (already dot-translated) when the body has no reply_to', () => {
    for (const header of ['x-reply-to-topic', 'x-opt-reply-to-topic']) {
      const parsed = parseRequest(json({ id: 'm5' }), { headers: { [header]: 'reply.m5' }, correlationId: 'corr-1' });
      expect(parsed).toMatchObject({ ok: true, request: { replyRoutingKey: 'reply.m5', replySource: 'mqtt5-header', correlationId: 'corr-1' } });
    }
  });

  it('takes a native MQTT 5 request (Response Topic, any body) as params: nothing, text, JSON or bytes', () => {
    const headers = { 'x-reply-to-topic': 'reply.n5' };
    const cases: Array<[Uint8Array, unknown]> = [
      [Buffer.alloc(0), null],
      [Buffer.from('temperature?'), 'temperature?'],
      [Buffer.from('[1,2]'), [1, 2]],
      [Buffer.from([0xff, 0x00]), { base64: '/wA=' }],
    ];
    for (const [bytes, params] of cases) {
      expect(parseRequest(bytes, { headers, correlationId: 'c' })).toEqual({
        ok: true,
        request: { id: undefined, method: undefined, params, body: params, correlationId: 'c', correlationHeader: undefined, replyTopic: undefined, replyRoutingKey: 'reply.n5', replySource: 'mqtt5-header' },
      });
    }
    // without the header, the same bodies are refused as before
    expect(parseRequest(Buffer.alloc(0))).toMatchObject({ ok: false, reason: 'The request body is empty.' });
  });

  it('keeps a long or binary Correlation Data (header x-correlation-id) to echo, and knows when amqplib lost its bytes', () => {
    const long = 'c'.repeat(300);
    const parsed = parseRequest(Buffer.alloc(0), { headers: { 'x-reply-to-topic': 'reply.n5', 'x-correlation-id': long } });
    expect(parsed).toMatchObject({ ok: true, request: { correlationHeader: long, correlationId: undefined } });
    expect(correlationLost(long)).toBe(false);
    expect(correlationLost(Buffer.from([0, 255]).toString('utf8'))).toBe(true);
    expect(correlationLost(Buffer.from([0, 255]))).toBe(false);
  });

  it('accepts exactly the bytes that are a UTF-8 JSON object with a usable reply_to, whatever the bytes (10,000 generated inputs)', () => {
    const request = fc.record({ id: fc.oneof(fc.string(), fc.integer()), reply_to: fc.oneof(replyTopic, fc.string()), params: fc.jsonValue() }).map(json);
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.json().map((text) => Buffer.from(text)), request), (bytes) => {
        const parsed = parseRequest(bytes);
        const sent = readObject(bytes);
        const replyTo = sent?.reply_to;
        expect(parsed.ok).toBe(typeof replyTo === 'string' && !hasBlockingIssue(lintTopic(replyTo, 'reply')));
        if (parsed.ok) expect(parsed.request).toMatchObject({ replyTopic: replyTo, replyRoutingKey: topicToRoutingKey(replyTo as string), body: sent });
        else expect(parsed.reason).not.toBe('');
      }),
      { numRuns: 10_000 },
    );
  });

  it('reads back every request it encodes: id, reply topic, method and params (round trip)', () => {
    const draft = fc.record({
      id: fc.string({ minLength: 1 }),
      replyTopic,
      method: fc.option(fc.string(), { nil: undefined }),
      params: fc.option(jsonSafe, { nil: undefined }),
    });
    fc.assert(
      fc.property(draft, (sent) => {
        const parsed = parseRequest(encodeRequest(sent));
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) return;
        const { id, replyTopic: topic, method, params, replyRoutingKey, replySource } = parsed.request;
        expect({ id, replyTopic: topic, method, params }).toEqual(sent);
        expect({ replyRoutingKey, replySource }).toEqual({ replyRoutingKey: topicToRoutingKey(sent.replyTopic), replySource: 'body' });
      }),
      { numRuns: 2000 },
    );
  });
});

describe('reply round trip', () => {
  it('reads back every reply it encodes: id, result or error, worker', () => {
    const reply = fc.record({
      id: fc.option(fc.string(), { nil: undefined }),
      outcome: fc.oneof(
        fc.record({ result: jsonSafe }),
        fc.record({ error: fc.record({ code: fc.string(), message: fc.string() }) }),
      ),
      worker: fc.string(),
    });
    fc.assert(
      fc.property(reply, ({ id, outcome, worker }) => {
        const read = readReplyFields(readBody(encodeReply({ id, worker, ...outcome })));
        expect(read).toEqual({ ...(id !== undefined ? { id } : {}), ...outcome, worker });
      }),
      { numRuns: 2000 },
    );
  });
});

describe('reply bodies', () => {
  it('encodes a result and an error the way devices read them', () => {
    expect(JSON.parse(encodeReply({ id: '1', result: 3, worker: 'worker-1' }).toString())).toEqual({ id: '1', result: 3, worker: 'worker-1' });
    expect(JSON.parse(encodeReply({ id: '2', error: { code: 'E', message: 'm' }, worker: 'w' }).toString())).toEqual({
      id: '2',
      error: { code: 'E', message: 'm' },
      worker: 'w',
    });
  });

  it('passes a non-JSON reply through as text, and bytes as base64', () => {
    expect(readBody(Buffer.from('done'))).toEqual({ kind: 'text', text: 'done' });
    expect(readBody(Buffer.from([0xff]))).toEqual({ kind: 'binary', base64: '/w==', bytes: 1 });
    expect(readReplyFields(readBody(Buffer.from('done')))).toEqual({});
  });

  it('keeps extra request fields and adds id and reply_to', () => {
    const body = JSON.parse(encodeRequest({ id: 'x', replyTopic: 'reply/x', extra: { temperature: 20 } }).toString());
    expect(body).toEqual({ temperature: 20, id: 'x', reply_to: 'reply/x' });
  });
});

describe('parseHandlerSpec', () => {
  it.each([
    ['echo', { kind: 'echo' }],
    ['delay:250', { kind: 'delay', ms: 250 }],
    ['fail:E_X:broken', { kind: 'fail', code: 'E_X', message: 'broken' }],
    ['./handler.mjs', { kind: 'module', path: './handler.mjs' }],
  ])('reads %s', (text, spec) => {
    expect(parseHandlerSpec(text)).toMatchObject(spec);
  });

  it('refuses an unknown handler in one sentence', () => {
    expect(() => parseHandlerSpec('sleep')).toThrow(/Unknown handler "sleep"/);
  });
});
