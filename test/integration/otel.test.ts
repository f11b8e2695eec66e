/**
 * Issue 23, OpenTelemetry: one RPC through the real broker gives one trace, from the device's publish to the reply's
 * delivery, exported over OTLP/HTTP by `call` and `serve` and decoded here with the official OTLP protobuf definitions.
 * On RabbitMQ before 3.13 (3.10.8 here) the context rides in the 3.1.1 body fields; on 3.13+ in MQTT 5 user properties.
 */
import { spawn } from 'node:child_process';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, inject, it } from 'vitest';
import * as semconv from '@opentelemetry/semantic-conventions/incubating';
import { cliPath, runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { Session } from '../../src/core/session/session';
import { dispatch } from '../../src/core/dispatch';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { OtelExport } from '../../src/core/otel/export';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RpcClient } from '../../src/core/rpc/client';

const broker = inject('broker');
const [major = 0, minor = 0] = (broker.version ?? '0.0').split('.').map(Number);
const mqtt5 = major > 3 || (major === 3 && minor >= 13);
const mqttVersion = mqtt5 ? '5' : '4';
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function receiver(): Promise<OtlpReceiver> {
  const started = await startOtlpReceiver();
  cleanups.push(() => started.close());
  return started;
}

/** `serve` on a queue of its own, resolved once it says "Serving"; stopped (SIGINT, drained, spans flushed) by `stop`. */
async function startServe(args: string[]): Promise<{ stop: () => Promise<number | null>; stderr: string[] }> {
  const child = spawn(process.execPath, [cliPath, 'serve', '--amqp', broker.urls.amqp, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const stderr: string[] = [];
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr.push(line);
      if (/^Serving /.test(line)) resolve();
    });
    void exited.then(() => reject(new Error(`serve exited early: ${stderr.join(' | ')}`)));
  });
  return {
    stderr,
    stop: async () => {
      child.kill('SIGINT');
      return exited;
    },
  };
}

const byName = (spans: ReceivedSpan[], name: string): ReceivedSpan => {
  const found = spans.filter((span) => span.name === name);
  expect(found.map((span) => span.name), `one span named "${name}" among ${spans.map((span) => span.name).join(', ')}`).toEqual([name]);
  return found[0] as ReceivedSpan;
};

