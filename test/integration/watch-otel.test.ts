/**
 * Issue 23, OpenTelemetry for the hops Watch sees: `watch --otlp` puts other clients' requests into the trace they carry
 * (here `call --otlp`, which propagates W3C trace context: MQTT 5 user properties on 3.13+, the 3.1.1 body fields before),
 * with the reply under it and a verdict as a span event; a request without a context gets no span. Decoded with the
 * official OTLP protobuf definitions (test/support/otlp-receiver.ts).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { cliPath, runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { RpcServer } from '../../src/core/rpc/server';
import { loadHandler } from '../../src/core/rpc/handlers';

const broker = inject('broker');
const [major = 0, minor = 0] = (broker.version ?? '0.0').split('.').map(Number);
const mqttVersion = major > 3 || (major === 3 && minor >= 13) ? '5' : '4';
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function receiver(): Promise<OtlpReceiver> {
  const started = await startOtlpReceiver();
  cleanups.push(() => started.close());
  return started;
}

/** `watch` in tap mode, resolved once it says it is watching; `stop` sends Ctrl-C and resolves with its exit code. */
async function startWatch(args: string[]): Promise<{ stop: () => Promise<number | null>; stderr: string[]; line: (match: (line: string) => boolean) => Promise<string> }> {
  const child = spawn(process.execPath, [cliPath, 'watch', '--amqp', broker.urls.amqp, '--management', broker.urls.management, '--exchange', broker.mqttExchange, '--json', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const stderr: string[] = [];
  const stdout: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    stdout.push(line);
    for (const wake of waiters.splice(0)) wake();
  });
  /** the first stdout line that matches, now or when it comes */
  const line = async (match: (text: string) => boolean): Promise<string> => {
    for (;;) {
      const found = stdout.find(match);
      if (found !== undefined) return found;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr.push(line);
      if (/^Watching /.test(line)) resolve();
    });
    void exited.then(() => reject(new Error(`watch exited early: ${stderr.join(' | ')}`)));
  });
  return { stderr, line, stop: async () => (child.kill('SIGINT'), exited) };
}

const call = (topic: string, otlp: string | undefined, timeoutMs: number): ReturnType<typeof runCli> =>
  runCli([
    'call', '--json', '--exchange', broker.mqttExchange, ...(otlp !== undefined ? ['--otlp', otlp] : []), '--mqtt-version', mqttVersion, '--topic', topic,
    '--timeout', String(timeoutMs), '--mqtt', broker.urls.mqtt, '--amqp', broker.urls.amqp, '--management', broker.urls.management, '{"a":1}',
  ]);

