import { mount } from '@vue/test-utils';
import { describe, expect, it } from 'vitest';
import BrokerRules from '../../src/renderer/src/components/connections/BrokerRules.vue';

const rulesOf = (version: string | undefined) => {
  const wrapper = mount(BrokerRules, { props: { version } });
  const lines = wrapper.findAll('[data-testid=broker-rule]');
  const text = (applies: 'yes' | 'no'): string[] => lines.filter((line) => line.attributes('data-applies') === applies).map((line) => line.text());
  return { wrapper, applies: text('yes'), absent: text('no') };
};

describe('the broker version rules in the Connections panel', () => {
  it('on 3.10 (this machine): no MQTT 5, the x-mqtt-dup header, and every rule with its source on hover', () => {
    const { wrapper, applies, absent } = rulesOf('3.10.8');
    expect(wrapper.text()).toContain('Rules of RabbitMQ 3.10');
    expect(absent.some((line) => line.includes('MQTT 5 is available'))).toBe(true);
    expect(applies.some((line) => line.includes('x-mqtt-dup'))).toBe(true);
    for (const line of wrapper.findAll('[data-testid=broker-rule]')) expect(line.attributes('title')?.length).toBeGreaterThan(10);
  });

  it('on 4.1: MQTT 5, QoS 2 never sent from an MQTT 5 client, 16 MiB packets', () => {
    const { applies, absent } = rulesOf('4.1.2');
    expect(applies.some((line) => line.includes('MQTT 5 is available'))).toBe(true);
    expect(applies.some((line) => line.includes('0x9B'))).toBe(true);
    expect(applies.some((line) => line.includes('16 MiB'))).toBe(true);
    expect(absent.some((line) => line.includes('x-mqtt-publish-qos'))).toBe(true);
  });

  it('says when the version is unknown and that the strictest rules are assumed', () => {
    const { wrapper } = rulesOf(undefined);
    expect(wrapper.text()).toContain('Version unknown: the strictest rules are assumed');
    expect(wrapper.attributes('data-version')).toBe('unknown');
  });

  it('each rule says the version it needs, in plain words, and links its source', () => {
    const { wrapper } = rulesOf('3.10.8');
    const rows = wrapper.findAll('[data-testid=broker-rule]');
    const mqtt5 = rows.find((row) => row.text().includes('MQTT 5 is available'));
    expect(mqtt5?.find('[data-testid=broker-rule-needs]').text()).toBe('3.13 and later');
    expect(mqtt5?.findAll('a').map((link) => link.attributes('href'))).toEqual([
      'https://github.com/rabbitmq/rabbitmq-server/blob/main/release-notes/3.13.0.md',
      'https://github.com/rabbitmq/rabbitmq-server/blob/v3.13.0/deps/rabbitmq_mqtt/src/rabbit_mqtt_ff.erl',
    ]);
    expect(rows.find((row) => row.text().includes('x-mqtt-publish-qos'))?.find('[data-testid=broker-rule-needs]').text()).toBe('Before 4.0');
    for (const row of rows) expect(row.find('[data-testid=broker-rule-needs]').text()).not.toBe('');
    // No "does not apply" over a rule that itself says "not": the other versions' rules are listed by what they need.
    expect(wrapper.text()).not.toMatch(/Does not apply|Not on this version/);
    expect(wrapper.find('summary').text()).toMatch(/^On other versions \(\d+\)$/);
    for (const link of wrapper.findAll('a')) expect(link.attributes('target')).toBe('_blank');
  });
});
