/** The theme toggle (issue 26): system, light or dark, kept across reloads, set on <html data-theme>. */
import { mount } from '@vue/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { defineComponent, h, nextTick } from 'vue';
import { storageKey } from '../../src/renderer/src/injection';
import { THEME_EVENT, useTheme } from '../../src/renderer/src/theme';

function withStorage(kept: Record<string, string>) {
  const Picker = defineComponent({
    setup() {
      const theme = useTheme();
      return () => h('select', { value: theme.value, onChange: (event: Event) => (theme.value = (event.target as HTMLSelectElement).value as never) }, ['system', 'light', 'dark'].map((value) => h('option', { value }, value)));
    },
  });
  return mount(Picker, { global: { provide: { [storageKey as symbol]: { get: (key: string) => kept[key] ?? null, set: (key: string, value: string) => (kept[key] = value) } } } });
}

afterEach(() => delete document.documentElement.dataset.theme);

describe('the theme', () => {
  it('follows the system by default, and a pick is set on the page and kept', async () => {
    const kept: Record<string, string> = {};
    const wrapper = withStorage(kept);
    expect(document.documentElement.dataset.theme).toBeUndefined();
    let told = 0;
    window.addEventListener(THEME_EVENT, () => (told += 1));
    await wrapper.find('select').setValue('dark');
    await nextTick();
    expect(document.documentElement.dataset.theme).toBe('dark');
    expect(kept['bridgescope.theme']).toBe('dark');
    expect(told).toBe(1);
    await wrapper.find('select').setValue('system');
    await nextTick();
    expect(document.documentElement.dataset.theme).toBeUndefined();
  });

  it('a kept pick comes back on the next load; something unknown in storage is the system theme', () => {
    withStorage({ 'bridgescope.theme': 'light' });
    expect(document.documentElement.dataset.theme).toBe('light');
    delete document.documentElement.dataset.theme;
    withStorage({ 'bridgescope.theme': 'purple' });
    expect(document.documentElement.dataset.theme).toBeUndefined();
  });
});
