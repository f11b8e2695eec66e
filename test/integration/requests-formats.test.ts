import { EventEmitter } from 'node:events';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ErrorShape } from '../../src/shared/errors';
import type { RpcOutcome } from '../../src/shared/rpc';
import { dispatch } from '../../src/core/dispatch';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { RpcClient } from '../../src/core/rpc/client';
import { RpcServer } from '../../src/core/rpc/server';
import { loadHandler, parseHandlerSpec } from '../../src/core/rpc/handlers';
import { ManagementApi } from '../../src/core/broker/management-api';
import { atLeast, parseBrokerVersion } from '../../src/shared/broker-versions';
import { uniqueName } from '../support/names';
import { runCli } from '../support/cli';
import { createTestVhost, type TestVhost } from '../support/vhosts';

/** Payload formats and MQTT 5 options against the run's real broker: 3.10.8 has no MQTT 5, 4.0.5 and 4.3.6 have it. */
const broker = inject('broker');
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close();
}, 60_000);

const version = parseBrokerVersion(broker.version);
/** MQTT 5 came in 3.13: 3.10.8 closes an MQTT 5 CONNECT, 4.0.5 and 4.3.6 take it (docs/BROKER-VERSIONS.md). */
const hasMqtt5 = version !== undefined && atLeast(version, 3, 13);

describe(`MQTT 5 asked of RabbitMQ ${broker.version ?? 'unknown'} (${hasMqtt5 ? 'has' : 'has no'} MQTT 5)`, () => {
  if (hasMqtt5) {
    it('protocol 5: connected over MQTT 5', async () => {
      const client = new RpcClient({ mqttUrl: broker.urls.mqtt, protocolVersion: 5, clientId: uniqueName('v5'), brokerVersion: broker.version });
      closers.push(() => client.close());
      await client.connect();
      expect(client.link.protocolVersion).toBe(5);
    });

    it('auto: connects over MQTT 5, the request is answered over it and nothing says the MQTT 5 options were dropped', async () => {
      const queue = uniqueName('v5_queue');
      const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: 1, handler: await loadHandler(parseHandlerSpec('echo')) });
      await server.start();
      closers.push(() => server.stop());
      const client = new RpcClient({ mqttUrl: broker.urls.mqtt, protocolVersion: 'auto', strategy: 'per-request', clientId: uniqueName('auto'), brokerVersion: broker.version });
      await client.connect();
      closers.push(() => client.close());
      expect(client.link.protocolVersion).toBe(5);
      const outcome = await client.call({ topic: queue, qos: 1, params: 1, timeoutMs: 5000, mqtt5: { userProperties: [{ key: 'k', value: 'v' }], messageExpirySeconds: 10 } });
      expect(outcome.result).toBe(1);
      expect(outcome.mqttVersion).toBe(5);
      expect(outcome.warnings.join(' ')).not.toMatch(/were not sent/);
    });
    return;
  }

  it('protocol 5: the connection is refused, in one sentence that says why and what to do', async () => {
    const version = (await new ManagementApi(broker.urls.management, '/').overview()).rabbitmqVersion;
    expect(version).toMatch(/^3\.1[0-2]\./);
    const client = new RpcClient({ mqttUrl: broker.urls.mqtt, protocolVersion: 5, clientId: uniqueName('v5'), brokerVersion: version });
    closers.push(() => client.close());
    await expect(client.connect()).rejects.toMatchObject({
      code: 'unreachable',
      message: `The broker at ${broker.urls.mqtt} closed the connection on an MQTT 5 CONNECT: RabbitMQ ${version} has no MQTT 5 (it came in 3.13). Connect with MQTT 3.1.1 or auto.`,
    });
  });

  it('protocol 5 before the version is known (the app and `call` connect first): the sentence names 3.13 and the way out', async () => {
    const client = new RpcClient({ mqttUrl: broker.urls.mqtt, protocolVersion: 5, clientId: uniqueName('v5') });
    closers.push(() => client.close());
    await expect(client.connect()).rejects.toMatchObject({
      code: 'unreachable',
      message: `The broker at ${broker.urls.mqtt} closed the connection on an MQTT 5 CONNECT: RabbitMQ before 3.13 has no MQTT 5 (3.13 and later need the feature flag mqtt_v5 enabled). Connect with MQTT 3.1.1 or auto.`,
    });
  });

  it("auto: falls back to MQTT 3.1.1, the request is answered, and the outcome says the MQTT 5 options were not sent", async () => {
    const version = (await new ManagementApi(broker.urls.management, '/').overview()).rabbitmqVersion;
    const queue = uniqueName('v5_queue');
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: 1, handler: await loadHandler(parseHandlerSpec('echo')) });
    await server.start();
    closers.push(() => server.stop());
    const client = new RpcClient({ mqttUrl: broker.urls.mqtt, protocolVersion: 'auto', strategy: 'per-request', clientId: uniqueName('auto'), brokerVersion: version });
    await client.connect();
    closers.push(() => client.close());
    expect(client.link.protocolVersion).toBe(4);

    const outcome = await client.call({ topic: queue, qos: 1, params: 1, timeoutMs: 5000, mqtt5: { userProperties: [{ key: 'k', value: 'v' }], messageExpirySeconds: 10 } });
    expect(outcome.result).toBe(1);
    expect(outcome.mqttVersion).toBe(4);
    expect(outcome.replyProperties).toBeUndefined();
    expect(outcome.warnings).toContain(
      `The MQTT 5 options (user properties, correlation data, response topic, message expiry) were not sent: RabbitMQ ${version} has no MQTT 5 (it came in 3.13), so the connection speaks MQTT 3.1.1.`,
    );
  });
});

