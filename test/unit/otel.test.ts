/** Issue 23: the OpenTelemetry pieces that need no broker: attribute names, the W3C carriers, and what is exported when. */
import { describe, expect, it } from 'vitest';
import * as semconv from '@opentelemetry/semantic-conventions/incubating';
import { ATTR, consumerDestinationName, destinationName, MESSAGING_SYSTEM } from '../../src/core/otel/conventions';
import { carryTraceContext, contextFrom, requestContext, TRACE_BODY_FIELDS } from '../../src/core/otel/context';
import { otelExportFor, otlpTracesUrl } from '../../src/core/otel/export';
import { trace } from '@opentelemetry/api';
import type { ConsumeMessage } from 'amqplib';
import { InMemorySpanExporter, BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ServerSpans } from '../../src/core/otel/server-spans';
import { RpcSpans, spansFromSteps } from '../../src/core/otel/rpc-spans';
import { WatchSpans } from '../../src/core/otel/watch-spans';
import type { TraceStepDraft } from '../../src/shared/trace';

const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('OpenTelemetry conventions (messaging semconv v1.44)', () => {
  it('uses the attribute names of @opentelemetry/semantic-conventions', () => {
    expect(ATTR.messagingSystem).toBe(semconv.ATTR_MESSAGING_SYSTEM);
    expect(ATTR.operationType).toBe(semconv.ATTR_MESSAGING_OPERATION_TYPE);
    expect(ATTR.operationName).toBe(semconv.ATTR_MESSAGING_OPERATION_NAME);
    expect(ATTR.destinationName).toBe(semconv.ATTR_MESSAGING_DESTINATION_NAME);
    expect(ATTR.routingKey).toBe(semconv.ATTR_MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY);
    expect(ATTR.deliveryTag).toBe(semconv.ATTR_MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG);
    expect(ATTR.messageId).toBe(semconv.ATTR_MESSAGING_MESSAGE_ID);
    expect(ATTR.conversationId).toBe(semconv.ATTR_MESSAGING_MESSAGE_CONVERSATION_ID);
    expect(ATTR.bodySize).toBe(semconv.ATTR_MESSAGING_MESSAGE_BODY_SIZE);
    expect(ATTR.consumerGroup).toBe(semconv.ATTR_MESSAGING_CONSUMER_GROUP_NAME);
    expect(ATTR.errorType).toBe(semconv.ATTR_ERROR_TYPE);
    expect(ATTR.protocolName).toBe(semconv.ATTR_NETWORK_PROTOCOL_NAME);
    expect(MESSAGING_SYSTEM).toBe(semconv.MESSAGING_SYSTEM_VALUE_RABBITMQ);
  });

  it('names a RabbitMQ destination {exchange}:{routing key}', () => {
    expect(destinationName('amq.topic', 'rpc_queue')).toBe('amq.topic:rpc_queue');
    expect(destinationName('amq.topic', '')).toBe('amq.topic');
    expect(destinationName('', 'rpc_queue')).toBe('rpc_queue');
    expect(destinationName('', '')).toBe('amq.default');
  });

  it("names a consumer's destination {exchange}:{routing key}:{queue}, the queue once when it is the key", () => {
    expect(consumerDestinationName('amq.topic', 'devices.rpc', 'workers')).toBe('amq.topic:devices.rpc:workers');
    expect(consumerDestinationName('amq.topic', 'rpc_queue', 'rpc_queue')).toBe('amq.topic:rpc_queue');
    expect(consumerDestinationName('', 'rpc_queue', 'rpc_queue')).toBe('rpc_queue');
  });
});

