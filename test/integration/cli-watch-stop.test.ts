/**
 * `bridgescope watch` leaves nothing behind on the broker (issue 23), in both modes, however it is stopped: one Ctrl-C, a
 * second Ctrl-C while its cleanup waits on the broker, Ctrl-C to its whole process group, a broker that stops answering,
 * and a broker restart while it runs (it comes back on its own and says so). This file stops, pauses and restarts its
 * broker: it gets a node of its own, so the shared one keeps serving the other files.
 */
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxInfo } from '../../src/core/broker/sandbox';
import { ManagementApi } from '../../src/core/broker/management-api';
import { cliPath } from '../support/cli';
import { uniqueName } from '../support/names';
import { removeOwnTestBroker, restartOwnTestBroker, startOwnTestBroker } from '../support/reap';
import { pauseProcess, startGroupLeader, type GroupLeader } from '../support/processes';

let dir: string;
let broker: SandboxInfo;
const leaders: GroupLeader[] = [];
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  ({ dir, broker } = await startOwnTestBroker('own-watch-stop'));
}, 150_000);

afterAll(async () => {
  for (const leader of leaders.splice(0)) await leader.kill();
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  await removeOwnTestBroker(dir);
}, 60_000);

/** Stops the node gracefully and starts it again with the same name, ports and data. */
async function restartBroker(): Promise<void> {
  broker = await restartOwnTestBroker(dir, broker);
}

/** `watch` as the leader of its own process group; every signal counts (no echo window), so a second Ctrl-C is one. */
function startWatch(args: string[]): GroupLeader & { queue: Promise<string | undefined> } {
  const leader = startGroupLeader(process.execPath, [cliPath, 'watch', '--amqp', broker.urls.amqp, '--management', broker.urls.management, ...args], {
    ...process.env,
    BRIDGESCOPE_SIGNAL_ECHO_MS: '0',
  });
  leaders.push(leader);
  const queue = leader.waitForLine(/^Watching /).then((line) => /tap queue "([^"]+)"/.exec(line)?.[1]);
  return Object.assign(leader, { queue });
}

const api = (): ManagementApi => new ManagementApi(broker.urls.management);

/** Every queue whose name starts as the tap's do (bridgescope.watch-tap.), and every binding on amq.direct to one of them. */
async function tapsOnBroker(): Promise<{ queues: string[]; bindings: number }> {
  const queues = (await api().queues()).map((queue) => queue.name).filter((name) => name.startsWith('bridgescope.watch-tap.'));
  const bindings = (await api().bindings('amq.direct')).filter((binding) => binding.destination.startsWith('bridgescope.watch-tap.')).length;
  return { queues, bindings };
}

/** Until the management API lists exactly `count` bindings on amq.direct to `queue` (it answers each ask; no sleep). */
async function untilBound(queue: string, count: number): Promise<void> {
  for (;;) {
    const bound = (await api().bindings('amq.direct')).filter((binding) => binding.destination === queue).length;
    if (bound === count) return;
  }
}

/** Until the broker lists no tap queue any more (a cut connection is noticed by the broker a moment later). */
async function untilNoTap(): Promise<void> {
  for (;;) {
    const left = await tapsOnBroker();
    if (left.queues.length === 0 && left.bindings === 0) return;
  }
}

/** A seed request nobody answers, published by an AMQP client of its own: the tap binds its reply key while it waits. */
async function request(topic: string, id: string, replyTo: string): Promise<void> {
  const connection = await amqp.connect(broker.urls.amqp);
  const channel = await connection.createConfirmChannel();
  channel.publish('amq.direct', topic, Buffer.from(JSON.stringify({ id, reply_to: replyTo })));
  await channel.waitForConfirms();
  await connection.close();
}

/** Pauses the broker (SIGSTOP, seen stopped) until the returned function is called; a guard resumes it if a test fails first. */
async function pauseBroker(): Promise<() => void> {
  const pid = broker.pid;
  await pauseProcess(pid);
  const resume = (): void => {
    clearTimeout(guard);
    process.kill(pid, 'SIGCONT');
  };
  const guard = setTimeout(resume, 30_000);
  closers.push(async () => resume());
  return resume;
}

