import { setMaxListeners } from 'node:events';
import { chmod, chown, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkHandlerModule, HandlerError, loadHandler, MAX_TIMER_MS, parseHandlerSpec, thrownCode } from '../../src/core/rpc/handlers';
import { BridgeError } from '../../src/core/errors';
import { messageOf } from '../../src/shared/thrown';

const describeThrown = (thrown: unknown): string => messageOf(thrown, 'the handler');

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

  it("names no handler when no thrower is given (a broker channel error is not a handler's)", () => {
    expect(messageOf(undefined)).toBe('an operation threw undefined');
    expect(messageOf(new Error(''))).toBe('an operation threw Error without a message');
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
    const request = { id: '1', replyTopic: 'r', replyRoutingKey: 'r', replySource: 'body' as const, method: undefined, params: 1, body: {}, correlationId: undefined, correlationHeader: undefined };
    await Promise.all(Array.from({ length: 50 }, () => handler(request, { worker: 'w', signal: stop.signal })));
    expect(listeners).toBe(0);
  });
});

describe('a handler module runs as the user only when nobody else could have written it', () => {
  const made: string[] = [];
  afterEach(async () => {
    for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  /** A folder only root can write (mkdtemp makes it 0700), with one module in it that leaves a mark when it runs. */
  async function folderWithModule(name = 'handler.mjs'): Promise<{ dir: string; path: string; mark: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'bridgescope-module-'));
    made.push(dir);
    const mark = `ran${Math.random().toString(36).slice(2)}`;
    const path = join(dir, name);
    await writeFile(path, `globalThis.${mark} = true;\nexport default () => 'ok';\n`, { mode: 0o644 });
    return { dir, path, mark };
  }

  it('loads a module of its own user, 0644 in a 0700 folder under the sticky /tmp, from its real path', async () => {
    const { dir, path } = await folderWithModule();
    await symlink(path, join(dir, 'alias.mjs'));
    expect(await checkHandlerModule(join(dir, 'alias.mjs'))).toBe(await realpath(path));
    const handler = await loadHandler({ kind: 'module', path });
    expect(await handler({} as never, {} as never)).toBe('ok');
  });

  it('refuses a module owned by another user (nobody, uid 65534), and its code never runs', async () => {
    const { path, mark } = await folderWithModule();
    await chown(path, 65534, 65534);
    await expect(loadHandler({ kind: 'module', path })).rejects.toThrow(
      `The handler module ${path} is refused: it belongs to user id 65534, not to you or root, so its owner could run code as you.`,
    );
    expect((globalThis as Record<string, unknown>)[mark]).toBeUndefined();
  });

  it('refuses a module that other users can write (0666, and 0620)', async () => {
    const { path } = await folderWithModule();
    await chmod(path, 0o666);
    await expect(checkHandlerModule(path)).rejects.toThrow(`The handler module ${path} is refused: it can be changed by other users (mode 666; chmod go-w).`);
    await chmod(path, 0o620);
    await expect(checkHandlerModule(path)).rejects.toMatchObject({ code: 'bad-input', message: expect.stringContaining('mode 620') });
  });

  it('refuses a module in a folder others can write, even a sticky one, or in a folder owned by another user', async () => {
    const { dir, path } = await folderWithModule();
    await chmod(dir, 0o1777);
    await expect(checkHandlerModule(path)).rejects.toThrow(
      `The handler module ${path} is refused: the folder ${dir} can be written by other users (mode 1777), so they could replace the module.`,
    );
    await chmod(dir, 0o755);
    await chown(dir, 65534, 65534);
    await expect(checkHandlerModule(path)).rejects.toThrow(`the folder ${dir} belongs to user id 65534, not to you or root`);
  });

  it('refuses a safe-looking symlink to a module that is not safe, or to a file that is not a module, naming the real file', async () => {
    const safe = await folderWithModule();
    const open = await folderWithModule('theirs.mjs');
    await chmod(open.dir, 0o777);
    await symlink(open.path, join(safe.dir, 'mine.mjs'));
    // The real paths are read before the check starts: an await between the check's promise and its handler would
    // leave its rejection unhandled for a moment (a failed run's "Unhandled Rejection").
    const openDir = await realpath(open.dir);
    await expect(checkHandlerModule(join(safe.dir, 'mine.mjs'))).rejects.toThrow(
      `The handler module ${join(safe.dir, 'mine.mjs')} is refused: the folder ${openDir} can be written by other users (mode 777), so they could replace the module.`,
    );
    await writeFile(join(safe.dir, 'notes.txt'), 'export default () => 1;\n');
    await symlink(join(safe.dir, 'notes.txt'), join(safe.dir, 'notes.mjs'));
    const notes = await realpath(join(safe.dir, 'notes.txt'));
    await expect(checkHandlerModule(join(safe.dir, 'notes.mjs'))).rejects.toThrow(`its real file ${notes} is not a .js, .mjs or .cjs file`);
  });

  it('refuses a folder or a missing file with a .mjs name', async () => {
    const { dir } = await folderWithModule();
    await mkdir(join(dir, 'folder.mjs'));
    await expect(checkHandlerModule(join(dir, 'folder.mjs'))).rejects.toThrow(`The handler module ${join(dir, 'folder.mjs')} is refused: it is not a regular file.`);
    await expect(checkHandlerModule(join(dir, 'missing.mjs'))).rejects.toThrow(`The handler module ${join(dir, 'missing.mjs')} is refused: it cannot be read (ENOENT).`);
  });
});
