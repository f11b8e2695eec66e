import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import type { AppState, ConnectionProfile, SendRequestArgs } from '../../src/shared/contract';
import type { RpcOutcome } from '../../src/shared/rpc';
import { clientKey } from '../../src/renderer/src/injection';
import { useAppStore } from '../../src/renderer/src/stores/app';
import { useComposeStore } from '../../src/renderer/src/stores/compose';
import { forHistory } from '../../src/shared/workspace';
import { asBridgescopeCall, asMosquittoPub } from '../../src/renderer/src/copy-as';
import ComposePanel from '../../src/renderer/src/components/compose/ComposePanel.vue';
import { fakeClient } from './fake-client';

const stats = { received: 0, replied: 0, failed: 0, rejected: 0, unroutable: 0, inFlight: 0, perWorker: {} };
type MqttVersion = NonNullable<ConnectionProfile['mqttVersion']>;
const state = (rabbitmqVersion: string, mqttVersion?: MqttVersion): AppState => ({
  mode: 'browser',
  sandbox: { state: 'stopped' },
  profile: {
    name: 'Sandbox broker',
    amqpUrl: 'amqp://127.0.0.1:5673',
    mqttUrl: 'mqtt://127.0.0.1:1884',
    managementUrl: 'http://127.0.0.1:15673',
    vhost: '/',
    exchange: 'amq.direct',
    ...(mqttVersion !== undefined ? { mqttVersion } : {}),
  },
  links: { amqp: { state: 'connected', since: 1 }, mqtt: { state: 'connected', since: 1 } },
  tracer: { state: 'off' },
  server: { state: 'stopped', stats },
  overview: { rabbitmqVersion, erlangVersion: '25', clusterName: 'rabbit', protocols: ['amqp', 'mqtt'] } as AppState['overview'],
});

const outcome = (overrides: Partial<RpcOutcome> = {}): RpcOutcome => ({
  id: 'rpc-1',
  replyTopic: 'reply/rpc-1',
  arrivedOn: 'reply/rpc-1',
  topicMismatch: false,
  body: { kind: 'json', value: { id: 'rpc-1', result: 1 }, text: '{"id":"rpc-1","result":1}' },
  durationMs: 2,
  publishQos: { asked: 1, acknowledgedAs: 1 },
  subscriptionQos: { asked: 1, granted: 1 },
  warnings: [],
  ...overrides,
});

