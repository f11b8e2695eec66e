/** The one rule for a list of nodes (a cluster's URLs): try each in turn, each attempt bounded, until one answers. */
import { BridgeError } from '../errors';
import { redactUrl } from '../../shared/redact';

export interface Answered<T> {
  url: string;
  index: number;
  value: T;
  /** the nodes tried before it that could not be reached or did not answer, each as one sentence */
  skipped: BridgeError[];
}

/** Whether a failure at one node leaves the next worth trying: refused credentials or a missing vhost are the same on every node. */
export const worthNextNode = (failure: BridgeError): boolean => failure.code === 'unreachable' || failure.code === 'timeout';

/**
 * Runs `attempt` at each URL in turn (the caller bounds each attempt: a node that accepts connections and never answers
 * must fail it) until one succeeds. A failure that is not about reaching the node ends the search. Rejects with one
 * sentence: the only failure, or every node's.
 */
export async function firstThatAnswers<T>(
  urls: readonly string[],
  attempt: (url: string, index: number) => Promise<T>,
  explain: (err: unknown, url: string) => BridgeError,
): Promise<Answered<T>> {
  const failures: BridgeError[] = [];
  for (const [index, url] of urls.entries()) {
    try {
      return { url, index, value: await attempt(url, index), skipped: failures };
    } catch (err) {
      const failure = explain(err, url);
      failures.push(failure);
      if (!worthNextNode(failure)) break;
    }
  }
  if (failures.length > 1) {
    throw new BridgeError(failures.at(-1)?.code ?? 'unreachable', `No node answered: ${failures.map((failure) => failure.message).join(' ')}`);
  }
  throw failures[0] ?? new BridgeError('bad-input', 'No URL was given.');
}

/**
 * What a command says when it skipped nodes: the one it uses, then which did not answer. The URL in use comes first: a
 * sentence naming an unredacted URL before a redacted one would be redacted whole by the terminal's safety net.
 */
export function skippedSentence(answered: Pick<Answered<unknown>, 'url' | 'skipped'>): string | undefined {
  if (answered.skipped.length === 0) return undefined;
  return usingSentence(answered.url, answered.skipped.map((failure) => failure.message));
}

/** "Using <url in use> (<why the ones before it were not used>)." */
export function usingSentence(url: string, why: readonly string[]): string {
  const reasons = why.map((sentence) => sentence.charAt(0).toLowerCase() + sentence.slice(1).replace(/\.$/, ''));
  return `Using ${redactUrl(url)} (${reasons.join('; ')}).`;
}
