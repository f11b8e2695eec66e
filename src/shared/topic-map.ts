/** RabbitMQ's MQTT topic <-> AMQP routing key translation (rabbit_mqtt_util), and a lint that explains every pitfall. */

export type TopicRole = 'publish' | 'reply' | 'filter';

/** What a topic-map finding is about. */
export const TOPIC_ISSUE_CODES = [
  'empty-topic',
  'null-character',
  'topic-too-long',
  'dot-in-level',
  'star-in-level',
  'wildcard-in-topic',
  'plus-not-whole-level',
  'hash-not-last',
  'empty-level',
  'leading-slash',
  'trailing-slash',
  'dollar-prefix',
  'key-too-long',
  'sparkplug-prefix',
] as const;
export type TopicIssueCode = (typeof TOPIC_ISSUE_CODES)[number];

export interface TopicIssue {
  code: TopicIssueCode;
  severity: 'error' | 'warning' | 'info';
  /**
   * Whether the topic cannot be used in its role because of this finding (nothing may be sent with it). The one rule
   * every caller follows: every error blocks, except a "." or "*" in a reply topic, which only changes the topic the
   * reply arrives on (BridgeScope matches replies by id and flags the difference).
   */
  blocking: boolean;
  message: string;
}

export interface TopicMapOptions {
  /** rabbitmq.conf `mqtt.sparkplug = true` */
  sparkplug?: boolean;
}

export interface TopicMapping {
  topic: string;
  role: TopicRole;
  routingKey: string;
  /** the topic an MQTT subscriber receives for a message routed with `routingKey` */
  backToTopic: string;
  roundTrips: boolean;
  issues: TopicIssue[];
}

/** AMQP 0-9-1 short strings (routing keys) hold at most 255 bytes. */
export const MAX_ROUTING_KEY_BYTES = 255;
/** An MQTT topic is a UTF-8 string with a 16-bit length. */
export const MAX_TOPIC_BYTES = 65_535;

const SPARKPLUG_TOPIC = /^sp[AB]v\d+\.\d+\//;
const SPARKPLUG_KEY = /^sp[AB]v\d+___\d+\./;

/** MQTT topic (or filter) to routing key: every `/` becomes `.`, every `+` becomes `*`; `#` stays. */
export function topicToRoutingKey(topic: string, options: TopicMapOptions = {}): string {
  const source = options.sparkplug && SPARKPLUG_TOPIC.test(topic) ? topic.replaceAll('.', '___') : topic;
  return source.replaceAll('/', '.').replaceAll('+', '*');
}

/** Routing key to MQTT topic: every `*` becomes `+`, every `.` becomes `/`. */
export function routingKeyToTopic(routingKey: string, options: TopicMapOptions = {}): string {
  const topic = routingKey.replaceAll('*', '+').replaceAll('.', '/');
  return options.sparkplug && SPARKPLUG_KEY.test(routingKey) ? topic.replaceAll('___', '.') : topic;
}

const utf8 = new TextEncoder();

function utf8Length(text: string): number {
  return utf8.encode(text).byteLength;
}

/** Whether a finding stops a topic being used in its role (see TopicIssue.blocking). */
function blocks(code: TopicIssueCode, severity: TopicIssue['severity'], role: TopicRole): boolean {
  if (severity !== 'error') return false;
  return !(role === 'reply' && (code === 'dot-in-level' || code === 'star-in-level'));
}

const lintCache = new Map<string, readonly TopicIssue[]>();
const LINT_CACHE_LIMIT = 2048;

/**
 * Explains, in one sentence each, why a topic would not survive the trip through RabbitMQ or cannot be used.
 * Cached: the same few topics (rpc_queue, a shared reply topic) come back on every request, as RabbitMQ caches its translations too.
 */
export function lintTopic(topic: string, role: TopicRole, options: TopicMapOptions = {}): TopicIssue[] {
  const key = `${role}\u0000${options.sparkplug ? 1 : 0}\u0000${topic}`;
  let issues = lintCache.get(key);
  if (!issues) {
    issues = Object.freeze(computeLint(topic, role, options));
    if (lintCache.size >= LINT_CACHE_LIMIT) lintCache.clear();
    lintCache.set(key, issues);
  }
  return [...issues];
}

