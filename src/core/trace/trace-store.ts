/** Keeps the trace: immutable steps per RPC, bounded in memory, summarised, exported and imported as versioned JSON. */
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import { DEFAULT_TRACE_MAX_RPCS, DEFAULT_TRACE_MAX_STEPS_PER_RPC } from '../../shared/defaults';
import { REPLY_STRATEGIES } from '../../shared/rpc';
import {
  PreviewBudget,
  previewSize,
  stepPhase,
  TRACE_BODY_BUDGET_BYTES,
  TRACE_EXPORT_FORMAT,
  TRACE_EXPORT_VERSION,
  type RpcTraceSummary,
  type TraceExport,
  type TraceStep,
  type TraceStepDetails,
  type TraceStepDraft,
  type TraceStepKind,
  type BudgetRpc,
  type LoadRunMark,
  withoutPreview,
} from '../../shared/trace';
import { redactDeep } from '../../shared/redact';
import { HOPS, VERDICT_CODES } from '../../shared/diagnosis';
import { FAILURE_REASONS } from '../../shared/errors';
import { summarize } from '../../shared/trace-summary';
import { BridgeError } from '../errors';
import { routingKeyToTopic, topicToRoutingKey } from '../../shared/topic-map';
import { BoundedMap } from '../bounded-map';
import { buildWire, dropPendingPreview, ownedHead, ownedLongTable, pendingPreviewBytes, WIRE_SOURCE, wireSourceOf, type PendingDraft, type WireSource } from './message-view';
import { FactTape, MAX_COPIED_BYTES, type TapeOwner } from './fact-tape';
import { AsGivenRequests } from './raw-requests';
import { RecentIds } from '../recent-ids';

export interface TraceStoreOptions {
  maxRpcs?: number;
  maxStepsPerRpc?: number;
  /** bytes of body previews kept in all (default TRACE_BODY_BUDGET_BYTES); beyond it the oldest previews are dropped, their sizes and headers kept */
  maxBodyBytes?: number;
}

interface TraceStoreEvents {
  added: [TraceStep];
}

interface StepSource {
  on(event: 'step', listener: (draft: TraceStepDraft) => void): unknown;
  off(event: 'step', listener: (draft: TraceStepDraft) => void): unknown;
}

/** A kept step's values on the tape, in this order: at, source, detail, wire (written by `TraceStore.store`, read by `RpcFacts`). */
const TAPE_DETAIL = 2;
const TAPE_VALUES = 4;

/**
 * A taped step's kind and phase are its record's head number (read without reading the record: the firehose looks for
 * a step of a kind among an RPC's steps for each of its messages): the kind as a small code, the phase (a multiple of
 * 0.5 below 16) in the low bits.
 */
const PHASE_SLOTS = 32;
const kindNames: TraceStepKind[] = [];
const kindCodes = new Map<TraceStepKind, number>();
const MAX_KIND_CODES = 256;

/** The head of a step of `kind` in `phase`, or -1 when it cannot be told in one (a kind or phase out of the ordinary). */
function tapeHead(kind: TraceStepKind, phase: number): number {
  const slot = phase * 2;
  if (!(Number.isInteger(slot) && slot >= 0 && slot < PHASE_SLOTS)) return -1;
  let code = kindCodes.get(kind);
  if (code === undefined) {
    if (kindNames.length >= MAX_KIND_CODES) return -1;
    code = kindNames.length;
    kindNames.push(kind);
    kindCodes.set(kind, code);
  }
  return code * PHASE_SLOTS + slot;
}

/** The kind a taped step's head tells (see `tapeHead`). */
function headKind(head: number): TraceStepKind {
  return kindNames[Math.floor(head / PHASE_SLOTS)] as TraceStepKind;
}

/** The phase a taped step's head tells (see `tapeHead`). */
function headPhase(head: number): number {
  return (head % PHASE_SLOTS) / 2;
}

/**
 * The routing keys the firehose compares each of an RPC's messages with, noted as its steps are stored: of the first
 * step of each kind, as `findDetail` finds it (steps of one kind share a phase, so the first stored is first in flow
 * order), without reading a step back from the tape four times an RPC.
 */
export interface RpcKeys {
  /** the routing key of its reply topic (its `composed` step, or for a request not sent here its first copy's reply topic) */
  readonly replyKey: string | undefined;
  /** the routing key its request was predicted to take (its `mqtt.published` step) */
  readonly predictedKey: string | undefined;
  /** the routing key its reply was published with (its `reply.published` step) */
  readonly repliedKey: string | undefined;
}

