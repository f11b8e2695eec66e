import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { brokerRules, describeBrokerRules, MIB, parseBrokerVersion, preflightVersionFindings, ruleHolds, RULE_SOURCES, VERSION_RULES, versionFindings, type MajorMinor } from '../../src/shared/broker-versions';
import { versionCheckLines } from '../../src/core/broker/checks';

describe('the rules of each RabbitMQ version', () => {
  it('reads the versions brokers report, including pre-releases and build suffixes', () => {
    expect(parseBrokerVersion('3.10.8')).toMatchObject({ major: 3, minor: 10, patch: 8 });
    expect(parseBrokerVersion('4.1.0-rc.1')).toMatchObject({ major: 4, minor: 1, patch: 0, text: '4.1.0-rc.1' });
    expect(parseBrokerVersion('3.13.7+1.g1234')).toMatchObject({ major: 3, minor: 13, patch: 7 });
    expect(parseBrokerVersion('unknown')).toBeUndefined();
    expect(parseBrokerVersion(undefined)).toBeUndefined();
  });

  it.each([
    // version, mqtt5, native, qos2 disconnects (MQTT 5), x-mqtt-publish-qos, x-mqtt-dup, response topic header, max packet
    ['3.10.8', false, false, false, true, true, false, 268_435_455],
    ['3.11.28', false, false, false, true, true, false, 268_435_455],
    ['3.12.14', false, true, false, true, false, false, 268_435_455],
    ['3.13.7', true, true, true, true, false, true, 268_435_455],
    ['4.0.9', true, true, true, false, false, true, 268_435_455],
    ['4.1.4', true, true, true, false, false, true, 16 * MIB],
    ['4.2.0', true, true, true, false, false, true, 16 * MIB],
  ] as const)('%s', (version, mqtt5, nativeMqtt, qos2, publishQos, dup, responseTopic, maxPacket) => {
    expect(brokerRules(version)).toMatchObject({
      mqtt5,
      nativeMqtt,
      mqtt5Qos2Disconnects: qos2,
      publishQosHeader: publishQos,
      dupHeader: dup,
      responseTopicHeader: responseTopic,
      unroutedPubackReason: responseTopic,
      defaultMaxPacketBytes: maxPacket,
    });
  });

  it('never sends QoS 2 from an MQTT 5 client where the broker would disconnect it, and says why', () => {
    const [finding] = versionFindings(brokerRules('4.0.5'), { protocol: 5, qos: 2, bytes: 10 });
    expect(finding).toMatchObject({ code: 'qos2-disconnects', sendQos: 1 });
    expect(finding?.message).toContain('0x9B');
    expect(finding?.message).toContain('RabbitMQ 4.0.5');
    // MQTT 3.1.1 on the same broker: downgraded, not disconnected
    expect(versionFindings(brokerRules('4.0.5'), { protocol: 4, qos: 2, bytes: 10 }).map((f) => f.code)).toEqual(['qos2-downgraded']);
  });

  it('warns before sending more than the broker takes in one packet (16 MiB from 4.1)', () => {
    const plan = { protocol: 4 as const, qos: 1 as const, bytes: 17 * MIB };
    expect(versionFindings(brokerRules('4.1.0'), plan).map((f) => f.code)).toEqual(['packet-too-large']);
    expect(versionFindings(brokerRules('4.0.9'), plan)).toEqual([]);
    // a configured limit wins over the default
    expect(versionFindings(brokerRules('4.0.9'), plan, 1 * MIB)[0]?.message).toContain('1 MiB maximum MQTT packet');
  });

  it('says MQTT 5 is not there before 3.13', () => {
    expect(versionFindings(brokerRules('3.12.1'), { protocol: 5, qos: 1, bytes: 1 }).map((f) => f.code)).toEqual(['no-mqtt5']);
  });

  it('an unreadable version gets the strictest rules and says so first', () => {
    const rules = brokerRules('unknown');
    expect(rules.version).toBeUndefined();
    expect(rules.defaultMaxPacketBytes).toBe(16 * MIB);
    expect(versionFindings(rules, { protocol: 5, qos: 2, bytes: 1 })[0]?.sendQos).toBe(1);
    expect(describeBrokerRules(rules)[0]?.rule).toContain('could not be read');
    // a large request is a warning then, not a refusal: the broker may well be older than 4.1
    const [large] = versionFindings(rules, { protocol: 4, qos: 1, bytes: 20 * MIB });
    expect(large).toMatchObject({ code: 'packet-too-large', severity: 'warning' });
    expect(large?.message).toContain('RabbitMQ 4.1 and later');
  });

  // One row per rule: where it starts and stops holding is the row's own range, read at the boundaries.
  const at = ([major, minor]: MajorMinor, patch = 0) => parseBrokerVersion(`${major}.${minor}.${patch}`);
  const before = ([major, minor]: MajorMinor) => (minor > 0 ? at([major, minor - 1], 99) : at([major - 1, 99], 99));
  it.each(VERSION_RULES.map((rule) => [rule.key, rule] as const))('rule %s holds exactly on its versions', (_key, rule) => {
    const since: MajorMinor | undefined = 'since' in rule ? rule.since : undefined;
    const until: MajorMinor | undefined = 'until' in rule ? rule.until : undefined;
    if (since) {
      expect(ruleHolds(rule, at(since))).toBe(true);
      expect(ruleHolds(rule, before(since))).toBe(false);
    }
    if (until) {
      expect(ruleHolds(rule, before(until))).toBe(true);
      expect(ruleHolds(rule, at(until))).toBe(false);
    }
    if (!since && !until) for (const version of ['3.10.8', '4.3.6']) expect(ruleHolds(rule, parseBrokerVersion(version))).toBe(true);
    expect(ruleHolds(rule, undefined)).toBe(rule.unknown);
    const line = describeBrokerRules(brokerRules('4.0.5')).find((shown) => shown.rule === rule.rule);
    expect(line).toMatchObject({ applies: ruleHolds(rule, parseBrokerVersion('4.0.5')), source: rule.source });
    expect(line?.versions).toMatch(/^(\d+\.\d+\+|before \d+\.\d+|\d+\.\d+ to before \d+\.\d+|every version)$/);
  });

  it('every rule shown names its source', () => {
    for (const line of describeBrokerRules(brokerRules('3.13.0'))) expect(line.source.length).toBeGreaterThan(10);
  });
});

