/** Trace steps: immutable, appended events of one RPC, as the client, the server and the broker saw it. */
import type { QoS, ReplyStrategy } from './rpc';
import type { Verdict } from './verdict';
import type { FailureReason } from './errors';

/** A JSON-safe header or property value as the trace keeps it (nested tables become JSON text, bytes UTF-8 or base64 text). */
export type TraceValue = string | number | boolean | null;

/**
 * A message body as the trace keeps it: only its first bytes (at most TRACE_BODY_PREVIEW_BYTES), with its full size and
 * how to read them. The rest of the body is never kept, so it cannot be shown later.
 */
export interface TraceBody {
  /** the whole body's size in bytes */
  bytes: number;
  /** json: UTF-8 text that opens like JSON (the inspector parses it when it is complete); text: other UTF-8; binary: not text */
  encoding: 'json' | 'text' | 'binary';
  /** the kept bytes: the text itself, or base64 for binary */
  preview: string;
  /** how many bytes `preview` holds: less than `bytes` when the body was cut */
  shown: number;
  /** set when the store dropped the preview to keep the trace within its memory budget (headers stay) */
  dropped?: boolean;
}

/** What a message carried at one hop, to read it there: its properties, its headers and the start of its body. */
export interface TraceMessage {
  protocol: 'amqp' | 'mqtt';
  /** AMQP basic properties (content_type, correlation_id, reply_to, delivery_mode, ...); MQTT: qos, retain, dup and MQTT 5 properties */
  properties: Record<string, TraceValue>;
  /** AMQP headers (x-mqtt-publish-qos, x-mqtt-dup, x-reply-to-topic, ...); MQTT 5: user properties */
  headers: Record<string, TraceValue>;
  body: TraceBody;
}

/** How many bytes of each body a step keeps. */
export const TRACE_BODY_PREVIEW_BYTES = 4096;

/**
 * Why the trace kept a load run's request. The run traces one request in `every` in full ('chosen'), or every one while
 * the firehose runs ('firehose'); it keeps each of the others, without its messages, only when it failed or was in the
 * run's slow tail (slower than 99 % of its recent replies), and lets the rest go.
 */
export interface LoadRunMark {
  every: number;
  kept: 'chosen' | 'firehose' | 'failed' | 'slow';
}