/**
 * What the store keeps of one RPC: its steps in flow order, each followed by the number it was given. A step nobody
 * has read is kept as its facts on the store's tape (a position: see FactTape) or, when it could not go there, as the
 * draft its writer handed over. It becomes a `TraceStep` only when a reader asks for it (or an 'added' listener is there
 * to take it); the step is then kept in its place, so every reader after that gets the same object.
 */
class RpcFacts implements TapeOwner, RpcKeys {
  /** steps (a tape position, a draft, or the step built from them) in flow order, each followed by its number: one list, not two */
  readonly items: Array<TraceStepDraft | TraceStep | number> = [];
  replyKey: string | undefined = undefined;
  predictedKey: string | undefined = undefined;
  repliedKey: string | undefined = undefined;
  /** its previews in the store's body budget, once it has one (kept here: no lookup by id per preview) */
  budget: BudgetRpc | undefined = undefined;
  /** false once the RPC went from the store (its tape cells are nobody's then) */
  live = true;

  /** The RPC went: its tape cells are nobody's, and what it held goes now (a segment may name it until written again). */
  forget(): void {
    this.live = false;
    this.items.length = 0;
  }

  constructor(
    readonly rpcId: string,
    private readonly tape: FactTape,
  ) {}

  /** how many steps it holds */
  get size(): number {
    return this.items.length >> 1;
  }

  /** The kind of the step at `index`, without building it. */
  kindAt(index: number): TraceStepKind {
    const entry = this.items[index << 1] as TraceStepDraft | TraceStep | number;
    return typeof entry === 'number' ? headKind(this.tape.head(entry)) : entry.kind;
  }

  /**
   * The detail of the step at `index`: of a step on the tape, read alone (the firehose asks for it for each of an RPC's
   * messages; reading the whole step back into a draft once cost more, measured: its wire's head and its objects).
   */
  detailAt(index: number): TraceStepDraft['detail'] {
    const entry = this.items[index << 1] as TraceStepDraft | TraceStep | number;
    return typeof entry === 'number' ? (this.tape.readOne(entry, TAPE_DETAIL) as TraceStepDraft['detail']) : entry.detail;
  }

  /** Where the step at `index` sits in the flow (see `stepPhase`). */
  private phaseAt(index: number): number {
    const entry = this.items[index << 1] as TraceStepDraft | TraceStep | number;
    return typeof entry === 'number' ? headPhase(this.tape.head(entry)) : stepPhase(entry);
  }

  /** The entry at `index` as an object: a step on the tape is read back into its draft, which then takes its place. */
  entry(index: number): TraceStepDraft | TraceStep {
    const entry = this.items[index << 1] as TraceStepDraft | TraceStep | number;
    if (typeof entry !== 'number') return entry;
    const [at, source, detail, wire] = this.tape.read(entry, TAPE_VALUES);
    const draft = { rpcId: this.rpcId, at, source, kind: headKind(this.tape.head(entry)), detail } as PendingDraft;
    if (wire !== undefined) draft[WIRE_SOURCE] = wire as WireSource;
    this.items[index << 1] = draft;
    return draft;
  }

  /** The index of the step numbered `seq`, or -1. */
  indexOf(seq: number): number {
    for (let at = 1; at < this.items.length; at += 2) if (this.items[at] === seq) return at >> 1;
    return -1;
  }

  /** Replaces the entry at `index` (a step without its preview). */
  replace(index: number, step: TraceStep): void {
    this.items[index << 1] = step;
  }

  /** The step at `index`, built from its draft the first time it is asked for (a draft has no `seq`, a step has). */
  step(index: number): TraceStep {
    const entry = this.entry(index);
    if ((entry as Partial<TraceStep>).seq !== undefined) return entry as TraceStep;
    // The wire a writer left to be built (see WireSource) is built now, once.
    const source = wireSourceOf(entry);
    const detail = source === undefined ? entry.detail : { ...entry.detail, wire: buildWire(source) };
    // The RPC's first id string for all its steps (the server and the firehose each parsed a copy of their own).
    const step = { rpcId: this.rpcId, seq: this.items[(index << 1) + 1] as number, at: entry.at, source: entry.source, kind: entry.kind, detail } as TraceStep;
    this.items[index << 1] = step;
    return step;
  }

