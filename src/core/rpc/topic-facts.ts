/** What the topic map says of the topics a client uses: kept for the ones every call uses again. */
import { blockingIssue, lintTopic, topicToRoutingKey, type TopicMapOptions } from '../../shared/topic-map';

export interface TopicFacts {
  /** why the topic cannot be used, when it cannot */
  unusable: string | undefined;
  warnings: readonly string[];
  routingKey: string;
}

export class TopicFactsCache {
  /** by role, keyed by the topic itself: a key made per call (role + topic) was a new string to hash every time */
  private readonly known = { publish: new Map<string, TopicFacts>(), reply: new Map<string, TopicFacts>() };

  constructor(private readonly topicMap: TopicMapOptions | undefined) {}

  /**
   * What the topic map says of a topic in a role: the reason it cannot be used, the warnings, its routing key. The request
   * topic and the shared reply topic come back on every call: theirs are kept (a few, so a burst of topics cannot grow it).
   */
  facts(topic: string, role: 'publish' | 'reply', keep: boolean): TopicFacts {
    const kept = this.known[role];
    const known = keep ? kept.get(topic) : undefined;
    if (known) return known;
    const issues = lintTopic(topic, role, this.topicMap);
    const facts: TopicFacts = {
      unusable: blockingIssue(issues)?.message,
      // a request topic's warnings; a reply topic's warnings and its errors that do not block
      warnings: issues.filter((issue) => (role === 'publish' ? issue.severity === 'warning' : issue.severity !== 'info')).map((issue) => issue.message),
      routingKey: topicToRoutingKey(topic, this.topicMap),
    };
    if (keep) {
      if (kept.size >= 64) kept.clear();
      kept.set(topic, facts);
    }
    return facts;
  }
}
