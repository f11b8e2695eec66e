/**
 * The rules of each RabbitMQ version that matter for MQTT -> AMQP RPC, decided from the version the management API
 * reports. Pure: used by the inspector, the verdicts, the lint and the pre-flight. Every rule names its source (a
 * release note or a file of RabbitMQ's own source at a tag); docs/BROKER-VERSIONS.md is the same table for people.
 */

export interface BrokerVersion {
  major: number;
  minor: number;
  patch: number;
  /** as the broker reported it, e.g. "3.10.8" or "4.1.0-rc.1" */
  text: string;
}

/** "3.10.8", "4.1.0-rc.1", "3.13.7+1.g1234" -> numbers; undefined when it does not start with major.minor. */
export function parseBrokerVersion(text: string | undefined): BrokerVersion | undefined {
  const match = /^\s*v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(text ?? '');
  if (!match) return undefined;
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3] ?? 0), text: (text ?? '').trim() };
}

/** true when `version` is `major.minor` or newer */
export function atLeast(version: BrokerVersion, major: number, minor: number): boolean {
  return version.major > major || (version.major === major && version.minor >= minor);
}

/** A version as [major, minor]. */
export type MajorMinor = readonly [major: number, minor: number];

/**
 * One rule of the table: what holds between two versions, in a sentence, with its source. `since`: from this version
 * on (absent: every version); `until`: before this version (absent: still so). `unknown`: what BridgeScope assumes when
 * the version cannot be read (the stricter side). `doc`: the row(s) of docs/BROKER-VERSIONS.md that state it (a test
 * holds the page to this table); `inverse` when that row says the opposite (e.g. "proxied over AMQP" for native MQTT).
 */
export interface VersionRule {
  key: string;
  since?: MajorMinor;
  until?: MajorMinor;
  unknown: boolean;
  rule: string;
  source: string;
  doc: ReadonlyArray<{ row: string; inverse?: true }>;
}

/** Where each rule comes from (a release note, or a file of RabbitMQ's source at a tag): the one place every line that states a rule takes it from. */
export const RULE_SOURCES = {
  version: 'GET /api/overview rabbitmq_version',
  mqtt5: 'release-notes/3.13.0.md "MQTTv5 support"; deps/rabbitmq_mqtt/src/rabbit_mqtt_ff.erl (feature flag mqtt_v5) at v3.13.0',
  qos2Downgraded: 'measured on 3.10.8 (docs/RABBITMQ.md); deps/rabbitmq_mqtt/src/rabbit_mqtt_processor.erl maybe_downgrade_qos/1',
  qos2Disconnects: 'deps/rabbitmq_mqtt/src/rabbit_mqtt_processor.erl, process_request(?PUBLISH, QoS 2, MQTT 5) at v3.13.0 (commit c39079f657)',
  nativeMqtt: 'release-notes/3.12.0.md "MQTT Plugin"; deps/rabbitmq_mqtt/src/rabbit_mqtt_qos0_queue.erl at v3.12.0',
  dupHeader: 'release-notes/3.12.0.md: "The x-mqtt-dup header will no longer be present"',
  publishQosHeader: 'deps/rabbitmq_mqtt/src/rabbit_mqtt_processor.erl at v3.13.0 (present) and v4.0.0 (gone, commit dda1c500da)',
  responseTopicHeader: 'deps/rabbitmq_mqtt/src/mc_mqtt.erl (x-reply-to-topic, x-correlation-id) at v3.13.0 (commit 8c0b0e9338)',
  correlationData: 'deps/rabbitmq_mqtt/src/mc_mqtt.erl (mc_util:is_valid_shortstr) at v3.13.0',
  unroutedPuback: 'deps/rabbitmq_mqtt/src/rabbit_mqtt_processor.erl, process_routing_confirm at v3.13.0 (commit d7882b00dc)',
  transientAtQos0: 'deps/rabbitmq_mqtt/src/mc_mqtt.erl convert_from (QoS from the durable flag) at v3.13.0; measured on 3.10.8, 4.0.5 and 4.3.6 (reply-qos.test.ts)',
  maxPacket: 'release-notes/4.1.0.md "MQTT": 256 MiB -> 16 MiB (commit bddc54613f); the setting came with MQTT 5 in 3.13.0 (commit f1f8167ec4)',
  anonymousLogin: 'release-notes/4.0.1.md "MQTT": mqtt.default_user/default_pass replaced by anonymous_login_user/anonymous_login_pass',
  directReplyTo: 'release-notes/4.2.0.md "Direct Reply-To for AMQP 1.0" (AMQP 0-9-1 and 1.0 only)',
  topicMap: 'deps/rabbitmq_mqtt/src/rabbit_mqtt_util.erl (mqtt_to_amqp/amqp_to_mqtt), every version',
} as const;