  /**
   * Whether its request was seen and then a reply published for it (`reply`) or its verdict given (`closed`): a device's
   * request with its id after that is another RPC, and a reply goes to the newest one without a reply (see `rpcUnder`).
   */
  state(): { request: boolean; reply: boolean; closed: boolean } {
    let request = false;
    let reply = false;
    let diagnosed = false;
    for (let index = 0; index < this.size; index += 1) {
      const kind = this.kindAt(index);
      if (kind === 'rpc.diagnosed') diagnosed = true;
      else if (kind === 'composed') request = true;
      else if (kind === 'broker.published') {
        if ((this.detailAt(index) as TraceStepDetails['broker.published']).leg === 'reply') reply = true;
        else request = true;
      }
    }
    return { request, reply, closed: request && (reply || diagnosed) };
  }

  /** Every step, in flow order (built as needed). */
  all(): TraceStep[] {
    const steps: TraceStep[] = new Array<TraceStep>(this.size);
    for (let index = 0; index < steps.length; index += 1) steps[index] = this.step(index);
    return steps;
  }

  /** Puts a step (its tape position, or its draft) where its phase belongs (nearly always at the end); returns its index. */
  insert(entry: TraceStepDraft | number, phase: number, seq: number): number {
    let at = this.size;
    while (at > 0 && this.phaseAt(at - 1) > phase) at -= 1;
    if (at === this.size) this.items.push(entry, seq);
    else this.items.splice(at << 1, 0, entry, seq);
    return at;
  }

  /** The tape is about to write `segment` again: this RPC's steps there are read back into drafts first. */
  unTape(segment: number): void {
    for (let index = 0; index < this.size; index += 1) {
      const entry = this.items[index << 1];
      if (typeof entry === 'number' && FactTape.segmentOf(entry) === segment) this.entry(index);
    }
  }
}

/**
 * How many let-go RPCs are remembered at least, for their late steps: a server's confirm comes a moment after the reply,
 * and a firehose switched on during a run may read its queue (up to 100,000 events) seconds behind.
 */
const LET_GO_REMEMBERED = 25_000;

/** The RPCs not sent here under one name (an id, or `<id> (<reply topic>)`): the newest last. See `TraceStore.rpcUnder`. */
interface IdChain {
  /** the last CHAIN_NAMES_KEPT of them, oldest first */
  names: string[];
  /** how many were named (the next is `#count + 1`) */
  count: number;
  /** the reply key the first request under the name named (another is another device's) */
  replyKey: string | undefined;
}

/** How many of the latest RPCs under one name a reply looks through for the one it answers. */
const CHAIN_NAMES_KEPT = 8;

/** Tape cells per RPC of the store's cap: an untraced call's 8 steps take about 120 (see FactTape). */
const TAPE_CELLS_PER_RPC = 128;

export class TraceStore extends EventEmitter<TraceStoreEvents> {
  private readonly rpcs: BoundedMap<string, RpcFacts>;
  /** reply routing key -> rpc id, to join broker events of plain-text replies that carry no id */
  private readonly replyKeys: BoundedMap<string, string>;
  /** the RPCs not sent here under one id (or one `<id> (<reply topic>)`), by that name: see `rpcUnder` */
  private readonly chains: BoundedMap<string, IdChain>;
  private seq = 0;
  droppedRpcs = 0;
  droppedSteps = 0;
  readonly maxRpcs: number;
  readonly maxStepsPerRpc: number;
  /** the body previews' memory budget: `bodies.used` bytes of `bodies.limit` */
  readonly bodies: PreviewBudget;
  private readonly dropPreview = (rpcId: string, seq: number): number => this.dropPreviewOf(rpcId, seq);
  private lastReplyTopic: string | undefined;
  private lastReplyKey = '';
  /** steps attached sources emitted, not stored yet (see attach) */
  private handedOver: TraceStepDraft[] = [];
  /** the RPC the last step went to (forgotten when it goes) */
  private lastFacts: RpcFacts | undefined;
  /** where unread steps are kept (see FactTape), and the one array a step's values are handed to it in */
  private readonly tape: FactTape;
  private readonly taping: unknown[] = new Array<unknown>(TAPE_VALUES);
  /** requests sent with their body as given (no id): how the firehose's copies of them are found */
  private readonly asGiven = new AsGivenRequests();
  /** RPCs whose steps wait, as their drafts, for `settle` to say whether they are kept (a load run's sampling: see `hold`) */
  private readonly held = new Map<string, TraceStepDraft[]>();
  /** RPCs `settle` let go: a step of theirs that comes later (a server's confirm, a firehose copy) goes too */
  private readonly letGo = new RecentIds<true>(LET_GO_REMEMBERED);
  private anyLetGo = false;
  /** RPCs `settle` let go since the last clear (a load run keeps a sample of its replied requests) */
  sampledOut = 0;

