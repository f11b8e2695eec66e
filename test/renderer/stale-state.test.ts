/** Nothing stale on screen (issue 26): pre-flight results go when what they were about changes. */
import { flushPromises } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { describe, expect, it } from 'vitest';
import { createApp } from 'vue';
import { clientKey } from '../../src/renderer/src/injection';
import { useComposeStore } from '../../src/renderer/src/stores/compose';
import { fakeClient } from './fake-client';

function store() {
  const pinia = createPinia();
  const app = createApp({});
  app.use(pinia);
  app.provide(clientKey as symbol, fakeClient({ 'rpc.preflight.run': (args) => [{ check: 'qos', status: args.qos === 2 ? 'warn' : 'pass', message: `QoS ${args.qos}` }] as never }));
  setActivePinia(pinia);
  return app.runWithContext(() => useComposeStore());
}

describe('the pre-flight results', () => {
  it.each([
    ['QoS', (compose: ReturnType<typeof useComposeStore>) => void (compose.form.qos = 1)],
    ['the payload', (compose: ReturnType<typeof useComposeStore>) => void (compose.form.payloadText = '{"a": 2}')],
  ])('go when %s changes (a QoS 2 warning does not stay after QoS is set back to 1)', async (_what, change) => {
    const compose = store();
    compose.form.qos = 2;
    await compose.runChecks();
    expect(compose.checks.map((line) => line.status)).toEqual(['warn']);
    change(compose);
    await flushPromises();
    expect(compose.checks).toEqual([]);
  });
});