/**
 * The rules of each version, one row each, in the order the Connections panel lists them. Adding a rule is one row
 * here plus its test (docs/ARCHITECTURE.md, "Where to add a broker-version rule"); `BrokerRules` gets a field per key.
 */
export const VERSION_RULES = [
  {
    key: 'mqtt5', since: [3, 13], unknown: false, source: RULE_SOURCES.mqtt5,
    rule: 'MQTT 5 is available (Response Topic, Correlation Data, user properties, message expiry).',
    doc: [{ row: 'MQTT 5 available (feature flag `mqtt_v5`)' }],
  },
  {
    key: 'qos2Downgraded', unknown: true, source: RULE_SOURCES.qos2Downgraded,
    rule: 'QoS 2 is granted and delivered as QoS 1 (MQTT 3.1.1 publishes and every subscription).',
    doc: [{ row: 'QoS 2 publish of an MQTT 3.1.1 client accepted as QoS 1 (PUBACK)' }, { row: 'QoS 2 subscription granted as QoS 1' }],
  },
  {
    key: 'mqtt5Qos2Disconnects', since: [3, 13], unknown: true, source: RULE_SOURCES.qos2Disconnects,
    rule: 'An MQTT 5 client that publishes QoS 2 is disconnected with reason 0x9B "QoS not supported": BridgeScope sends QoS 1 instead.',
    doc: [{ row: 'MQTT 5 client publishing QoS 2 is disconnected, reason 0x9B "QoS not supported"' }],
  },
  {
    key: 'nativeMqtt', since: [3, 12], unknown: false, source: RULE_SOURCES.nativeMqtt,
    rule: 'MQTT runs natively (no internal AMQP channels); QoS 0 subscriptions may use the rabbit_mqtt_qos0_queue type.',
    doc: [{ row: 'MQTT proxied over internal AMQP channels', inverse: true }, { row: 'QoS 0 subscriptions may use queue type `rabbit_mqtt_qos0_queue`' }],
  },
  {
    key: 'dupHeader', until: [3, 12], unknown: false, source: RULE_SOURCES.dupHeader,
    rule: 'AMQP consumers see the header x-mqtt-dup.',
    doc: [{ row: 'AMQP consumers see header `x-mqtt-dup`' }],
  },
  {
    key: 'publishQosHeader', until: [4, 0], unknown: false, source: RULE_SOURCES.publishQosHeader,
    rule: 'AMQP consumers see the header x-mqtt-publish-qos.',
    doc: [{ row: 'AMQP consumers see header `x-mqtt-publish-qos`' }],
  },
  {
    key: 'responseTopicHeader', since: [3, 13], unknown: false, source: RULE_SOURCES.responseTopicHeader,
    rule: 'A Response Topic reaches AMQP consumers as header x-reply-to-topic (already dotted; reply_to is not set).',
    doc: [{ row: 'Response Topic -> header `x-reply-to-topic` (dotted; `reply_to` not set)' }],
  },
  {
    key: 'correlationDataMapped', since: [3, 13], unknown: false, source: RULE_SOURCES.correlationData,
    rule: 'Correlation Data reaches AMQP consumers as correlation_id, or as header x-correlation-id when it is not a short valid UTF-8 string.',
    doc: [{ row: 'Correlation Data -> `correlation_id`, or header `x-correlation-id` when not a short valid UTF-8 string' }],
  },
  {
    key: 'unroutedPubackReason', since: [3, 13], unknown: false, source: RULE_SOURCES.unroutedPuback,
    rule: 'An unrouted QoS 1 publish of an MQTT 5 client is answered PUBACK "No matching subscribers" (0x10).',
    doc: [{ row: 'Unrouted QoS 1 publish of an MQTT 5 client: PUBACK reason 0x10 "No matching subscribers"' }],
  },
  {
    key: 'transientAtQos0', since: [3, 13], unknown: true, source: RULE_SOURCES.transientAtQos0,
    rule: 'A message published non-persistent (delivery_mode 1 or unset) reaches an MQTT subscriber at QoS 0, whatever QoS it subscribed at: replies should be persistent.',
    doc: [{ row: 'A non-persistent AMQP message reaches a QoS 1 MQTT subscription at QoS 0' }],
  },
  {
    key: 'defaultUserSettings', until: [4, 0], unknown: false, source: RULE_SOURCES.anonymousLogin,
    rule: 'An MQTT client without credentials logs in as mqtt.default_user / mqtt.default_pass (from 4.0: anonymous_login_user / anonymous_login_pass).',
    doc: [{ row: '`mqtt.default_user`/`default_password`' }],
  },
  {
    key: 'directReplyToIsAmqpOnly', unknown: true, source: RULE_SOURCES.directReplyTo,
    rule: 'Direct reply-to (amq.rabbitmq.reply-to) is for AMQP clients only; an MQTT device needs its own reply topic.',
    doc: [{ row: 'Direct reply-to (`amq.rabbitmq.reply-to`) usable from MQTT', inverse: true }],
  },
  {
    key: 'topicMap', unknown: true, source: RULE_SOURCES.topicMap,
    rule: 'Topics map to routing keys by / -> . and + -> *; a . inside a level does not survive the round trip.',
    doc: [{ row: '`/` <-> `.`, `+` <-> `*`, `#` <-> `#`; a `.` inside a level does not survive' }],
  },
] as const satisfies readonly VersionRule[];

