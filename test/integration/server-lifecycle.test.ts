/** `bridgescope serve` and RpcServer over a real day: poison handlers, stop signals, drains, timeouts and bad input. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RpcServer, type ServerProblem } from '../../src/core/rpc/server';
import { loadHandler, type RpcHandler } from '../../src/core/rpc/handlers';
import { cliPath, runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { collectReplies, declareRequestQueue, publishRequest, type ReplyCollector } from '../support/rpc-queues';
import type { TraceStepDraft } from '../../src/shared/trace';

const broker = inject('broker');
let connection: ChannelModel;
let channel: Channel;
let moduleDir: string;
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  connection = await amqp.connect(broker.urls.amqp);
  channel = await connection.createChannel();
  moduleDir = await mkdtemp(join(tmpdir(), 'bridgescope-handlers-'));
});

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  await connection.close();
  await rm(moduleDir, { recursive: true, force: true });
});

/** A `bridgescope serve` child in its own process group, with its output lines awaited by pattern or by count. */
interface Serving {
  child: ChildProcessWithoutNullStreams;
  lines: string[];
  waitFor(pattern: RegExp, count?: number): Promise<void>;
  exited: Promise<number | null>;
}

function startServe(args: string[], nodeArgs: string[] = []): Serving {
  const child = spawn(process.execPath, [...nodeArgs, cliPath, 'serve', '--amqp', broker.urls.amqp, ...args], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; count: number; resolve: () => void }> = [];
  const seen = (pattern: RegExp): number => lines.filter((line) => pattern.test(line)).length;
  const onLine = (line: string): void => {
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (seen(waiter.pattern) >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  closers.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return {
    child,
    lines,
    exited,
    waitFor(pattern, count = 1) {
      if (seen(pattern) >= count) return Promise.resolve();
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, count, resolve });
        void exited.then((code) => reject(new Error(`serve exited (${code}) before printing ${count} x ${pattern}: ${lines.join(' | ')}`)));
      });
    },
  };
}

const replyCollector = (): Promise<ReplyCollector> => collectReplies(channel, 'lifecycle');
const sendRequest = (queue: string, id: string, replyTopic: string, params?: unknown): void => publishRequest(channel, queue, id, replyTopic, params);
const declareQueue = (): Promise<string> => declareRequestQueue(channel, closers);

async function startServer(queue: string, handler: RpcHandler, options: { workers?: number; prefetch?: number; handlerTimeoutMs?: number } = {}): Promise<RpcServer> {
  const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: options.workers ?? 1, prefetch: options.prefetch ?? 1, handler, ...(options.handlerTimeoutMs ? { handlerTimeoutMs: options.handlerTimeoutMs } : {}) });
  await server.start();
  closers.push(() => server.stop(1000));
  return server;
}

/**
 * After `serve` has stopped: a second server takes over the queue (one worker, prefetch 1, so in queue order); the
 * reply to a last request sent after everything else proves every request still queued was answered.
 */
async function takeOverAndSettle(queue: string, collector: Awaited<ReturnType<typeof replyCollector>>): Promise<RpcServer> {
  const second = await startServer(queue, await loadHandler({ kind: 'echo' }));
  const sentinel = uniqueName('sentinel');
  // The reply can reach the collector before the broker's confirm reaches the server, which counts a reply as given
  // only then: its reply.confirmed step says the count is done.
  const confirmed = new Promise<void>((resolve) => {
    const onStep = (draft: TraceStepDraft): void => {
      if (draft.rpcId !== sentinel || draft.kind !== 'reply.confirmed') return;
      second.off('step', onStep);
      resolve();
    };
    second.on('step', onStep);
  });
  sendRequest(queue, sentinel, collector.replyTopic);
  await collector.waitFor(sentinel);
  await confirmed;
  collector.replies.delete(sentinel);
  return second;
}

/** Resolves once no request is waiting in the queue: every one was delivered to a worker. */
function untilTaken(queue: string): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => void channel.checkQueue(queue).then(({ messageCount }) => (messageCount === 0 ? resolve() : setImmediate(check)));
    check();
  });
}

function countsPerId(replies: Map<string, unknown[]>, ids: string[]): { answered: number; duplicates: number; missing: string[] } {
  const duplicates = [...replies.values()].reduce((sum, list) => sum + Math.max(0, list.length - 1), 0);
  return { answered: ids.filter((id) => replies.has(id)).length, duplicates, missing: ids.filter((id) => !replies.has(id)) };
}

