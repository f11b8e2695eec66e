/** Keeps the trace: immutable steps per RPC, bounded in memory, summarised, exported and imported as versioned JSON. */
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import {
  stepPhase,
  TRACE_EXPORT_FORMAT,
  TRACE_EXPORT_VERSION,
  type RpcTraceSummary,
  type TraceExport,
  type TraceStep,
  type TraceStepDetails,
  type TraceStepDraft,
  type TraceStepKind,
} from '../../shared/trace';
import { redactDeep } from '../../shared/redact';
import { HOPS, VERDICT_CODES } from '../../shared/diagnosis';
import { summarize } from '../../shared/trace-summary';
import { BridgeError } from '../errors';
import { topicToRoutingKey } from '../../shared/topic-map';
import { BoundedMap } from '../bounded-map';

export interface TraceStoreOptions {
  maxRpcs?: number;
  maxStepsPerRpc?: number;
}

interface TraceStoreEvents {
  added: [TraceStep];
}

interface StepSource {
  on(event: 'step', listener: (draft: TraceStepDraft) => void): unknown;
  off(event: 'step', listener: (draft: TraceStepDraft) => void): unknown;
}

export class TraceStore extends EventEmitter<TraceStoreEvents> {
  private readonly rpcs: BoundedMap<string, TraceStep[]>;
  /** reply routing key -> rpc id, to join broker events of plain-text replies that carry no id */
  private readonly replyKeys: BoundedMap<string, string>;
  private seq = 0;
  droppedRpcs = 0;
  droppedSteps = 0;
  readonly maxRpcs: number;
  readonly maxStepsPerRpc: number;

  constructor(options: TraceStoreOptions = {}) {
    super();
    this.maxRpcs = options.maxRpcs ?? 10_000;
    this.maxStepsPerRpc = options.maxStepsPerRpc ?? 64;
    this.rpcs = new BoundedMap(this.maxRpcs, () => (this.droppedRpcs += 1));
    this.replyKeys = new BoundedMap(this.maxRpcs * 2);
  }

  /** Numbers a draft, stores it and announces it; the oldest RPC goes when the cap is reached. */
  add(draft: TraceStepDraft): TraceStep | undefined {
    let steps = this.rpcs.get(draft.rpcId);
    if (!steps) {
      steps = [];
      this.rpcs.set(draft.rpcId, steps);
    }
    if (steps.length >= this.maxStepsPerRpc) {
      this.droppedSteps += 1;
      return undefined;
    }
    this.seq += 1;
    const step = { ...draft, seq: this.seq } as TraceStep;
    steps.push(step);
    if (step.kind === 'composed') this.noteReplyKey(topicToRoutingKey(step.detail.replyTopic), step.rpcId);
    if (step.kind === 'reply.published') this.noteReplyKey(step.detail.routingKey, step.rpcId);
    this.emit('added', step);
    return step;
  }

  /** Forgets every step; returns how many RPCs were cleared. */
  clear(): number {
    const cleared = this.rpcs.size;
    this.rpcs.clear();
    this.replyKeys.clear();
    this.droppedRpcs = 0;
    this.droppedSteps = 0;
    return cleared;
  }

  /** Replaces the content with an imported trace (see `TraceStore.import`). */
  replaceWith(other: TraceStore): void {
    this.clear();
    for (const step of other.allSteps()) {
      const { seq: _seq, ...draft } = step;
      this.add(draft as TraceStepDraft);
    }
    this.droppedRpcs = other.droppedRpcs;
    this.droppedSteps = other.droppedSteps;
  }

  /** Feeds every 'step' event of a client or server into the store; returns the unsubscribe. */
  attach(source: StepSource): () => void {
    const listener = (draft: TraceStepDraft): void => void this.add(draft);
    source.on('step', listener);
    return () => void source.off('step', listener);
  }

  /** Remembers which RPC a reply routing key belongs to (from a request body seen by the firehose). */
  noteReplyKey(routingKey: string, rpcId: string): void {
    this.replyKeys.set(routingKey, rpcId);
  }

  rpcForReplyKey(routingKey: string): string | undefined {
    return this.replyKeys.get(routingKey);
  }

  /** One RPC's steps in flow order (phase), then in arrival order. */
  steps(rpcId: string): TraceStep[] {
    const steps = this.rpcs.get(rpcId) ?? [];
    return [...steps].sort((a, b) => stepPhase(a) - stepPhase(b) || a.seq - b.seq);
  }

  rpcIds(): string[] {
    return [...this.rpcs.keys()];
  }

  get size(): number {
    return this.rpcs.size;
  }

  allSteps(): TraceStep[] {
    return [...this.rpcs.values()].flat().sort((a, b) => a.seq - b.seq);
  }

  summary(rpcId: string): RpcTraceSummary {
    return summarize(rpcId, this.steps(rpcId));
  }

  export(): TraceExport {
    return {
      format: TRACE_EXPORT_FORMAT,
      version: TRACE_EXPORT_VERSION,
      exportedAt: new Date().toISOString(),
      dropped: { rpcs: this.droppedRpcs, steps: this.droppedSteps },
      steps: this.allSteps().map((step) => redactStep(step)),
    };
  }