export type RuleKey = (typeof VERSION_RULES)[number]['key'];

/** Whether a rule holds on a version (undefined: the version is unknown, and the rule's `unknown` side is taken). */
export function ruleHolds(rule: VersionRule, version: BrokerVersion | undefined): boolean {
  if (!version) return rule.unknown;
  if (rule.since && !atLeast(version, rule.since[0], rule.since[1])) return false;
  if (rule.until && atLeast(version, rule.until[0], rule.until[1])) return false;
  return true;
}

/** "3.13+", "before 4.0", "3.12-3.13", "every version": what a rule needs. */
export function ruleVersions(rule: VersionRule): string {
  const v = (mm: MajorMinor): string => `${mm[0]}.${mm[1]}`;
  if (rule.since && rule.until) return `${v(rule.since)} to before ${v(rule.until)}`;
  if (rule.since) return `${v(rule.since)}+`;
  if (rule.until) return `before ${v(rule.until)}`;
  return 'every version';
}

export type BrokerRules = { [K in RuleKey]: boolean } & {
  /** the version the rules are for; undefined when the broker's version could not be read */
  version?: BrokerVersion;
  /** the broker's default maximum MQTT packet size, bytes (16 MiB from 4.1, 256 MiB before; `mqtt.max_packet_size_authenticated`) */
  defaultMaxPacketBytes: number;
};

export const MIB = 1024 * 1024;

const ruleOf = (key: RuleKey): VersionRule => VERSION_RULES.find((rule) => rule.key === key) as VersionRule;

/** The headers the MQTT plugin put on what AMQP consumers receive, and the version each went away in (from their rules). */
export const MQTT_HEADERS = [
  { header: 'x-mqtt-dup', goneIn: ruleOf('dupHeader').until as MajorMinor, use: 'to spot a redelivered request', source: RULE_SOURCES.dupHeader },
  { header: 'x-mqtt-publish-qos', goneIn: ruleOf('publishQosHeader').until as MajorMinor, use: 'to learn the QoS the device published with', source: RULE_SOURCES.publishQosHeader },
] as const;

const mqtt5Since = ruleOf('mqtt5').since as MajorMinor;
/** The first version with MQTT 5, as people write it ("3.13"), from the mqtt5 rule: every sentence about it says this. */
export const MQTT5_SINCE = `${mqtt5Since[0]}.${mqtt5Since[1]}`;
/** "<name> has no MQTT 5 (it came in 3.13)". */
export const noMqtt5 = (name: string): string => `${name} has no MQTT 5 (it came in ${MQTT5_SINCE})`;

/** RabbitMQ's direct reply-to pseudo-queue: a name AMQP clients use, never a topic an MQTT device can subscribe to. */
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

const headerGone = (version: BrokerVersion, header: (typeof MQTT_HEADERS)[number]): boolean => atLeast(version, header.goneIn[0], header.goneIn[1]);
/** MQTT's own limit: the largest Remaining Length a packet can have */
export const MQTT_PROTOCOL_MAX_PACKET = 268_435_455;