describe('a clean stop of serve', () => {
  it('answers 100 in-flight requests exactly once after SIGTERM: a second server on the queue answers none of them again', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const serving = startServe(['--queue', queue, '--workers', '2', '--prefetch', '50', '--handler', 'delay:1500', '--json']);
    await serving.waitFor(/^Serving /);
    const ids = Array.from({ length: 100 }, (_, index) => `in-flight-${index}`);
    for (const id of ids) sendRequest(queue, id, collector.replyTopic);
    await serving.waitFor(/"kind":"worker.received"/, 100);
    serving.child.kill('SIGTERM');
    expect(await serving.exited).toBe(0);
    const second = await takeOverAndSettle(queue, collector);
    const counts = countsPerId(collector.replies, ids);
    console.info(`100 in flight at SIGTERM: ${counts.answered} answered, ${counts.duplicates} duplicates, ${second.stats.replied - 1} answered again by the second server`);
    expect(counts).toEqual({ answered: 100, duplicates: 0, missing: [] });
    expect(second.stats.replied).toBe(1);
  }, 60_000);

  it('answers every request exactly once across a SIGTERM with 1 worker and prefetch 1', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const serving = startServe(['--queue', queue, '--workers', '1', '--prefetch', '1', '--handler', 'delay:300', '--json']);
    await serving.waitFor(/^Serving /);
    const ids = Array.from({ length: 10 }, (_, index) => `one-by-one-${index}`);
    for (const id of ids) sendRequest(queue, id, collector.replyTopic);
    await serving.waitFor(/"kind":"worker.received"/, 2);
    serving.child.kill('SIGTERM');
    expect(await serving.exited).toBe(0);
    await takeOverAndSettle(queue, collector);
    const counts = countsPerId(collector.replies, ids);
    console.info(`1 worker, prefetch 1: ${counts.answered} of 10 answered, ${counts.duplicates} duplicates`);
    expect(counts).toEqual({ answered: 10, duplicates: 0, missing: [] });
  }, 60_000);

  it('counts a process-group Ctrl-C once, and a second Ctrl-C during the drain does not cut it short', async () => {
    const handlerPath = join(moduleDir, 'sleepy.mjs');
    await writeFile(handlerPath, 'export default async (request) => { await new Promise((r) => setTimeout(r, request.params.ms)); return request.params; };\n');
    const queue = await declareQueue();
    const collector = await replyCollector();
    const serving = startServe(['--queue', queue, '--workers', '1', '--prefetch', '2', '--handler', handlerPath]);
    await serving.waitFor(/^Serving /);
    // quick ends well past the 750 ms in which a repeated signal counts as an echo of the first.
    sendRequest(queue, 'quick', collector.replyTopic, { ms: 2000 });
    sendRequest(queue, 'slow', collector.replyTopic, { ms: 4500 });
    const pid = serving.child.pid as number;
    // Both requests are being handled once the server has taken the second one (prefetch 2, 1 worker).
    await untilTaken(queue);
    process.kill(-pid, 'SIGINT');
    await serving.waitFor(/^Stopping: draining/);
    await serving.waitFor(/answered quick/);
    process.kill(-pid, 'SIGINT');
    await serving.waitFor(/Still cleaning up \(drain in-flight requests/);
    expect(await serving.exited).toBe(0);
    expect(serving.lines.filter((line) => /^Stopping/.test(line))).toHaveLength(1);
    expect(serving.lines.join('\n')).toMatch(/answered slow/);
    expect((await channel.checkQueue(queue)).messageCount).toBe(0);
    expect([...collector.replies.keys()].sort()).toEqual(['quick', 'slow']);
  }, 60_000);

  it('exits 0 when a handler outlasts the drain, and says its request went back to the queue', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const serving = startServe(['--queue', queue, '--workers', '1', '--handler', 'delay:60000', '--drain-timeout', '300']);
    await serving.waitFor(/^Serving /);
    sendRequest(queue, 'outlasts-the-drain', collector.replyTopic);
    await untilTaken(queue);
    serving.child.kill('SIGTERM');
    const code = await serving.exited;
    const output = serving.lines.join('\n');
    expect(output).not.toMatch(/IllegalOperationError|Connection closing/);
    expect(code).toBe(0);
    expect(output).toMatch(/went back to the queue: outlasts-the-drain/);
    expect(output).toMatch(/Stopped\. received 1, replied 0, failed 0/);
    expect((await channel.checkQueue(queue)).messageCount).toBe(1);
    expect(collector.replies.size).toBe(0);
  }, 60_000);
});

