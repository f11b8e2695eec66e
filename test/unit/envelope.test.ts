import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeReply, encodeRequest, parseRequest, readBody, readReplyFields } from '../../src/core/rpc/envelope';
import { parseHandlerSpec } from '../../src/core/rpc/handlers';

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

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

  it('takes the MQTT 5 response topic header (already dot-translated) when the body has no reply_to', () => {
    for (const header of ['x-reply-to-topic', 'x-opt-reply-to-topic']) {
      const parsed = parseRequest(json({ id: 'm5' }), { headers: { [header]: 'reply.m5' }, correlationId: 'corr-1' });
      expect(parsed).toMatchObject({ ok: true, request: { replyRoutingKey: 'reply.m5', replySource: 'mqtt5-header', correlationId: 'corr-1' } });
    }
  });

  it('never throws, whatever the bytes (10,000 generated inputs)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.json().map((text) => Buffer.from(text))), (bytes) => {
        const parsed = parseRequest(bytes);
        expect(typeof parsed.ok).toBe('boolean');
      }),
      { numRuns: 10_000 },
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