  constructor(options: TraceStoreOptions = {}) {
    super();
    this.maxRpcs = options.maxRpcs ?? DEFAULT_TRACE_MAX_RPCS;
    this.maxStepsPerRpc = options.maxStepsPerRpc ?? DEFAULT_TRACE_MAX_STEPS_PER_RPC;
    this.bodies = new PreviewBudget(options.maxBodyBytes ?? TRACE_BODY_BUDGET_BYTES);
    // Room for the steps of about as many untraced calls as the store keeps: past it, the oldest kept steps are read back.
    this.tape = new FactTape(this.maxRpcs * TAPE_CELLS_PER_RPC);
    this.rpcs = new BoundedMap(this.maxRpcs, (rpcId, facts) => {
      if (facts === this.lastFacts) this.lastFacts = undefined;
      if (this.asGiven.size > 0) this.asGiven.forget(rpcId);
      this.droppedRpcs += 1;
      if (facts.budget) this.bodies.forgetRpc(facts.budget);
      facts.forget();
    });
    this.replyKeys = new BoundedMap(this.maxRpcs * 2);
    this.chains = new BoundedMap(this.maxRpcs);
  }

  /**
   * Numbers a draft, stores it and announces it; the oldest RPC goes when the cap is reached. Each RPC's list stays in
   * flow order as steps come (an insertion from the end, where a step nearly always belongs), so no read sorts. Numbers
   * follow the order steps are stored in: the order they were emitted in, except a held RPC's (see `hold`).
   * Returns the step (built now); `record` stores without building it.
   */
  add(draft: TraceStepDraft): TraceStep | undefined {
    // Steps handed over by attached sources come first: numbers follow the order steps were emitted in.
    this.takeHandedOver();
    const stored = this.store(draft, true);
    return typeof stored === 'object' ? stored : undefined;
  }

  /** As `add`, without building the step for the caller: whether it was kept (false past the RPC's cap). */
  record(draft: TraceStepDraft): boolean {
    this.takeHandedOver();
    return this.store(draft, false) !== false;
  }

  /**
   * An RPC's facts by id. Steps of one RPC often come one after another (composed and published; received, finished and
   * replied; a firehose event's lookups and then its step): the last one found is tried first, without the Map.
   */
  private factsOf(rpcId: string): RpcFacts | undefined {
    const last = this.lastFacts;
    if (last !== undefined && last.rpcId === rpcId) return last;
    const facts = this.rpcs.get(rpcId);
    if (facts) this.lastFacts = facts;
    return facts;
  }

  /**
   * Holds the steps of an RPC about to be sent until `settle` says whether it is kept (a load run keeps the requests it
   * did not trace in full only when they fail or are slow: see LoadTraceSample). Each is held without its message (its
   * body and headers): a step kept for the run's length would otherwise keep the client's and amqplib's objects alive
   * past the young generation (measured: holding whole drafts cost as much CPU as storing them). Steps of a held RPC are
   * not numbered, stored or announced until then, and the firehose's lookups do not see them (a load run holds nothing
   * while the firehose is on).
   */
  hold(rpcId: string): void {
    if (!this.held.has(rpcId)) this.held.set(rpcId, []);
  }

  /**
   * Ends a `hold`: the RPC's steps are stored when `keep` (numbered now, after steps of other RPCs that came meanwhile:
   * their numbers follow the order they were stored in; the steps still handed over are held first, on the caller's
   * path, a rare case), else let go with any that come later (a lookup and a note: the common case). A load run's mark
   * (why it was kept) goes on its composed step.
   */
  settle(rpcId: string, keep: boolean | LoadRunMark): void {
    if (!this.held.has(rpcId)) return;
    // Its steps emitted in this turn (the reply's) are held first, as the others were (a kept RPC is the rare case).
    if (keep !== false) this.takeHandedOver();
    const drafts = this.held.get(rpcId) as TraceStepDraft[];
    this.held.delete(rpcId);
    if (keep === false) {
      this.letGo.set(rpcId, true);
      this.anyLetGo = true;
      this.sampledOut += 1;
      return;
    }
    if (drafts.length === 0) return;
    if (keep !== true) {
      const composed = drafts.find((draft) => draft.kind === 'composed');
      if (composed?.kind === 'composed') composed.detail.loadRun = keep;
    }
    this.handedOver.push(...drafts);
    if (this.handedOver.length === drafts.length) setImmediate(this.takeHandedOverLater);
  }

