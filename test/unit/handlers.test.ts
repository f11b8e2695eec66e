import { setMaxListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { describeThrown, HandlerError, loadHandler, MAX_TIMER_MS, parseHandlerSpec, thrownCode } from '../../src/core/rpc/handlers';
import { BridgeError } from '../../src/core/errors';

describe('what a handler threw, in one sentence', () => {
  it.each([
    [undefined, 'the handler threw undefined'],
    [null, 'the handler threw null'],
    [42, 'the handler threw 42'],
    [{}, 'the handler threw an object: {}'],
    ['', 'the handler threw an empty string'],
    ['plain text', 'plain text'],
    [new Error('boom'), 'boom'],
    [new TypeError(''), 'the handler threw TypeError without a message'],
    [{ message: 'from an object' }, 'from an object'],
  ])('describes %o as "%s"', (thrown, sentence) => {
    expect(describeThrown(thrown)).toBe(sentence);
  });

  it('describes a circular object without throwing itself', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(describeThrown(circular)).toBe('the handler threw an object: [object Object]');
  });

  it('keeps the code of a HandlerError or of a thrown {code, message} object, and uses handler-error otherwise', () => {
    expect(thrownCode(new HandlerError('no-stock', 'none left'))).toBe('no-stock');
    expect(thrownCode({ code: 'busy', message: 'later' })).toBe('busy');
    expect(thrownCode(undefined)).toBe('handler-error');
    expect(thrownCode(new Error('x'))).toBe('handler-error');
  });

  it('never throws itself, whatever getters or proxy traps the thrown value has', () => {
    const hostileGetters = {
      get message(): string {
        throw new Error('message getter');
      },
      get code(): string {
        throw new Error('code getter');
      },
    };
    const hostileProxy = new Proxy(
      {},
      {
        get() {
          throw new Error('get trap');
        },
        getPrototypeOf() {
          throw new Error('getPrototypeOf trap');
        },
        ownKeys() {
          throw new Error('ownKeys trap');
        },
      },
    );
    for (const thrown of [hostileGetters, hostileProxy]) {
      expect(describeThrown(thrown)).toMatch(/^the handler threw /);
      expect(thrownCode(thrown)).toBe('handler-error');
    }
  });
});

describe('delay:MS', () => {
  it('refuses a delay longer than a timer can hold as bad input', () => {
    expect(() => parseHandlerSpec(`delay:${MAX_TIMER_MS + 1}`)).toThrow(BridgeError);
    expect(() => parseHandlerSpec(`delay:${MAX_TIMER_MS + 1}`)).toThrow(/at most 2147483647 ms/);
    expect(parseHandlerSpec(`delay:${MAX_TIMER_MS}`)).toEqual({ kind: 'delay', ms: MAX_TIMER_MS });
  });

  it('leaves no abort listener behind on the shared stop signal after 50 delays end', async () => {
    const handler = await loadHandler({ kind: 'delay', ms: 1 });
    const stop = new AbortController();
    // 50 waits at once legitimately hold 50 listeners while they run.
    setMaxListeners(100, stop.signal);
    let listeners = 0;
    const add = stop.signal.addEventListener.bind(stop.signal);
    const remove = stop.signal.removeEventListener.bind(stop.signal);
    stop.signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
      listeners += 1;
      add(...args);
    }) as AbortSignal['addEventListener'];
    stop.signal.removeEventListener = ((...args: Parameters<AbortSignal['removeEventListener']>) => {
      listeners -= 1;
      remove(...args);
    }) as AbortSignal['removeEventListener'];
    const request = { id: '1', replyTopic: 'r', replyRoutingKey: 'r', replySource: 'body' as const, method: undefined, params: 1, body: {}, correlationId: undefined };
    await Promise.all(Array.from({ length: 50 }, () => handler(request, { worker: 'w', signal: stop.signal })));
    expect(listeners).toBe(0);
  });
});
