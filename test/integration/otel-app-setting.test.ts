/** The app's OpenTelemetry setting (issue 23): off by default, set from the app to a collector, switched off again. */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { dispatch } from '../../src/core/dispatch';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { Session } from '../../src/core/session/session';
import { uniqueName } from '../support/names';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

describe("the app's OpenTelemetry setting", () => {
  it("exports nothing by default; once set, a Compose send's spans reach the collector", async () => {
    const otlp: OtlpReceiver = await startOtlpReceiver();
    cleanups.push(() => otlp.close());
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    cleanups.push(() => session.dispose());
    expect(await dispatch(session.handlers, 'otel.export.get', {})).toEqual({ ok: true, result: { state: 'off' } });
    const bad = await dispatch(session.handlers, 'otel.export.set', { url: 'localhost:4318' });
    expect(bad).toMatchObject({ ok: false, error: { code: 'bad-input', message: expect.stringContaining('The OTLP URL must be an http:// or https:// URL (OTLP over HTTP, e.g. http://localhost:4318).') } });

    const set = await dispatch(session.handlers, 'otel.export.set', { url: otlp.url });
    expect(set).toEqual({ ok: true, result: { state: 'on', destinations: [`${otlp.url}/v1/traces`], source: 'app' } });
    await session.open({ name: 'otel', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: broker.mqttExchange });
    const queue = uniqueName('otel_setting');
    expect(await dispatch(session.handlers, 'server.start', { exchange: broker.mqttExchange, queue, workers: 1, prefetch: 1, handler: 'echo' })).toMatchObject({ ok: true });
    expect(await dispatch(session.handlers, 'rpc.request.send', { topic: queue, qos: 1, strategy: 'shared', method: 'add', payloadText: '{"a":1}', timeoutMs: 5000 })).toMatchObject({ ok: true });
    // Switching off sends what the batch still holds.
    expect(await dispatch(session.handlers, 'otel.export.set', { url: null })).toEqual({ ok: true, result: { state: 'off' } });
    const publish = `publish ${broker.mqttExchange}:${queue}`;
    const spans = await otlp.until((all) => all.some((span) => span.name === 'call add') && all.some((span) => span.name === publish));
    // The call and its publish are one trace (how the server's spans join it is otel.test.ts's subject).
    expect(spans.find((span) => span.name === publish)?.traceId).toBe(spans.find((span) => span.name === 'call add')?.traceId);
    expect(new Set(spans.map((span) => span.service))).toEqual(new Set(['bridgescope-app']));
    expect(otlp.errors).toEqual([]);
  });
});