describe("a handler's context", () => {
  // A handler that adds to its context by spreading it ({ ...context, log }) once lost the abort signal: the context
  // was built with the signal as a getter, which a spread does not copy (fixed in e39a051, untested until now).
  it('keeps worker and signal through a spread, and the signal aborts when the handler times out', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    let aborted!: () => void;
    const abortSeen = new Promise<void>((resolve) => (aborted = resolve));
    await startServer(
      queue,
      (request, context) => {
        const mine = { ...context, log: (line: string) => line };
        if (request.params === 'hang') {
          mine.signal.addEventListener('abort', () => aborted(), { once: true });
          return new Promise(() => undefined);
        }
        return { worker: mine.worker, signal: mine.signal instanceof AbortSignal, aborted: mine.signal.aborted };
      },
      { handlerTimeoutMs: 300 },
    );
    sendRequest(queue, 'spread', collector.replyTopic, 'look');
    expect(await collector.waitFor('spread')).toMatchObject({ result: { worker: expect.any(String), signal: true, aborted: false } });
    sendRequest(queue, 'hang', collector.replyTopic, 'hang');
    await abortSeen;
    expect(await collector.waitFor('hang')).toMatchObject({ error: { code: expect.any(String) } });
  });
});

describe('handlers that throw anything', () => {
  const poisons: Array<[string, () => unknown, string]> = [
    ['Promise.reject()', () => Promise.reject(), 'the handler threw undefined'],
    ['throw null', () => {
      throw null;
    }, 'the handler threw null'],
    ['throw undefined', () => {
      throw undefined;
    }, 'the handler threw undefined'],
    ['throw 42', () => {
      throw 42;
    }, 'the handler threw 42'],
    ['throw {}', () => {
      throw {};
    }, 'the handler threw an object: {}'],
  ];

  it.each(poisons)('answers a handler that does %s with an error reply, and keeps serving', async (_label, poison, message) => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    let calls = 0;
    await startServer(queue, (request) => {
      calls += 1;
      return request.params === 'poison' ? poison() : 'fine';
    });
    sendRequest(queue, 'poisoned', collector.replyTopic, 'poison');
    sendRequest(queue, 'after', collector.replyTopic, 'after');
    expect(await collector.waitFor('poisoned')).toMatchObject({ error: { code: 'handler-error', message } });
    expect(await collector.waitFor('after')).toMatchObject({ result: 'fine' });
    expect(calls).toBe(2);
  });

  it('keeps serve running through a handler module that throws undefined and whose callbacks throw and reject later', async () => {
    const handlerPath = join(moduleDir, 'stray.mjs');
    await writeFile(
      handlerPath,
      [
        'export default (request) => {',
        "  if (request.params === 'undefined') throw undefined;",
        "  setTimeout(() => { throw new Error('stray exception from a timer'); }, 0);",
        "  Promise.reject(new Error('stray rejection nobody awaited'));",
        '  return request.params;',
        '};',
        '',
      ].join('\n'),
    );
    const queue = await declareQueue();
    const collector = await replyCollector();
    const serving = startServe(['--queue', queue, '--workers', '1', '--handler', handlerPath]);
    await serving.waitFor(/^Serving /);
    sendRequest(queue, 'throws-undefined', collector.replyTopic, 'undefined');
    expect(await collector.waitFor('throws-undefined')).toMatchObject({ error: { message: 'the handler threw undefined' } });
    sendRequest(queue, 'strays', collector.replyTopic, 'strays');
    expect(await collector.waitFor('strays')).toMatchObject({ result: 'strays' });
    await serving.waitFor(/stray exception from a timer; still serving/);
    await serving.waitFor(/stray rejection nobody awaited; still serving/);
    sendRequest(queue, 'still-serving', collector.replyTopic, 'still-serving');
    expect(await collector.waitFor('still-serving')).toMatchObject({ result: 'still-serving' });
    serving.child.kill('SIGTERM');
    expect(await serving.exited).toBe(0);
  }, 60_000);
});

