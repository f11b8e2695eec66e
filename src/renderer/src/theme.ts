/** The colour theme: the system's (default), light or dark, kept in the page's storage and set on <html data-theme>. */
import { ref, watch, type Ref } from 'vue';
import { useStorage } from './injection';

export type Theme = 'system' | 'light' | 'dark';
export const THEMES: readonly Theme[] = ['system', 'light', 'dark'];
const STORAGE_KEY = 'bridgescope.theme';
/** Told on window when the theme changes (charts redraw their axes in the new colours). */
export const THEME_EVENT = 'bridgescope-theme';

/** Reads the kept theme, applies it, and applies each change; anything unknown in storage is the system's. */
export function useTheme(): Ref<Theme> {
  const storage = useStorage();
  const kept = storage.get(STORAGE_KEY);
  const theme = ref<Theme>(THEMES.includes(kept as Theme) ? (kept as Theme) : 'system');
  const apply = (value: Theme): void => {
    const root = document.documentElement;
    if (value === 'system') delete root.dataset.theme;
    else root.dataset.theme = value;
    window.dispatchEvent(new Event(THEME_EVENT));
  };
  apply(theme.value);
  watch(theme, (value) => {
    storage.set(STORAGE_KEY, value);
    apply(value);
  });
  return theme;
}