describe(`watch --otlp (RabbitMQ ${broker.version}, MQTT ${mqttVersion === '5' ? '5' : '3.1.1'})`, () => {
  it("puts a watched request and its reply into the device's own trace, a verdict as an event, and nothing for a request without a context", async () => {
    const served = uniqueName('watch_otel');
    const unserved = uniqueName('watch_otel_nobody');
    // The worker answers after 1 s: a tap binds a reply key only once it saw the request, so a faster reply can come before
    // that bind and go unseen (docs/WATCH.md; on a loaded CI run an instant echo did, and the pair never closed).
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, exchange: broker.mqttExchange, queue: served, workers: 1, handler: await loadHandler({ kind: 'delay', ms: 1000 }) });
    await server.start();
    cleanups.push(() => server.stop());
    const device = await receiver();
    const watched = await receiver();
    const watch = await startWatch(['--topic', served, '--topic', unserved, '--timeout', '3000', '--otlp', watched.url]);

    const replied = await call(served, device.url, 10_000);
    expect(replied.code, replied.stderr).toBe(0);
    const repliedId = (JSON.parse(replied.stdout) as { rpcId: string }).rpcId;
    const untraced = await call(served, undefined, 10_000);
    expect(untraced.code, untraced.stderr).toBe(0);
    const untracedId = (JSON.parse(untraced.stdout) as { rpcId: string }).rpcId;
    const unanswered = await call(unserved, device.url, 1500);
    expect(unanswered.code).toBe(3);
    const unansweredId = (JSON.parse(unanswered.stdout) as { rpcId: string }).rpcId;
    // watch's own verdict on it is out (its timeout is 3 s), then Ctrl-C: the spans are flushed on the way out.
    await watch.line((line) => line.includes(unansweredId) && line.includes('"verdict"'));
    expect(await watch.stop()).toBe(0);
    expect(watch.stderr.join('\n')).not.toMatch(/could not be exported|OpenTelemetry/);

    // Every process has exited, and each one's export was answered before it did: the receivers hold all their spans.
    const deviceSpans = device.spans;
    const watchSpans = watched.spans;
    expect(deviceSpans.filter((span) => span.name.startsWith('call '))).toHaveLength(2);
    expect(watched.errors).toEqual([]);
    expect(new Set(watchSpans.map((span) => span.service))).toEqual(new Set(['bridgescope-watch']));

    // The request that was answered: a span in the device's trace, under the device's publish, with the reply under it.
    const publishOf = (rpcId: string) => deviceSpans.find((span) => span.name.startsWith('publish ') && span.attributes['messaging.message.id'] === rpcId);
    const devicePublish = publishOf(repliedId);
    expect(devicePublish, deviceSpans.map((span) => `${span.name} ${JSON.stringify(span.attributes)}`).join('\n')).toBeDefined();
    const ofRpc = (rpcId: string) => watchSpans.filter((span) => span.attributes['bridgescope.rpc.id'] === rpcId);
    const [request, reply, ...more] = ofRpc(repliedId).sort((a, b) => (a.parentSpanId === b.spanId ? 1 : -1));
    expect(more).toEqual([]);
    expect(request?.traceId).toBe(devicePublish?.traceId);
    expect(request?.parentSpanId).toBe(devicePublish?.spanId);
    expect(request?.name).toBe(`observe ${broker.mqttExchange}:${served}`);
    expect(request?.kind).toBe(5);
    expect(request?.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'receive',
      'messaging.destination.name': `${broker.mqttExchange}:${served}`,
      'messaging.rabbitmq.destination.routing_key': served,
      'messaging.message.id': repliedId,
      'bridgescope.observed_by': 'watch (tap)',
    });
    expect(reply?.parentSpanId).toBe(request?.spanId);
    expect(reply?.traceId).toBe(devicePublish?.traceId);
    expect(reply?.name).toMatch(new RegExp(`^observe ${broker.mqttExchange}:reply\\.`));
    expect(reply?.attributes['bridgescope.worker']).toMatch(/worker-1/);
    expect(request?.events).toEqual([]);

    // The request left unanswered: its verdict is an event, and the span says it failed.
    const [lost, ...others] = ofRpc(unansweredId);
    expect(others).toEqual([]);
    expect(lost?.traceId).toBe(publishOf(unansweredId)?.traceId);
    expect(lost?.events.map((event) => event.name)).toEqual(['bridgescope.verdict']);
    expect(lost?.events[0]?.attributes['bridgescope.verdict.code']).toMatch(/^(no-consumer|request-unroutable)$/);
    expect(lost?.status.code).toBe(2);

    // A request without a trace context: watch starts no trace of its own for it.
    expect(ofRpc(untracedId)).toEqual([]);
  }, 60_000);

  it('says why its export stayed empty when no request seen carried a trace context (the trial: an empty file, not a word)', async () => {
    const served = uniqueName('watch_otel_plain');
    const server = new RpcServer({ amqpUrl: broker.urls.amqp, exchange: broker.mqttExchange, queue: served, workers: 1, handler: await loadHandler({ kind: 'delay', ms: 500 }) });
    await server.start();
    cleanups.push(() => server.stop());
    const watched = await receiver();
    const watch = await startWatch(['--topic', served, '--timeout', '3000', '--otlp', watched.url]);
    const plain = await call(served, undefined, 10_000);
    expect(plain.code, plain.stderr).toBe(0);
    const id = (JSON.parse(plain.stdout) as { rpcId: string }).rpcId;
    await watch.line((line) => line.includes(id) && line.includes('"pair"'));
    expect(await watch.stop()).toBe(0);
    expect(watched.spans).toEqual([]);
    expect(watch.stderr).toContain(
      'No spans were exported: none of the 1 request seen carried a trace context (a traceparent in the body, or in an MQTT 5 request\'s user properties); watch exports spans only for those.',
    );
  }, 60_000);
});