describe('an uncaught exception that is not a handler\'s', () => {
  it('is said in one sentence, the in-flight request is drained and answered, and serve exits 1', async () => {
    // Stands for a bug of ours: preloaded into serve's process, it throws from a signal listener, far from any handler.
    const bugPath = join(moduleDir, 'bug-of-ours.mjs');
    await writeFile(bugPath, "process.on('SIGUSR2', () => { throw new Error('a bug of ours'); });\n");
    const queue = await declareQueue();
    const collector = await replyCollector();
    const serving = startServe(['--queue', queue, '--workers', '1', '--handler', 'delay:500', '--json'], ['--import', bugPath]);
    await serving.waitFor(/^Serving /);
    sendRequest(queue, 'in-flight', collector.replyTopic);
    await serving.waitFor(/"kind":"worker.received"/);
    serving.child.kill('SIGUSR2');
    expect(await serving.exited).toBe(1);
    expect(serving.lines.filter((line) => /a bug of ours/.test(line))).toEqual([expect.stringMatching(/^bridgescope: internal error \(not the handler's\): a bug of ours; stopping\.$/)]);
    expect(serving.lines.some((line) => /still serving/.test(line))).toBe(false);
    expect(await collector.waitFor('in-flight')).toMatchObject({ result: { delayedMs: 500 } });
  }, 20_000);
});

describe('a handler that never answers', () => {
  it('is abandoned after the handler timeout with a handler-timeout error reply, a warning, and its id named on stop', async () => {
    const queue = await declareQueue();
    const collector = await replyCollector();
    const server = await startServer(queue, () => new Promise(() => undefined), { handlerTimeoutMs: 200 });
    const problems: ServerProblem[] = [];
    server.on('problem', (problem) => problems.push(problem));
    sendRequest(queue, 'never-settles', collector.replyTopic);
    expect(await collector.waitFor('never-settles')).toMatchObject({ error: { code: 'handler-timeout' } });
    expect(problems.map((problem) => [problem.kind, problem.rpcId])).toEqual([['handler-timeout', 'never-settles']]);
    const report = await server.stopWithReport(1000);
    expect(report).toEqual({ drained: true, unfinished: [], abandoned: ['never-settles'], abandonedForgotten: 0 });
  });
});

describe('serve with --handler-timeout', () => {
  it('answers a request whose handler never settles with handler-timeout, warns, keeps serving, and names it on stop', async () => {
    const handlerPath = join(moduleDir, 'stuck.mjs');
    await writeFile(handlerPath, "export default (request) => (request.params === 'stuck' ? new Promise(() => {}) : request.params);\n");
    const queue = await declareQueue();
    const collector = await replyCollector();
    const serving = startServe(['--queue', queue, '--workers', '1', '--prefetch', '2', '--handler', handlerPath, '--handler-timeout', '300']);
    await serving.waitFor(/^Serving /);
    sendRequest(queue, 'stuck', collector.replyTopic, 'stuck');
    expect(await collector.waitFor('stuck')).toMatchObject({ error: { code: 'handler-timeout' } });
    await serving.waitFor(/did not answer stuck within 300 ms/);
    sendRequest(queue, 'next', collector.replyTopic, 'next');
    expect(await collector.waitFor('next')).toMatchObject({ result: 'next' });
    serving.child.kill('SIGTERM');
    expect(await serving.exited).toBe(0);
    expect(serving.lines.join('\n')).toMatch(/1 handler\(s\) abandoned after the handler timeout had still not returned: stuck\./);
  }, 60_000);
});

describe('a stop signal while serve is still connecting', () => {
  it('is not lost: serve says it stopped before connecting and exits 0', async () => {
    // A listener that accepts the TCP connection and never speaks AMQP keeps serve in its connecting phase.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => silent.close(resolve)));
    const accepted = new Promise<void>((resolve) => silent.once('connection', (socket) => {
      closers.push(async () => socket.destroy());
      resolve();
    }));
    const { port } = silent.address() as AddressInfo;
    const child = spawn(process.execPath, [cliPath, 'serve', '--amqp', `amqp://127.0.0.1:${port}`, '--queue', uniqueName('rpc_queue')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await accepted;
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/Stopped before the server was connected/);
  }, 30_000);
});

describe('serve refuses bad input before connecting', () => {
  it.each([
    ['an empty --queue', ['--queue', ''], /queue name is empty/],
    ['an amq. --queue', ['--queue', 'amq.mine'], /reserves/],
    ['a --queue over 255 bytes', ['--queue', 'q'.repeat(256)], /at most 255/],
    ['a delay a timer cannot hold', ['--handler', 'delay:2147483648'], /at most 2147483647 ms/],
    ['a --handler-timeout a timer cannot hold', ['--handler-timeout', '2147483648'], /--handler-timeout takes a whole number above 0 and at most 2147483647 \(milliseconds/],
  ])('refuses %s with exit 2 and one sentence', async (_label, args, message) => {
    const result = await runCli(['serve', '--amqp', broker.urls.amqp, ...args]);
    expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 2, stderr: expect.stringMatching(message) });
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('says once that the broker refused the credentials', async () => {
    const url = new URL(broker.urls.amqp);
    url.username = 'nobody';
    url.password = 'wrong';
    const result = await runCli(['serve', '--amqp', url.href, '--queue', uniqueName('rpc_queue')]);
    expect(result.code).toBe(4);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/refused the AMQP credentials/)]);
  });
});
