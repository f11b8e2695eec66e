/** The embedded server's request handlers: echo, delay, fail, or a user's JavaScript module. */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { BridgeError } from '../errors';
import type { RpcRequest } from './envelope';

export interface HandlerContext {
  worker: string;
  signal: AbortSignal;
}

export type RpcHandler = (request: RpcRequest, context: HandlerContext) => unknown;

export type HandlerSpec =
  | { kind: 'echo' }
  | { kind: 'delay'; ms: number }
  | { kind: 'fail'; code: string; message: string }
  | { kind: 'module'; path: string };

/** A handler throws this to answer with `{"error": {"code", "message"}}`; any other throw answers with code `handler-error`. */
export class HandlerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Reads `echo`, `delay:MS`, `fail`, `fail:CODE:MESSAGE` or a path to a `.js`/`.mjs` module. */
export function parseHandlerSpec(text: string): HandlerSpec {
  if (text === 'echo') return { kind: 'echo' };
  const delay = /^delay:(\d+)$/.exec(text);
  if (delay) return { kind: 'delay', ms: Number(delay[1]) };
  if (text === 'fail') return { kind: 'fail', code: 'failed', message: 'The fail handler fails every request.' };
  const fail = /^fail:([^:]+)(?::(.*))?$/.exec(text);
  if (fail) return { kind: 'fail', code: fail[1] as string, message: fail[2] ?? 'The fail handler fails every request.' };
  if (/\.(c|m)?js$/.test(text)) return { kind: 'module', path: text };
  throw new BridgeError('bad-input', `Unknown handler "${text}": use echo, delay:MS, fail, fail:CODE:MESSAGE or a path to a .js module.`);
}

function abortable(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new HandlerError('cancelled', 'The server stopped before the delay ended.'));
    };
    // The listener goes when the delay ends: the server's one stop signal serves every request.
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolvePromise();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** echo answers with the request's params, or the whole request body when it has none. */
const echo: RpcHandler = (request) => (request.params !== undefined ? request.params : request.body);

export async function loadHandler(spec: HandlerSpec): Promise<RpcHandler> {
  switch (spec.kind) {
    case 'echo':
      return echo;
    case 'delay':
      return async (request, context) => {
        await abortable(spec.ms, context.signal);
        return { delayedMs: spec.ms, echo: echo(request, context) };
      };
    case 'fail':
      return () => {
        throw new HandlerError(spec.code, spec.message);
      };
    case 'module': {
      const url = pathToFileURL(resolve(spec.path)).href;
      let loaded: { default?: unknown; handle?: unknown };
      try {
        loaded = (await import(url)) as { default?: unknown; handle?: unknown };
      } catch (err) {
        throw new BridgeError('bad-input', `Cannot load the handler module ${spec.path}: ${(err as Error).message}`);
      }
      const fn = loaded.default ?? loaded.handle;
      if (typeof fn !== 'function') {
        throw new BridgeError('bad-input', `The handler module ${spec.path} must export a function (default export or "handle").`);
      }
      return fn as RpcHandler;
    }
  }
}