/** `mqttVersion`: the open profile's (unset: MQTT 3.1.1, as the app connects then). */
function mountCompose(version = '3.10.8', answers: Parameters<typeof fakeClient>[0] = {}, mqttVersion?: MqttVersion): { wrapper: VueWrapper; sent: SendRequestArgs[] } {
  const pinia = createPinia();
  setActivePinia(pinia);
  const sent: SendRequestArgs[] = [];
  const client = fakeClient({ 'profile.list': () => [], 'rpc.request.send': (args) => (sent.push(args), outcome()), ...answers });
  const wrapper = mount(ComposePanel, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
  useAppStore().state = state(version, mqttVersion);
  return { wrapper, sent };
}

describe('Compose payload formats', () => {
  it('says what is wrong with hex next to the field and does not send; fixed, it sends the format and text as typed', async () => {
    const { wrapper, sent } = mountCompose();
    await wrapper.find('[data-testid=compose-payload-format]').setValue('hex');
    expect(wrapper.find('[data-testid=compose-raw-note]').text()).toContain('carries no reply_to');
    await wrapper.find('[data-testid=compose-payload]').setValue('7b 2');
    expect(wrapper.find('[data-testid=compose-payload-error]').text()).toBe('Not valid hex: 3 digits, an odd number (each byte is two digits).');
    expect(wrapper.find('[data-testid=compose-send]').attributes('disabled')).toBeDefined();
    await wrapper.find('[data-testid=compose-payload]').setValue('7b 7d');
    expect(wrapper.find('[data-testid=compose-payload-size]').text()).toBe('2 bytes, sent as they are');
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(sent[0]).toMatchObject({ payloadFormat: 'hex', payloadText: '7b 7d' });
    expect(sent[0]?.mqtt5).toBeUndefined();
  });

  it('converts the text when the format changes (the same bytes in the new notation), rather than emptying it', async () => {
    const { wrapper } = mountCompose();
    const compose = useComposeStore();
    const format = wrapper.find('[data-testid=compose-payload-format]');
    await wrapper.find('[data-testid=compose-payload]').setValue('{"a": "é"}');
    await format.setValue('text');
    expect(compose.form.payloadText).toBe('{"a": "é"}');
    await format.setValue('hex');
    expect(compose.form.payloadText).toBe('7b 22 61 22 3a 20 22 c3 a9 22 7d');
    await format.setValue('base64');
    expect(compose.form.payloadText).toBe('eyJhIjogIsOpIn0=');
    await format.setValue('json');
    expect(compose.form.payloadText).toBe('{"a": "é"}');
  });

  it('bytes that cannot be shown in the new format (not UTF-8, or not valid hex) bring back what that format held last', async () => {
    const { wrapper } = mountCompose();
    const compose = useComposeStore();
    const format = wrapper.find('[data-testid=compose-payload-format]');
    await format.setValue('text');
    await wrapper.find('[data-testid=compose-payload]').setValue('hello');
    await format.setValue('hex');
    await wrapper.find('[data-testid=compose-payload]').setValue('ff fe');
    await format.setValue('text');
    expect(compose.form.payloadText).toBe('hello');
    await format.setValue('hex');
    await wrapper.find('[data-testid=compose-payload]').setValue('7b zz');
    await format.setValue('base64');
    expect(compose.form.payloadText).toBe('');
  });

  it('reads a picked file into base64, and refuses one over the cap with a sentence', async () => {
    mountCompose();
    const compose = useComposeStore();
    await compose.loadPayloadFile(new File([new Uint8Array([0, 255, 1])], 'frame.bin'));
    expect(compose.snapshot()).toMatchObject({ payloadFormat: 'file', payloadFileName: 'frame.bin', payloadText: 'AP8B' });
    expect(compose.payloadError).toBeUndefined();
    await compose.loadPayloadFile({ name: 'huge.bin', size: 17 * 1024 * 1024, arrayBuffer: () => Promise.reject(new Error('not read')) });
    expect(compose.payloadError).toBe("The file is 17.0 MiB; Compose sends files of at most 16.0 MiB (RabbitMQ 4.1's default maximum MQTT packet).");
    expect(compose.blocked).toBe(true);
  });

  it('keeps a small file in the history for replay, and only the name of a large one (replay then asks for the file)', () => {
    const base = { topic: 't', qos: 1 as const, strategy: 'per-request' as const, timeoutMs: 100, payloadFormat: 'file' as const, payloadFileName: 'f.bin' };
    expect(forHistory({ ...base, payloadText: 'AAAA' })).toEqual({ request: { ...base, payloadText: 'AAAA' } });
    expect(forHistory({ ...base, payloadText: 'A'.repeat(200_000) })).toEqual({ request: { ...base, payloadText: '' }, bodyNotKept: 150_000 });
    mountCompose();
    const compose = useComposeStore();
    compose.fill({ ...base, payloadText: '' }, 150_000);
    expect(compose.payloadError).toBe('The file f.bin (146.5 KiB) was too big to keep in the history: choose it again to send.');
    // An entry kept before the size was recorded: the form still asks for the file.
    compose.fill({ ...base, payloadText: '' });
    expect(compose.payloadError).toBe('Choose a file to send.');
  });

  it('a template or replay without a format goes back to JSON and no MQTT 5 options', async () => {
    mountCompose();
    const compose = useComposeStore();
    compose.setPayloadFormat('base64');
    compose.form.mqtt5.correlationData = 'c';
    compose.fill({ topic: 't', qos: 0, strategy: 'shared', payloadText: '{}', timeoutMs: 100 });
    expect(compose.form).toMatchObject({ payloadFormat: 'json', payloadText: '{}', mqtt5: { correlationData: '', userProperties: [], messageExpirySeconds: '' } });
  });
});

describe('Compose MQTT 5 options', () => {
  it('are folded on RabbitMQ 3.10, saying it has no MQTT 5', async () => {
    const { wrapper } = mountCompose('3.10.8');
    await flushPromises();
    const details = wrapper.find('[data-testid=compose-mqtt5]');
    expect(details.attributes('open')).toBeUndefined();
    expect(wrapper.find('[data-testid=compose-mqtt5-rules]').text()).toContain('RabbitMQ 3.10.8 has no MQTT 5');
  });

  it('are folded on 3.13 when the profile speaks MQTT 3.1.1, saying where to change it; open once it says auto', async () => {
    const { wrapper } = mountCompose('3.13.7', {}, 4);
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-mqtt5]').attributes('open')).toBeUndefined();
    expect(wrapper.find('[data-testid=compose-mqtt5-folded]').text()).toBe('(this connection speaks MQTT 3.1.1: set MQTT 5 or auto in the profile)');
    // A profile saved before the field existed connects with 3.1.1 too.
    useAppStore().state = state('3.13.7');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-mqtt5]').attributes('open')).toBeUndefined();
    useAppStore().state = state('3.13.7', 'auto');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-mqtt5]').attributes('open')).toBeDefined();
    expect(wrapper.find('[data-testid=compose-mqtt5-folded]').text()).toBe('');
  });

  it('stay folded on 3.10 with a profile asking for auto: the broker has no MQTT 5', async () => {
    const { wrapper } = mountCompose('3.10.8', {}, 'auto');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-mqtt5]').attributes('open')).toBeUndefined();
    expect(wrapper.find('[data-testid=compose-mqtt5-folded]').text()).toBe('(not sent over MQTT 3.1.1)');
  });

  it('are open on 3.13, say what each maps to, and reach the request: rows, expiry checked, empty ones dropped', async () => {
    const { wrapper, sent } = mountCompose('3.13.7', {}, 5);
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-mqtt5]').attributes('open')).toBeDefined();
    expect(wrapper.find('[data-testid=compose-mqtt5]').text()).toContain('AMQP header x-reply-to-topic');
    await wrapper.find('[data-testid=compose-user-property-add]').trigger('click');
    await wrapper.find('[data-testid=compose-user-property-add]').trigger('click');
    await wrapper.findAll('[data-testid=compose-user-property-key]')[0]!.setValue('tenant');
    await wrapper.findAll('[data-testid=compose-user-property-value]')[0]!.setValue('a');
    await wrapper.find('[data-testid=compose-message-expiry]').setValue('0');
    expect(wrapper.find('[data-testid=compose-expiry-error]').text()).toContain('at least 1');
    expect(wrapper.find('[data-testid=compose-send]').attributes('disabled')).toBeDefined();
    await wrapper.find('[data-testid=compose-message-expiry]').setValue('30');
    await wrapper.find('[data-testid=compose-correlation-data]').setValue('corr');
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(sent[0]?.mqtt5).toEqual({ userProperties: [{ key: 'tenant', value: 'a' }], correlationData: 'corr', messageExpirySeconds: 30 });
  });
});

