/** Compose's history and templates as the core keeps them: listed, searched, replayed, deleted, cleared; every open page agrees. */
import { defineStore } from 'pinia';
import { computed, ref, watch } from 'vue';
import type { Events, SendRequestArgs } from '../../../shared/contract';
import { HISTORY_LIMIT, type HistoryEntry, type RequestTemplate } from '../../../shared/workspace';
import { hasHostLink } from '../host-link';
import { useClient, useStorage } from '../injection';
import { useBusy } from './use-busy';
import { useComposeStore } from './compose';
import { useTraceViewStore } from './trace-view';

export type { HistoryEntry, RequestTemplate } from '../../../shared/workspace';

/** Where templates lived before the core kept them (browser storage); read once, then marked as moved. */
export const LEGACY_TEMPLATES_KEY = 'bridgescope.templates';
export const LEGACY_TEMPLATES_MOVED_KEY = 'bridgescope.templates.moved';

export const useHistoryStore = defineStore('history', () => {
  const client = useClient();
  const storage = useStorage();
  const compose = useComposeStore();
  const trace = useTraceViewStore();
  /** every entry kept, newest first (Trace finds a Compose request's bodies here) */
  const all = ref<HistoryEntry[]>([]);
  /** the entries the search matches (the core searches) */
  const matching = ref<HistoryEntry[]>([]);
  const search = ref('');
  /** the core's sentence about a history file it could not read */
  const notice = ref<string>();
  const templates = ref<RequestTemplate[]>([]);
  const busy = useBusy();
  const templateBusy = useBusy();
  const entries = computed(() => (search.value.trim() === '' ? all.value : matching.value));
  // An answer to an older search must not replace a newer one's.
  let asked = 0;

  /** Lists every entry again (at start, and when the host is back); `refreshSearch` asks only for the search's matches. */
  async function refresh(): Promise<void> {
    await busy.run(async () => {
      const everything = await client.invoke('workspace.history.list', {});
      all.value = everything.entries;
      notice.value = everything.notice;
      // After a reload the Trace still knows these RPCs as Compose's (its origin filter).
      for (const entry of everything.entries) if (entry.rpcId !== undefined && trace.originOf(entry.rpcId) !== 'compose') trace.markComposed(entry.rpcId);
    }, 'Loading the history');
    await refreshSearch();
  }

  async function refreshSearch(): Promise<void> {
    const ticket = ++asked;
    const term = search.value.trim();
    if (term === '') {
      matching.value = [];
      return;
    }
    await busy.run(async () => {
      const found = await client.invoke('workspace.history.list', { search: term });
      if (ticket === asked) matching.value = found.entries;
    }, 'Searching the history');
  }

  async function refreshTemplates(): Promise<void> {
    await templateBusy.run(async () => {
      templates.value = await client.invoke('workspace.templates.list', {});
    }, 'Loading the templates');
  }

  /** Templates this browser kept before the core did: saved into the core once (a name it already has is left alone). */
  async function moveLegacyTemplates(): Promise<void> {
    if (storage.get(LEGACY_TEMPLATES_MOVED_KEY) !== null) return;
    let legacy: RequestTemplate[] = [];
    try {
      const parsed: unknown = JSON.parse(storage.get(LEGACY_TEMPLATES_KEY) ?? '[]');
      if (Array.isArray(parsed)) legacy = parsed as RequestTemplate[];
    } catch {
      // Unreadable: nothing to move.
    }
    const known = new Set(templates.value.map((template) => template.name));
    for (const template of legacy) {
      if (known.has(template.name)) continue;
      // One the core refuses (broken in storage) is skipped; the others still move.
      await client.invoke('workspace.template.save', { template }).then(
        (next) => (templates.value = next),
        () => undefined,
      );
    }
    storage.set(LEGACY_TEMPLATES_MOVED_KEY, String(legacy.length));
  }

  /** Applies a change the core announced (this page's or another's); a search in force is asked again. */
  function changed(change: Events['workspace.history.changed']): void {
    if (change.reason === 'added') {
      all.value = [change.entry, ...all.value.filter((entry) => entry.id !== change.entry.id)].slice(0, HISTORY_LIMIT);
      if (change.entry.rpcId !== undefined) trace.markComposed(change.entry.rpcId);
    } else if (change.reason === 'deleted') {
      all.value = all.value.filter((entry) => entry.id !== change.id);
      matching.value = matching.value.filter((entry) => entry.id !== change.id);
    } else {
      all.value = [];
      matching.value = [];
    }
    if (change.reason === 'added' && search.value.trim() !== '') void refreshSearch();
  }

  /** Lists both, follows the core's changes (and lists again after the host was away); returns the unsubscribe. */
  async function start(): Promise<() => void> {
    const offs = [
      client.on('workspace.history.changed', (change) => changed(change)),
      client.on('workspace.templates.changed', (payload) => (templates.value = payload.templates)),
      hasHostLink(client)
        ? client.onHostLink((link) => {
            if (link.state === 'up') void Promise.all([refresh(), refreshTemplates()]);
          })
        : () => undefined,
    ];
    await Promise.all([refresh(), refreshTemplates()]);
    if (templateBusy.error.value === undefined) await moveLegacyTemplates();
    return () => offs.forEach((off) => off());
  }

  watch(search, () => void refreshSearch());

  const byRpcId = (rpcId: string): HistoryEntry | undefined => all.value.find((entry) => entry.rpcId === rpcId);

  async function remove(id: string): Promise<void> {
    await busy.run(async () => {
      await client.invoke('workspace.history.delete', { id });
      all.value = all.value.filter((entry) => entry.id !== id);
      matching.value = matching.value.filter((entry) => entry.id !== id);
    }, 'Deleting');
  }

  async function clear(): Promise<void> {
    await busy.run(async () => {
      await client.invoke('workspace.history.clear', {});
      all.value = [];
      matching.value = [];
    }, 'Clearing');
  }

  /**
   * Fills Compose with the entry's request; nothing is sent until the user presses Send (a replay of a request to a
   * shared broker must be looked at first). An entry whose body was not kept leaves the body empty and asks for it.
   */
  function replay(entry: HistoryEntry): void {
    compose.fill(entry.request, entry.bodyNotKept, 'the history');
  }

  async function saveTemplate(name: string, request: SendRequestArgs = compose.snapshot()): Promise<boolean> {
    const saved = await templateBusy.run(async () => {
      templates.value = await client.invoke('workspace.template.save', { template: { name, request } });
      return true;
    }, 'Saving the template');
    return saved === true;
  }

  /** Resolves true when renamed; the core's sentence (a name taken) stays in `templateError`. */
  async function renameTemplate(from: string, to: string): Promise<boolean> {
    const renamed = await templateBusy.run(async () => {
      templates.value = await client.invoke('workspace.template.rename', { from, to });
      return true;
    }, 'Renaming the template');
    return renamed === true;
  }

  /** The template deleted last, until it is restored or another is deleted: Undo saves it back. */
  const deletedTemplate = ref<RequestTemplate>();

  async function deleteTemplate(name: string): Promise<void> {
    const template = templates.value.find((candidate) => candidate.name === name);
    const deleted = await templateBusy.run(async () => {
      templates.value = await client.invoke('workspace.template.delete', { name });
      return true;
    }, 'Deleting the template');
    if (deleted && template) deletedTemplate.value = template;
  }

  /** Saves the template deleted last back under its name. */
  async function undoDeleteTemplate(): Promise<void> {
    const template = deletedTemplate.value;
    if (!template) return;
    if (await saveTemplate(template.name, template.request)) deletedTemplate.value = undefined;
  }

  function useTemplate(template: RequestTemplate): void {
    compose.fill(template.request, undefined, `the template "${template.name}"`);
  }

  return {
    all,
    entries,
    search,
    notice,
    error: busy.error,
    templates,
    templateError: templateBusy.error,
    start,
    refresh,
    byRpcId,
    remove,
    clear,
    replay,
    saveTemplate,
    renameTemplate,
    deleteTemplate,
    deletedTemplate,
    undoDeleteTemplate,
    dismissDeletedTemplate: () => void (deletedTemplate.value = undefined),
    useTemplate,
  };
});
