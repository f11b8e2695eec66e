import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { RpcServer } from '../../src/core/rpc/server';
import { RpcClient } from '../../src/core/rpc/client';
import { loadHandler } from '../../src/core/rpc/handlers';
import { uniqueName } from '../support/names';
import { startProcess, type Running } from '../support/processes';
import { runCli } from '../support/cli';

const broker = inject('broker');
const mqttPort = String(broker.ports.mqtt);
const running: Running[] = [];
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const process of running.splice(0)) await process.stop();
  for (const close of closers.splice(0)) await close();
});

function start(command: string, args: string[]): Running {
  const process = startProcess(command, args);
  running.push(process);
  return process;
}

describe('interop with independent clients', () => {
  it('answers mosquitto_pub, and mosquitto_sub receives the reply on its uuid topic', async () => {
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_queue'), workers: 1, handler: await loadHandler({ kind: 'echo' }) });
    await server.start();
    closers.push(() => server.stop());
    const replyTopic = `reply/${uniqueName('mosquitto')}`;
    // stdbuf: mosquitto_sub block-buffers its stdout into a pipe, which would hide the SUBACK line.
    const subscriber = start('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', mqttPort, '-t', replyTopic, '-q', '1', '-C', '1', '-d', '-i', uniqueName('sub')]);
    await subscriber.waitForLine(/received SUBACK/);

    const publisher = start('mosquitto_pub', [
      '-h', '127.0.0.1', '-p', mqttPort, '-q', '1', '-t', server.queue, '-i', uniqueName('pub'),
      '-m', JSON.stringify({ id: 'from-mosquitto', reply_to: replyTopic, params: { temperature: 21.5 } }),
    ]);
    expect(await publisher.exited).toBe(0);
    const replyLine = await subscriber.waitForLine(/^\{/);
    expect(JSON.parse(replyLine)).toEqual({ id: 'from-mosquitto', result: { temperature: 21.5 }, worker: 'worker-1' });
    // Delivered at QoS 1 as subscribed (issue 22: our transient replies came as q0 on 4.x): `-d` prints the PUBLISH flags.
    expect(await subscriber.waitForLine(/received PUBLISH/)).toMatch(/received PUBLISH \(d0, q1,/);
  });

  it("gets the seed Python (pika) server's plain-text reply, matched by routing key", async () => {
    const queue = uniqueName('rpc_queue');
    const python = start('/usr/bin/python3', [join(import.meta.dirname, '..', 'support', 'seed_server.py'), broker.urls.amqp, queue]);
    await python.waitForLine(/^ready$/);
    const client = new RpcClient({ mqttUrl: broker.urls.mqtt, strategy: 'per-request' });
    await client.connect();
    closers.push(() => client.close());
    const outcome = await client.call({ topic: queue, params: 'hello python', timeoutMs: 5000 });
    expect(outcome.body).toEqual({ kind: 'text', text: 'done' });
    expect(outcome.topicMismatch).toBe(false);
    await python.waitForLine(new RegExp(`answered ${outcome.replyTopic}`));
  });

  it(`names delivery_mode when the seed Python server's non-persistent reply reaches a QoS 1 subscriber at QoS 0 (3.13+; RabbitMQ ${broker.version ?? 'unknown'})`, async () => {
    const queue = uniqueName('rpc_queue');
    const python = start('/usr/bin/python3', [join(import.meta.dirname, '..', 'support', 'seed_server.py'), broker.urls.amqp, queue]);
    await python.waitForLine(/^ready$/);
    const client = new RpcClient({ mqttUrl: broker.urls.mqtt, strategy: 'per-request' });
    await client.connect();
    closers.push(() => client.close());
    const outcome = await client.call({ topic: queue, qos: 1, params: 'which qos?', timeoutMs: 5000 });
    const [major = 0, minor = 0] = (broker.version ?? '0.0').split('.').map(Number);
    if (major > 3 || (major === 3 && minor >= 13)) {
      expect(outcome.replyQos).toBe(0);
      expect(outcome.warnings).toContainEqual(expect.stringMatching(/arrived at QoS 0 though its subscription was granted QoS 1: .*delivery_mode/));
    } else {
      expect(outcome.replyQos).toBe(1);
      expect(outcome.warnings.join(' ')).not.toContain('delivery_mode');
    }
  });

  it('lets bridgescope call reach the Python server and print its reply on stdout', async () => {
    const queue = uniqueName('rpc_queue');
    const python = start('/usr/bin/python3', [join(import.meta.dirname, '..', 'support', 'seed_server.py'), broker.urls.amqp, queue]);
    await python.waitForLine(/^ready$/);
    const result = await runCli(['call', '--mqtt', broker.urls.mqtt, '--topic', queue, '--qos', '2', '{"temperature": 20}']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('done\n');
    expect(result.stderr).toMatch(/QoS 2.*PUBACK/);
  });
});

describe('bridgescope serve and call (CLI)', () => {
  it('serves requests from call until SIGTERM, then drains and exits 0', async () => {
    const queue = uniqueName('rpc_queue');
    const serve = start(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'bridgescope'), 'serve', '--amqp', broker.urls.amqp, '--queue', queue, '--workers', '2']);
    await serve.waitForLine(/^Serving "rpc_queue-/);
    expect(serve.lines.join('\n')).not.toContain('guest:guest');

    const call = await runCli(['call', '--mqtt', broker.urls.mqtt, '--topic', queue, '--reply', 'shared', '[1,2,3]']);
    expect(call.code).toBe(0);
    expect(JSON.parse(call.stdout)).toMatchObject({ result: [1, 2, 3], worker: expect.stringMatching(/^worker-[12]$/) });

    const dotted = await runCli(['call', '--mqtt', broker.urls.mqtt, '--topic', queue, '--reply-topic', `reply/v2.0/${uniqueName('x')}`, '"dot"']);
    expect(dotted.code).toBe(0);
    expect(dotted.stderr).toMatch(/arrived on "reply\/v2\/0\//);

    serve.child.kill('SIGTERM');
    expect(await serve.exited).toBe(0);
    expect(serve.lines.join('\n')).toMatch(/received 2, replied 2/);
  });

  it('exits 3 on timeout, 4 on an unreachable broker and 2 on a bad payload, with the error and its why on stderr', async () => {
    const timeout = await runCli(['call', '--mqtt', broker.urls.mqtt, '--topic', uniqueName('nobody'), '--timeout', '300']);
    expect(timeout.code).toBe(3);
    const dead = await runCli(['call', '--mqtt', 'mqtt://127.0.0.1:1']);
    expect(dead.code).toBe(4);
    const bad = await runCli(['call', '--mqtt', broker.urls.mqtt, '{"broken"']);
    expect(bad.code).toBe(2);
    // A failed call says what failed, then why (issue 12); bad input is said once.
    for (const result of [timeout, dead]) expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^bridgescope: /), expect.stringMatching(/^why: /)]);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('explains a topic with map', async () => {
    const result = await runCli(['map', 'reply/v1.2/x', '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ routingKey: 'reply.v1.2.x', backToTopic: 'reply/v1/2/x', roundTrips: false });
  });

  it('map fails (exit 1) on a topic that cannot be used in its role, and says why', async () => {
    const [text, json] = await Promise.all([runCli(['map', 'a/+/b', '--role', 'publish']), runCli(['map', 'a/+/b', '--role', 'publish', '--json'])]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('error: MQTT forbids wildcards in a PUBLISH topic');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ issues: [{ code: 'wildcard-in-topic', blocking: true }] });
    // The same filter as a subscription is fine.
    expect((await runCli(['map', 'a/+/b', '--role', 'filter'])).code).toBe(0);
  });
});
