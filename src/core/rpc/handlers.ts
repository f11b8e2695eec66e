/** The embedded server's request handlers: echo, delay, fail, or a user's JavaScript module. */
import { pathToFileURL } from 'node:url';
import { dirname, resolve } from 'node:path';
import { realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { BridgeError } from '../errors';
import { MAX_TIMER_MS } from '../../shared/durations';
import type { RpcRequest } from './envelope';

export interface HandlerContext {
  worker: string;
  /** aborted when the request is given up: the handler timed out or the server stopped */
  signal: AbortSignal;
}

export type RpcHandler = (request: RpcRequest, context: HandlerContext) => unknown;

/** The extensions a handler module may have (its real file's too, after every symlink). */
const MODULE_EXTENSION = /\.(c|m)?js$/;

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

export { MAX_TIMER_MS } from '../../shared/durations';

/** The error code a thrown value answers with: a HandlerError's own, or a `code` string on a thrown object. Never throws. */
export function thrownCode(thrown: unknown): string {
  try {
    if (thrown instanceof HandlerError) return thrown.code;
    if (typeof thrown === 'object' && thrown !== null && !(thrown instanceof Error)) {
      const code = (thrown as { code?: unknown }).code;
      if (typeof code === 'string' && code !== '') return code;
    }
  } catch {
    // a getter or proxy trap threw: the value has no code we can read
  }
  return 'handler-error';
}

/** Reads `echo`, `delay:MS`, `fail`, `fail:CODE:MESSAGE` or a path to a `.js`/`.mjs` module. */
export function parseHandlerSpec(text: string): HandlerSpec {
  if (text === 'echo') return { kind: 'echo' };
  const delay = /^delay:(\d+)$/.exec(text);
  if (delay) {
    const ms = Number(delay[1]);
    if (!Number.isSafeInteger(ms) || ms > MAX_TIMER_MS) {
      throw new BridgeError('bad-input', `delay:MS takes at most ${MAX_TIMER_MS} ms (about 24.8 days, the longest a timer can wait), not ${delay[1]}.`);
    }
    return { kind: 'delay', ms };
  }
  if (text === 'fail') return { kind: 'fail', code: 'failed', message: 'The fail handler fails every request.' };
  const fail = /^fail:([^:]+)(?::(.*))?$/.exec(text);
  if (fail) return { kind: 'fail', code: fail[1] as string, message: fail[2] ?? 'The fail handler fails every request.' };
  if (MODULE_EXTENSION.test(text)) return { kind: 'module', path: text };
  throw new BridgeError('bad-input', `Unknown handler "${text}": use echo, delay:MS, fail, fail:CODE:MESSAGE or a path to a .js module.`);
}

/** Who may own a handler module or a folder above it: this user or root (undefined where there are no uids: Windows). */
function trustedOwners(): ReadonlySet<number> | undefined {
  const uid = process.getuid?.();
  return uid === undefined ? undefined : new Set([uid, 0]);
}

/**
 * The real path of a handler module, once it is safe to run as this user: a regular file with a .js, .mjs or .cjs name,
 * owned by this user or root and writable by nobody else, in a folder that nobody else can write (every folder above
 * it owned by this user or root, writable by others only with the sticky bit, as /tmp). Checked on the real path, so a
 * symlink cannot lend a safe-looking name or place to another file, and that real path is what gets imported (nobody
 * else can swap it between the check and the import). Else one sentence naming the path and the reason (bad-input).
 */
export async function checkHandlerModule(path: string): Promise<string> {
  const refuse = (reason: string): never => {
    throw new BridgeError('bad-input', `The handler module ${path} is refused: ${reason}.`);
  };
  let real: string;
  try {
    real = await realpath(resolve(path));
  } catch (err) {
    return refuse(`it cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const shown = real === resolve(path) ? 'it' : `its real file ${real}`;
  const statOf = (at: string): Promise<Stats> =>
    stat(at).catch((err: unknown) => refuse(`${at} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`));
  const file = await statOf(real);
  if (!file.isFile()) refuse(`${shown} is not a regular file`);
  if (!MODULE_EXTENSION.test(real)) refuse(`${shown} is not a .js, .mjs or .cjs file`);
  const owners = trustedOwners();
  if (owners === undefined) return real;
  if (!owners.has(file.uid)) refuse(`${shown} belongs to user id ${file.uid}, not to you or root, so its owner could run code as you`);
  if ((file.mode & 0o022) !== 0) refuse(`${shown} can be changed by other users (mode ${(file.mode & 0o777).toString(8)}; chmod go-w)`);
  let folder = dirname(real);
  for (let nearest = true; ; nearest = false) {
    const info = await statOf(folder);
    if (!owners.has(info.uid)) refuse(`the folder ${folder} belongs to user id ${info.uid}, not to you or root, so its owner could replace the module`);
    const othersWrite = (info.mode & 0o022) !== 0;
    // In a sticky folder (/tmp) others cannot rename or delete what is not theirs, so it may sit above the module, not hold it.
    if (othersWrite && (nearest || (info.mode & 0o1000) === 0)) {
      refuse(`the folder ${folder} can be written by other users (mode ${(info.mode & 0o7777).toString(8)}), so they could replace the module`);
    }
    const parent = dirname(folder);
    if (parent === folder) return real;
    folder = parent;
  }
}

/** Waits `ms`, or rejects when the request is given up; the abort listener goes when the wait ends, so none pile up. */
function abortable(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    if (signal.aborted) {
      reject(new HandlerError('cancelled', 'The request was given up before the delay ended.'));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new HandlerError('cancelled', 'The request was given up before the delay ended.'));
    };
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
      const url = pathToFileURL(await checkHandlerModule(spec.path)).href;
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