describe('W3C trace context on requests', () => {
  it('goes in MQTT 5 user properties, after the ones the user gave', () => {
    const carried = carryTraceContext({ mqtt5: { userProperties: [{ key: 'k', value: 'v' }] }, payload: { a: 1 } }, { traceparent, tracestate: 'x=1' }, 5);
    expect(carried.mqtt5?.userProperties).toEqual([
      { key: 'k', value: 'v' },
      { key: 'traceparent', value: traceparent },
      { key: 'tracestate', value: 'x=1' },
    ]);
    expect(carried.payload).toEqual({ a: 1 });
  });

  it('goes in the body fields on MQTT 3.1.1 (no MQTT 5 options, which would be warned as not sent), and nowhere in a raw body', () => {
    const carried = carryTraceContext({ payload: { a: 1 } }, { traceparent }, 4);
    expect(carried).toEqual({ payload: { a: 1, [TRACE_BODY_FIELDS.traceparent]: traceparent } });
    const raw = { rawBody: new Uint8Array([1]) };
    expect(carryTraceContext(raw, { traceparent }, 4)).toBe(raw);
  });

  it('is read from AMQP headers first, then the body fields; anything malformed is no context', () => {
    const fromHeaders = requestContext({ traceparent: Buffer.from(traceparent) }, { traceparent: '00-11111111111111111111111111111111-2222222222222222-01' });
    expect(trace.getSpanContext(fromHeaders!)?.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(trace.getSpanContext(requestContext(undefined, { traceparent })!)?.spanId).toBe('b7ad6b7169203331');
    expect(requestContext({ traceparent: 'garbage' }, { traceparent: 42 })).toBeUndefined();
    expect(requestContext(undefined, ['not', 'an', 'object'])).toBeUndefined();
    expect(contextFrom({ traceparent: '00-00000000000000000000000000000000-0000000000000000-01' })).toBeUndefined();
  });
});

describe('export', () => {
  it('makes nothing unless --otlp or --otlp-file is given', () => {
    expect(otelExportFor({}, 'bridgescope-call')).toBeUndefined();
  });

  it('takes a collector URL as typed, and refuses anything else with one sentence', () => {
    expect(otlpTracesUrl('http://localhost:4318')).toBe('http://localhost:4318/v1/traces');
    expect(otlpTracesUrl('https://tempo.example:4318/custom/v1/traces')).toBe('https://tempo.example:4318/custom/v1/traces');
    expect(() => otlpTracesUrl('localhost:4318')).toThrow('--otlp "localhost:4318" must be an http:// or https:// URL (OTLP over HTTP, port 4318 by default).');
    expect(() => otlpTracesUrl('not a url')).toThrow('--otlp "not a url" is not a URL (e.g. http://localhost:4318).');
  });
});

describe('the server side never costs a request its answer', () => {
  it('takes any headers and bodies, and starts a new trace when the context is unreadable', () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const spans = new ServerSpans(provider.getTracer('test'));
    const hostile: unknown[] = [{ traceparent: {}, tracestate: 5 }, { traceparent: [1, 2] }, { traceparent: '00-zz-yy-01' }, null, { traceparent: 'x'.repeat(100_000) }];
    hostile.forEach((headers, n) => {
      const message = { fields: { exchange: 'amq.topic', routingKey: 'q', deliveryTag: n + 1 }, properties: { headers }, content: Buffer.from('{}') } as unknown as ConsumeMessage;
      expect(() => spans.received(`id-${n}`, 'w1', 'q', message, { traceparent: { nested: true } })).not.toThrow();
      const headersOut = spans.replyHeaders(`id-${n}`, 'w1', 'amq.topic', 'reply.x');
      expect(headersOut?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      spans.step({ rpcId: `id-${n}`, at: Date.now(), source: 'server', kind: 'reply.confirmed', detail: { worker: 'w1', outcome: 'routed' } });
    });
    const finished = exporter.getFinishedSpans();
    // process, publish and ack per request (the handler span ends with its own step, not sent here)
    expect(finished.filter((span) => span.name === 'process amq.topic:q:q' || span.name === 'process amq.topic:q')).toHaveLength(hostile.length);
    expect(finished.every((span) => span.parentSpanContext === undefined || span.parentSpanContext.traceId === span.spanContext().traceId)).toBe(true);
    expect(spans.replyHeaders('unknown', 'w1', 'amq.topic', 'k')).toBeUndefined();
  });
});

describe('spans from steps', () => {
  const setup = () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    return { exporter, tracer: provider.getTracer('test') };
  };
  const wire = (headers: Record<string, string>) => ({ protocol: 'amqp' as const, properties: {}, headers, body: { bytes: 2, encoding: 'json' as const, preview: '{}', shown: 2 } });

  it('a call that timed out: the root span carries error.type and the verdict event, the send span ends at its PUBACK', () => {
    const { exporter, tracer } = setup();
    const rpc = new RpcSpans(tracer, { topic: 'rpc_queue', routingKey: 'rpc_queue', exchange: 'amq.topic', mqttVersion: 4 });
    const t = Date.now();
    const steps: TraceStepDraft[] = [
      { rpcId: 'r1', at: t, source: 'client', kind: 'mqtt.published', detail: { topic: 'rpc_queue', qosAsked: 1, predictedRoutingKey: 'rpc_queue' } },
      { rpcId: 'r1', at: t + 3, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } },
    ];
    rpc.end({ rpcId: 'r1', steps, verdict: { code: 'no-consumer', hop: 'queue', message: 'Nobody consumes "rpc_queue".', evidence: [] }, errorCode: 'timeout' });
    const [send, root] = exporter.getFinishedSpans();
    expect(send?.name).toBe('publish amq.topic:rpc_queue');
    expect(send?.endTime).toEqual([Math.floor((t + 3) / 1000), ((t + 3) % 1000) * 1e6]);
    expect(root?.attributes['error.type']).toBe('timeout');
    expect(root?.status.code).toBe(2);
    expect(root?.events.map((event) => [event.name, event.attributes])).toEqual([
      ['bridgescope.verdict', { 'bridgescope.verdict.code': 'no-consumer', 'bridgescope.verdict.hop': 'queue', 'bridgescope.verdict.message': 'Nobody consumes "rpc_queue".' }],
    ]);
  });

  it('a watched request judged undetermined (a tap that could not see the reply) is no error and claims no wait; server-slow is an error', () => {
    const { exporter, tracer } = setup();
    const spans = new WatchSpans(tracer, { exchange: 'amq.direct', observedBy: 'watch (tap)' });
    const t = Date.now() - 6000;
    const ref = (id: string) => ({ pattern: 'seed', topic: 'rpc_queue', id, replyKey: `reply.${id}`, sentAt: t });
    for (const id of ['u', 's']) spans.request(ref(id), { traceparent }, undefined);
    spans.settle({ ...ref('u'), type: 'verdict', verdict: { code: 'undetermined', hop: 'server', message: 'not known', evidence: [] } });
    spans.settle({ ...ref('s'), type: 'verdict', verdict: { code: 'server-slow', hop: 'server', message: 'slow', evidence: [] } });
    const [unknown, slow] = exporter.getFinishedSpans();
    expect(unknown?.status.code).toBe(0);
    expect(unknown?.attributes['error.type']).toBeUndefined();
    expect(unknown?.endTime).toEqual(unknown?.startTime);
    expect(unknown?.events.map((event) => event.attributes?.['bridgescope.verdict.code'])).toEqual(['undetermined']);
    expect(slow?.status.code).toBe(2);
    expect(slow?.attributes['error.type']).toBe('server-slow');
  });

  it("Watch's hook: another client's RPC joins the device's trace through the context its request carried", () => {
    const { exporter, tracer } = setup();
    const t = Date.now();
    const steps: TraceStepDraft[] = [
      { rpcId: 'x', at: t, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.topic', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request', wire: wire({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }) } },
      { rpcId: 'x', at: t + 1, source: 'broker', kind: 'broker.delivered', detail: { queue: 'rpc_queue', routingKeys: ['rpc_queue'], redelivered: false, leg: 'request' } },
      { rpcId: 'x', at: t + 5, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.topic', routingKeys: ['reply.1'], routedQueues: [], leg: 'reply', wire: wire({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01' }) } },
    ];
    spansFromSteps(tracer, steps);
    const [route, deliver, routeReply] = exporter.getFinishedSpans();
    expect(route?.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(route?.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
    expect(deliver?.parentSpanContext?.spanId).toBe(route?.spanContext().spanId);
    expect(routeReply?.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
    expect(routeReply?.attributes['error.type']).toBe('unroutable');
    expect(route?.attributes).toMatchObject({ 'messaging.destination.name': 'amq.topic:rpc_queue', 'messaging.rabbitmq.destination.routing_key': 'rpc_queue', 'messaging.operation.name': 'route' });
  });
});
