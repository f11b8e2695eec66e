import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import type { SendRequestArgs } from '../../src/shared/contract';
import type { RpcOutcome } from '../../src/shared/rpc';
import { clientKey, storageKey } from '../../src/renderer/src/injection';
import { LEGACY_TEMPLATES_KEY, LEGACY_TEMPLATES_MOVED_KEY, useHistoryStore } from '../../src/renderer/src/stores/history';
import { reportLines, useTransferStore } from '../../src/renderer/src/stores/transfer';
import ComposePanel from '../../src/renderer/src/components/compose/ComposePanel.vue';
import ProfileTransfer from '../../src/renderer/src/components/connections/ProfileTransfer.vue';
import { fakeClient } from './fake-client';
import { fakeWorkspace } from './fake-workspace';

const outcome = (id: string, topic: string): RpcOutcome => ({
  id,
  replyTopic: `reply/${id}`,
  arrivedOn: `reply/${id}`,
  topicMismatch: false,
  body: { kind: 'json', value: { id, result: topic } },
  result: topic,
  durationMs: 2.5,
  publishQos: { asked: 1, acknowledgedAs: 1 },
  subscriptionQos: { asked: 1, granted: 1 },
  warnings: [],
  verdict: { code: 'replied', hop: 'mqtt-deliver', message: 'The reply arrived.', evidence: [] },
});

function mountCompose(storage: Map<string, string> = new Map()): { wrapper: VueWrapper; workspace: ReturnType<typeof fakeWorkspace>; client: ReturnType<typeof fakeClient> } {
  const pinia = createPinia();
  setActivePinia(pinia);
  const workspace = fakeWorkspace();
  let next = 0;
  const client = fakeClient({ ...workspace.answers, 'rpc.request.send': workspace.recording((args: SendRequestArgs) => outcome(`rpc-${++next}`, args.topic)) });
  workspace.connect(client);
  const provide = { [clientKey as symbol]: client, [storageKey as symbol]: { get: (key: string) => storage.get(key) ?? null, set: (key: string, value: string) => void storage.set(key, value) } };
  const wrapper = mount(ComposePanel, { attachTo: document.body, global: { plugins: [pinia], provide } });
  return { wrapper, workspace, client };
}

async function send(wrapper: VueWrapper, topic: string): Promise<void> {
  await wrapper.find('[data-testid=compose-topic]').setValue(topic);
  await wrapper.find('form').trigger('submit');
  await flushPromises();
}

