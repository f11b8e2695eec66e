/**
 * `bridgescope watch` (issue 23) against independent clients on the real broker: mosquitto_pub / mosquitto_sub as devices
 * and a Python pika worker that answers some requests, one late, one on a wrong key and one not at all. Every pair and
 * verdict is checked, and each way of stopping leaves no tap queue and no binding behind.
 */
import { join } from 'node:path';
import amqp from 'amqplib';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ManagementApi } from '../../src/core/broker/management-api';
import { managementRequest } from '../../src/core/broker/management-http';
import { RpcServer } from '../../src/core/rpc/server';
import { loadHandler, parseHandlerSpec } from '../../src/core/rpc/handlers';
import { cliPath, runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { closedPort } from '../support/ports';
import { startGroupLeader, startProcess, type GroupLeader, type Running } from '../support/processes';
import { createTestVhost } from '../support/vhosts';

const broker = inject('broker');
const mqttPort = String(broker.ports.mqtt);
const running: Running[] = [];
const leaders: GroupLeader[] = [];
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const leader of leaders.splice(0)) await leader.kill();
  for (const process of running.splice(0)) await process.stop();
  for (const close of closers.splice(0)) await close().catch(() => undefined);
});

const [major = 0, minor = 0] = (broker.version ?? '0.0').split('.').map(Number);
const mqtt5 = major > 3 || (major === 3 && minor >= 13);

function start(command: string, args: string[]): Running {
  const process = startProcess(command, args);
  running.push(process);
  return process;
}

function startWatch(args: string[]): GroupLeader & { queue: Promise<string | undefined> } {
  const leader = startGroupLeader(process.execPath, [cliPath, 'watch', '--amqp', broker.urls.amqp, '--management', broker.urls.management, ...args]);
  leaders.push(leader);
  const queue = leader.waitForLine(/^Watching /).then((line) => /tap queue "([^"]+)"/.exec(line)?.[1]);
  return Object.assign(leader, { queue });
}

/** The JSON lines printed so far, parsed (summaries left out). */
interface JsonLine {
  type: string;
  id?: string;
  verdict?: { code: string; message: string; evidence?: string[] };
  [field: string]: unknown;
}
function jsonLines(leader: GroupLeader): JsonLine[] {
  return leader.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as JsonLine).filter((line) => line.type !== 'summary');
}

/** Whether the broker still has the tap queue, or any binding to it on amq.direct. */
async function leftOnBroker(queue: string): Promise<{ queue: boolean; bindings: number }> {
  const api = new ManagementApi(broker.urls.management);
  const queues = await api.queues();
  const bindings = await api.bindings('amq.direct');
  return { queue: queues.some((item) => item.name === queue), bindings: bindings.filter((binding) => binding.destination === queue).length };
}

/** Until the management API lists a connection its client named `name` (it lists a new one a few seconds late; no sleep). */
async function untilListed(name: string): Promise<void> {
  const api = new ManagementApi(broker.urls.management);
  for (;;) {
    const connections = await api.vhostConnections();
    if (connections.some((connection) => connection.connectionName === name)) return;
  }
}

/** Until the management API lists a binding on amq.direct from `key` to `queue` (it answers each ask; no sleep). */
async function untilBound(queue: string, key: string): Promise<void> {
  const api = new ManagementApi(broker.urls.management);
  for (;;) {
    const bindings = await api.bindings('amq.direct');
    if (bindings.some((binding) => binding.destination === queue && binding.bindingKey === key)) return;
  }
}

function publish(topic: string, body: unknown, extra: string[] = []): Promise<number | null> {
  return start('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-q', '1', '-t', topic, '-i', uniqueName('pub'), '-m', typeof body === 'string' ? body : JSON.stringify(body), ...extra]).exited;
}