describe('the pre-flight lines of each RabbitMQ version', () => {
  // Everything a version has a rule about, asked at once: MQTT 5, QoS 2, 17 MiB, direct reply-to as the reply topic.
  const asked = { protocol: 5 as const, qos: 2 as const, bytes: 17 * MIB, replyTopic: 'amq.rabbitmq.reply-to' };

  it.each([
    // version, what the pre-flight says (code:severity), and the headers it says are gone
    ['3.10.8', ['no-mqtt5:warning', 'qos2-downgraded:warning', 'direct-reply-to:error'], []],
    ['3.12.14', ['no-mqtt5:warning', 'qos2-downgraded:warning', 'mqtt-header:warning', 'direct-reply-to:error'], ['x-mqtt-dup']],
    ['3.13.7', ['qos2-disconnects:warning', 'mqtt-header:warning', 'direct-reply-to:error'], ['x-mqtt-dup']],
    ['4.0.9', ['qos2-disconnects:warning', 'mqtt-header:warning', 'direct-reply-to:error'], ['x-mqtt-dup', 'x-mqtt-publish-qos']],
    ['4.1.4', ['qos2-disconnects:warning', 'packet-too-large:error', 'mqtt-header:warning', 'direct-reply-to:error'], ['x-mqtt-dup', 'x-mqtt-publish-qos']],
  ] as const)('%s', (version, expected, goneHeaders) => {
    const findings = preflightVersionFindings(brokerRules(version), asked);
    expect(findings.map((finding) => `${finding.code}:${finding.severity}`)).toEqual(expected);
    // every line names the version it is about and the rule's source
    for (const finding of findings) {
      expect(finding.message).toContain(`RabbitMQ ${version}`);
      expect(Object.values(RULE_SOURCES).some((source) => finding.source.includes(source))).toBe(true);
    }
    const headers = findings.find((finding) => finding.code === 'mqtt-header');
    for (const header of ['x-mqtt-dup', 'x-mqtt-publish-qos']) {
      if ((goneHeaders as readonly string[]).includes(header)) expect(headers?.message).toContain(header);
      else expect(headers?.message ?? '').not.toContain(header);
    }
  });

  it('says nothing of QoS, size or the reply topic it is not told, and an MQTT 3.1.1 QoS 2 is downgraded everywhere', () => {
    expect(preflightVersionFindings(brokerRules('3.10.8'), {})).toEqual([]);
    for (const version of ['3.10.8', '3.13.7', '4.1.4']) {
      expect(preflightVersionFindings(brokerRules(version), { protocol: 4, qos: 2 }).map((f) => f.code)).toContain('qos2-downgraded');
    }
  });

  it('knows direct reply-to as a topic, as its routing key, and with the suffix AMQP clients see; an ordinary topic is left alone', () => {
    const rules = brokerRules('3.10.8');
    for (const replyTopic of ['amq.rabbitmq.reply-to', 'amq/rabbitmq/reply-to', 'amq.rabbitmq.reply-to.g2dkABNyYWJiaXQ']) {
      expect(preflightVersionFindings(rules, { replyTopic }).map((f) => f.code)).toEqual(['direct-reply-to']);
    }
    expect(preflightVersionFindings(rules, { replyTopic: 'amq/rabbitmq/replies' })).toEqual([]);
  });

  it('as pre-flight lines: fail, warn or pass by severity, each with the version and "Source:" in its sentence', () => {
    const lines = versionCheckLines(brokerRules('4.1.0'), { protocol: 4, qos: 2, bytes: 20 * MIB });
    expect(lines.map((line) => [line.check, line.status])).toEqual([
      ['broker version', 'warn'],
      ['broker version', 'fail'],
      ['broker version', 'warn'],
    ]);
    for (const line of lines) expect(line.message).toMatch(/RabbitMQ 4\.1\.0\b.* Source: .+\.$/);
    // an unknown version says so first, then applies the strictest rules
    const unknown = versionCheckLines(brokerRules(undefined), { protocol: 5, qos: 2 });
    expect(unknown[0]?.message).toContain('could not be read');
    expect(unknown.map((line) => line.status)).toEqual(['warn', 'warn']);
  });
});