  /** Stores a draft: false past the RPC's cap; else its step when asked for (or built for an 'added' listener), else true. */
  private store(draft: TraceStepDraft, wantStep: boolean): TraceStep | boolean {
    if (this.held.size > 0) {
      const held = this.held.get(draft.rpcId);
      if (held !== undefined) {
        // Its own listeners have run (steps are handed over after the emit): the draft is the store's now.
        if ((draft as PendingDraft)[WIRE_SOURCE] !== undefined) (draft as PendingDraft)[WIRE_SOURCE] = undefined;
        // The RPC's cap, as for a stored RPC: a held one flooded with replies does not grow until its timeout.
        if (held.length >= this.maxStepsPerRpc) {
          this.droppedSteps += 1;
          return false;
        }
        held.push(draft);
        return true;
      }
    }
    if (this.anyLetGo && this.letGo.get(draft.rpcId) !== undefined) return false;
    let facts = this.factsOf(draft.rpcId);
    if (!facts) {
      facts = new RpcFacts(draft.rpcId, this.tape);
      this.rpcs.add(draft.rpcId, facts);
      this.lastFacts = facts;
    }
    // One id string per RPC is kept: the server's and the firehose's own parsed copies go with their garbage.
    draft.rpcId = facts.rpcId;
    if (facts.size >= this.maxStepsPerRpc) {
      this.droppedSteps += 1;
      return false;
    }
    this.seq += 1;
    const seq = this.seq;
    if (draft.kind === 'composed') {
      const replyKey = this.replyKeyOf(draft.detail.replyTopic);
      this.replyKeys.set(replyKey, draft.rpcId);
      facts.replyKey ??= replyKey;
      const head = draft.detail.asGiven !== undefined ? wireSourceOf(draft)?.head : undefined;
      if (head) this.asGiven.note(draft.rpcId, topicToRoutingKey(draft.detail.topic), draft.detail.bytes, head);
    } else if (draft.kind === 'reply.published') {
      this.replyKeys.set(draft.detail.routingKey, draft.rpcId);
      facts.repliedKey ??= draft.detail.routingKey;
    } else if (draft.kind === 'broker.published') {
      // A request not sent here: its reply topic is its own, as a composed step's (another device's RPC reusing its id has another).
      if (facts.replyKey === undefined && draft.detail.leg === 'request' && draft.detail.replyTopic !== undefined) facts.replyKey = this.replyKeyOf(draft.detail.replyTopic);
    } else if (draft.kind === 'mqtt.published') {
      facts.predictedKey ??= draft.detail.predictedRoutingKey;
      if (this.asGiven.size > 0) this.asGiven.rekey(draft.rpcId, draft.detail.predictedRoutingKey);
    }
    const source = wireSourceOf(draft);
    const size = source === undefined ? previewSize(draft) : pendingPreviewBytes(source);
    // Built only for a listener: with none (a CLI call, the benchmark), a step is kept as its facts on the tape until read.
    const listened = this.listenerCount('added') > 0;
    const phase = stepPhase(draft);
    let index: number;
    const head = !listened && !wantStep ? tapeHead(draft.kind, phase) : -1;
    if (head >= 0) {
      if (source !== undefined) ownedLongTable(source, MAX_COPIED_BYTES);
      const values = this.taping;
      values[0] = draft.at;
      values[1] = draft.source;
      values[TAPE_DETAIL] = draft.detail;
      values[3] = source;
      const position = this.tape.write(facts, head, values);
      values.fill(undefined);
      // Kept as its draft (too big for the tape), or its wire source kept by reference (an object of a shape past the
      // tape's limit): the head becomes a copy of its own.
      if ((position < 0 || this.tape.keptReferences) && source !== undefined) ownedHead(source);
      index = facts.insert(position >= 0 ? position : draft, phase, seq);
    } else {
      // Kept as its draft (a kind or phase the tape's head cannot tell), its body's head becomes a copy of its own; a
      // step built now keeps only its preview.
      if (!listened && !wantStep && source !== undefined) ownedHead(source);
      index = facts.insert(draft, phase, seq);
    }
    // Noted once the step is in its place: the budget may drop this very preview at once.
    if (size > 0) this.bodies.noteFor((facts.budget ??= PreviewBudget.rpc(facts.rpcId)), seq, size, this.dropPreview);
    if (!listened && !wantStep) return true;
    const step = facts.step(index);
    if (listened) this.emit('added', step);
    return step;
  }