describe('Compose reply display', () => {
  it('shows a binary reply as a hex dump with its size, and as base64 or text on request', async () => {
    const { wrapper } = mountCompose('3.10.8', { 'rpc.request.send': () => outcome({ body: { kind: 'binary', base64: 'AP9BQg==', bytes: 4 }, bodyBytes: 4 }) });
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-reply-size]').text()).toBe('Reply body: 4 bytes, binary, not UTF-8');
    expect(wrapper.find('[data-testid=compose-reply]').text()).toBe('00000000  00 ff 41 42' + ' '.repeat(39) + '|..AB|');
    await wrapper.find('[data-testid=compose-reply-view]').setValue('base64');
    expect(wrapper.find('[data-testid=compose-reply]').text()).toBe('AP9BQg==');
  });

  it("shows the reply's MQTT 5 properties and the protocol it went out on", async () => {
    const { wrapper } = mountCompose('3.13.7', {
      'rpc.request.send': () => outcome({ mqttVersion: 5, replyProperties: { correlationData: 'rpc-1', correlationDataEncoding: 'utf8', userProperties: [{ key: 'worker', value: 'w1' }] } }),
    });
    await wrapper.find('form').trigger('submit');
    await flushPromises();
    expect(wrapper.find('[data-testid=compose-mqtt-version]').text()).toBe('5');
    expect(wrapper.findAll('[data-testid=compose-reply-property]').map((dd) => dd.text())).toEqual(['rpc-1', 'w1']);
    expect(wrapper.text()).toContain('User property worker');
  });
});

describe('Copy as, with formats and MQTT 5', () => {
  const base: SendRequestArgs = { topic: 'rpc_queue', qos: 1, strategy: 'per-request', payloadText: '', timeoutMs: 10_000 };
  const profile = { mqttUrl: 'mqtt://127.0.0.1:1884', exchange: 'amq.direct' };

  it('bridgescope call carries the format, the file and every MQTT 5 option', () => {
    expect(asBridgescopeCall({ ...base, payloadFormat: 'hex', payloadText: '7b 7d' }, profile)).toBe(`bridgescope call --mqtt mqtt://127.0.0.1:1884 --payload-format hex '7b 7d'`);
    expect(asBridgescopeCall({ ...base, payloadFormat: 'file', payloadText: 'AA==', payloadFileName: 'frame.bin' })).toBe('bridgescope call --payload-file frame.bin');
    expect(
      asBridgescopeCall({
        ...base,
        payloadText: '{}',
        mqtt5: { userProperties: [{ key: 'tenant', value: 'a b' }], correlationData: 'c1', responseTopic: 'reply/x', messageExpirySeconds: 30 },
      }),
    ).toBe(`bridgescope call --mqtt-version 5 --user-property 'tenant=a b' --correlation-data c1 --response-topic reply/x --message-expiry 30 '{}'`);
  });

  it('mosquitto_pub speaks MQTT 5 with -D publish properties, and pipes bytes a shell word cannot hold through base64 -d', () => {
    expect(asMosquittoPub({ ...base, payloadText: '{}', mqtt5: { userProperties: [{ key: 'k', value: 'v' }], messageExpirySeconds: 5 } }, profile, 'id-1', 'reply/gen')).toBe(
      `mosquitto_pub -h 127.0.0.1 -p 1884 -V mqttv5 -D publish response-topic reply/gen -D publish correlation-data id-1 -D publish user-property k v -D publish message-expiry-interval 5 -t rpc_queue -q 1 -m '{"id":"id-1","reply_to":"reply/gen"}'`,
    );
    expect(asMosquittoPub({ ...base, payloadFormat: 'hex', payloadText: '00 ff' }, profile, 'id-1', 'reply/gen')).toBe(
      `printf %s AP8= | base64 -d | mosquitto_pub -h 127.0.0.1 -p 1884 -t rpc_queue -q 1 -s  # a non-JSON body has no reply_to: only a server reading the MQTT 5 Response Topic can answer`,
    );
    expect(asMosquittoPub({ ...base, payloadFormat: 'text', payloadText: 'hi there' }, undefined, 'i', 'r')).toContain(`-m 'hi there'`);
  });
});