export interface TraceStepDetails {
  composed: {
    topic: string;
    qos: QoS;
    replyTopic: string;
    replyStrategy: ReplyStrategy;
    bytes: number;
    method?: string;
    /**
     * set when the body was sent exactly as given (text, hex, base64, a file): it carries no id and no reply_to, so only
     * an MQTT 5 Response Topic tells a server where to answer ('with-response-topic'); over MQTT 3.1.1 nothing does
     */
    asGiven?: 'with-response-topic' | 'without-reply-topic';
    /** a load run's request: why the trace kept it (a load run keeps 1 request in `every` in full, see LoadRunMark) */
    loadRun?: LoadRunMark;
    wire?: TraceMessage;
  };
  'mqtt.published': { topic: string; qosAsked: QoS; predictedRoutingKey: string };
  /** the broker's PUBACK (QoS 1) or PUBREC (QoS 2): RabbitMQ answers a QoS 2 publish with PUBACK */
  'mqtt.acknowledged': {
    qosAsked: QoS;
    acknowledgedAs: QoS;
    packet: 'puback' | 'pubrec';
    /** MQTT 5 only: the ack's reason code; 0x10 "No matching subscribers" means RabbitMQ (3.13+) routed the request nowhere */
    reasonCode?: number;
  };
  'mqtt.subscribed': { topic: string; qosAsked: QoS; qosGranted: QoS | 'refused' };
  'broker.published': {
    exchange: string;
    routingKeys: string[];
    routedQueues: string[];
    predictedRoutingKey?: string;
    matchesPrediction?: boolean;
    leg: 'request' | 'reply';
    /** a request's reply topic as its message names it (the body's reply_to, an MQTT 5 Response Topic): what a trace of an RPC not sent here reads it from */
    replyTopic?: string;
    /** the cluster node that saw the publish */
    node?: string;
    /** who published it, as the firehose names them (headers `connection`, `channel`, `user`); a client's own word in the body is not this */
    publisher?: BrokerParty;
    /** the message as published: properties, headers and the start of the body */
    wire?: TraceMessage;
  };
  'broker.delivered': {
    queue: string;
    routingKeys: string[];
    redelivered: boolean;
    leg: 'request' | 'reply';
    /** the cluster node that delivered it (where the consumer's channel is) */
    node?: string;
    /** who it was delivered to: the consuming connection, channel and user, as the firehose names them */
    consumer?: BrokerParty;
    /**
     * set on a delivery to an MQTT client's QoS 1 subscription queue when the broker's version was known: true when that
     * version delivers a non-persistent message at QoS 0 (RabbitMQ 3.13+; see `mqttDelivery` in broker-qos.ts)
     */
    transientAtQos0?: boolean;
    /** the message as delivered: properties, headers and the start of the body */
    wire?: TraceMessage;
  };
  'worker.received': { worker: string; consumerTag: string; queue: string; routingKey: string; redelivered: boolean; wire?: TraceMessage };
  /** `keptReply`: the request came back after its reply was nacked; that reply went again, the handler was not run */
  'handler.finished': { worker: string; durationMs: number; outcome: 'result' | 'error'; errorCode?: string; keptReply?: boolean };
  'reply.published': { worker: string; exchange: string; routingKey: string; replyTopic: string; mandatory: boolean; wire?: TraceMessage };
  /**
   * the broker's publisher confirm; a mandatory reply nothing was bound for comes back first as a basic.return;
   * `nacked`: the broker refused it; `lost`: its channel closed before the broker confirmed it (the reply may or may not
   * have been routed)
   */
  'reply.confirmed': { worker: string; outcome: 'routed' | 'returned' | 'nacked' | 'lost'; returnReason?: string };
  'request.rejected': { worker: string; reason: string; bytes: number };
  /** `qos`: the QoS the reply was delivered at (the PUBLISH packet's), which can be below the subscription's grant */
  'mqtt.reply.received': { topic: string; replyTopic: string; topicMismatch: boolean; bytes: number; qos?: QoS; wire?: TraceMessage };
  /** another reply with the id of a call that already took one (the first reply wins): kept, not used */
  'mqtt.reply.ignored': { topic: string; bytes: number; reason: 'second-reply'; wire?: TraceMessage };
  'rpc.failed': { code: string; message: string; reason?: FailureReason };
  /** where the RPC stopped and why, decided after it settled (replied, failed or timed out); the last step of an RPC */
  'rpc.diagnosed': { verdict: Verdict };
}

/** A connection as the broker's firehose names it: `connection` is "peer address:port -> broker address:port". */
export interface BrokerParty {
  connection: string;
  channel?: number;
  user?: string;
  /** the MQTT client id of that connection, when it is an MQTT client's (from the management API's connections, or its subscription queue) */
  mqttClientId?: string;
  /** the name its client gave the connection (an AMQP worker's `connection_name`), from the management API's connections */
  connectionName?: string;
}

export type TraceStepKind = keyof TraceStepDetails;
export type TraceSource = 'client' | 'server' | 'broker';

/** Immutable by type (no freeze at run time: a step is built per hop of every RPC, and nothing changes it). */
export type TraceStep = {
  [K in TraceStepKind]: {
    readonly rpcId: string;
    readonly seq: number;
    readonly at: number;
    readonly source: TraceSource;
    readonly kind: K;
    readonly detail: Readonly<TraceStepDetails[K]>;
  };
}[TraceStepKind];

/** A step before the tracer numbered it. */
export type TraceStepDraft = {
  [K in TraceStepKind]: { rpcId: string; at: number; source: TraceSource; kind: K; detail: TraceStepDetails[K] };
}[TraceStepKind];

/** Where a step sits in the nine-step flow of docs/ARCHITECTURE.md; a trace lists steps by phase, then arrival. */
export function stepPhase(step: TraceStep | TraceStepDraft): number {
  switch (step.kind) {
    case 'composed':
      return 1;
    case 'mqtt.subscribed':
      return 1.5;
    case 'mqtt.published':
    case 'mqtt.acknowledged':
      return 2;
    case 'broker.published':
      return step.detail.leg === 'request' ? 3 : 8;
    case 'broker.delivered':
      return step.detail.leg === 'request' ? 4 : 8.5;
    case 'worker.received':
    case 'request.rejected':
      return 5;
    case 'handler.finished':
      return 6;
    case 'reply.published':
    case 'reply.confirmed':
      return 7;
    case 'mqtt.reply.received':
    case 'mqtt.reply.ignored':
      return 9;
    case 'rpc.failed':
      return 10;
    case 'rpc.diagnosed':
      return 11;
  }
}