/*
 * docs/BROKER-VERSIONS.md is the same table for people: its first table must name exactly the rules VERSION_RULES has
 * (plus the packet limit, a number rather than a yes or no), and where a row's version columns say yes / - / n/a, they
 * must say what the rule's range says.
 */
describe('docs/BROKER-VERSIONS.md against the rules table', () => {
  const page = readFileSync(new URL('../../docs/BROKER-VERSIONS.md', import.meta.url), 'utf8');
  const lines = page.split('\n');
  const start = lines.findIndex((line) => line.startsWith('| rule |'));
  const cells = (line: string): string[] => line.split('|').slice(1, -1).map((cell) => cell.trim());
  const header = cells(lines[start] ?? '');
  const rows = lines.slice(start + 2).filter((line, index, all) => all.slice(0, index + 1).every((l) => l.startsWith('|'))).map(cells);
  // "3.10", "4.1+" -> the first version of each column
  const versionColumns = header.flatMap((name, index) => (/^\d+\.\d+\+?$/.test(name) ? [{ index, version: parseBrokerVersion(`${name.replace('+', '')}.0`) }] : []));
  const documented = new Map<string, { rule: (typeof VERSION_RULES)[number]; inverse: boolean }>(VERSION_RULES.flatMap((rule) => rule.doc.map((doc) => [doc.row, { rule, inverse: 'inverse' in doc }] as const)));
  const numberRows = ['Default maximum MQTT packet'];

  it('finds the table and its version columns', () => {
    expect(start).toBeGreaterThan(0);
    expect(versionColumns.map((column) => column.version?.text)).toEqual(['3.10.0', '3.11.0', '3.12.0', '3.13.0', '4.0.0', '4.1.0']);
  });

  it('names the same rules as the code, no more and no fewer', () => {
    expect(rows.map((row) => row[0]).sort()).toEqual([...documented.keys(), ...numberRows].sort());
  });

  it.each(rows.filter((row) => documented.has(row[0] ?? '')).map((row) => [row[0], row] as const))('row "%s" says what its rule says on each version', (name, row) => {
    const { rule, inverse } = documented.get(name ?? '') as { rule: (typeof VERSION_RULES)[number]; inverse: boolean };
    for (const { index, version } of versionColumns) {
      const cell = row[index] ?? '';
      if (!/^(yes|-|n\/a)$/.test(cell)) continue;
      expect({ version: version?.text, holds: cell === 'yes' }).toEqual({ version: version?.text, holds: ruleHolds(rule, version) !== inverse });
    }
  });
});