function computeLint(topic: string, role: TopicRole, options: TopicMapOptions): TopicIssue[] {
  const issues: TopicIssue[] = [];
  const add = (code: TopicIssueCode, severity: TopicIssue['severity'], message: string): void => {
    issues.push({ code, severity, blocking: blocks(code, severity, role), message });
  };
  if (topic.length === 0) {
    add('empty-topic', 'error', 'A topic cannot be empty.');
    return issues;
  }
  if (topic.includes('\u0000')) add('null-character', 'error', 'MQTT forbids the NUL character in topics.');
  if (utf8Length(topic) > MAX_TOPIC_BYTES) {
    add('topic-too-long', 'error', `The topic is ${utf8Length(topic)} bytes; MQTT allows at most ${MAX_TOPIC_BYTES}.`);
  }

  const sparkplug = Boolean(options.sparkplug && SPARKPLUG_TOPIC.test(topic));
  if (sparkplug) {
    add(
      'sparkplug-prefix',
      'info',
      'Sparkplug prefix: with mqtt.sparkplug on, RabbitMQ turns every "." of this topic into "___" in the routing key and back.',
    );
  }

  if (options.sparkplug && topic.includes('___')) {
    add(
      'sparkplug-prefix',
      'warning',
      'With mqtt.sparkplug on, RabbitMQ turns "___" in a Sparkplug routing key into ".", so this topic comes back changed.',
    );
  }

  const levels = topic.split('/');
  const wildcardUse = role !== 'filter';
  const mappedBack = role === 'reply' ? 'the reply arrives' : 'MQTT subscribers receive it';
  levels.forEach((level, index) => {
    if (level.includes('.') && !sparkplug) {
      const severity = role === 'reply' ? 'error' : 'warning';
      add(
        'dot-in-level',
        severity,
        `Level "${level}" contains ".", which RabbitMQ treats as a level separator: ${mappedBack} on "${routingKeyToTopic(topicToRoutingKey(topic, options), options)}", not "${topic}".`,
      );
    }
    if (level.includes('*')) {
      add(
        'star-in-level',
        role === 'reply' ? 'error' : 'warning',
        `Level "${level}" contains "*", which becomes a "+" wildcard on the way back: ${mappedBack} on a topic with "+" in it.`,
      );
    }
    if (wildcardUse && (level.includes('+') || level.includes('#'))) {
      add(
        'wildcard-in-topic',
        'error',
        role === 'reply'
          ? `A reply topic must be a concrete topic; "${level}" contains a wildcard, so no server can publish to it.`
          : `MQTT forbids wildcards in a PUBLISH topic; "${level}" contains one.`,
      );
    }
    if (!wildcardUse && level.includes('+') && level !== '+') {
      add('plus-not-whole-level', 'error', `"+" must fill a whole level, but level "${level}" has other characters.`);
    }
    if (!wildcardUse && level.includes('#') && (level !== '#' || index !== levels.length - 1)) {
      add('hash-not-last', 'error', '"#" must be the whole last level of a filter.');
    }
  });

  if (levels.length > 1) {
    const inner = levels.slice(1, -1);
    if (inner.some((level) => level === '')) {
      add('empty-level', 'warning', 'The topic has an empty level ("//"): the routing key gets an empty word (".."), which AMQP bindings rarely expect.');
    }
    if (topic.startsWith('/')) {
      add('leading-slash', 'warning', 'The topic starts with "/": its routing key starts with ".", and "/a" is a different topic from "a".');
    }
    if (topic.endsWith('/')) {
      add('trailing-slash', 'warning', 'The topic ends with "/": its routing key ends with ".", and "a/" is a different topic from "a".');
    }
  }
  if (topic.startsWith('$')) {
    add('dollar-prefix', 'warning', 'Topics starting with "$" are reserved for the broker: wildcard subscriptions do not match them.');
  }

  const keyBytes = utf8Length(topicToRoutingKey(topic, options));
  if (keyBytes > MAX_ROUTING_KEY_BYTES) {
    add(
      'key-too-long',
      'error',
      `The routing key would be ${keyBytes} bytes; AMQP 0-9-1 allows at most ${MAX_ROUTING_KEY_BYTES}, so it cannot be routed.`,
    );
  }
  return issues;
}

/** The whole picture for one topic: routing key, the topic it comes back as, and every issue. */
export function mapTopic(topic: string, role: TopicRole, options: TopicMapOptions = {}): TopicMapping {
  const routingKey = topicToRoutingKey(topic, options);
  const backToTopic = routingKeyToTopic(routingKey, options);
  return { topic, role, routingKey, backToTopic, roundTrips: backToTopic === topic, issues: lintTopic(topic, role, options) };
}

/** The first finding that blocks the topic's use in its role, if any. */
export function blockingIssue(issues: readonly TopicIssue[]): TopicIssue | undefined {
  return issues.find((issue) => issue.blocking);
}

/** True when a finding blocks the topic's use in its role. */
export function hasBlockingIssue(issues: readonly TopicIssue[]): boolean {
  return blockingIssue(issues) !== undefined;
}