/** What one RPC's steps add up to, with every warning a user should read. */
export interface RpcTraceSummary {
  rpcId: string;
  startedAt: number;
  durationMs?: number;
  state: 'pending' | 'replied' | 'failed' | 'rejected';
  /** a load run's request: why the trace kept it (its composed step's mark) */
  loadRun?: LoadRunMark;
  requestTopic?: string;
  predictedRequestKey?: string;
  brokerRequestKeys?: string[];
  requestRoutedQueues?: string[];
  worker?: string;
  redelivered: boolean;
  replyTopic?: string;
  replyKey?: string;
  brokerReplyKeys?: string[];
  replyRoutedQueues?: string[];
  arrivedOn?: string;
  topicMismatch: boolean;
  /** the MQTT client id of the device that sent the request, as the broker's record names it (an RPC not sent here) */
  device?: string;
  /** whether any broker (firehose) step was seen; false means client and server steps only */
  brokerSeen: boolean;
  warnings: string[];
  /** the verdict, once the RPC has settled and been diagnosed (its `rpc.diagnosed` step) */
  verdict?: Verdict;
}

/** The message a step carries as it was on the wire there, if any (composed, broker and reply-received steps). */
export function wireOf(step: TraceStep | TraceStepDraft): TraceMessage | undefined {
  return 'wire' in step.detail ? step.detail.wire : undefined;
}

/**
 * The body bytes a step's preview keeps, as the trace's budget counts them (0 once dropped): the first
 * TRACE_BODY_PREVIEW_BYTES of the body. Counted from the sizes, not the preview's text, so the core store can count a
 * preview before it is built (see WireSource in src/core/trace/message-view.ts) and free exactly that much later.
 */
export function previewSize(step: TraceStep | TraceStepDraft): number {
  const body = wireOf(step)?.body;
  return body === undefined || body.dropped ? 0 : Math.min(body.bytes, TRACE_BODY_PREVIEW_BYTES);
}

/** The same step without its body preview (size, encoding and headers stay): what the budget leaves of an old step. */
export function withoutPreview(step: TraceStep): TraceStep {
  const message = wireOf(step);
  if (!message || message.body.dropped) return step;
  return { ...step, detail: { ...step.detail, wire: { ...message, body: { ...message.body, preview: '', shown: 0, dropped: true } } } } as TraceStep;
}

/** The default memory budget for body previews in one trace store: older previews are dropped beyond it. */
export const TRACE_BODY_BUDGET_BYTES = 32 * 1024 * 1024;

/**
 * Keeps the body previews of a trace within a byte budget: notes every preview as it comes, and says which old ones
 * to drop (oldest first) once the budget is passed. The store drops them and tells how many bytes that freed.
 */
export interface BudgetRpc {
  rpcId: string;
  /** preview bytes of this RPC still held */
  bytes: number;
  /** its entries in the queue not passed yet */
  entries: number;
  /** set when the RPC went (evicted or cleared): its queue entries are dead */
  gone: boolean;
}

export class PreviewBudget {
  /**
   * The previews in the order they came, oldest at `head`, as two parallel lists (no object per preview): entries of
   * RPCs that went are skipped, then compacted away.
   */
  private queueRpcs: BudgetRpc[] = [];
  private queueSeqs: number[] = [];
  private head = 0;
  /** entries after `head` whose RPC went */
  private dead = 0;
  /** per RPC, so an RPC that goes is forgotten without reading its (cold) steps again */
  private readonly perRpc = new Map<string, BudgetRpc>();
  /** the RPC of the last preview noted: previews of one RPC often come one after another */
  private last: BudgetRpc | undefined;
  used = 0;

  constructor(readonly limit: number) {}

  /** Counts `step`'s preview, then drops the oldest previews while over budget; `drop` returns the bytes it freed (0 when that step is gone). */
  note(step: TraceStep, drop: (rpcId: string, seq: number) => number): void {
    this.noteSize(step.rpcId, step.seq, previewSize(step), drop);
  }

