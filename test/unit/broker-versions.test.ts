import { describe, expect, it } from 'vitest';
import { brokerRules, describeBrokerRules, MIB, parseBrokerVersion, versionFindings } from '../../src/shared/broker-versions';

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

  it('every rule shown names its source', () => {
    for (const line of describeBrokerRules(brokerRules('3.13.0'))) expect(line.source.length).toBeGreaterThan(10);
  });
});