  /** The routing key of a reply topic: the shared one comes back on every call (and every firehose request), its key is kept. */
  replyKeyOf(replyTopic: string): string {
    if (replyTopic !== this.lastReplyTopic) {
      this.lastReplyTopic = replyTopic;
      this.lastReplyKey = topicToRoutingKey(replyTopic);
    }
    return this.lastReplyKey;
  }

  /** Stores the steps attached sources handed over, in their order; every read calls it first. */
  private takeHandedOver(): void {
    if (this.handedOver.length === 0) return;
    const drafts = this.handedOver;
    this.handedOver = [];
    for (const draft of drafts) {
      try {
        this.store(draft, false);
      } catch {
        // An 'added' listener threw (the step is stored): the rest of the batch is stored all the same, and the reader
        // (or the setImmediate) that took them is not cut short. Stored inside the emitter, it was reported there.
      }
    }
  }

  private readonly takeHandedOverLater = (): void => this.takeHandedOver();

  /** Replaces a kept step by the same step without its body preview; the bytes freed (0 when the step is gone). */
  private dropPreviewOf(rpcId: string, seq: number): number {
    const facts = this.rpcs.get(rpcId);
    const index = facts ? facts.indexOf(seq) : -1;
    if (!facts || index < 0) return 0;
    const entry = facts.entry(index);
    // Not built yet: its source loses the head, and the step is built without a preview when read.
    const source = wireSourceOf(entry);
    if (source !== undefined) return dropPendingPreview(source);
    facts.replace(index, withoutPreview(entry as TraceStep));
    return previewSize(entry);
  }

  /**
   * The RPC a firehose copy that names `id` belongs to. An id is not unique across devices a team did not write: devices
   * count their ids (or Correlation Data) from 1, each from every boot. So for a request not sent here, `id` is:
   * - another device's RPC when the first request under `id` named another reply key (`<id> (<reply topic>)`); a
   *   request's copy names its own reply key, a reply's is the key it was sent with, which joins such an RPC only if
   *   there is one (else it is a reply on a wrong key, of the RPCs under `id`);
   * - the next RPC when the newest under that name was closed (its request seen, then a reply published or its verdict
   *   given) and a request's publish (`opens`) comes: `<id> #2`, `#3`, ...; a request's delivery joins the newest;
   * - for a reply, the newest of the last few under that name that has no reply yet (a late reply to a device's request
   *   before a reboot is that request's, not the answered one after it), else the newest.
   * The names under each survive their RPCs' going from the store (bounded as the store). An RPC sent here (a composed
   * step) is always its id: its ids are the app's own, never reused.
   */
  rpcUnder(id: string, replyKey: string | undefined, copy: 'opens' | 'request' | 'other'): string {
    this.takeHandedOver();
    const first = this.factsOf(id);
    if (first !== undefined && first.size > 0 && first.kindAt(0) === 'composed') return id;
    const under = this.chains.get(id);
    if (first === undefined && under === undefined) {
      if (copy !== 'other' && replyKey !== undefined) this.chains.set(id, { names: [id], count: 1, replyKey });
      return id;
    }
    let base = id;
    const known = under?.replyKey ?? first?.replyKey;
    if (replyKey !== undefined && known !== undefined && known !== replyKey) {
      const twin = `${id} (${routingKeyToTopic(replyKey)})`;
      if (copy !== 'other' || this.chains.get(twin) !== undefined || this.rpcs.get(twin) !== undefined) base = twin;
    }
    let chain = this.chains.get(base);
    if (chain === undefined) {
      chain = { names: [base], count: 1, replyKey: copy !== 'other' ? replyKey : undefined };
      this.chains.set(base, chain);
      // Its first: the RPC under the name is this one (there may be one already, from a reply before any request).
      if (copy !== 'other') return base;
    } else if (copy !== 'other') chain.replyKey ??= replyKey;
    const newest = chain.names[chain.names.length - 1] as string;
    const facts = this.rpcs.get(newest);
    if (copy === 'other') {
      // The newest without a reply, of those still in the store.
      for (let at = chain.names.length - 1; at >= 0; at -= 1) {
        const name = chain.names[at] as string;
        const state = this.rpcs.get(name)?.state();
        if (state !== undefined && state.request && !state.reply) return name;
      }
      return newest;
    }
    if (copy === 'request' || (facts !== undefined && !facts.state().closed)) return newest;
    // A name no RPC in the store has (an older one under the same number may still be there).
    let name: string;
    do {
      chain.count += 1;
      name = `${base} #${chain.count}`;
    } while (this.rpcs.get(name) !== undefined);
    chain.names.push(name);
    if (chain.names.length > CHAIN_NAMES_KEPT) chain.names.shift();
    return name;
  }