describe('a request from the app in each payload format', () => {
  const events = new EventEmitter();
  let vhost: TestVhost;
  let session: Session;
  let queue: string;

  beforeAll(async () => {
    vhost = await createTestVhost(broker.urls, 'requests-formats');
    session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), traceFlushMs: 10, emit: (name, payload) => events.emit(name, payload) });
    const mqttUser = encodeURIComponent(`${vhost.name}:guest`);
    await session.open({
      name: 'formats',
      amqpUrl: vhost.amqpUrl,
      mqttUrl: broker.urls.mqtt.replace('mqtt://', `mqtt://${mqttUser}:guest@`),
      managementUrl: broker.urls.management,
      vhost: vhost.name,
      exchange: 'amq.direct',
    });
    queue = uniqueName('formats_queue');
    const started = await dispatch(session.handlers, 'server.start', { exchange: 'amq.direct', queue, workers: 1, prefetch: 1, handler: 'echo' });
    expect(started).toMatchObject({ ok: true });
  });

  afterAll(async () => {
    await session?.dispose();
    await vhost?.remove();
  }, 60_000);

  it.each([
    ['text', 'not json {'],
    ['hex', '00 ff 7b'],
    ['base64', 'AP97'],
  ] as const)('%s: sent as given, the server rejects it, and the verdict says request-rejected with the reason', async (payloadFormat, payloadText) => {
    const reply = await dispatch(session.handlers, 'rpc.request.send', { topic: queue, qos: 1, strategy: 'per-request', payloadFormat, payloadText, timeoutMs: 1500 });
    expect(reply.ok).toBe(false);
    const error = (reply as { error: ErrorShape }).error;
    expect(error).toMatchObject({ code: 'timeout', verdict: { code: 'request-rejected', hop: 'server' } });
    expect(error.verdict?.message).toMatch(/The server on .* rejected the request \(The request body is (not valid JSON|binary)/);
    // One RPC in the trace: the server's record of the id-less body is the send's, not a second "external" RPC without a verdict.
    const snapshot = await dispatch(session.handlers, 'trace.snapshot.get', {});
    const steps = (snapshot as { result: { steps: Array<{ rpcId: string; kind: string }> } }).result.steps;
    const ofThisSend = steps.filter((step) => step.rpcId === error.rpcId).map((step) => step.kind);
    expect(ofThisSend).toEqual(expect.arrayContaining(['composed', 'worker.received', 'request.rejected', 'rpc.diagnosed']));
    expect(steps.filter((step) => step.rpcId.startsWith('delivery-'))).toEqual([]);
    // The Server panel's log names the same RPC, so its link opens it in the Trace.
    const state = await dispatch(session.handlers, 'app.state.get', {});
    const log = (state as { result: { server: { log?: Array<{ rpcId: string; text: string }> } } }).result.server.log ?? [];
    expect(log.find((line) => line.rpcId === error.rpcId)?.text).toMatch(/^Rejected a request without requeue: /);
  });

  it('json with MQTT 5 options over the 3.1.1 connection (the profile asks no MQTT version): answered, with the warning and its reason', async () => {
    const reply = await dispatch(session.handlers, 'rpc.request.send', {
      topic: queue,
      qos: 1,
      strategy: 'per-request',
      payloadText: '{"params": 2}',
      mqtt5: { correlationData: 'c-1' },
      timeoutMs: 5000,
    });
    expect(reply).toMatchObject({ ok: true, result: { result: 2, verdict: { code: 'replied' } } });
    const outcome = (reply as { result: RpcOutcome }).result;
    expect(outcome.mqttVersion).toBe(4);
    // 3.10 has no MQTT 5 at all; 4.x has it, and the reason is this connection's own 3.1.1
    expect(outcome.warnings).toContainEqual(
      `The MQTT 5 options (user properties, correlation data, response topic, message expiry) were not sent: ${
        hasMqtt5 ? 'the connection speaks MQTT 3.1.1 (it was asked to, or the broker refused MQTT 5)' : `RabbitMQ ${broker.version} has no MQTT 5 (it came in 3.13), so the connection speaks MQTT 3.1.1`
      }.`,
    );
  });

  it('refuses bad hex before sending, in one sentence', async () => {
    const reply = await dispatch(session.handlers, 'rpc.request.send', { topic: queue, qos: 1, strategy: 'per-request', payloadFormat: 'hex', payloadText: 'abc', timeoutMs: 1000 });
    expect(reply).toMatchObject({ ok: false, error: { code: 'bad-input', message: 'The payload: Not valid hex: 3 digits, an odd number (each byte is two digits).' } });
  });
});

