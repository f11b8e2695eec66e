/** How the inspector shows a verdict: one word and a tone per code, the hops drawn on the path, the verdict a failed call carries. */
import { HOPS, VERDICT_CODES, VERDICT_WORDS, latestVerdict, type Hop, type Verdict, type VerdictCode } from '../../shared/diagnosis';
import { lateReplyReach, replyArrived } from '../../shared/verdict';
import type { RpcOutcome } from '../../shared/rpc';
import type { RpcTraceSummary } from '../../shared/trace';
import { isSubscriptionQueue, isWatchTapQueue } from '../../shared/rabbitmq-mqtt';

/** good: a reply; warn: an answer with a catch; bad: the RPC got lost; neutral: nothing to blame (cancelled, undecided). */
export type VerdictTone = 'good' | 'warn' | 'bad' | 'neutral';

/** The tone of each verdict; its word (shown beside the colour: a colour alone says nothing to some users) is shared with the core's history search. */
const VERDICT_TONES: Record<VerdictCode, VerdictTone> = {
  replied: 'good',
  'replied-error': 'warn',
  'reply-foreign': 'bad',
  'replied-twice': 'warn',
  'request-unroutable': 'bad',
  'no-consumer': 'bad',
  'server-slow': 'bad',
  'request-rejected': 'bad',
  'reply-unroutable': 'bad',
  'reply-refused': 'bad',
  'reply-to-property': 'bad',
  'reply-on-other-topic': 'warn',
  'late-reply': 'warn',
  'wrong-exchange': 'bad',
  'not-this-broker': 'bad',
  'access-refused': 'bad',
  'link-down': 'bad',
  undetermined: 'neutral',
  cancelled: 'neutral',
  'not-sent': 'bad',
};

export const VERDICT_LOOKS: Record<VerdictCode, { word: string; tone: VerdictTone }> = Object.fromEntries(
  VERDICT_CODES.map((code) => [code, { word: VERDICT_WORDS[code], tone: VERDICT_TONES[code] }]),
) as Record<VerdictCode, { word: string; tone: VerdictTone }>;

/** The path as the user thinks of it: device -> exchange -> queue -> server -> exchange -> subscription -> device. */
export const HOP_LABELS: Record<Hop, string> = {
  'mqtt-publish': 'device',
  exchange: 'exchange',
  queue: 'queue',
  server: 'server',
  'reply-exchange': 'exchange',
  'reply-queue': 'subscription',
  'mqtt-deliver': 'device',
};


/** `unseen`: passed by the verdict's reading, but nothing observed it (an RPC not sent here: a watch sees no delivery) */
export type HopMark = 'passed' | 'stopped' | 'not-reached' | 'unseen';

export interface HopOnPath {
  hop: Hop;
  label: string;
  mark: HopMark;
  /** the verdict's own hop (where it stopped, or what a reply with a catch points at) */
  here: boolean;
}

/**
 * Each hop of the path marked: passed before the verdict's hop, stopped at it, not reached after; for a reply, all
 * passed. A late reply the client no longer waited for passed the server (the verdict's hop, where the time went) and
 * went as far as its `replyReached` says. A hop in `unobserved` that would read passed reads `unseen` instead.
 */
export function hopsOnPath(verdict: Pick<Verdict, 'code' | 'hop' | 'replyReached'>, unobserved: readonly Hop[] = []): HopOnPath[] {
  const at = HOPS.indexOf(verdict.hop);
  // A late reply that reached the device went the whole way, only too late: no hop "stopped" it.
  const arrived = replyArrived(verdict);
  const late = verdict.code === 'late-reply' && !arrived ? lateReplyReach(verdict) : undefined;
  // The last hop passed, and the one it stopped at (none when the path ends at a hop passed).
  const lastPassed = arrived ? HOPS.length - 1 : late ? HOPS.indexOf(late.hop) - (late.stopped ? 1 : 0) : at - 1;
  const stoppedAt = arrived ? -1 : late ? (late.stopped ? HOPS.indexOf(late.hop) : -1) : at;
  return HOPS.map((hop, index) => ({
    hop,
    label: HOP_LABELS[hop],
    mark: index <= lastPassed ? (unobserved.includes(hop) ? 'unseen' : 'passed') : index === stoppedAt ? 'stopped' : 'not-reached',
    here: index === at && verdict.code !== 'replied',
  }));
}

