/**
 * Watch's "firehose" observation: RabbitMQ's trace exchange, switched on for the vhost (only if it was off) and given back
 * on stop by the same ownership rules as `bridgescope trace`. It sees every publish, with the queues it reached: a reply
 * on a key nobody waits on, a reply the broker dropped, and a worker faster than any bind.
 */
import { EventEmitter } from 'node:events';
import type { ManagementApi } from '../broker/management-api';
import { checkAbandonedTracing, firehoseProperties, headersOf, textOf as text, FirehoseTracer, type FirehoseEvent, type FirehoseStatus, type TracingRelease } from '../trace/firehose';
import { TraceStore } from '../trace/trace-store';
import type { ObservedMessage } from './pairing';
import { persistentMessage } from '../../shared/broker-qos';
import type { TlsFiles } from '../connection-details';
import { isSubscriptionQueue, isWatchTapQueue } from '../../shared/rabbitmq-mqtt';

/** the RPCs the firehose's own trace store keeps for watch (none is read: see the constructor) */
const WATCH_STORE_RPCS = 16;

export interface FirehoseSourceEvents {
  message: [ObservedMessage];
  /** a delivery the firehose saw (read only when the pairing waits on its topic: see Watcher.deliveredEvent) */
  delivery: [FirehoseEvent];
  lost: [reason: string];
  status: [FirehoseStatus];
}

/** A firehose publish record as the pairing reads it; undefined for deliveries and other exchanges. */
export function observedFromFirehose(event: FirehoseEvent, exchange: string, at: number): ObservedMessage | undefined {
  if (event.type !== 'publish' || (event.name !== exchange && event.name !== '')) return undefined;
  return observedMessage(event, event.name, at, event.routedQueues);
}

/**
 * A firehose delivery from a server's queue as the pairing reads it (which request a worker took), with its queue;
 * undefined for a publish, and for a delivery to an MQTT client's subscription or a watch's tap (no server's).
 */
export function deliveryFromFirehose(event: FirehoseEvent, exchange: string, at: number): { message: ObservedMessage; queue: string } | undefined {
  if (event.type !== 'deliver' || isSubscriptionQueue(event.name) || isWatchTapQueue(event.name)) return undefined;
  const message = observedMessage(event, exchange, at);
  return message && { message, queue: event.name };
}

function observedMessage(event: FirehoseEvent, exchange: string, at: number, routedQueues?: readonly string[]): ObservedMessage | undefined {
  const routingKey = event.routingKeys[0];
  if (routingKey === undefined) return undefined;
  const observed: ObservedMessage = { at, exchange, routingKey, body: event.body, ...(routedQueues !== undefined ? { routedQueues } : {}) };
  // Decoded here, for the publishes watch pairs only (the tracer's frame reader leaves them as their table's bytes).
  const read = firehoseProperties(event);
  const properties = read ?? {};
  const correlationId = text(properties.correlation_id);
  const replyTo = text(properties.reply_to);
  if (correlationId !== undefined) observed.correlationId = correlationId;
  if (replyTo !== undefined) observed.replyTo = replyTo;
  const headers = headersOf(properties);
  if (headers !== undefined) observed.headers = headers;
  if (event.party?.connection !== undefined) observed.connection = event.party.connection;
  // Unknown when RabbitMQ's copy of the properties could not be read: then no QoS is claimed for it.
  if (read !== undefined) observed.persistent = persistentMessage(properties.delivery_mode, observed.headers);
  return observed;
}

export class FirehoseSource extends EventEmitter<FirehoseSourceEvents> {
  private readonly tracer: FirehoseTracer;
  private abandoned: Awaited<ReturnType<typeof checkAbandonedTracing>>;
  private stopped: Promise<TracingRelease[]> | undefined;

  constructor(private readonly options: { amqpUrl: string; api: ManagementApi; exchange: string; owner: string; tls?: TlsFiles }) {
    super();
    this.tracer = new FirehoseTracer({
      amqpUrl: options.amqpUrl,
      ...(options.tls ? { tls: options.tls } : {}),
      api: options.api,
      // The tracer files what it recognises as an RPC's steps in a store; watch pairs from onEvent and reads no store, so
      // it gets a small one. With the default (10,000 RPCs) every other client's RPCs were kept with their wire copies: a
      // watcher at 1,000 RPC/s kept tens of MiB of heap for nothing (bench --watch-soak).
      store: new TraceStore({ maxRpcs: WATCH_STORE_RPCS }),
      owner: options.owner,
      // It reads no step: the MQTT clients' names would be asked of the management API for nothing.
      mqttClients: false,
      onEvent: (event) => {
        const observed = observedFromFirehose(event, options.exchange, Date.now());
        if (observed) this.emit('message', observed);
        else if (event.type === 'deliver') this.emit('delivery', event);
      },
    });
    this.tracer.on('status', (status) => this.emit('status', status));
  }

  /** A message from a BridgeScope that died with tracing on, when one did: this one switches it off when done. */
  get abandonedMessage(): string | undefined {
    return this.abandoned?.message;
  }

  async start(): Promise<FirehoseStatus> {
    this.abandoned = await checkAbandonedTracing(this.options.api);
    return this.tracer.start();
  }

  /** Every key is seen already: nothing to bind. */
  watchKey(): void {}
  unwatchKey(): void {}

  /** Gives tracing back (and switches off what a dead BridgeScope left on); safe to call twice. */
  stop(): Promise<TracingRelease[]> {
    this.stopped ??= (async () => {
      const releases = [await this.tracer.stop()];
      if (this.abandoned) releases.push(await this.abandoned.restore());
      return releases;
    })();
    return this.stopped;
  }
}