describe('bridgescope call: payload formats and MQTT 5 flags', () => {
  const wrong: Array<[string[], RegExp]> = [
    [['call', '--payload-format', 'xml'], /--payload-format takes one of json, text, hex, base64, not "xml"/],
    [['call', '--mqtt', 'mqtt://127.0.0.1:1', '--payload-format', 'hex', '0g'], /PAYLOAD: Not valid hex: "g" is not a hex digit/],
    [['call', '--mqtt', 'mqtt://127.0.0.1:1', '--payload-file', '/nonexistent/body.bin'], /--payload-file: cannot read \/nonexistent\/body.bin \(ENOENT\)/],
    [['call', '--user-property', 'novalue'], /--user-property takes name=value, not "novalue"/],
    [['call', '--message-expiry', '0'], /--message-expiry takes a whole number above 0/],
  ];

  it('rejects a wrong value with exit code 2 and one sentence on stderr, before connecting', async () => {
    const results = await Promise.all(wrong.map(([args]) => runCli(args)));
    results.forEach((result, index) => {
      const [args, message] = wrong[index] as [string[], RegExp];
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    });
  }, 90_000);

  it('--payload-format text: sent as given; the server rejects it, and the call waits on its reply topic until the timeout', async () => {
    const queue = uniqueName('cli_text_queue');
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: 1, handler: await loadHandler(parseHandlerSpec('echo')) });
    await server.start();
    closers.push(() => server.stop());
    const rejected = new Promise<string>((resolve) => server.on('problem', (problem) => resolve(problem.message)));
    const result = await runCli(['call', '--mqtt', broker.urls.mqtt, '--topic', queue, '--payload-format', 'text', '--timeout', '1500', '--json', 'hello there']);
    expect(await rejected).toMatch(/The request body is not valid JSON/);
    expect(result.code).not.toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, error: { code: 'timeout' } });
  }, 60_000);

  it('--payload-format text --trace: the broker steps of a body with no id are joined to the call, and the verdict says it named no reply topic', async () => {
    const queue = uniqueName('cli_text_traced');
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, workers: 1, handler: await loadHandler(parseHandlerSpec('echo')) });
    await server.start();
    closers.push(() => server.stop());
    const rejected = new Promise<string>((resolve) => server.on('problem', (problem) => resolve(problem.message)));
    const args = ['call', '--mqtt', broker.urls.mqtt, '--amqp', broker.urls.amqp, '--management', broker.urls.management, '--topic', queue, '--payload-format', 'text', '--timeout', '1500', '--trace', '--json', 'hello there'];
    const result = await runCli(args);
    expect(await rejected).toMatch(/The request body is not valid JSON/);
    const printed = JSON.parse(result.stdout) as { ok: boolean; verdict: { code: string; message: string }; trace: Array<{ kind: string; detail: Record<string, unknown> }> };
    // The firehose saw the request published and delivered to the server's queue: those steps are this call's.
    const brokerSteps = printed.trace.filter((step) => step.kind.startsWith('broker.')).map((step) => [step.kind, step.detail.leg, step.detail.queue ?? step.detail.routedQueues]);
    expect(brokerSteps).toEqual([
      ['broker.published', 'request', [queue]],
      ['broker.delivered', 'request', queue],
    ]);
    expect(printed.trace.find((step) => step.kind === 'composed')?.detail.asGiven).toBe('without-reply-topic');
    // Not "server slow ... turn on the firehose" (it was on): the body named no reply topic, and the way out.
    expect(printed.verdict.code).toBe('request-rejected');
    expect(printed.verdict.message).toMatch(/sent as given, with no id and no reply_to, over MQTT 3\.1\.1.*Send the body as JSON/);
    expect(printed.verdict.message).not.toMatch(/turn on the firehose/);
  }, 60_000);
});