/** The rules of one version. An unknown version gets the rules every version shares and the strictest limits. */
export function brokerRules(versionText: string | undefined): BrokerRules {
  const version = parseBrokerVersion(versionText);
  const rules = { defaultMaxPacketBytes: !version || atLeast(version, 4, 1) ? 16 * MIB : MQTT_PROTOCOL_MAX_PACKET } as BrokerRules;
  if (version) rules.version = version;
  for (const rule of VERSION_RULES) rules[rule.key] = ruleHolds(rule, version);
  return rules;
}

/**
 * Whether the broker delivers a non-persistent message to a QoS 1 MQTT subscription at QoS 0 (3.13+), or undefined when
 * its version cannot be read: the trace and the watch then claim no QoS at all.
 */
export function transientAtQos0Of(versionText: string | undefined): boolean | undefined {
  const rules = brokerRules(versionText);
  return rules.version === undefined ? undefined : rules.transientAtQos0;
}

export interface VersionRuleLine {
  /** what the rule says, in a sentence */
  rule: string;
  /** whether it holds on this broker */
  applies: boolean;
  /** the versions it holds on: "3.13+", "before 4.0", "every version" */
  versions: string;
  /** where it comes from: a release note or a RabbitMQ source file at a tag */
  source: string;
}

/** The rules as the Connections panel and `bridgescope bindings --json` show them, each with its source. */
export function describeBrokerRules(rules: BrokerRules): VersionRuleLine[] {
  const lines: VersionRuleLine[] = VERSION_RULES.map((rule) => ({ rule: rule.rule, applies: rules[rule.key], versions: ruleVersions(rule), source: rule.source }));
  // The packet limit is a number, not a yes or no: its line says the one of this version, after the unrouted PUBACK.
  lines.splice(VERSION_RULES.findIndex((rule) => rule.key === 'unroutedPubackReason') + 1, 0, {
    rule:
      rules.defaultMaxPacketBytes === 16 * MIB
        ? 'The default maximum MQTT packet is 16 MiB (mqtt.max_packet_size_authenticated).'
        : rules.mqtt5
          ? 'The default maximum MQTT packet is 256 MiB, MQTT\'s own limit (mqtt.max_packet_size_authenticated).'
          : 'No maximum MQTT packet setting: the limit is MQTT\'s own, 256 MiB.',
    applies: true,
    versions: '16 MiB from 4.1, 256 MiB before',
    source: RULE_SOURCES.maxPacket,
  });
  if (rules.version === undefined) {
    lines.unshift({
      rule: 'The broker version could not be read (no management API): BridgeScope assumes the strictest rules.',
      applies: true,
      versions: 'unknown',
      source: RULE_SOURCES.version,
    });
  }
  return lines;
}

export interface SendPlan {
  /** MQTT protocol level the client speaks: 4 = 3.1.1, 5 = MQTT 5 */
  protocol: 4 | 5;
  qos: 0 | 1 | 2;
  /** payload bytes (the packet adds the topic and properties) */
  bytes: number;
}

/** What a broker-version finding is about. */
export const VERSION_FINDING_CODES = ['qos2-downgraded', 'qos2-disconnects', 'packet-too-large', 'no-mqtt5', 'mqtt-header', 'direct-reply-to'] as const;
export type VersionFindingCode = (typeof VERSION_FINDING_CODES)[number];

export interface VersionFinding {
  code: VersionFindingCode;
  severity: 'error' | 'warning' | 'info';
  /** what the request is sent as instead, when BridgeScope changes it */
  sendQos?: 0 | 1;
  message: string;
  /** where the rule comes from (RULE_SOURCES) */
  source: string;
}

const brokerName = (rules: BrokerRules): string => (rules.version ? `RabbitMQ ${rules.version.text}` : 'this broker (version unknown)');
const mib = (n: number): string => `${(n / MIB).toFixed(n % MIB === 0 ? 0 : 1)} MiB`;