describe('bridgescope watch', () => {
  it.each(['tap', 'firehose'] as const)('%s mode pairs the replies of a third-party worker and gives each unanswered request its verdict', async (mode) => {
    const queue = uniqueName('watch_rpc');
    const idleKey = uniqueName('watch_idle');
    const nobodyKey = uniqueName('watch_nobody');
    // A queue bound for idleKey that nobody consumes.
    const connection = await amqp.connect(broker.urls.amqp);
    closers.push(() => connection.close());
    const channel = await connection.createChannel();
    await channel.assertQueue(idleKey, { autoDelete: false, durable: false });
    closers.push(() => channel.deleteQueue(idleKey));
    await channel.bindQueue(idleKey, 'amq.direct', idleKey);

    const worker = start('/usr/bin/python3', [join(import.meta.dirname, '..', 'support', 'watch_worker.py'), broker.urls.amqp, queue, '3']);
    await worker.waitForLine(/^ready$/);
    // Listed by the management API before the watch starts (a worker of long standing, as in a fleet): its name is known.
    await untilListed(`watch-worker ${queue}`);
    const watch = startWatch(['--mode', mode, '--topic', queue, '--topic', idleKey, '--topic', nobodyKey, '--timeout', '1500', '--late-window', '10000', '--json']);
    const tapQueue = await watch.queue;

    const device = uniqueName('dev');
    const subscriber = start('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', mqttPort, '-t', `reply/${device}`, '-q', '1', '-C', mqtt5 ? '3' : '2', '-d', '-i', uniqueName('sub')]);
    await subscriber.waitForLine(/received SUBACK/);
    const replyTo = `reply/${device}`;
    // A tap binds the reply key once it sees a request: a worker faster than that bind is missed on the first request from a
    // reply topic. The key then stays bound (--key-linger), so the unanswered request goes first and the rest are all seen.
    expect(await publish(queue, { id: 'none-1', reply_to: replyTo, params: {} })).toBe(0);
    // The tap's bind comes a moment after it reads that request: on a loaded machine ok-1's reply beat it (a 4.3.6 CI run
    // paired only ok-2). Await the binding, as a device's next request would usually be later than this test's.
    if (mode === 'tap') await untilBound(tapQueue as string, replyTo.replace('/', '.'));
    for (const id of ['ok-1', 'ok-2', 'late-1', 'wrong-1']) expect(await publish(queue, { id, reply_to: replyTo, params: {} })).toBe(0);
    expect(await publish(idleKey, { id: 'idle-1', reply_to: replyTo })).toBe(0);
    expect(await publish(nobodyKey, { id: 'nobody-1', reply_to: replyTo })).toBe(0);
    if (mqtt5) {
      // MQTT 5 on the device's reply topic (already bound: a new one would race the tap's bind, as above).
      expect(await publish(queue, 'mqtt5 body', ['-V', 'mqttv5', '-D', 'publish', 'response-topic', replyTo, '-D', 'publish', 'correlation-data', 'ok-5'])).toBe(0);
    }
    // The device gets its prompt replies and then leaves (-C), before the late one: the firehose sees that one dropped
    // if it is not late (a reply to a device that left is no answer), so the device stays for all the prompt ones.
    expect(await subscriber.exited).toBe(0);
    expect(subscriber.lines.filter((line) => line.startsWith('{')).map((line) => (JSON.parse(line) as { id: string }).id).sort()).toEqual(mqtt5 ? ['ok-1', 'ok-2', 'ok-5'] : ['ok-1', 'ok-2']);

    // The late reply is the last line to come: its late-reply verdict.
    await watch.waitForLine(/"code":"late-reply"/);
    const lines = jsonLines(watch);
    const pairs = Object.fromEntries(lines.filter((line) => line.type === 'pair').map((line) => [line.id as string, line]));
    const verdicts = lines.filter((line) => line.type === 'verdict').map((line) => `${line.id}:${line.verdict?.code}`);
    expect(Object.keys(pairs).sort()).toEqual(mqtt5 ? ['ok-1', 'ok-2', 'ok-5'] : ['ok-1', 'ok-2']);
    expect(pairs['ok-1']).toMatchObject({ pattern: 'seed', topic: queue, replyKey: `reply.${device}`, worker: 'py-1' });
    if (mqtt5) expect(pairs['ok-5']).toMatchObject({ pattern: 'mqtt5', topic: queue, replyKey: `reply.${device}`, worker: 'py-1' });
    expect(verdicts.sort()).toEqual(
      [
        'idle-1:no-consumer',
        'late-1:server-slow', // at the timeout the worker had the request and no reply had come
        'late-1:late-reply',
        'nobody-1:request-unroutable',
        // The first request on a reply topic: a tap binds its key only then, so it cannot tell "no reply" from "a reply
        // faster than the bind" (undetermined, counted "not seen"); the firehose sees there was none.
        mode === 'tap' ? 'none-1:undetermined' : 'none-1:server-slow',
        // On amq.direct a tap cannot see a reply sent to a key it does not know: the firehose mode can.
        mode === 'tap' ? 'wrong-1:server-slow' : 'wrong-1:reply-unroutable',
      ].sort(),
    );
    const idle = lines.find((line) => line.id === 'idle-1');
    expect(idle?.verdict?.message).toContain(`Queue "${idleKey}"`);
    // The firehose saw which connection took the request: named by the name the worker gave it, as the Trace names it.
    if (mode === 'firehose') {
      const none = lines.find((line) => line.id === 'none-1' && line.type === 'verdict');
      expect(none?.verdict?.message).toMatch(/ took the request/);
      expect(none?.verdict?.message).toContain(`named "watch-worker ${queue}"`);
    }
    // The worker (pika's defaults) publishes its replies non-persistent: from 3.13 the broker delivers them at QoS 0,
    // which the device's own output shows (mosquitto_sub -d: "q0"), and the watch says once and counts.
    const deliveredQos = subscriber.lines.filter((line) => /received PUBLISH/.test(line)).map((line) => /\(d\d, q(\d)/.exec(line)?.[1]);
    expect(new Set(deliveredQos)).toEqual(new Set([mqtt5 ? '0' : '1']));
    const qos0Lines = lines.filter((line) => line.type === 'qos0-replies');
    expect(qos0Lines).toEqual(mqtt5 ? [expect.objectContaining({ topic: queue, replyKey: `reply.${device}`, worker: 'py-1', brokerVersion: broker.version })] : []);

    watch.signalGroup('SIGINT');
    expect({ ...(await watch.exited), output: watch.lines }).toEqual({ code: 0, signal: null, output: expect.any(Array) });
    // With --json the summary printed on the way out, after every verdict, is a JSON line too.
    const summaries = watch.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as JsonLine).filter((line) => line.type === 'summary' && line.topic === queue);
    expect(summaries.at(-1)).toMatchObject({
      requests: mqtt5 ? 6 : 5,
      replies: mqtt5 ? 3 : 2,
      // The tap cannot tell none-1 (the first on its reply topic) from a reply faster than its bind.
      ...(mode === 'tap' ? { unanswered: 2, unseen: 1 } : { unanswered: 3, unseen: 0 }),
      waiting: 0,
      late: 1,
      workers: { 'py-1': mqtt5 ? 3 : 2 },
      p50: expect.any(Number),
      // of the replies in time, every one (the late one is counted late)
      qos0Replies: mqtt5 ? 3 : 0,
    });
    if (mode === 'tap') expect(await leftOnBroker(tapQueue as string)).toEqual({ queue: false, bindings: 0 });
    else expect(watch.lines).toContainEqual('Tracing restored: switched off on vhost /.');
  });

  it.each(['tap', 'firehose'] as const)('%s mode tells a second reply to an answered request: its own line, who sent each, counted in the summary', async (mode) => {
    const queue = uniqueName('watch_twice');
    const worker = start('/usr/bin/python3', [join(import.meta.dirname, '..', 'support', 'watch_worker.py'), broker.urls.amqp, queue, '3']);
    await worker.waitForLine(/^ready$/);
    const watch = startWatch(['--mode', mode, '--topic', queue, '--timeout', '1500', '--json']);
    const tapQueue = await watch.queue;
    const replyTo = `reply/${uniqueName('twice')}`;
    // The device, subscribed to its reply topic, gets both replies (a reply routed to no queue is no answer to the firehose).
    const device = start('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', mqttPort, '-t', replyTo, '-q', '1', '-C', '2', '-d', '-i', uniqueName('sub')]);
    await device.waitForLine(/received SUBACK/);
    // A request never answered first: a tap binds the reply key when it sees it, before the next request's replies
    // (waited for on the broker: the worker ignoring the request says nothing of when the tap bound).
    expect(await publish(queue, { id: 'none-prime', reply_to: replyTo })).toBe(0);
    await worker.waitForLine(/^ignored none-prime$/);
    if (mode === 'tap') await untilBound(tapQueue as string, replyTo.replace('/', '.'));
    expect(await publish(queue, { id: 'twice-1', reply_to: replyTo })).toBe(0);
    expect(await device.exited).toBe(0);
    expect(device.lines.filter((line) => line.startsWith('{')).map((line) => (JSON.parse(line) as { worker: string }).worker)).toEqual(['py-1', 'py-2']);
    await watch.waitForLine(/"type":"duplicate"/);
    const lines = jsonLines(watch);
    expect(lines.filter((line) => line.type === 'pair')).toEqual([expect.objectContaining({ id: 'twice-1', worker: 'py-1' })]);
    expect(lines.filter((line) => line.type === 'duplicate')).toEqual([
      expect.objectContaining({ id: 'twice-1', topic: queue, replyKey: replyTo.replace('/', '.'), worker: 'py-2', firstWorker: 'py-1', rttMs: expect.any(Number) }),
    ]);
    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
    const summaries = watch.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as JsonLine).filter((line) => line.type === 'summary' && line.topic === queue);
    // The second reply is no second answer: one replied, one extra, the workers' counts those of first replies.
    expect(summaries.at(-1)).toMatchObject({ requests: 2, replies: 1, duplicates: 1, workers: { 'py-1': 1 } });
  });

  it('firehose mode keeps apart two devices that both send id 1, each on its own reply topic: two replied pairs, no retry', async () => {
    const queue = uniqueName('watch_same_id');
    const worker = start('/usr/bin/python3', [join(import.meta.dirname, '..', 'support', 'watch_worker.py'), broker.urls.amqp, queue, '3']);
    await worker.waitForLine(/^ready$/);
    const watch = startWatch(['--mode', 'firehose', '--topic', queue, '--timeout', '1500', '--json']);
    await watch.queue;
    const devices = [uniqueName('dev-a'), uniqueName('dev-b')];
    const subscribers = devices.map((device) => start('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', mqttPort, '-t', `reply/${device}`, '-q', '1', '-C', '1', '-d', '-i', uniqueName('sub')]));
    for (const subscriber of subscribers) await subscriber.waitForLine(/received SUBACK/);
    // Both count from 1 (the worker answers an id starting "ok-"), published one right after the other.
    for (const device of devices) expect(await publish(queue, { id: 'ok-1', reply_to: `reply/${device}` })).toBe(0);
    for (const subscriber of subscribers) expect(await subscriber.exited).toBe(0);
    for (const device of devices) await watch.waitForLine(new RegExp(`^(?=.*"type":"pair")(?=.*"replyKey":"reply\\.${device}")`));
    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
    const lines = jsonLines(watch);
    expect(lines.filter((line) => line.type === 'pair').map((line) => `${line.id} ${line.replyKey}`).sort()).toEqual(devices.map((device) => `ok-1 reply.${device}`).sort());
    const summary = watch.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as JsonLine).filter((line) => line.type === 'summary' && line.topic === queue).at(-1);
    expect(summary).toMatchObject({ requests: 2, replies: 2, retried: 0, unanswered: 0 });
  });

  it('a management API it cannot reach is said at start, and no verdict reads its silence as "nothing is bound"', async () => {
    const queue = uniqueName('watch_blind');
    const closed = await closedPort();
    const worker = start('/usr/bin/python3', [join(import.meta.dirname, '..', 'support', 'watch_worker.py'), broker.urls.amqp, queue, '3']);
    await worker.waitForLine(/^ready$/);
    const watch = startGroupLeader(process.execPath, [cliPath, 'watch', '--amqp', broker.urls.amqp, '--management', `http://guest:guest@127.0.0.1:${closed}`, '--topic', queue, '--topic', queue.replace('_', '/'), '--timeout', '800', '--json']);
    leaders.push(watch);
    await watch.waitForLine(/^Watching /);
    await watch.waitForLine(/^warning: the management API at http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:\d+ could not be asked \(.*\): verdicts on unanswered requests will say what could not be asked instead of why/);
    expect(watch.lines).toContainEqual(expect.stringMatching(/^warning: --topic takes a routing key, and the MQTT plugin turns "\/" into "\."/));
    // The worker takes it and never answers: its queue is bound and consumed, which the watch cannot ask now.
    expect(await publish(queue, { id: 'none-blind', reply_to: `reply/${uniqueName('blind')}` })).toBe(0);
    await worker.waitForLine(/^ignored none-blind$/);
    await watch.waitForLine(/"id":"none-blind"/);
    const verdict = jsonLines(watch).find((line) => line.id === 'none-blind')?.verdict;
    expect(verdict?.code).not.toBe('request-unroutable');
    expect(verdict?.message).not.toMatch(/Nothing is bound/);
    expect(verdict?.evidence).toContainEqual(expect.stringMatching(/^not asked: the bindings on amq\.direct: /));
    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
  });

  it('firehose mode with a management API it cannot reach: says so, exit 4, and no claim that it restored tracing it never read', async () => {
    const closed = await closedPort();
    const failed = await runCli(['watch', '--mode', 'firehose', '--amqp', broker.urls.amqp, '--management', `http://guest:guest@127.0.0.1:${closed}`]);
    expect(failed.code).toBe(4);
    expect(failed.stderr).toMatch(/^bridgescope: Cannot reach the management API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/m);
    expect(failed.stderr).not.toMatch(/^warning: the management API/m);
    expect(failed.stderr).not.toMatch(/Tracing restored/);
  });

  it.each(['watch', 'trace', 'preflight', 'bindings'])('%s refuses a --vhost that is not the AMQP URL\'s, in one sentence, before watching or checking anything', async (command) => {
    const refused = await runCli([command, '--amqp', broker.urls.amqp, '--management', broker.urls.management, '--vhost', 'prod']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--vhost "prod" and the AMQP URL\'s vhost "/" differ');
    expect(refused.stderr.trim().split('\n'), refused.stderr).toHaveLength(1);
    expect(refused.stdout).toBe('');
  });

  it("preflight and bindings read the AMQP URL's vhost: where nothing is bound, preflight fails, whatever / has bound", async () => {
    const vhost = await createTestVhost(broker.urls, 'cli-preflight');
    closers.push(() => vhost.remove());
    // A key routed in "/": before, preflight --amqp <URL of another vhost> read "/" (its --vhost default) and passed.
    const key = uniqueName('vhost_routed');
    const connection = await amqp.connect(broker.urls.amqp);
    closers.push(() => connection.close());
    const channel = await connection.createChannel();
    await channel.assertQueue(key, { exclusive: true });
    await channel.bindQueue(key, 'amq.direct', key);
    const management = ['--management', broker.urls.management];
    const [inRoot, checked, agreed, listed] = await Promise.all([
      runCli(['preflight', ...management, '--amqp', broker.urls.amqp, '--topic', key]),
      runCli(['preflight', ...management, '--amqp', vhost.amqpUrl, '--topic', key]),
      runCli(['preflight', ...management, '--amqp', vhost.amqpUrl, '--vhost', vhost.name, '--topic', key]),
      runCli(['bindings', ...management, '--amqp', vhost.amqpUrl]),
    ]);
    expect(inRoot.stdout).toMatch(new RegExp(`^PASS  request routed: "${key}" on amq.direct reaches ${key}\\.`, 'm'));
    for (const result of [checked, agreed]) {
      expect(result.code, result.stderr).toBe(1);
      expect(result.stdout).toMatch(new RegExp(`^FAIL  request routed: No queue is bound to amq.direct for routing key "${key}"`, 'm'));
      expect(result.stdout).not.toContain(`reaches ${key}`);
    }
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toBe('No bindings on amq.direct.\n');
  });

  it('tap mode, a new reply topic per request (the seed device): no reply seen is "not seen", never "server slow"; routed nowhere is unanswered', async () => {
    const queue = uniqueName('watch_fresh');
    const nobodyKey = uniqueName('watch_fresh_nobody');
    // The worker takes every none-* request and never answers: the tap cannot tell that from a reply before its bind.
    const worker = start('/usr/bin/python3', [join(import.meta.dirname, '..', 'support', 'watch_worker.py'), broker.urls.amqp, queue, '3']);
    await worker.waitForLine(/^ready$/);
    const watch = startWatch(['--topic', queue, '--topic', nobodyKey, '--timeout', '800']);
    await watch.queue;
    const ids = ['none-fresh-1', 'none-fresh-2', 'none-fresh-3'];
    for (const id of ids) expect(await publish(queue, { id, reply_to: `reply/${uniqueName('fresh')}` })).toBe(0);
    expect(await publish(nobodyKey, { id: 'nobody-fresh', reply_to: `reply/${uniqueName('fresh')}` })).toBe(0);
    for (const id of ids) await worker.waitForLine(new RegExp(`^ignored ${id}$`));
    for (const id of [...ids, 'nobody-fresh']) await watch.waitForLine(new RegExp(` id ${id} `));
    for (const id of ids) {
      const line = watch.lines.find((candidate) => candidate.includes(` id ${id} `));
      expect(line).toMatch(/ undetermined .*the tap could bind that key only once it saw the request.*--mode firehose/);
    }
    // Routed nowhere: no reply could have come, whatever the tap saw.
    expect(watch.lines.find((candidate) => candidate.includes(' id nobody-fresh '))).toMatch(/request-unroutable/);
    await watch.waitForLine(/^warning: the tap binds a reply key only once it sees a request naming it/);
    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
    // The summary printed on the way out, after every verdict.
    expect(watch.lines).toContainEqual(expect.stringMatching(new RegExp(`^summary ${queue}: .* 3 requests, 0 replied, 0 unanswered, 3 not seen \\(reply key bound after the request\\);`)));
    expect(watch.lines).toContainEqual(expect.stringMatching(new RegExp(`^summary ${nobodyKey}: .* 1 request, 0 replied, 1 unanswered;`)));
  });

  it('firehose mode judges a request by where the broker routed it then: a queue deleted after it took the request is not "nothing is bound"', async () => {
    const key = uniqueName('watch_gone');
    const connection = await amqp.connect(broker.urls.amqp);
    try {
      const channel = await connection.createChannel();
      await channel.assertQueue(key, { durable: false });
      await channel.bindQueue(key, 'amq.direct', key);
      // A timeout with room for the publish, the check and the delete on a loaded machine: all must come before it.
      const watch = startWatch(['--mode', 'firehose', '--topic', key, '--timeout', '5000', '--json']);
      await watch.waitForLine(/^Watching /);
      expect(await publish(key, { id: 'gone-1', reply_to: `reply/${uniqueName('gone')}` })).toBe(0);
      // The request is in the queue (nobody consumes it); then the queue goes, before the watch's timeout.
      while ((await channel.checkQueue(key)).messageCount === 0) await new Promise((resolve) => setImmediate(resolve));
      await channel.deleteQueue(key);
      await watch.waitForLine(/"id":"gone-1"/);
      const [line] = jsonLines(watch).filter((candidate) => candidate.id === 'gone-1');
      expect(line?.routedQueues).toEqual([key]);
      // It reached the queue, which is gone now: never "nothing is bound ... dropped".
      expect(line?.verdict?.code).toBe('undetermined');
      expect(line?.verdict?.message).toContain(`The broker routed the request to queue "${key}", but nothing is bound for "${key}" on amq.direct now`);
      watch.signalGroup('SIGINT');
      expect((await watch.exited).code).toBe(0);
    } finally {
      await connection.close();
    }
  });

  it('firehose mode: a request routed only to a device subscribed to its topic reached no server: request-unroutable, not "routed to ... deleted since"', async () => {
    const key = uniqueName('watch_subonly');
    const subscriber = start('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', mqttPort, '-t', key, '-q', '1', '-d', '-i', uniqueName('sub')]);
    await subscriber.waitForLine(/received SUBACK/);
    const watch = startWatch(['--mode', 'firehose', '--topic', key, '--timeout', '1000', '--json']);
    await watch.waitForLine(/^Watching /);
    expect(await publish(key, { id: 'subonly-1', reply_to: `reply/${uniqueName('subonly')}` })).toBe(0);
    await watch.waitForLine(/"id":"subonly-1"/);
    const [line] = jsonLines(watch).filter((candidate) => candidate.id === 'subonly-1');
    expect(line?.routedQueues).toEqual([expect.stringMatching(/^mqtt-subscription-/)]);
    expect(line?.verdict?.code).toBe('request-unroutable');
    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
  });

  it("a running tap is nobody's server: call and preflight on a key only the tap is bound to say routed nowhere, and bindings says whose queue it is", async () => {
    const lonelyKey = uniqueName('watch_lonely');
    const watch = startWatch(['--topic', lonelyKey, '--timeout', '60000']);
    const tap = await watch.queue;
    expect(tap).toMatch(/^bridgescope\.watch-tap\./);
    const urls = ['--mqtt', broker.urls.mqtt, '--amqp', broker.urls.amqp, '--management', broker.urls.management];
    const [called, checked, listed] = await Promise.all([
      runCli(['call', ...urls, '--topic', lonelyKey, '--timeout', '1500', '{}']),
      runCli(['preflight', '--management', broker.urls.management, '--amqp', broker.urls.amqp, '--topic', lonelyKey]),
      runCli(['bindings', '--management', broker.urls.management, '--amqp', broker.urls.amqp]),
    ]);
    expect(called.code).toBe(3);
    expect(called.stderr).toMatch(new RegExp(`why: Nothing is bound on amq.direct for routing key "${lonelyKey}"`));
    expect(called.stderr).not.toContain(tap as string);
    expect(checked.stdout).toMatch(new RegExp(`^FAIL  request routed: No queue is bound to amq.direct for routing key "${lonelyKey}"`, 'm'));
    expect(listed.stdout).toMatch(new RegExp(`${lonelyKey}\\s+${(tap as string).replaceAll('.', '\\.')}\\s+a BridgeScope watch's tap: no server`));
    // call --trace while the tap watches the served key: the tap's copies are in the trace, and so is the reply's delivery
    // to the client's own subscription (the trace waits for that one, not for the first reply copy it sees).
    const servedKey = uniqueName('watch_served');
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, exchange: 'amq.direct', queue: servedKey, workers: 1, handler: await loadHandler(parseHandlerSpec('echo')) });
    await server.start();
    closers.push(() => server.stop());
    const watchServed = startWatch(['--topic', servedKey, '--timeout', '60000']);
    await watchServed.queue;
    const traced = await runCli(['call', ...urls, '--topic', servedKey, '--trace', '--json', '{}']);
    expect(traced.code, traced.stderr).toBe(0);
    const deliveries = (JSON.parse(traced.stdout) as { trace: Array<{ kind: string; detail: { leg?: string; queue?: string } }> }).trace
      .filter((step) => step.kind === 'broker.delivered')
      .map((step) => `${step.detail.leg} ${step.detail.queue?.replace(/^(bridgescope\.watch-tap|mqtt-subscription)-?\..*|^(mqtt-subscription-).*/, '$1$2')}`);
    expect(deliveries).toEqual(expect.arrayContaining([`request ${servedKey}`, 'request bridgescope.watch-tap', 'reply mqtt-subscription-']));
    for (const leader of [watch, watchServed]) {
      leader.signalGroup('SIGINT');
      expect((await leader.exited).code).toBe(0);
    }
  });

  it('taps through a server-named queue for a user allowed to configure only those (configure permission ^amq\\.gen-)', async () => {
    const user = uniqueName('tapper');
    const api = new ManagementApi(broker.urls.management);
    await managementRequest(broker.urls.management, `/api/users/${user}`, { method: 'PUT', body: { password: 'secret', tags: '' } });
    closers.push(() => managementRequest(broker.urls.management, `/api/users/${user}`, { method: 'DELETE' }));
    await managementRequest(broker.urls.management, `/api/permissions/%2F/${user}`, { method: 'PUT', body: { configure: '^amq\\.gen-.*', write: '^amq\\.gen-.*', read: '.*' } });
    const amqpUrl = broker.urls.amqp.replace(/\/\/[^@]*@/, `//${user}:secret@`);
    const leader = startGroupLeader(process.execPath, [cliPath, 'watch', '--amqp', amqpUrl, '--management', broker.urls.management, '--topic', uniqueName('watch_least'), '--timeout', '1000']);
    leaders.push(leader);
    const queue = /tap queue "([^"]+)"/.exec(await leader.waitForLine(/^Watching /))?.[1];
    expect(queue).toMatch(/^amq\.gen-/);
    expect((await api.queues()).some((item) => item.name === queue)).toBe(true);
    leader.signalGroup('SIGINT');
    expect((await leader.exited).code).toBe(0);
  });

  it("says at start that '#' on a direct exchange is a key, not a pattern (it would watch nothing)", async () => {
    const watch = startWatch(['--topic', '#', '--timeout', '1000']);
    await watch.waitForLine(/^warning: amq\.direct is a direct exchange: "#" matches only messages published with that very key, not a pattern/);
    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
  });

  it('a tap on an exchange the vhost lacks stops in one sentence naming it, not amqplib\'s "Operation failed"', async () => {
    const missing = uniqueName('amq.nope');
    const result = await runCli(['watch', '--amqp', broker.urls.amqp, '--management', broker.urls.management, '--exchange', missing]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`bridgescope: The exchange "${missing}" does not exist in vhost "/", so there is nothing to tap`);
    expect(result.stderr).not.toContain('Operation failed');
    // Said once: the start-up check leaves the tap's own sentence to say it.
    expect(result.stderr.match(/does not exist/g)).toHaveLength(1);
  });

  it.each(['tap', 'firehose'] as const)('%s mode says and counts a malformed request (not JSON, no reply_to) instead of skipping it', async (mode) => {
    const key = uniqueName('watch_malformed');
    const watch = startWatch(['--mode', mode, '--topic', key, '--timeout', '1000']);
    await watch.queue;
    expect(await publish(key, 'not json at all')).toBe(0);
    expect(await publish(key, { id: 'no-reply-to' })).toBe(0);
    await watch.waitForLine(new RegExp(`ignored   ${key}: not a request the watch can pair: its body is not a JSON object \\(15 bytes\\)`));
    await watch.waitForLine(new RegExp(`ignored   ${key}: not a request the watch can pair: its JSON body has no "reply_to"`));
    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
    expect(watch.lines.find((line) => line.startsWith(`summary ${key}:`))).toContain('0 requests, 0 replied, 0 unanswered, 2 not requests (no id or reply topic: not followed)');
  });

  it('says at start that the MQTT plugin publishes to another exchange than --exchange, told by where its subscribers are bound', async () => {
    // A device subscribed: the plugin binds its subscription queue on the exchange it publishes to (amq.direct here).
    const topic = uniqueName('reply/exchange-hint');
    const clientId = uniqueName('sub');
    const device = start('mosquitto_sub', ['-h', '127.0.0.1', '-p', mqttPort, '-t', topic, '-q', '1', '-i', clientId]);
    await untilBound(`mqtt-subscription-${clientId}qos1`, topic.replace(/\//g, '.'));
    const watch = startWatch(['--exchange', 'amq.topic', '--timeout', '1000']);
    await watch.waitForLine(/^warning: the MQTT clients' subscriptions here are bound on amq\.direct, not on amq\.topic: the MQTT plugin publishes to amq\.direct, and nothing a device publishes reaches amq\.topic\. Did you mean --exchange amq\.direct\?$/);
    watch.signalGroup('SIGINT');
    expect((await watch.exited).code).toBe(0);
    await device.stop();
  });

  it("with '#' on a topic exchange, names a reply sent on a wrong key as reply-unroutable", async () => {
    const requestKey = `${uniqueName('watch_t')}.rpc`;
    const connection = await amqp.connect(broker.urls.amqp);
    closers.push(() => connection.close());
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, 'amq.topic', requestKey);
    // A worker (any AMQP client) that replies to the right id on the wrong key.
    await channel.consume(queue, (message) => {
      if (!message) return;
      const request = JSON.parse(message.content.toString()) as { id: string; reply_to: string };
      channel.publish('amq.topic', `wrong.${request.reply_to.replaceAll('/', '.')}`, Buffer.from(JSON.stringify({ id: request.id, worker: 'js-1' })));
    }, { noAck: true });
    const watch = startWatch(['--exchange', 'amq.topic', '--topic', '#', '--timeout', '1000', '--json']);
    await watch.queue;
    channel.publish('amq.topic', requestKey, Buffer.from(JSON.stringify({ id: 'wrong-t', reply_to: 'reply/t' })));
    const line = JSON.parse(await watch.waitForLine(/"type":"verdict"/)) as JsonLine;
    expect(line).toMatchObject({ id: 'wrong-t', topic: requestKey, verdict: { code: 'reply-unroutable' } });
    expect(line.verdict?.message).toContain(`key "wrong.reply.t", not "reply.t"`);
    watch.signalGroup('SIGINT');
    expect({ ...(await watch.exited), output: watch.lines }).toEqual({ code: 0, signal: null, output: expect.any(Array) });
  });

  it('firehose mode sent two quick Ctrl-C to its process group switches tracing back off and leaves no marker', async () => {
    const api = new ManagementApi(broker.urls.management);
    const watch = startWatch(['--mode', 'firehose', '--topic', uniqueName('watch_fh'), '--timeout', '60000']);
    await watch.queue;
    expect(await api.tracing()).toBe(true);
    watch.signalGroup('SIGINT');
    watch.signalGroup('SIGINT');
    expect({ ...(await watch.exited), output: watch.lines }).toEqual({ code: 0, signal: null, output: expect.any(Array) });
    expect(watch.lines).toContainEqual('Tracing restored: switched off on vhost /.');
    expect(await api.tracing()).toBe(false);
    expect(await api.tracingMarkers()).toEqual([]);
  });

  it.each([
    ['one Ctrl-C to the process', (watch: GroupLeader) => watch.child.kill('SIGINT')],
    ['two quick Ctrl-C to the process group', (watch: GroupLeader) => (watch.signalGroup('SIGINT'), watch.signalGroup('SIGINT'))],
  ])('%s while a reply key is bound leaves no tap queue and no binding', async (_name, stop) => {
    const queue = uniqueName('watch_stop');
    const watch = startWatch(['--topic', queue, '--timeout', '60000']);
    const tapQueue = (await watch.queue) as string;
    // A request nobody answers: its reply key stays bound on the tap while it waits.
    expect(await publish(queue, { id: 'waiting', reply_to: `reply/${uniqueName('dev')}` })).toBe(0);
    const api = new ManagementApi(broker.urls.management);
    for (;;) {
      const bound = (await api.bindings('amq.direct')).filter((binding) => binding.destination === tapQueue).length;
      if (bound === 2) break;
    }
    stop(watch);
    expect({ ...(await watch.exited), output: watch.lines }).toEqual({ code: 0, signal: null, output: expect.any(Array) });
    expect(watch.lines).toContainEqual('Stopped: the tap queue and its bindings are deleted.');
    expect(await leftOnBroker(tapQueue)).toEqual({ queue: false, bindings: 0 });
  });
});