describe('bridgescope watch leaves nothing on the broker', () => {
  it('tap: a second Ctrl-C to the process group while the cleanup waits on a paused broker says what is left, and the cleanup still finishes', async () => {
    const topic = uniqueName('watch_stop2');
    const watch = startWatch(['--topic', topic, '--timeout', '60000']);
    const tapQueue = (await watch.queue) as string;
    await request(topic, 'waiting', `reply/${uniqueName('dev')}`);
    await untilBound(tapQueue, 2);
    const resume = await pauseBroker();
    watch.signalGroup('SIGINT');
    await watch.waitForLine(/^Stopping: deleting the tap queue/);
    watch.signalGroup('SIGINT');
    await watch.waitForLine(/^Still cleaning up \(delete the tap queue "bridgescope\.watch-tap\.[^"]+" and its bindings\)\. Press Ctrl-C once more/);
    resume();
    expect((await watch.exited).code).toBe(0);
    expect(watch.lines).toContain('Stopped: the tap queue and its bindings are deleted.');
    expect(await tapsOnBroker()).toEqual({ queues: [], bindings: 0 });
  }, 60_000);

  it('tap: a broker that stops answering does not hold the exit: the connection is cut in bounded time and the broker deletes the queue when it resumes', async () => {
    const topic = uniqueName('watch_hung');
    const watch = startWatch(['--topic', topic, '--timeout', '60000']);
    const tapQueue = (await watch.queue) as string;
    await request(topic, 'waiting', `reply/${uniqueName('dev')}`);
    await untilBound(tapQueue, 2);
    const resume = await pauseBroker();
    const stoppingAt = Date.now();
    watch.child.kill('SIGINT');
    const { code } = await watch.exited;
    const tookMs = Date.now() - stoppingAt;
    resume();
    expect(code).toBe(0);
    // 3 s for the unanswered delete, 3 s for the unanswered close, then the socket is cut.
    expect(tookMs).toBeLessThan(10_000);
    expect(watch.lines, `what watch printed: ${watch.lines.join(' | ')}`).toContain('Stopped: the broker did not answer, so the connection was cut; the broker deletes the tap queue and its bindings when it notices.');
    await untilNoTap();
  }, 60_000);

  it('firehose: a second Ctrl-C while the cleanup waits on a paused broker, then tracing is switched off and no marker is left', async () => {
    const watch = startWatch(['--mode', 'firehose', '--topic', uniqueName('watch_fh2'), '--timeout', '60000']);
    await watch.waitForLine(/^Watching .* through the firehose \(turned on/);
    expect(await api().tracing()).toBe(true);
    const resume = await pauseBroker();
    watch.signalGroup('SIGINT');
    await watch.waitForLine(/^Stopping: restoring firehose tracing/);
    watch.signalGroup('SIGINT');
    await watch.waitForLine(/^Still cleaning up \(stop tracing and restore firehose tracing on vhost \/\)/);
    resume();
    const { code } = await watch.exited;
    // The tracer's close is bounded (5 s); tracing is then switched off through the management API, which answers again.
    expect(watch.lines.join('\n')).not.toMatch(/Forced exit/);
    expect(code).toBe(0);
    expect(watch.lines).toContain('Tracing restored: switched off on vhost /.');
    expect(await api().tracing()).toBe(false);
    expect(await api().tracingMarkers()).toEqual([]);
  }, 60_000);

  it('tap: a broker restart while watching is said in one line, the tap comes back on a new queue with its bindings, pairs again, and Ctrl-C leaves nothing', async () => {
    const topic = uniqueName('watch_restart');
    const replyTo = `reply/${uniqueName('dev')}`;
    const watch = startWatch(['--topic', topic, '--timeout', '60000', '--json']);
    const before = (await watch.queue) as string;
    await request(topic, 'before-restart', replyTo);
    await untilBound(before, 2);

    const paused = watch.waitForLine(/^Tap paused: lost the broker \(.+\), which deletes the tap queue with its bindings; reconnecting\.$/);
    const resumed = watch.waitForLine(/^Tap resumed on a new queue "bridgescope\.watch-tap\.[^"]+" after \d+ s unseen/);
    await restartBroker();
    await paused;
    const after = /"(bridgescope\.watch-tap\.[^"]+)"/.exec(await resumed)?.[1] as string;
    expect(after).not.toBe(before);
    // The request key, and the reply key still awaited from before the restart.
    await untilBound(after, 2);
    expect((await api().queues()).map((queue) => queue.name)).not.toContain(before);

    // A request and its reply after the restart are paired.
    const connection = await amqp.connect(broker.urls.amqp);
    closers.push(() => connection.close());
    const channel = await connection.createConfirmChannel();
    channel.publish('amq.direct', topic, Buffer.from(JSON.stringify({ id: 'after-restart', reply_to: replyTo })));
    await channel.waitForConfirms();
    channel.publish('amq.direct', replyTo.replaceAll('/', '.'), Buffer.from(JSON.stringify({ id: 'after-restart', worker: 'w-1' })));
    await channel.waitForConfirms();
    const pair = JSON.parse(await watch.waitForLine(/"id":"after-restart".*"type":"pair"/)) as Record<string, unknown>;
    expect(pair).toMatchObject({ type: 'pair', id: 'after-restart', topic, worker: 'w-1' });

    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
    expect(watch.lines).toContain('Stopped: the tap queue and its bindings are deleted.');
    expect(await tapsOnBroker()).toEqual({ queues: [], bindings: 0 });
  }, 180_000);

  it('firehose: a broker restart while watching is said, tracing is switched on again, and Ctrl-C switches it off with no marker left', async () => {
    const watch = startWatch(['--mode', 'firehose', '--topic', uniqueName('watch_fhr'), '--timeout', '60000']);
    await watch.waitForLine(/^Watching .* through the firehose \(turned on/);
    const paused = watch.waitForLine(/^Tracing paused: lost the broker \(.+\); reconnecting\.$/);
    const resumed = watch.waitForLine(/^Tracing resumed on vhost \/ \(switched on again: a broker restart resets it\)\.$/);
    await restartBroker();
    await paused;
    await resumed;
    expect(await api().tracing()).toBe(true);
    watch.child.kill('SIGINT');
    expect((await watch.exited).code).toBe(0);
    expect(watch.lines).toContain('Tracing restored: switched off on vhost /.');
    expect(await api().tracing()).toBe(false);
    expect(await api().tracingMarkers()).toEqual([]);
  }, 180_000);
});