  /** Reads an exported trace back; refuses, in one sentence, anything that is not one. */
  static import(json: unknown, options: TraceStoreOptions = {}): TraceStore {
    const parsed = traceExportSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new BridgeError('bad-input', `This is not a BridgeScope trace (version ${IMPORTED_VERSIONS.join(' or ')}): ${issue?.path.join('.') || 'file'}: ${issue?.message}.`);
    }
    const store = new TraceStore({ maxRpcs: Math.max(options.maxRpcs ?? 10_000, 1), maxStepsPerRpc: options.maxStepsPerRpc ?? 64 });
    for (const step of [...parsed.data.steps].sort((a, b) => a.seq - b.seq)) {
      const { seq: _seq, ...draft } = step;
      store.add(draft as TraceStepDraft);
    }
    store.droppedRpcs += parsed.data.dropped.rpcs;
    store.droppedSteps += parsed.data.dropped.steps;
    return store;
  }
}

/*
 * The import schema: one object per step kind, holding exactly the fields that kind's readers use (describeStep,
 * summarize, the inspector), so whatever passes renders. The `satisfies` keeps it in step with TraceStepDetails.
 */
const qosSchema = z.union([z.literal(0), z.literal(1), z.literal(2)]);
const legSchema = z.enum(['request', 'reply']);
const textList = z.array(z.string());

const stepDetailSchemas = {
  composed: z.object({
    topic: z.string(),
    qos: qosSchema,
    replyTopic: z.string(),
    replyStrategy: z.enum(['per-request', 'shared']),
    bytes: z.number(),
    method: z.string().optional(),
  }),
  'mqtt.published': z.object({ topic: z.string(), qosAsked: qosSchema, predictedRoutingKey: z.string() }),
  'mqtt.acknowledged': z.object({ qosAsked: qosSchema, acknowledgedAs: qosSchema, packet: z.enum(['puback', 'pubrec']), reasonCode: z.number().int().optional() }),
  'mqtt.subscribed': z.object({ topic: z.string(), qosAsked: qosSchema, qosGranted: z.union([qosSchema, z.literal('refused')]) }),
  'broker.published': z.object({
    exchange: z.string(),
    routingKeys: textList,
    routedQueues: textList,
    predictedRoutingKey: z.string().optional(),
    matchesPrediction: z.boolean().optional(),
    leg: legSchema,
    node: z.string().optional(),
  }),
  'broker.delivered': z.object({ queue: z.string(), routingKeys: textList, redelivered: z.boolean(), leg: legSchema, node: z.string().optional() }),
  'worker.received': z.object({ worker: z.string(), consumerTag: z.string(), queue: z.string(), routingKey: z.string(), redelivered: z.boolean() }),
  'handler.finished': z.object({ worker: z.string(), durationMs: z.number(), outcome: z.enum(['result', 'error']), errorCode: z.string().optional() }),
  'reply.published': z.object({ worker: z.string(), exchange: z.string(), routingKey: z.string(), replyTopic: z.string(), mandatory: z.boolean() }),
  'reply.confirmed': z.object({ worker: z.string(), outcome: z.enum(['routed', 'returned', 'nacked']), returnReason: z.string().optional() }),
  'request.rejected': z.object({ worker: z.string(), reason: z.string(), bytes: z.number() }),
  'mqtt.reply.received': z.object({ topic: z.string(), replyTopic: z.string(), topicMismatch: z.boolean(), bytes: z.number() }),
  'rpc.failed': z.object({ code: z.string(), message: z.string() }),
  'rpc.diagnosed': z.object({
    verdict: z.object({ code: z.enum(VERDICT_CODES), hop: z.enum(HOPS), message: z.string(), evidence: textList }),
  }),
} satisfies { [K in TraceStepKind]: z.ZodType<TraceStepDetails[K]> };

const stepOf = <K extends TraceStepKind>(kind: K) =>
  z.object({
    rpcId: z.string().min(1),
    seq: z.number(),
    at: z.number(),
    source: z.enum(['client', 'server', 'broker']),
    kind: z.literal(kind),
    detail: stepDetailSchemas[kind],
  });

const stepSchema = z.discriminatedUnion('kind', [
  stepOf('composed'),
  stepOf('mqtt.published'),
  stepOf('mqtt.acknowledged'),
  stepOf('mqtt.subscribed'),
  stepOf('broker.published'),
  stepOf('broker.delivered'),
  stepOf('worker.received'),
  stepOf('handler.finished'),
  stepOf('reply.published'),
  stepOf('reply.confirmed'),
  stepOf('request.rejected'),
  stepOf('mqtt.reply.received'),
  stepOf('rpc.failed'),
  stepOf('rpc.diagnosed'),
]) satisfies z.ZodType<TraceStep>;

/** Every format version this build reads: 1 (before verdicts) and the current one. */
const IMPORTED_VERSIONS = [1, TRACE_EXPORT_VERSION] as const;

const traceExportSchema = z.object({
  format: z.literal(TRACE_EXPORT_FORMAT),
  version: z.union([z.literal(1), z.literal(TRACE_EXPORT_VERSION)]),
  exportedAt: z.string(),
  dropped: z.object({ rpcs: z.number().int().nonnegative(), steps: z.number().int().nonnegative() }),
  loadRuns: z.array(z.unknown()).optional(),
  steps: z.array(stepSchema),
});

/** Removes any password that slipped into a step's strings (URLs with user-info), whatever characters it has. */
function redactStep(step: TraceStep): TraceStep {
  return redactDeep(step);
}

