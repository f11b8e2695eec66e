/** The app's OpenTelemetry export setting: off by default; a URL set here lasts for this run of the app. */
import { defineStore } from 'pinia';
import { computed, ref, shallowRef } from 'vue';
import type { OtelView } from '../../../shared/contract';
import { useClient } from '../injection';
import { useBusy } from './use-busy';

/** The sentence for a URL that cannot be an OTLP/HTTP endpoint; undefined when it can (the core checks it again). */
export function otlpUrlProblem(text: string): string | undefined {
  const url = text.trim();
  if (url === '') return 'Type the collector\'s OTLP/HTTP URL, e.g. http://localhost:4318.';
  return /^https?:\/\/[^\s/]+/i.test(url) && URL.canParse(url) ? undefined : 'The OTLP URL must be an http:// or https:// URL (OTLP over HTTP, e.g. http://localhost:4318).';
}

export const useOtelStore = defineStore('otel', () => {
  const client = useClient();
  const view = shallowRef<OtelView>({ state: 'off' });
  const urlText = ref('');
  const touched = ref(false);
  const { active: busy, error, run } = useBusy();
  const urlError = computed(() => (touched.value ? otlpUrlProblem(urlText.value) : undefined));

  async function load(): Promise<void> {
    await run(async () => {
      view.value = await client.invoke('otel.export.get', {});
    }, 'Loading');
  }

  async function apply(): Promise<void> {
    touched.value = true;
    if (otlpUrlProblem(urlText.value)) return;
    await run(async () => {
      view.value = await client.invoke('otel.export.set', { url: urlText.value.trim() });
    }, 'Applying');
  }

  async function off(): Promise<void> {
    await run(async () => {
      view.value = await client.invoke('otel.export.set', { url: null });
    }, 'Switching off');
  }

  return { view, urlText, touched, urlError, busy, error, load, apply, off };
});