describe('the history store and its panel', () => {
  it('lists what the core kept, newest first, and follows a change another page made', async () => {
    const { wrapper, workspace } = mountCompose();
    await useHistoryStore().start();
    await send(wrapper, 'orders/create');
    await send(wrapper, 'devices/d1/rpc');
    const topics = () => wrapper.findAll('[data-testid=history-row] .history-topic').map((cell) => cell.text());
    expect(topics()).toEqual(['devices/d1/rpc', 'orders/create']);
    // Another page deleted one: this page hears the event and lists again.
    await workspace.controller.delete('rpc-1');
    await flushPromises();
    expect(topics()).toEqual(['devices/d1/rpc']);
    expect(wrapper.find('[data-testid=history-row]').text()).toContain('2.5 ms');
  });

  it('searches through the core, deletes one row and clears all only after a confirmation', async () => {
    const { wrapper } = mountCompose();
    await useHistoryStore().start();
    for (const topic of ['orders/create', 'devices/d1/rpc', 'orders/cancel']) await send(wrapper, topic);
    await wrapper.find('[data-testid=history-search]').setValue('ORDERS');
    await flushPromises();
    expect(wrapper.findAll('[data-testid=history-row]').map((row) => row.find('.history-topic').text())).toEqual(['orders/cancel', 'orders/create']);
    await wrapper.find('[data-testid=history-search]').setValue('nothing like it');
    await flushPromises();
    expect(wrapper.find('[data-testid=history-no-match]').text()).toBe('No entry matches "nothing like it".');
    await wrapper.find('[data-testid=history-search]').setValue('');
    await flushPromises();

    await wrapper.findAll('[data-testid=history-delete]')[1]!.trigger('click');
    await flushPromises();
    expect(wrapper.findAll('[data-testid=history-row]')).toHaveLength(2);

    await wrapper.find('[data-testid=history-clear]').trigger('click');
    await flushPromises();
    expect(wrapper.find('[data-testid=history-clear-confirm]').text()).toContain('Delete all 2 entries of the history?');
    // The question takes the focus, on the answer that keeps everything.
    expect(document.activeElement?.getAttribute('data-testid')).toBe('history-clear-no');
    await wrapper.find('[data-testid=history-clear-no]').trigger('click');
    expect(wrapper.findAll('[data-testid=history-row]')).toHaveLength(2);
    await wrapper.find('[data-testid=history-clear]').trigger('click');
    await wrapper.find('[data-testid=history-clear-yes]').trigger('click');
    await flushPromises();
    expect(wrapper.findAll('[data-testid=history-row]')).toHaveLength(0);
    expect(wrapper.text()).toContain('No requests yet.');
  });

  it('renames a template in an inline field (Enter saves, a taken name is a sentence) and deletes one', async () => {
    const { wrapper } = mountCompose();
    await useHistoryStore().start();
    for (const name of ['ping', 'reboot']) {
      await wrapper.find('[data-testid=template-name]').setValue(name);
      await wrapper.find('[data-testid=template-save]').trigger('click');
      await flushPromises();
    }
    const names = () => wrapper.findAll('[data-testid=template-row]').map((row) => row.attributes('data-name'));
    expect(names()).toEqual(['ping', 'reboot']);
    await wrapper.findAll('[data-testid=template-rename]')[0]!.trigger('click');
    const field = wrapper.find('[data-testid=template-rename-input]');
    await field.setValue('reboot');
    await field.trigger('keydown', { key: 'Enter' });
    await flushPromises();
    expect(wrapper.find('[data-testid=template-error]').text()).toBe('A template named "reboot" already exists: delete it first or pick another name.');
    await wrapper.find('[data-testid=template-rename-input]').setValue('health check');
    await wrapper.find('[data-testid=template-rename-input]').trigger('keydown', { key: 'Enter' });
    await flushPromises();
    expect(names()).toEqual(['health check', 'reboot']);
    expect(wrapper.find('[data-testid=template-error]').exists()).toBe(false);
    await wrapper.findAll('[data-testid=template-delete]')[1]!.trigger('click');
    await flushPromises();
    expect(names()).toEqual(['health check']);
  });

  it("moves the templates this browser kept before into the core once", async () => {
    const request = { topic: 'legacy/rpc', qos: 1, strategy: 'per-request', payloadText: '{}', timeoutMs: 5000 };
    const storage = new Map([[LEGACY_TEMPLATES_KEY, JSON.stringify([{ name: 'old one', request }, { name: 'broken', request: { topic: '' } }])]]);
    const { workspace } = mountCompose(storage);
    await useHistoryStore().start();
    expect((await workspace.controller.templates()).map((template) => template.name)).toEqual(['old one']);
    expect(storage.get(LEGACY_TEMPLATES_MOVED_KEY)).toBe('2');
    await workspace.controller.deleteTemplate('old one');
    await useHistoryStore().start();
    expect(await workspace.controller.templates()).toEqual([]);
  });
});

describe('profile export and import', () => {
  it('says what an import added, replaced and refused, one sentence each', () => {
    expect(
      reportLines({
        profiles: { added: ['a'], replaced: ['b', 'c'], refused: [{ name: 'd', reason: 'amqpUrl: The AMQP URL cannot be empty.' }] },
        templates: { added: [], replaced: [], refused: [] },
      }),
    ).toEqual(['Added 1 profile: "a".', 'Replaced 2 profiles of the same name: "b", "c".', 'Refused the profile "d": amqpUrl: The AMQP URL cannot be empty.']);
  });

  it('warns before passwords go into the file, and a file that is not JSON changes nothing', async () => {
    const pinia = createPinia();
    setActivePinia(pinia);
    const workspace = fakeWorkspace();
    const client = fakeClient(workspace.answers);
    const wrapper = mount(ProfileTransfer, { global: { plugins: [pinia], provide: { [clientKey as symbol]: client } } });
    expect(wrapper.find('[data-testid=profiles-export-warning]').exists()).toBe(false);
    await wrapper.find('[data-testid=profiles-export-passwords]').setValue(true);
    expect(wrapper.find('[data-testid=profiles-export-warning]').text()).toMatch(/passwords in plain text/);
    await useTransferStore().importText('{"format": ', 'notes.json');
    await flushPromises();
    expect(wrapper.find('[data-testid=profiles-transfer-error]').text()).toMatch(/^"notes.json" is not JSON \(.*\): nothing was imported\.$/);
    await useTransferStore().importText(JSON.stringify({ format: 'bridgescope-workspace', version: 1, profiles: [], templates: [] }), 'empty.json');
    await flushPromises();
    expect(wrapper.find('[data-testid=profiles-transfer-error]').exists()).toBe(false);
    expect(wrapper.find('[data-testid=profiles-import-report]').text()).toBe('The file holds no profiles and no templates: nothing changed.');
  });
});
