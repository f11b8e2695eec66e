/** Profiles and templates to and from one file: export (passwords only when asked), import merged by name with a report. */
import { defineStore } from 'pinia';
import { ref } from 'vue';
import type { ImportReport, WorkspaceExport } from '../../../shared/workspace';
import { messageOf, useClient } from '../injection';
import { useBusy } from './use-busy';
import { useAppStore } from './app';

/** One sentence per line of an import's report: what was added, replaced, and each refused item with its reason. */
export function reportLines(report: ImportReport): string[] {
  const lines: string[] = [];
  const names = (list: string[]): string => list.map((name) => `"${name}"`).join(', ');
  for (const [what, part] of [
    ['profile', report.profiles],
    ['template', report.templates],
  ] as const) {
    if (part.added.length > 0) lines.push(`Added ${part.added.length} ${what}${part.added.length === 1 ? '' : 's'}: ${names(part.added)}.`);
    if (part.replaced.length > 0) lines.push(`Replaced ${part.replaced.length} ${what}${part.replaced.length === 1 ? '' : 's'} of the same name: ${names(part.replaced)}.`);
    for (const refused of part.refused) lines.push(`Refused the ${what} "${refused.name}": ${refused.reason}`);
  }
  if (lines.length === 0) lines.push('The file holds no profiles and no templates: nothing changed.');
  return lines;
}

export const useTransferStore = defineStore('transfer', () => {
  const client = useClient();
  const app = useAppStore();
  const busy = useBusy();
  /** what the last import did, one sentence per line (cleared by the next attempt) */
  const lines = ref<string[]>([]);

  function exportFile(includePasswords: boolean): Promise<WorkspaceExport | undefined> {
    lines.value = [];
    return busy.run(() => client.invoke('workspace.export.create', { includePasswords }), 'Exporting');
  }

  async function importText(text: string, file?: string): Promise<void> {
    lines.value = [];
    const named = file ? `"${file}"` : 'That file';
    await busy.run(async () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw new Error(`${named} is not JSON (${messageOf(err)}): nothing was imported.`);
      }
      let report: ImportReport;
      try {
        report = await client.invoke('workspace.import.load', { file: parsed });
      } catch (err) {
        throw new Error(`${named} was not imported, nothing changed. ${messageOf(err)}`);
      }
      lines.value = reportLines(report);
      app.profiles = await client.invoke('profile.list', {});
    }, 'Importing');
  }

  return { lines, error: busy.error, busy: busy.active, exportFile, importText };
});