/** What this broker's version will do with a request before it is sent, in sentences a user can act on. */
export function versionFindings(rules: BrokerRules, plan: SendPlan, maxPacketBytes = rules.defaultMaxPacketBytes): VersionFinding[] {
  const findings: VersionFinding[] = [];
  const name = brokerName(rules);
  if (plan.protocol === 5 && !rules.mqtt5 && rules.version) {
    findings.push({
      code: 'no-mqtt5',
      severity: 'warning',
      message: `${noMqtt5(name)}: the client falls back to MQTT 3.1.1 or is refused.`,
      source: RULE_SOURCES.mqtt5,
    });
  }
  if (plan.qos === 2) {
    if (plan.protocol === 5 && rules.mqtt5Qos2Disconnects) {
      findings.push({
        code: 'qos2-disconnects',
        severity: 'warning',
        sendQos: 1,
        message: `${name} disconnects an MQTT 5 client that publishes QoS 2 (reason 0x9B "QoS not supported"): sent as QoS 1 instead.`,
        source: RULE_SOURCES.qos2Disconnects,
      });
    } else {
      findings.push({
        code: 'qos2-downgraded',
        severity: 'info',
        message: `${name} accepts QoS 2 as QoS 1 (PUBACK, not PUBREC): at-least-once, not exactly-once.`,
        source: RULE_SOURCES.qos2Downgraded,
      });
    }
  }
  if (plan.bytes > maxPacketBytes) {
    findings.push(
      rules.version
        ? {
            code: 'packet-too-large',
            severity: 'error',
            message: `The request is ${mib(plan.bytes)}, more than the ${mib(maxPacketBytes)} maximum MQTT packet of ${name}: the broker would close the connection (raise mqtt.max_packet_size_authenticated or send less).`,
            source: RULE_SOURCES.maxPacket,
          }
        : {
            code: 'packet-too-large',
            severity: 'warning',
            message: `The request is ${mib(plan.bytes)}; RabbitMQ 4.1 and later take MQTT packets of at most ${mib(maxPacketBytes)} by default (mqtt.max_packet_size_authenticated), and this broker's version is not known here: it may close the connection.`,
            source: RULE_SOURCES.maxPacket,
          },
    );
  }
  return findings;
}

export interface PreflightPlan {
  /** MQTT protocol level the client speaks or asks for (default 4, MQTT 3.1.1) */
  protocol?: 4 | 5;
  /** the request's QoS, when known */
  qos?: 0 | 1 | 2;
  /** the request's payload bytes, when known */
  bytes?: number;
  /** the reply topic the device will be told to use, when known */
  replyTopic?: string;
}

/**
 * The pre-flight's lines from the broker version's rules: what `versionFindings` says of the request, the MQTT headers
 * a server may read that this version sets or no longer sets, and direct reply-to given as a reply topic.
 */
export function preflightVersionFindings(rules: BrokerRules, plan: PreflightPlan): VersionFinding[] {
  // QoS 2 asked and QoS 1 given is worth a warning before sending: the user asked for exactly-once.
  const findings = versionFindings(rules, { protocol: plan.protocol ?? 4, qos: plan.qos ?? 1, bytes: plan.bytes ?? 0 }).map((finding) =>
    finding.code === 'qos2-downgraded' ? { ...finding, severity: 'warning' as const } : finding,
  );
  const name = brokerName(rules);
  const version = rules.version;
  // Headers a server written against 3.10/3.11 may read, and that this version no longer sets: one line for all of them.
  const gone = version ? MQTT_HEADERS.filter((header) => headerGone(version, header)) : [];
  if (gone.length > 0) {
    const list = (parts: string[]): string => (parts.length > 1 ? `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}` : (parts[0] ?? ''));
    findings.push({
      code: 'mqtt-header',
      severity: 'warning',
      message: `${name} no longer sets the header${gone.length > 1 ? 's' : ''} ${list(gone.map((h) => `${h.header} (gone since ${h.goneIn[0]}.${h.goneIn[1]})`))} on requests from MQTT: a server that reads ${gone.length > 1 ? 'them' : 'it'} ${list(gone.map((h) => h.use))} gets nothing.`,
      source: gone.map((header) => header.source).join('; '),
    });
  }
  // as a topic or as the routing key it maps to ("/" -> "."), with or without the suffix AMQP clients see
  const replyKey = plan.replyTopic?.replaceAll('/', '.');
  if (replyKey !== undefined && (replyKey === DIRECT_REPLY_TO || replyKey.startsWith(`${DIRECT_REPLY_TO}.`))) {
    findings.push({
      code: 'direct-reply-to',
      severity: 'error',
      message: `"${plan.replyTopic}" names RabbitMQ's direct reply-to, which is for AMQP clients only${version ? `, on ${name} as on every version` : ''}: an MQTT device cannot receive replies there; give it a reply topic of its own.`,
      source: RULE_SOURCES.directReplyTo,
    });
  }
  return findings;
}