describe(`OpenTelemetry across MQTT and AMQP (RabbitMQ ${broker.version}, MQTT ${mqtt5 ? '5 user properties' : '3.1.1 body fields'})`, () => {
  it('one RPC between `call --otlp --trace` and `serve --otlp` is one trace with the right parents, names and attributes', async () => {
    const otlp = await receiver();
    const queue = uniqueName('otel_rpc');
    const serve = await startServe(['--queue', queue, '--otlp', otlp.url]);
    const dir = await mkdtemp(join(tmpdir(), 'bridgescope-otel-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'trace.otlp.jsonl');
    const result = await runCli([
      'call', '--trace', '--json', '--exchange', broker.mqttExchange, '--otlp', otlp.url, '--otlp-file', file, '--mqtt-version', mqttVersion, '--topic', queue, '--method', 'add',
      '--mqtt', broker.urls.mqtt, '--amqp', broker.urls.amqp, '--management', broker.urls.management, '{"a":1}',
    ]);
    expect(result.stderr).not.toMatch(/could not be exported|OpenTelemetry/);
    expect(result.code, result.stderr).toBe(0);
    const rpcId = (JSON.parse(result.stdout) as { rpcId: string }).rpcId;
    expect(await serve.stop()).toBe(0);
    const spans = await otlp.until((all) => all.some((span) => span.name.startsWith('ack ')) && all.some((span) => span.name.startsWith('call ')));
    expect(otlp.errors).toEqual([]);

    // One trace, from the device's publish to the reply's delivery.
    expect(new Set(spans.map((span) => span.traceId)).size).toBe(1);
    // The exchange the sandbox's MQTT plugin publishes to (mqtt.exchange), as the worker saw it.
    const exchange = (spans.find((span) => span.name.startsWith('process '))?.name ?? '').slice('process '.length).split(':')[0] as string;
    const root = byName(spans, 'call add');
    const send = byName(spans, `publish ${exchange}:${queue}`);
    const routeRequest = byName(spans, `route ${exchange}:${queue}`);
    const deliverRequest = byName(spans, `deliver ${queue}`);
    const process = byName(spans, `process ${exchange}:${queue}`);
    const handler = byName(spans, 'handle add');
    const ack = byName(spans, `ack ${exchange}:${queue}`);
    const replySend = spans.find((span) => span.name.startsWith('publish ') && span !== send) as ReceivedSpan;
    const replyKey = replySend.attributes['messaging.rabbitmq.destination.routing_key'] as string;
    const routeReply = byName(spans, `route ${exchange}:${replyKey}`);
    const deliverReply = spans.find((span) => span.name.startsWith('deliver ') && span !== deliverRequest) as ReceivedSpan;
    const receive = spans.find((span) => span.name.startsWith('receive ')) as ReceivedSpan;
    expect(spans).toHaveLength(11);

    // Parent and child: client and broker hops from `call`, worker hops from `serve`, joined by the propagated context.
    expect(root.parentSpanId).toBe('');
    expect(send.parentSpanId).toBe(root.spanId);
    expect(routeRequest.parentSpanId).toBe(send.spanId);
    expect(deliverRequest.parentSpanId).toBe(routeRequest.spanId);
    expect(process.parentSpanId).toBe(send.spanId);
    expect(handler.parentSpanId).toBe(process.spanId);
    expect(replySend.parentSpanId).toBe(process.spanId);
    expect(ack.parentSpanId).toBe(process.spanId);
    expect(routeReply.parentSpanId).toBe(replySend.spanId);
    expect(deliverReply.parentSpanId).toBe(routeReply.spanId);
    expect(receive.parentSpanId).toBe(replySend.spanId);
    expect(new Set(spans.map((span) => span.service))).toEqual(new Set(['bridgescope-call', 'bridgescope-serve']));

    // The convention's names and values (span kinds: 3 client, 4 producer, 5 consumer), span names `{operation name} {destination}`.
    expect(send.kind).toBe(4);
    expect(replySend.kind).toBe(4);
    expect(process.kind).toBe(5);
    expect(receive.kind).toBe(3);
    expect(send.attributes).toMatchObject({
      [semconv.ATTR_MESSAGING_SYSTEM]: semconv.MESSAGING_SYSTEM_VALUE_RABBITMQ,
      [semconv.ATTR_MESSAGING_OPERATION_TYPE]: semconv.MESSAGING_OPERATION_TYPE_VALUE_SEND,
      [semconv.ATTR_MESSAGING_OPERATION_NAME]: 'publish',
      [semconv.ATTR_MESSAGING_DESTINATION_NAME]: `${exchange}:${queue}`,
      [semconv.ATTR_MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY]: queue,
      [semconv.ATTR_MESSAGING_MESSAGE_ID]: rpcId,
      [semconv.ATTR_MESSAGING_MESSAGE_CONVERSATION_ID]: rpcId,
    });
    expect(process.attributes).toMatchObject({
      [semconv.ATTR_MESSAGING_SYSTEM]: 'rabbitmq',
      [semconv.ATTR_MESSAGING_OPERATION_TYPE]: semconv.MESSAGING_OPERATION_TYPE_VALUE_PROCESS,
      [semconv.ATTR_MESSAGING_OPERATION_NAME]: 'process',
      // {exchange}:{routing key}:{queue}, the queue once as it equals the key
      [semconv.ATTR_MESSAGING_DESTINATION_NAME]: `${exchange}:${queue}`,
      [semconv.ATTR_MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY]: queue,
      [semconv.ATTR_MESSAGING_MESSAGE_CONVERSATION_ID]: rpcId,
    });
    expect(ack.attributes).toMatchObject({ [semconv.ATTR_MESSAGING_OPERATION_TYPE]: semconv.MESSAGING_OPERATION_TYPE_VALUE_SETTLE, [semconv.ATTR_MESSAGING_OPERATION_NAME]: 'ack' });
    expect(receive.attributes).toMatchObject({ [semconv.ATTR_MESSAGING_OPERATION_TYPE]: semconv.MESSAGING_OPERATION_TYPE_VALUE_RECEIVE });
    // Every messaging.* or error.* attribute we send is one the convention defines.
    const known = new Set(Object.entries(semconv).filter(([name]) => name.startsWith('ATTR_')).map(([, value]) => value as string));
    for (const span of spans) {
      for (const name of Object.keys(span.attributes).filter((key) => key.startsWith('messaging.') || key.startsWith('error.') || key.startsWith('network.'))) {
        expect(known.has(name), `${span.name}: ${name}`).toBe(true);
      }
    }

    // Where the context rode: MQTT 5 user properties (RabbitMQ 3.13+ made them AMQP headers), else the 3.1.1 body field;
    // the reply carried the worker's send span in its AMQP headers (and, on MQTT 5, in user properties to the device).
    type Wire = { headers: Record<string, unknown>; body: { preview: string } };
    const trace = (JSON.parse(result.stdout) as { trace: Array<{ kind: string; detail: { leg?: string; wire?: Wire } }> }).trace;
    const requestWire = trace.find((step) => step.kind === 'broker.published' && step.detail.leg === 'request')?.detail.wire as Wire;
    const replyWire = trace.find((step) => step.kind === 'broker.published' && step.detail.leg === 'reply')?.detail.wire as Wire;
    const deviceWire = trace.find((step) => step.kind === 'mqtt.reply.received')?.detail.wire as Wire;
    const sendParent = `00-${send.traceId}-${send.spanId}-01`;
    const replyParent = `00-${send.traceId}-${replySend.spanId}-01`;
    if (mqtt5) {
      expect(requestWire.headers.traceparent).toBe(sendParent);
      expect(JSON.parse(requestWire.body.preview)).not.toHaveProperty('traceparent');
      expect(deviceWire.headers.traceparent).toBe(replyParent);
      expect(JSON.parse(deviceWire.body.preview)).not.toHaveProperty('traceparent');
    } else {
      expect(requestWire.headers.traceparent).toBeUndefined();
      expect(JSON.parse(requestWire.body.preview)).toMatchObject({ traceparent: sendParent });
      // The request came with body fields, so the reply does too (a 3.1.1 device has nothing else).
      expect(JSON.parse(deviceWire.body.preview)).toMatchObject({ traceparent: replyParent, result: { a: 1 } });
    }
    expect(replyWire.headers.traceparent).toBe(replyParent);

    // The verdict is an event of the RPC's root span.
    expect(root.events).toEqual([{ name: 'bridgescope.verdict', attributes: { 'bridgescope.verdict.code': 'replied', 'bridgescope.verdict.hop': expect.any(String), 'bridgescope.verdict.message': expect.any(String) } }]);

    // The same spans of `call` in the file, as OTLP JSON lines.
    const lines = (await readFile(file, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ traceId: string; name: string }> }> }> });
    const fileSpans = lines.flatMap((line) => line.resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans)));
    expect(fileSpans.map((span) => span.name).sort()).toEqual(spans.filter((span) => span.service === 'bridgescope-call').map((span) => span.name).sort());
    expect(new Set(fileSpans.map((span) => span.traceId))).toEqual(new Set([root.traceId]));
  });

  // Issue 23: on MQTT 3.1.1 (RabbitMQ before 3.13) the context is in the request body, which a stock instrumentation does not read.
  it.skipIf(!mqtt5)('a third-party worker instrumented by @opentelemetry/instrumentation-amqplib joins the same trace (MQTT 5 only, #23)', async () => {
    const otlp = await receiver();
    const queue = uniqueName('otel_third_party');
    const worker = spawn(process.execPath, [join(import.meta.dirname, '..', 'support', 'otel-amqplib-worker.cjs'), broker.urls.amqp, broker.mqttExchange, queue, otlp.url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => worker.on('close', (code) => resolve(code)));
    cleanups.push(async () => {
      if (worker.exitCode === null && worker.signalCode === null) {
        worker.kill('SIGKILL');
        await exited;
      }
    });
    let stderr = '';
    worker.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: worker.stdout }).on('line', (line) => line === 'ready' && resolve());
      void exited.then(() => reject(new Error(`the worker exited early: ${stderr}`)));
    });
    const result = await runCli([
      'call', '--trace', '--json', '--exchange', broker.mqttExchange, '--otlp', otlp.url, '--mqtt-version', '5', '--topic', queue,
      '--mqtt', broker.urls.mqtt, '--amqp', broker.urls.amqp, '--management', broker.urls.management, '{"a":1}',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, result: 'third-party' });
    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
    const spans = await otlp.until((all) => all.some((span) => span.service === 'third-party-worker' && span.kind === 4) && all.some((span) => span.name.startsWith('call ')));
    expect(otlp.errors).toEqual([]);

    const ours = spans.filter((span) => span.service === 'bridgescope-call');
    const theirs = spans.filter((span) => span.service === 'third-party-worker');
    const send = ours.find((span) => span.name.startsWith('publish ')) as ReceivedSpan;
    const receive = ours.find((span) => span.name.startsWith('receive ')) as ReceivedSpan;
    const consume = theirs.find((span) => span.kind === 5) as ReceivedSpan;
    const publish = theirs.find((span) => span.kind === 4) as ReceivedSpan;
    expect(new Set(spans.map((span) => span.traceId))).toEqual(new Set([send.traceId]));
    // Their consumer continues our device's publish; their reply's publish is a child of it; our device's receive, of that.
    expect(consume.parentSpanId).toBe(send.spanId);
    expect(publish.parentSpanId).toBe(consume.spanId);
    expect(receive.parentSpanId).toBe(publish.spanId);
    const routeReply = ours.find((span) => span.name.startsWith('route ') && span.parentSpanId !== send.spanId) as ReceivedSpan;
    expect(routeReply.parentSpanId).toBe(publish.spanId);
  });

  it('a collector that cannot be reached costs the call a warning, not its reply; a bad --otlp URL is one sentence before connecting', async () => {
    const queue = uniqueName('otel_nowhere');
    const serve = await startServe(['--queue', queue]);
    cleanups.push(() => serve.stop());
    const closed = await receiver();
    await closed.close();
    const result = await runCli(['call', '--exchange', broker.mqttExchange, '--otlp', closed.url, '--topic', queue, '--mqtt', broker.urls.mqtt, '{"a":1}']);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ result: { a: 1 } });
    expect(result.stderr).toMatch(new RegExp(`span\\(s\\) could not be exported to ${closed.url}/v1/traces: .+\\.\\n`));

    const bad = await runCli(['serve', '--otlp', 'localhost:4318', '--queue', queue, '--amqp', broker.urls.amqp]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('bridgescope: --otlp "localhost:4318" must be an http:// or https:// URL (OTLP over HTTP, port 4318 by default).\n');
  });

  it("the app's setting (ui --otlp, BRIDGESCOPE_OTLP_URL): a Compose send to the Server panel's server is one trace too", async () => {
    const otlp = await receiver();
    const otel = new OtelExport({ url: otlp.url, serviceName: 'bridgescope-app' });
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined, otel });
    cleanups.push(() => session.dispose());
    await session.open({ name: 'otel', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: broker.mqttExchange, mqttVersion: mqtt5 ? 5 : 4 });
    const queue = uniqueName('otel_app');
    expect(await dispatch(session.handlers, 'server.start', { exchange: broker.mqttExchange, queue, workers: 1, prefetch: 1, handler: 'echo' })).toMatchObject({ ok: true });
    const sent = await dispatch(session.handlers, 'rpc.request.send', { topic: queue, qos: 1, strategy: 'shared', method: 'add', payloadText: '{"a":1}', timeoutMs: 5000 });
    expect(sent).toMatchObject({ ok: true });
    // The Electron app's quit (Session.shutdown) sends what the batch still holds.
    await session.shutdown();
    const spans = await otlp.until((all) => all.some((span) => span.name === 'call add') && all.some((span) => span.name.startsWith('ack ')));
    expect(new Set(spans.map((span) => span.traceId)).size).toBe(1);
    const send = byName(spans, `publish ${broker.mqttExchange}:${queue}`);
    expect(byName(spans, `process ${broker.mqttExchange}:${queue}`).parentSpanId).toBe(send.spanId);
    const replySend = spans.find((span) => span.name.startsWith('publish ') && span !== send) as ReceivedSpan;
    expect((spans.find((span) => span.name.startsWith('receive ')) as ReceivedSpan).parentSpanId).toBe(replySend.spanId);
    // Without the firehose the reply's own carrier says where it came from: MQTT 5 user properties, or on 3.1.1 the
    // reply body's fields, which the server adds when the request came with them.
    expect(new Set(spans.map((span) => span.service))).toEqual(new Set(['bridgescope-app']));
  });

  it('serve --otlp to a collector that never answers still stops on Ctrl-C, within its bound, and says what was not exported', async () => {
    const held: IncomingMessage[] = [];
    let received!: () => void;
    const exportArrived = new Promise<void>((resolve) => (received = resolve));
    // Takes the export request and never answers it.
    const hung = createServer((req) => {
      held.push(req);
      received();
    });
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => {
      hung.closeAllConnections();
      hung.close(() => resolve());
    }));
    const queue = uniqueName('otel_hung');
    const serve = await startServe(['--queue', queue, '--otlp', `http://127.0.0.1:${(hung.address() as AddressInfo).port}`]);
    const device = new RpcClient({ mqttUrl: broker.urls.mqtt, clientId: uniqueName('device') });
    cleanups.push(() => device.close());
    await device.connect();
    expect((await device.call({ topic: queue, params: 1, timeoutMs: 5000 })).result).toBe(1);
    const code = await serve.stop();
    expect(code).toBe(0);
    await exportArrived;
    expect(serve.stderr.join('\n')).toMatch(/^warning: \d+ span\(s\) could not be exported to http:\/\/127\.0\.0\.1:\d+\/v1\/traces: .+\.$/m);
    expect(serve.stderr).toContainEqual(expect.stringMatching(/^Stopped\. received 1, replied 1/));
  });
});