  /** The routing keys the firehose compares an RPC's messages with (see `RpcKeys`); undefined for an RPC it does not hold. */
  keysOf(rpcId: string): RpcKeys | undefined {
    this.takeHandedOver();
    return this.factsOf(rpcId);
  }

  /** The detail of an RPC's first step of `kind` (in flow order), without copying or sorting its steps. */
  findDetail<K extends TraceStepKind>(rpcId: string, kind: K): Readonly<TraceStepDetails[K]> | undefined {
    this.takeHandedOver();
    const facts = this.factsOf(rpcId);
    if (!facts) return undefined;
    for (let index = 0; index < facts.size; index += 1) {
      if (facts.kindAt(index) === kind) return facts.detailAt(index) as TraceStepDetails[K];
    }
    return undefined;
  }

  /** Forgets every step; returns how many RPCs were cleared. */
  clear(): number {
    // Counted among the RPCs cleared, as they were when stored at once.
    this.takeHandedOver();
    const cleared = this.rpcs.size;
    for (const facts of this.rpcs.values()) facts.forget();
    this.rpcs.clear();
    this.tape.clear();
    this.lastFacts = undefined;
    this.bodies.clear();
    this.replyKeys.clear();
    this.chains.clear();
    this.asGiven.clear();
    // An RPC still held is still being sent: its steps so far go, the rest wait for its settle as before.
    for (const drafts of this.held.values()) drafts.length = 0;
    this.sampledOut = 0;
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

  /**
   * Feeds every 'step' event of a client or server into the store; returns the unsubscribe. A step is handed over at
   * once and stored after the current I/O callback (or at the next read, whichever comes first): the RPC's own next
   * write (a publish, a reply) goes out before the store's work, which is off the request's path. `rename` puts a
   * step under another RPC's id (see RawRequestJoin).
   */
  attach(source: StepSource, rename?: (draft: TraceStepDraft) => TraceStepDraft): () => void {
    const listener = (draft: TraceStepDraft): void => {
      // Renamed as emitted, before anything is stored or announced: a step never shows under an id it later leaves.
      this.handedOver.push(rename ? rename(draft) : draft);
      if (this.handedOver.length === 1) setImmediate(this.takeHandedOverLater);
    };
    source.on('step', listener);
    return () => void source.off('step', listener);
  }

  /** Remembers which RPC a reply routing key belongs to (from a request body seen by the firehose). */
  noteReplyKey(routingKey: string, rpcId: string): void {
    // A composed step still handed over would note its key after this one and win: take it first.
    this.takeHandedOver();
    this.replyKeys.set(routingKey, rpcId);
  }

  /** The RPC a firehose copy of a request sent as given belongs to (see `AsGivenRequests`). */
  asGivenRequestOf(copy: Parameters<AsGivenRequests['rpcOf']>[0], routingKey: string, body: Buffer): string | undefined {
    this.takeHandedOver();
    return this.asGiven.size > 0 ? this.asGiven.rpcOf(copy, routingKey, body) : undefined;
  }

  rpcForReplyKey(routingKey: string): string | undefined {
    this.takeHandedOver();
    return this.replyKeys.get(routingKey);
  }

  /** One RPC's steps in flow order (phase), then in arrival order. */
  steps(rpcId: string): TraceStep[] {
    this.takeHandedOver();
    return this.rpcs.get(rpcId)?.all() ?? [];
  }

  rpcIds(): string[] {
    this.takeHandedOver();
    return [...this.rpcs.keys()];
  }

  get size(): number {
    this.takeHandedOver();
    return this.rpcs.size;
  }

  allSteps(): TraceStep[] {
    this.takeHandedOver();
    const steps: TraceStep[] = [];
    for (const facts of this.rpcs.values()) for (const step of facts.all()) steps.push(step);
    return steps.sort((a, b) => a.seq - b.seq);
  }

  summary(rpcId: string): RpcTraceSummary {
    return summarize(rpcId, this.steps(rpcId));
  }

  export(): TraceExport {
    this.takeHandedOver();
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
      throw new BridgeError('bad-input', `This is not a BridgeScope trace (version ${IMPORTED_VERSIONS.slice(0, -1).join(', ')} or ${IMPORTED_VERSIONS.at(-1)}): ${issue?.path.join('.') || 'file'}: ${issue?.message}.`);
    }
    const store = new TraceStore({ ...options, maxRpcs: Math.max(options.maxRpcs ?? DEFAULT_TRACE_MAX_RPCS, 1), maxStepsPerRpc: options.maxStepsPerRpc ?? DEFAULT_TRACE_MAX_STEPS_PER_RPC });
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
const partySchema = z.object({ connection: z.string(), channel: z.number().optional(), user: z.string().optional(), mqttClientId: z.string().optional(), connectionName: z.string().optional() }).optional();
const textList = z.array(z.string());
const traceValueSchema = z.union([z.string(), z.number(), z.boolean(), z.null()]);
const messageSchema = z
  .object({
    protocol: z.enum(['amqp', 'mqtt']),
    properties: z.record(z.string(), traceValueSchema),
    headers: z.record(z.string(), traceValueSchema),
    body: z.object({
      bytes: z.number().int().nonnegative(),
      encoding: z.enum(['json', 'text', 'binary']),
      preview: z.string(),
      shown: z.number().int().nonnegative(),
      dropped: z.boolean().optional(),
    }),
  })
  .optional();

const stepDetailSchemas = {
  composed: z.object({
    topic: z.string(),
    qos: qosSchema,
    replyTopic: z.string(),
    replyStrategy: z.enum(REPLY_STRATEGIES),
    bytes: z.number(),
    method: z.string().optional(),
    asGiven: z.enum(['with-response-topic', 'without-reply-topic']).optional(),
    loadRun: z.object({ every: z.number().int().min(1), kept: z.enum(['chosen', 'firehose', 'failed', 'slow']) }).optional(),
    wire: messageSchema,
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
    replyTopic: z.string().optional(),
    node: z.string().optional(),
    publisher: partySchema,
    wire: messageSchema,
  }),
  'broker.delivered': z.object({
    queue: z.string(),
    routingKeys: textList,
    redelivered: z.boolean(),
    leg: legSchema,
    node: z.string().optional(),
    consumer: partySchema,
    transientAtQos0: z.boolean().optional(),
    wire: messageSchema,
  }),
  'worker.received': z.object({ worker: z.string(), consumerTag: z.string(), queue: z.string(), routingKey: z.string(), redelivered: z.boolean(), wire: messageSchema }),
  'handler.finished': z.object({ worker: z.string(), durationMs: z.number(), outcome: z.enum(['result', 'error']), errorCode: z.string().optional(), keptReply: z.boolean().optional() }),
  'reply.published': z.object({ worker: z.string(), exchange: z.string(), routingKey: z.string(), replyTopic: z.string(), mandatory: z.boolean(), wire: messageSchema }),
  'reply.confirmed': z.object({ worker: z.string(), outcome: z.enum(['routed', 'returned', 'nacked', 'lost']), returnReason: z.string().optional() }),
  'request.rejected': z.object({ worker: z.string(), reason: z.string(), bytes: z.number() }),
  'mqtt.reply.received': z.object({
    topic: z.string(),
    replyTopic: z.string(),
    topicMismatch: z.boolean(),
    bytes: z.number(),
    qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
    wire: messageSchema,
  }),
  'mqtt.reply.ignored': z.object({ topic: z.string(), bytes: z.number(), reason: z.literal('second-reply'), wire: messageSchema }),
  'rpc.failed': z.object({ code: z.string(), message: z.string(), reason: z.enum(FAILURE_REASONS).optional() }),
  'rpc.diagnosed': z.object({
    verdict: z.object({
      code: z.enum(VERDICT_CODES),
      hop: z.enum(HOPS),
      message: z.string(),
      evidence: textList,
      replyReached: z.object({ hop: z.enum(HOPS), stopped: z.boolean() }).optional(),
      device: z.string().max(1000).optional(),
    }),
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
  stepOf('mqtt.reply.ignored'),
  stepOf('rpc.failed'),
  stepOf('rpc.diagnosed'),
]) satisfies z.ZodType<TraceStep>;

/** Every format version this build reads: 1 (before verdicts), 2 (before bodies), 3 (before publishers) and the current one. */
const IMPORTED_VERSIONS = [1, 2, 3, TRACE_EXPORT_VERSION] as const;

const traceExportSchema = z.object({
  format: z.literal(TRACE_EXPORT_FORMAT),
  version: z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(TRACE_EXPORT_VERSION)]),
  exportedAt: z.string(),
  dropped: z.object({ rpcs: z.number().int().nonnegative(), steps: z.number().int().nonnegative() }),
  loadRuns: z.array(z.unknown()).optional(),
  steps: z.array(stepSchema),
});

/** Removes any password that slipped into a step's strings (URLs with user-info), whatever characters it has. */
function redactStep(step: TraceStep): TraceStep {
  return redactDeep(step);
}

