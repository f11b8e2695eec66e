import { describe, expect, it } from 'vitest';
import { buildCallOptions, callOptionsFromSendRequest, chooseReplyTopic } from '../../src/core/rpc/call-options';
import type { SendRequestArgs } from '../../src/shared/contract';

const base = { topic: 'devices/d1/rpc', qos: 1 as const, timeoutMs: 5000 };
const form = (over: Partial<SendRequestArgs>): SendRequestArgs => ({ ...base, strategy: 'per-request', payloadText: '', ...over });

describe('the reply-topic rule', () => {
  it('uses an explicit reply topic, and warns when the payload asked for another one', () => {
    const choice = chooseReplyTopic('reply/explicit', { reply_to: 'reply/in-payload' });
    expect(choice.replyTopic).toBe('reply/explicit');
    expect(choice.warnings).toHaveLength(1);
    expect(choice.warnings[0]).toContain('"reply/in-payload"');
    expect(choice.warnings[0]).toContain('"reply/explicit"');
  });

  it('says nothing when the payload asks for the same reply topic as the explicit one', () => {
    expect(chooseReplyTopic('reply/same', { reply_to: 'reply/same' })).toEqual({ replyTopic: 'reply/same', warnings: [] });
  });

  it("uses the payload's reply_to when no reply topic is named", () => {
    expect(chooseReplyTopic(undefined, { reply_to: 'reply/in-payload' })).toEqual({ replyTopic: 'reply/in-payload', warnings: [] });
    expect(chooseReplyTopic('', { reply_to: 'reply/in-payload' })).toEqual({ replyTopic: 'reply/in-payload', warnings: [] });
  });

  it('leaves the reply topic to the client when neither names one', () => {
    expect(chooseReplyTopic(undefined, undefined)).toEqual({ replyTopic: undefined, warnings: [] });
    expect(chooseReplyTopic('', { params: 1 })).toEqual({ replyTopic: undefined, warnings: [] });
  });

  it('warns about a payload reply_to that is not a string and lets the client generate one', () => {
    const choice = chooseReplyTopic(undefined, { reply_to: 42 });
    expect(choice.replyTopic).toBeUndefined();
    expect(choice.warnings).toEqual([expect.stringContaining('not a topic string')]);
  });

  it('reads the reply field under the name the device uses', () => {
    const fields = { id: 'id', replyTo: 'respond_to', method: 'method', params: 'params' };
    expect(chooseReplyTopic(undefined, { respond_to: 'r/x', reply_to: 'r/y' }, fields).replyTopic).toBe('r/x');
  });
});

describe('call options', () => {
  it('are the same for the app and the CLI given the same request', () => {
    const fromApp = callOptionsFromSendRequest(form({ replyTopic: 'reply/a', method: 'reboot', payloadText: '{"reply_to": "reply/b", "params": {"x": 1}}' }));
    const fromCli = buildCallOptions({
      ...base,
      strategy: 'per-request',
      replyTopic: 'reply/a',
      method: 'reboot',
      payload: { reply_to: 'reply/b', params: { x: 1 } },
    });
    expect(fromApp).toEqual(fromCli);
    expect(fromApp).toMatchObject({ replyTopic: 'reply/a', warnings: [expect.stringContaining('replaced')] });
  });

  it("honour the payload's reply_to in the app as in the CLI", () => {
    expect(callOptionsFromSendRequest(form({ payloadText: '{"reply_to": "reply/mine"}' })).replyTopic).toBe('reply/mine');
    expect(callOptionsFromSendRequest(form({ replyTopic: '', payloadText: '{"reply_to": "reply/mine"}' })).replyTopic).toBe('reply/mine');
  });

  it('send a JSON object as the body, any other JSON value as params, and leave out empty fields', () => {
    expect(callOptionsFromSendRequest(form({ payloadText: '{"a": 1}', method: '' }))).toEqual({ ...base, strategy: 'per-request', payload: { a: 1 } });
    expect(callOptionsFromSendRequest(form({ payloadText: '[1, 2]' }))).toEqual({ ...base, strategy: 'per-request', params: [1, 2] });
    expect(callOptionsFromSendRequest(form({ payloadText: '  ' }))).toEqual({ ...base, strategy: 'per-request' });
  });

  it('refuse a payload that is not JSON as bad input', () => {
    expect(() => callOptionsFromSendRequest(form({ payloadText: '{"a": ' }))).toThrow(expect.objectContaining({ code: 'bad-input' }));
  });

  it('carry the abort signal of the CLI', () => {
    const controller = new AbortController();
    expect(buildCallOptions({ ...base, signal: controller.signal }).signal).toBe(controller.signal);
  });
});
