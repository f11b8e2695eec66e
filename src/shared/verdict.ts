/** A verdict on one RPC: its code, the word a user reads for it, the hop where the RPC stopped. A leaf module: it imports nothing. */
/**
 * Every verdict a user can get: a reply (good or an error object), a failure at one of the seven hops (HOPS), three
 * cases outside the path (undecided, cancelled, never sent), and two doubts about a reply that arrived (one from a
 * connection that did not consume the request, a second one). test/unit/diagnosis.test.ts produces each from a fixture.
 */
export const VERDICT_CODES = [
  'replied',
  'replied-error',
  'reply-foreign',
  'replied-twice',
  'request-unroutable',
  'no-consumer',
  'server-slow',
  'request-rejected',
  'reply-unroutable',
  'reply-refused',
  'reply-to-property',
  'reply-on-other-topic',
  'late-reply',
  'wrong-exchange',
  'not-this-broker',
  'access-refused',
  'link-down',
  'undetermined',
  'cancelled',
  'not-sent',
] as const;
export type VerdictCode = (typeof VERDICT_CODES)[number];

/** The word a user reads for each verdict (the UI shows it beside a colour; the history search matches it). */
export const VERDICT_WORDS: Record<VerdictCode, string> = {
  replied: 'replied',
  'replied-error': 'error reply',
  'reply-foreign': 'foreign reply',
  'replied-twice': 'two replies',
  'request-unroutable': 'request dropped',
  'no-consumer': 'no consumer',
  'server-slow': 'server slow',
  'request-rejected': 'rejected',
  'reply-unroutable': 'reply dropped',
  'reply-refused': 'reply refused',
  'reply-to-property': 'default exchange',
  'reply-on-other-topic': 'other topic',
  'late-reply': 'late reply',
  'wrong-exchange': 'wrong exchange',
  'not-this-broker': 'other broker',
  'access-refused': 'access refused',
  'link-down': 'link down',
  undetermined: 'undetermined',
  cancelled: 'cancelled',
  'not-sent': 'not sent',
};

/** Where an RPC can stop, in the order a request and its reply travel. */
export const HOPS = ['mqtt-publish', 'exchange', 'queue', 'server', 'reply-exchange', 'reply-queue', 'mqtt-deliver'] as const;
export type Hop = (typeof HOPS)[number];

export interface Verdict {
  code: VerdictCode;
  /** the hop where the RPC stopped (for a reply: the last hop it reached) */
  hop: Hop;
  /** one plain sentence naming the exchange/queue/key/topic concerned and what to do */
  message: string;
  /** the facts the verdict rests on, one short line each */
  evidence: string[];
  /**
   * A late reply's own way past the server (it answered after the client gave up): the furthest hop the reply was seen
   * at, and whether it stopped there (the broker returned or refused it). The path strip reads it: the server answered,
   * only too late, and its reply went on without the client.
   */
  replyReached?: { hop: Hop; stopped: boolean };
  /**
   * The MQTT client that sent the request, when it was named only after its publish (an RPC not sent here whose device
   * connected after tracing began): its steps do not name it, the verdict does.
   */
  device?: string;
}

/** What a place knows about one RPC's verdict: the trace's latest `rpc.diagnosed` one, the one the call answered with (or History kept). */
export interface VerdictSources<V extends Pick<Verdict, 'code'> = Verdict> {
  traced?: V | undefined;
  /** History keeps only the code and the sentence */
  told?: V | undefined;
}

/**
 * The one verdict every panel shows for an RPC (Reply panel, History, Trace list, Trace header): the latest decided.
 * The trace's last verdict is the latest (a timeout's "server slow" becomes "late reply" when the reply comes after all;
 * a "replied" becomes "foreign reply" once the broker's record doubts it); the call's own is shown until the trace has one.
 */
export function latestVerdict<V extends Pick<Verdict, 'code'>>({ traced, told }: VerdictSources<V>): V | undefined {
  return traced ?? told;
}

/** The word for an RPC's latest verdict, or undefined while none is decided (pending). */
export function verdictWordOf<V extends Pick<Verdict, 'code'>>(sources: VerdictSources<V>): string | undefined {
  const verdict = latestVerdict(sources);
  return verdict ? VERDICT_WORDS[verdict.code] : undefined;
}

/** The codes of a reply that reached the client: the whole path was travelled. */
export const REPLY_ARRIVED_CODES: ReadonlySet<VerdictCode> = new Set(['replied', 'replied-error', 'reply-on-other-topic', 'reply-foreign', 'replied-twice']);

/** Whether a verdict says a reply reached the client (a late one that reached it too: the whole way, only too late). */
export function replyArrived(verdict: Pick<Verdict, 'code' | 'hop'>): boolean {
  return REPLY_ARRIVED_CODES.has(verdict.code) || (verdict.code === 'late-reply' && verdict.hop === 'mqtt-deliver');
}

/**
 * How far a late reply the client no longer waited for went: its `replyReached`, or for a verdict kept before that
 * field, published (the late-reply verdict needs it) with nothing known past the exchange.
 */
export function lateReplyReach(verdict: Pick<Verdict, 'replyReached'>): NonNullable<Verdict['replyReached']> {
  return verdict.replyReached ?? { hop: 'reply-exchange', stopped: false };
}
