import { mount } from '@vue/test-utils';
import { createPinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import type { AppState, ConnectionProfile, ConnectionTestLine } from '../../src/shared/contract';
import ConnectionsPanel from '../../src/renderer/src/components/connections/ConnectionsPanel.vue';
import { clientKey } from '../../src/renderer/src/injection';
import { useAppStore } from '../../src/renderer/src/stores/app';
import { fakeClient } from './fake-client';

const lines: ConnectionTestLine[] = [
  { protocol: 'amqp', url: 'amqp://u:***@127.0.0.1:1/', ok: false, sentence: 'Nothing accepts AMQP connections at amqp://u:***@127.0.0.1:1/ (connection refused).' },
  { protocol: 'mqtt', url: 'mqtt://u:***@127.0.0.1:1883', ok: true, sentence: 'Reached and signed in; MQTT 3.1.1 accepted.', mqttVersion: '3.1.1' },
];

function mountPanel() {
  const tested: ConnectionProfile[] = [];
  const client = fakeClient({
    'connection.test': ({ profile }) => {
      tested.push(profile);
      return lines;
    },
  });
  const pinia = createPinia();
  const wrapper = mount(ConnectionsPanel, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
  return { wrapper, tested, client, app: useAppStore(pinia) };
}

const flush = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** The form starts empty (issue 26: no broker on the standard ports is chosen for the user): a broker typed in. */
async function typeBroker(wrapper: ReturnType<typeof mountPanel>['wrapper']): Promise<void> {
  await wrapper.find('[data-testid=profile-amqp]').setValue('amqp://guest:guest@broker.example:5672');
  await wrapper.find('[data-testid=profile-mqtt]').setValue('mqtt://broker.example:1883');
  await wrapper.find('[data-testid=profile-management]').setValue('http://guest:guest@broker.example:15672');
}

describe('the Connections panel profile form', () => {
  it('shows a generated client id, and a new one on request', async () => {
    const { wrapper } = mountPanel();
    const input = wrapper.find<HTMLInputElement>('[data-testid=profile-client-id]');
    expect(input.element.value).toMatch(/^bridgescope-[0-9a-f]{8}$/);
    const before = input.element.value;
    await wrapper.find('[data-testid=profile-client-id-new]').trigger('click');
    expect(input.element.value).toMatch(/^bridgescope-[0-9a-f]{8}$/);
    expect(input.element.value).not.toBe(before);
  });

  it('says what is wrong next to the field before connecting, and keeps Connect and Test disabled until it is fixed', async () => {
    const { wrapper } = mountPanel();
    await typeBroker(wrapper);
    await wrapper.find('[data-testid=profile-mqtt]').setValue('mqtt://a:1883\nhttp://b:1883');
    await wrapper.find('[data-testid=profile-keepalive]').setValue('-1');
    expect(wrapper.find('[data-testid=problem-mqttUrl]').text()).toBe('An MQTT URL must start with mqtt://, mqtts://, ws:// or wss:// (URL 2 of 2).');
    expect(wrapper.find('[data-testid=problem-keepaliveSeconds]').text()).toBe('The keepalive is a whole number of seconds from 0 (off) to 65535.');
    expect(wrapper.find('[data-testid=connect]').attributes('disabled')).toBeDefined();
    expect(wrapper.find('[data-testid=connection-test]').attributes('disabled')).toBeDefined();
    await wrapper.find('[data-testid=profile-mqtt]').setValue('mqtt://a:1883\nmqtt://b:1883');
    await wrapper.find('[data-testid=profile-keepalive]').setValue('20');
    expect(wrapper.find('[data-testid=connect]').attributes('disabled')).toBeUndefined();
  });

  it('warns when certificate verification is off, and says TLS settings need a TLS URL', async () => {
    const { wrapper } = mountPanel();
    await typeBroker(wrapper);
    await wrapper.find('[data-testid=profile-verify]').setValue(false);
    expect(wrapper.find('[data-testid=verify-off-warning]').text()).toMatch(/^Verification is off: any server can pose as this broker/);
    expect(wrapper.find('[data-testid=problem-tls]').text()).toBe('TLS settings apply to amqps://, mqtts://, wss:// and https:// URLs, and none of the URLs uses TLS.');
    await wrapper.find('[data-testid=profile-mqtt]').setValue('mqtts://broker.example:8883');
    expect(wrapper.find('[data-testid=problem-tls]').exists()).toBe(false);
    expect(wrapper.find('[data-testid=verify-off-warning]').exists()).toBe(true);
  });

  it('tests the profile as typed (lists and details) and shows one line per URL under the form, until the form changes', async () => {
    const { wrapper, tested } = mountPanel();
    await typeBroker(wrapper);
    await wrapper.find('[data-testid=profile-amqp]').setValue('amqp://127.0.0.1:1/, amqp://127.0.0.1:5672/');
    await wrapper.find('[data-testid=profile-username]').setValue('u');
    await wrapper.find('[data-testid=profile-password]').setValue('pw');
    await wrapper.find('[data-testid=profile-client-id]').setValue('my-device');
    await wrapper.find('[data-testid=profile-mqtt-version]').setValue('auto');
    await wrapper.find('[data-testid=profile-clean-session]').setValue(false);
    await wrapper.find('[data-testid=connection-test]').trigger('click');
    await flush();
    expect(tested[0]).toMatchObject({ amqpUrl: 'amqp://127.0.0.1:1/, amqp://127.0.0.1:5672/', username: 'u', password: 'pw', mqttClientId: 'my-device', mqttVersion: 'auto', cleanSession: false });
    expect(tested[0]).not.toHaveProperty('tls');
    const shown = wrapper.findAll('[data-testid=connection-test-line]');
    expect(shown.map((line) => line.text())).toEqual([
      'FAILAMQP amqp://u:***@127.0.0.1:1/Nothing accepts AMQP connections at amqp://u:***@127.0.0.1:1/ (connection refused).',
      'OKMQTT mqtt://u:***@127.0.0.1:1883Reached and signed in; MQTT 3.1.1 accepted.',
    ]);
    await wrapper.find('[data-testid=profile-client-id]').setValue('other');
    expect(wrapper.find('[data-testid=connection-test-result]').exists()).toBe(false);
    expect(wrapper.find('[data-testid=connection-test-stale]').exists()).toBe(true);
  });

  it('keeps what is being typed when a state event repeats the same profile', async () => {
    const { wrapper, app } = mountPanel();
    const profile: ConnectionProfile = { name: 'p', amqpUrl: 'amqp://h/', mqttUrl: 'mqtt://h', managementUrl: 'http://h', vhost: '/', exchange: 'amq.direct' };
    const state = (): AppState => ({
      mode: 'browser',
      sandbox: { state: 'stopped' },
      profile: { ...profile },
      links: { amqp: { state: 'connected', since: 1 }, mqtt: { state: 'connected', since: 1 } },
      tracer: { state: 'off' },
      server: { state: 'stopped', stats: { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} } },
      mqttClientId: 'bridgescope-12345678',
    });
    app.state = state();
    await flush();
    expect(wrapper.find<HTMLInputElement>('[data-testid=profile-client-id]').element.value).toBe('bridgescope-12345678');
    await wrapper.find('[data-testid=profile-username]').setValue('typing');
    app.state = state();
    await flush();
    expect(wrapper.find<HTMLInputElement>('[data-testid=profile-username]').element.value).toBe('typing');
  });

  it('never rewrites a form the user typed in when the profile in use changes elsewhere, and keeps it across a remount (issue 26)', async () => {
    const { wrapper, app } = mountPanel();
    await typeBroker(wrapper);
    await wrapper.find('[data-testid=profile-mqtt-version]').setValue('5');
    expect(wrapper.find('[data-testid=connect]').text()).toBe('Connect to broker.example:5672 (AMQP), :1883 (MQTT)');
    // Another page of the same `ui` connected to the machine's own broker.
    const elsewhere: ConnectionProfile = { name: 'Local', amqpUrl: 'amqp://guest:***@127.0.0.1:5672', mqttUrl: 'mqtt://127.0.0.1:1883', managementUrl: 'http://127.0.0.1:15672', vhost: '/', exchange: 'amq.topic' };
    app.state = {
      mode: 'browser',
      sandbox: { state: 'stopped' },
      profile: elsewhere,
      links: { amqp: { state: 'connected', since: 1 }, mqtt: { state: 'connected', since: 1 } },
      tracer: { state: 'off' },
      server: { state: 'stopped', stats: { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} } },
    };
    await flush();
    expect(wrapper.find<HTMLTextAreaElement>('[data-testid=profile-amqp]').element.value).toBe('amqp://guest:guest@broker.example:5672');
    expect(wrapper.find<HTMLSelectElement>('[data-testid=profile-mqtt-version]').element.value).toBe('5');
    // A visit to another tab unmounts the panel: the form is the same when it comes back.
    const pinia = (wrapper.vm as unknown as { $pinia: ReturnType<typeof createPinia> }).$pinia;
    wrapper.unmount();
    const again = mount(ConnectionsPanel, { global: { plugins: [pinia], provide: { [clientKey as symbol]: fakeClient({}) } } });
    expect(again.find<HTMLTextAreaElement>('[data-testid=profile-amqp]').element.value).toBe('amqp://guest:guest@broker.example:5672');
    expect(again.find('[data-testid=connect]').text()).toContain('broker.example:5672');
  });

  it('starts empty, with Connect off, rather than on a broker at the standard ports (issue 26)', () => {
    const { wrapper } = mountPanel();
    for (const field of ['profile-amqp', 'profile-mqtt', 'profile-management']) expect(wrapper.find<HTMLTextAreaElement>(`[data-testid=${field}]`).element.value).toBe('');
    expect(wrapper.find('[data-testid=connect]').text()).toBe('Connect');
    expect(wrapper.find('[data-testid=connect]').attributes('disabled')).toBeDefined();
    expect(wrapper.find('[data-testid=profile-blank]').exists()).toBe(true);
    expect(wrapper.find('[data-testid=problem-amqpUrl]').exists()).toBe(false);
  });

  it('labels every field, select and button', () => {
    const { wrapper } = mountPanel();
    for (const control of wrapper.findAll('input, textarea, select')) {
      // A field's name comes from its <label>, or from aria-label (the hidden file input behind the Import button).
      expect(control.element.closest('label') !== null || (control.attributes('aria-label') ?? '') !== '', control.html()).toBe(true);
    }
    for (const button of wrapper.findAll('button')) expect(button.text() || button.attributes('aria-label')).toBeTruthy();
  });

  it('confirms a saved profile by name, and stops saying so once the form changes', async () => {
    const client = fakeClient({ 'profile.save': ({ profile }) => [{ ...profile, secretStorage: 'keychain' }] as never });
    const pinia = createPinia();
    const wrapper = mount(ConnectionsPanel, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
    await typeBroker(wrapper);
    await wrapper.find('[data-testid=profile-name]').setValue('bench');
    await wrapper.find('[data-testid=profile-save]').trigger('click');
    await flush();
    expect(wrapper.find('[data-testid=profile-saved]').text()).toBe('Saved the profile “bench”: it is listed under Saved profiles.');
    await wrapper.find('[data-testid=profile-name]').setValue('bench 2');
    expect(wrapper.find('[data-testid=profile-saved]').exists()).toBe(false);
  });
});