/** A queue that says where a request or reply went: not a watch's tap, nor a placeholder such as "(not kept by watch)". */
function isRealQueue(entry: string): boolean {
  const queue = entry.split(' ')[0] ?? '';
  return queue !== '' && !entry.startsWith('(') && !isWatchTapQueue(queue);
}

/**
 * The hops nothing observed for an RPC not sent here (a watch's, or one the firehose saw): no client, so the device's
 * receipt only when the firehose saw the broker deliver the reply to its subscription (`arrivedOn`); the queues only where the broker's record names one (a tap knows only its own queue); the server and
 * the reply's exchange only once a reply was seen. Our own RPCs: none (their client and server steps say).
 */
export function unobservedHops(summary: RpcTraceSummary): Hop[] {
  if (summary.requestTopic !== undefined) return [];
  const replySeen = (summary.brokerReplyKeys?.length ?? 0) > 0;
  // The broker delivering the reply to the device's subscription is the last hop seen from the broker's side.
  const hops: Hop[] = summary.arrivedOn !== undefined ? [] : ['mqtt-deliver'];
  if (!summary.requestRoutedQueues?.some(isRealQueue)) hops.push('queue');
  if (!replySeen) hops.push('server', 'reply-exchange');
  if (!summary.replyRoutedQueues?.some((queue) => isSubscriptionQueue(queue))) hops.push('reply-queue');
  return hops;
}

/** What a failed `rpc.request.send` says about its RPC (the error shape's rpcId and verdict), read off whatever was thrown. */
export function rpcFailureOf(err: unknown): { rpcId?: string; verdict?: Verdict } {
  if (typeof err !== 'object' || err === null) return {};
  const { rpcId, verdict } = err as { rpcId?: unknown; verdict?: unknown };
  return {
    ...(typeof rpcId === 'string' ? { rpcId } : {}),
    ...(isVerdict(verdict) ? { verdict } : {}),
  };
}

function isVerdict(value: unknown): value is Verdict {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Verdict>;
  return typeof candidate.code === 'string' && candidate.code in VERDICT_LOOKS && typeof candidate.message === 'string' && HOPS.includes(candidate.hop as Hop) && Array.isArray(candidate.evidence);
}

/** A generated id (a UUID, or hex): its first 8 characters tell it apart. */
const GENERATED_ID = /^[0-9a-f]{8}(?:-?[0-9a-f]{4}){3}-?[0-9a-f]{12}$|^(?=[0-9]*[a-f])[0-9a-f]{16,}$/i;
/** The longest id a row shows whole: a device's own ids ("T-silent", "T-silent2") differ anywhere, often at the end. */
const SHOWN_ID_CHARS = 20;

/**
 * An RPC id as a list row shows it: a generated one by its first 8 characters; another (a device's own) whole up to 20
 * characters, else its first 19 and "…" (the row's title has it whole); a watched RPC's
 * (watch-<pattern>-<id>-<sentAt>, see the session's watch `open`) by its request's id.
 */
export function shortRpcId(rpcId: string): string {
  // A watched RPC the trace did not hold: `watch-<pattern>-<id>-<ms> (<reply topic>)` (older pages: without the topic).
  const watched = /^watch-(?:seed|mqtt5|amqp)-(.+)-\d+(?: \(.*\))?$/.exec(rpcId);
  const id = watched?.[1] ?? rpcId;
  if (GENERATED_ID.test(id)) return id.slice(0, 8);
  return id.length <= SHOWN_ID_CHARS ? id : `${id.slice(0, SHOWN_ID_CHARS - 1)}…`;
}

/** A clock time (HH:MM:SS, local) for history rows. */
export function clockTime(at: number): string {
  const date = new Date(at);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((part) => String(part).padStart(2, '0')).join(':');
}

/** The verdict the Reply panel shows: the RPC's latest, as every other panel shows it (src/shared/verdict.ts latestVerdict). */
export function shownVerdict(told: Verdict | undefined, traced: Verdict | undefined): Verdict | undefined {
  return latestVerdict({ traced, told });
}

/** The code to show for a reply when the core sent no verdict with it (a bare client, an older core): an error reply is not "replied". */
export function codeOfOutcome(outcome: Pick<RpcOutcome, 'error' | 'topicMismatch' | 'verdict'>): VerdictCode {
  if (outcome.verdict) return outcome.verdict.code;
  if (outcome.error) return 'replied-error';
  return outcome.topicMismatch ? 'reply-on-other-topic' : 'replied';
}