  /** As `note`, for a preview of `size` bytes of step `seq` of `rpcId` (the core store notes drafts before it builds steps). */
  noteSize(rpcId: string, seq: number, size: number, drop: (rpcId: string, seq: number) => number): void {
    if (size === 0) return;
    let rpc = this.last;
    if (rpc === undefined || rpc.rpcId !== rpcId || rpc.gone) {
      rpc = this.perRpc.get(rpcId);
      if (!rpc) {
        rpc = PreviewBudget.rpc(rpcId);
        this.perRpc.set(rpcId, rpc);
      }
      this.last = rpc;
    }
    this.noteFor(rpc, seq, size, drop);
  }

  /** A new RPC's entry, for a caller that keeps it with the RPC (`noteFor`, `forgetRpc`: no lookup by id). */
  static rpc(rpcId: string): BudgetRpc {
    return { rpcId, bytes: 0, gone: false, entries: 0 };
  }

  /** As `noteSize`, for an RPC whose entry the caller keeps. */
  noteFor(rpc: BudgetRpc, seq: number, size: number, drop: (rpcId: string, seq: number) => number): void {
    if (size === 0) return;
    this.used += size;
    rpc.bytes += size;
    rpc.entries += 1;
    this.queueRpcs.push(rpc);
    this.queueSeqs.push(seq);
    while (this.used > this.limit && this.head < this.queueRpcs.length) {
      const oldest = this.queueRpcs[this.head] as BudgetRpc;
      const oldestSeq = this.queueSeqs[this.head] as number;
      this.head += 1;
      if (oldest.gone) {
        this.dead -= 1;
        continue;
      }
      const freed = drop(oldest.rpcId, oldestSeq);
      this.used -= freed;
      oldest.bytes -= freed;
      oldest.entries -= 1;
    }
    this.compact();
  }

  /** An RPC went with its steps: their previews no longer count, and their queue entries are dead. */
  forget(rpcId: string): void {
    const rpc = this.perRpc.get(rpcId);
    if (!rpc) return;
    this.perRpc.delete(rpcId);
    this.forgetRpc(rpc);
  }

  /** As `forget`, for an RPC whose entry the caller keeps. */
  forgetRpc(rpc: BudgetRpc): void {
    if (rpc.gone) return;
    this.used -= rpc.bytes;
    rpc.gone = true;
    this.dead += rpc.entries;
    this.compact();
  }

  /** Keeps the queue at most about twice the previews held, however many passed or went. */
  private compact(): void {
    const waste = this.head + this.dead;
    if (waste <= 1024 || waste * 2 <= this.queueRpcs.length) return;
    const rpcs: BudgetRpc[] = [];
    const seqs: number[] = [];
    for (let index = this.head; index < this.queueRpcs.length; index += 1) {
      const rpc = this.queueRpcs[index] as BudgetRpc;
      if (rpc.gone) continue;
      rpcs.push(rpc);
      seqs.push(this.queueSeqs[index] as number);
    }
    this.queueRpcs = rpcs;
    this.queueSeqs = seqs;
    this.head = 0;
    this.dead = 0;
  }

  /** How many entries the queue holds (bounded by about twice the previews held). */
  get queued(): number {
    return this.queueRpcs.length;
  }

  clear(): void {
    for (const rpc of this.perRpc.values()) rpc.gone = true;
    for (let index = this.head; index < this.queueRpcs.length; index += 1) (this.queueRpcs[index] as BudgetRpc).gone = true;
    this.queueRpcs = [];
    this.queueSeqs = [];
    this.head = 0;
    this.dead = 0;
    this.perRpc.clear();
    this.last = undefined;
    this.used = 0;
  }
}

export const TRACE_EXPORT_FORMAT = 'bridgescope-trace';
/**
 * 4: broker steps may name their `publisher`/`consumer`, and a second reply is an `mqtt.reply.ignored` step; 3: steps may
 * carry `wire` (properties, headers, body preview); 2: `rpc.diagnosed` (verdicts). Versions 1 to 3 still import.
 */
export const TRACE_EXPORT_VERSION = 4;

export interface TraceExport {
  format: typeof TRACE_EXPORT_FORMAT;
  version: typeof TRACE_EXPORT_VERSION;
  exportedAt: string;
  dropped: { rpcs: number; steps: number };
  steps: TraceStep[];
  /** summaries of load runs, kept with the trace they produced */
  loadRuns?: unknown[];
}
