/**
 * A third-party RPC worker, not BridgeScope's: plain amqplib instrumented by OpenTelemetry's own
 * @opentelemetry/instrumentation-amqplib, exporting over OTLP/HTTP. Answers every request on QUEUE with {"result": "third-party"}.
 * Usage: node otel-amqplib-worker.cjs AMQP_URL EXCHANGE QUEUE OTLP_URL; prints "ready"; SIGTERM flushes and exits.
 */
const { context, propagation, trace } = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { AmqplibInstrumentation } = require('@opentelemetry/instrumentation-amqplib');

const [amqpUrl, exchange, queue, otlpUrl] = process.argv.slice(2);
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'third-party-worker' }),
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${otlpUrl}/v1/traces` }))],
});
trace.setGlobalTracerProvider(provider);
registerInstrumentations({ instrumentations: [new AmqplibInstrumentation()] });
// Loaded after the instrumentation is registered, so it is patched.
const amqp = require('amqplib');

async function main() {
  const connection = await amqp.connect(amqpUrl);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { autoDelete: true });
  await channel.bindQueue(queue, exchange, queue);
  await channel.consume(queue, (message) => {
    if (!message) return;
    const body = JSON.parse(message.content.toString('utf8'));
    const header = message.properties.headers && message.properties.headers['x-reply-to-topic'];
    const replyKey = header ? header.toString() : String(body.reply_to).replace(/\//g, '.');
    channel.publish(exchange, replyKey, Buffer.from(JSON.stringify({ id: body.id, result: 'third-party' })), {
      contentType: 'application/json',
      deliveryMode: 2,
      ...(message.properties.correlationId ? { correlationId: message.properties.correlationId } : {}),
    });
    channel.ack(message);
  });
  process.on('SIGTERM', () => {
    void provider
      .forceFlush()
      .then(() => connection.close())
      .finally(() => process.exit(0));
  });
  process.stdout.write('ready\n');
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
