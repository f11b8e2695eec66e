/** The broker's own record of routing: RabbitMQ's firehose (amq.rabbitmq.trace), turned on and off politely. */
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import { defaultEnvelopeFields, type EnvelopeFields } from '../../shared/rpc';
import type { TraceStep, TraceStepDraft } from '../../shared/trace';
import { BridgeError } from '../errors';
import { amqpConnectOptions, explainAmqpError } from '../links/amqp-link';
import type { ManagementApi } from '../broker/management-api';
import { readBody } from '../rpc/envelope';
import { topicToRoutingKey } from '../topic-map';
import type { TraceStore } from './trace-store';

export const TRACE_EXCHANGE = 'amq.rabbitmq.trace';

export type FirehoseStatus =
  | { state: 'off' }
  | { state: 'on'; since: number; turnedOnByUs: boolean }
  | { state: 'unavailable'; reason: string };

export interface FirehoseEvent {
  type: 'publish' | 'deliver';
  /** exchange for publish events, queue for deliver events */
  name: string;
  routingKeys: string[];
  routedQueues: string[];
  redelivered: boolean;
  body: Buffer;
}

function stringList(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  return value.map((item) => (Buffer.isBuffer(item) ? item.toString('utf8') : String(item)));
}

/** Reads one firehose message: `publish.<exchange>` or `deliver.<queue>` with its headers; undefined for anything else. */
export function parseFirehoseMessage(message: Pick<ConsumeMessage, 'fields' | 'properties' | 'content'>): FirehoseEvent | undefined {
  const key = message.fields.routingKey;
  const dot = key.indexOf('.');
  const type = key.slice(0, dot);
  if (dot < 0 || (type !== 'publish' && type !== 'deliver')) return undefined;
  const headers = (message.properties.headers ?? {}) as Record<string, unknown>;
  return {
    type,
    name: key.slice(dot + 1),
    routingKeys: stringList(headers.routing_keys),
    routedQueues: stringList(headers.routed_queues),
    redelivered: headers.redelivered === 1 || headers.redelivered === true,
    body: message.content,
  };
}

/** Turns a firehose event into a trace step, if it belongs to an RPC the store knows (or carries an id). */
export function firehoseStep(event: FirehoseEvent, store: TraceStore, fields: EnvelopeFields = defaultEnvelopeFields): TraceStepDraft | undefined {
  const body = readBody(event.body);
  const record = body.kind === 'json' && typeof body.value === 'object' && body.value !== null ? (body.value as Record<string, unknown>) : undefined;
  const rawId = record?.[fields.id];
  const isRequest = record !== undefined && fields.replyTo in record;
  let rpcId = typeof rawId === 'string' || typeof rawId === 'number' ? String(rawId) : undefined;
  const leg: 'request' | 'reply' =
    event.type === 'deliver' ? (event.name.startsWith('mqtt-subscription-') ? 'reply' : 'request') : isRequest ? 'request' : 'reply';
  const replyTo = record?.[fields.replyTo];
  if (isRequest && rpcId !== undefined && typeof replyTo === 'string') store.noteReplyKey(topicToRoutingKey(replyTo), rpcId);
  if (rpcId === undefined && leg === 'reply') {
    const key = event.routingKeys[0];
    rpcId = key !== undefined ? store.rpcForReplyKey(key) : undefined;
  }
  if (rpcId === undefined) return undefined;
  const at = Date.now();
  if (event.type === 'deliver') {
    return { rpcId, at, source: 'broker', kind: 'broker.delivered', detail: { queue: event.name, routingKeys: event.routingKeys, redelivered: event.redelivered, leg } };
  }
  const predicted = predictedKey(store, rpcId, leg);
  return {
    rpcId,
    at,
    source: 'broker',
    kind: 'broker.published',
    detail: {
      exchange: event.name,
      routingKeys: event.routingKeys,
      routedQueues: event.routedQueues,
      leg,
      ...(predicted !== undefined ? { predictedRoutingKey: predicted, matchesPrediction: event.routingKeys[0] === predicted } : {}),
    },
  };
}

function predictedKey(store: TraceStore, rpcId: string, leg: 'request' | 'reply'): string | undefined {
  for (const step of store.steps(rpcId)) {
    if (leg === 'request' && step.kind === 'mqtt.published') return step.detail.predictedRoutingKey;
    if (leg === 'reply' && step.kind === 'reply.published') return step.detail.routingKey;
  }
  return undefined;
}

export interface FirehoseTracerOptions {
  amqpUrl: string;
  api: ManagementApi;
  store: TraceStore;
  fields?: EnvelopeFields;
  /** every parsed broker event, with the step it became when it joined a known RPC (the `trace` CLI prints them all) */
  onEvent?: (event: FirehoseEvent, step: TraceStep | undefined) => void;
}

/** Turns tracing on for the vhost (remembering what was there), consumes the trace exchange, and restores on stop. */
export class FirehoseTracer {
  private connection: ChannelModel | undefined;
  private wasOn: boolean | undefined;
  status: FirehoseStatus = { state: 'off' };

  constructor(private readonly options: FirehoseTracerOptions) {}

  async start(): Promise<FirehoseStatus> {
    const { api } = this.options;
    try {
      this.wasOn = await api.tracing();
      if (!this.wasOn) await api.setTracing(true);
    } catch (err) {
      this.wasOn = undefined;
      const reason = err instanceof BridgeError ? err.message : (err as Error).message;
      this.status = { state: 'unavailable', reason: `Cannot turn on firehose tracing (${reason}); showing client and server steps only.` };
      return this.status;
    }
    try {
      this.connection = await amqp.connect(amqpConnectOptions(this.options.amqpUrl, 10), {
        noDelay: true,
        timeout: 5000,
        clientProperties: { connection_name: 'bridgescope-tracer' },
      });
      this.connection.on('error', () => undefined);
      const channel = await this.connection.createChannel();
      channel.on('error', () => undefined);
      // Bounded at the broker too: a burst while we are slow never grows without limit.
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, arguments: { 'x-max-length': 100_000 } });
      await channel.bindQueue(queue, TRACE_EXCHANGE, '#');
      await channel.consume(queue, (message) => {
        if (!message) return;
        const event = parseFirehoseMessage(message);
        if (!event) return;
        const draft = firehoseStep(event, this.options.store, this.options.fields);
        const step = draft ? this.options.store.add(draft) : undefined;
        this.options.onEvent?.(event, step);
      }, { noAck: true });
    } catch (err) {
      await this.restore();
      throw explainAmqpError(err, this.options.amqpUrl);
    }
    this.status = { state: 'on', since: Date.now(), turnedOnByUs: this.wasOn === false };
    return this.status;
  }

  private async restore(): Promise<void> {
    if (this.wasOn === false) await this.options.api.setTracing(false).catch(() => undefined);
    this.wasOn = undefined;
  }

  /** Stops consuming and puts the vhost's tracing back the way it was found. */
  async stop(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    if (connection) await connection.close().catch(() => undefined);
    await this.restore();
    this.status = { state: 'off' };
  }
}
