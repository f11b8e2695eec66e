/** The workspace as the app sees it: history recorded when a Compose send settles, templates, and the profiles-and-templates file. */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import type { ConnectionProfile, EventName, Events } from '../../shared/contract';
import { forHistory, type HistoryEntry, type HistoryList, type ImportReport, type RequestTemplate, type WorkspaceExport } from '../../shared/workspace';
import { BridgeError } from '../errors';
import { profileSchema, templateSchema } from '../contract-schemas';
import { withoutUrlPasswords, type ProfileStore } from '../profiles';
import { replyTextOf, type WorkspaceStore } from '../workspace-file';
import type { SettledRequest } from './requests';

export interface WorkspaceControllerOptions {
  store: WorkspaceStore;
  profiles: ProfileStore;
  emit: <E extends EventName>(name: E, payload: Events[E]) => void;
  /** told about a history write that failed (it never fails the send) */
  onProblem?: (sentence: string) => void;
}

/** The file's envelope: anything else is refused whole, before any profile or template is touched. */
const exportSchema = z.object({
  format: z.literal('bridgescope-workspace', { error: 'This is not a BridgeScope profiles file (its "format" is not "bridgescope-workspace").' }),
  version: z.literal(1, { error: 'This profiles file has a format version this BridgeScope does not read (it reads version 1).' }),
  includesPasswords: z.boolean().optional(),
  profiles: z.array(z.unknown(), { error: 'The file has no "profiles" list.' }),
  templates: z.array(z.unknown(), { error: 'The file has no "templates" list.' }).default([]),
});

/** The profile without any password: taken out of each URL of its three URL lists, and the password field dropped; nothing else changes. */
export function withoutPasswords(profile: ConnectionProfile): ConnectionProfile {
  const { password: _password, ...rest } = profile;
  return {
    ...rest,
    amqpUrl: withoutUrlPasswords(profile.amqpUrl),
    mqttUrl: withoutUrlPasswords(profile.mqttUrl),
    managementUrl: withoutUrlPasswords(profile.managementUrl),
  };
}

const URL_FIELDS = ['amqpUrl', 'mqttUrl', 'managementUrl'] as const;

/**
 * A profile imported without passwords over a saved one keeps the saved passwords where nothing else changed: each URL
 * list that equals the saved one with its passwords taken out gets the saved list back, and the password field is kept
 * when the imported profile has none and is otherwise the saved one without passwords (re-importing your own export loses nothing).
 */
export function keepKnownPasswords(imported: ConnectionProfile, saved: ConnectionProfile): ConnectionProfile {
  const bare = withoutPasswords(saved);
  const merged: ConnectionProfile = { ...imported };
  for (const field of URL_FIELDS) {
    if (imported[field] !== saved[field] && imported[field] === bare[field]) merged[field] = saved[field];
  }
  if (imported.password === undefined && saved.password !== undefined && isDeepStrictEqual(withoutPasswords(imported), bare)) merged.password = saved.password;
  return merged;
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return `${where}${issue?.message ?? 'not valid'}`;
}

/** Names for a sentence: "a", "b" and "c", or "none". */
function listed(names: readonly string[]): string {
  if (names.length === 0) return '(none)';
  const quoted = names.map((name) => JSON.stringify(name));
  return quoted.length === 1 ? (quoted[0] as string) : `${quoted.slice(0, -1).join(', ')} and ${quoted.at(-1) as string}`;
}

function nameOf(item: unknown, fallback: string): string {
  const name = (item as { name?: unknown } | null)?.name;
  return typeof name === 'string' && name.trim() !== '' ? name.trim().slice(0, 100) : fallback;
}

export class WorkspaceController {
  constructor(private readonly options: WorkspaceControllerOptions) {}

  /** Records one settled send; a failed write is told, never thrown into the send. */
  record(settled: SettledRequest): void {
    const entry: HistoryEntry = {
      id: settled.rpcId ?? randomUUID(),
      at: settled.at,
      topic: settled.request.topic,
      qos: settled.request.qos,
      ...forHistory(settled.request),
      ...(settled.replyTopic !== undefined ? { replyTopic: settled.replyTopic } : {}),
      ...(settled.rpcId !== undefined ? { rpcId: settled.rpcId } : {}),
      ...(settled.verdict ? { verdict: { code: settled.verdict.code, message: settled.verdict.message } } : {}),
      ...(settled.outcome ? { roundTripMs: settled.outcome.durationMs, replyText: replyTextOf(replyTextFor(settled.outcome.body)) } : {}),
      ...(settled.error !== undefined ? { error: settled.error } : {}),
    };
    // Told now, before the send's own answer goes out: the page shows the row with the result, not a moment after it.
    this.options.emit('workspace.history.changed', { reason: 'added', entry });
    this.options.store.add(entry).catch((err: unknown) => this.options.onProblem?.(`The history entry could not be kept: ${(err as Error).message}`));
  }

  list(search?: string, limit?: number): Promise<HistoryList> {
    return this.options.store.list(search, limit);
  }

  async delete(id: string): Promise<{ deleted: boolean }> {
    const deleted = await this.options.store.delete(id);
    if (deleted) this.options.emit('workspace.history.changed', { reason: 'deleted', id });
    return { deleted };
  }

  async clear(): Promise<{ cleared: number }> {
    const cleared = await this.options.store.clear();
    this.options.emit('workspace.history.changed', { reason: 'cleared' });
    return { cleared };
  }

  /** Waits for the history and templates to be on disk (a clean shutdown). */
  flushed(): Promise<void> {
    return this.options.store.flushed();
  }

  templates(): Promise<RequestTemplate[]> {
    return this.options.store.listTemplates();
  }

  saveTemplate(template: RequestTemplate): Promise<RequestTemplate[]> {
    return this.templatesChanged(this.options.store.saveTemplate(template));
  }

  renameTemplate(from: string, to: string): Promise<RequestTemplate[]> {
    return this.templatesChanged(this.options.store.renameTemplate(from, to));
  }

  deleteTemplate(name: string): Promise<RequestTemplate[]> {
    return this.templatesChanged(this.options.store.deleteTemplate(name));
  }

  private async templatesChanged(change: Promise<RequestTemplate[]>): Promise<RequestTemplate[]> {
    const templates = await change;
    this.options.emit('workspace.templates.changed', { templates });
    return templates;
  }

  /** Every saved profile (as the store gives it, passwords only when asked) and every template. */
  async export(includePasswords: boolean): Promise<WorkspaceExport> {
    const profiles: ConnectionProfile[] = [];
    for (const summary of await this.options.profiles.list()) {
      const profile = await this.options.profiles.get(summary.name);
      profiles.push(includePasswords ? profile : withoutPasswords(profile));
    }
    return {
      format: 'bridgescope-workspace',
      version: 1,
      exportedAt: new Date().toISOString(),
      includesPasswords: includePasswords,
      profiles,
      templates: await this.options.store.listTemplates(),
    };
  }

  /** Merges by name: every item is checked first; a bad file changes nothing, a bad item is refused with its reason. */
  async import(file: unknown): Promise<ImportReport> {
    if (typeof file !== 'object' || file === null || Array.isArray(file)) throw new BridgeError('bad-input', 'This is not a BridgeScope profiles file (not a JSON object).');
    const envelope = exportSchema.safeParse(file);
    if (!envelope.success) throw new BridgeError('bad-input', envelope.error.issues[0]?.message ?? 'This is not a BridgeScope profiles file.');
    const report: ImportReport = { profiles: { added: [], replaced: [], refused: [] }, templates: { added: [], replaced: [], refused: [] } };
    const profiles: ConnectionProfile[] = [];
    envelope.data.profiles.forEach((item, index) => {
      const parsed = profileSchema.safeParse(item);
      if (parsed.success) profiles.push(parsed.data);
      else report.profiles.refused.push({ name: nameOf(item, `profile #${index + 1}`), reason: firstIssue(parsed.error) });
    });
    const templates: RequestTemplate[] = [];
    envelope.data.templates.forEach((item, index) => {
      const parsed = templateSchema.safeParse(item);
      if (parsed.success) templates.push(parsed.data);
      else report.templates.refused.push({ name: nameOf(item, `template #${index + 1}`), reason: firstIssue(parsed.error) });
    });
    // Everything is checked before anything is written: the profiles go in one write (all or none), then the templates.
    const saved = new Map<string, ConnectionProfile>();
    for (const summary of await this.options.profiles.list()) saved.set(summary.name, await this.options.profiles.get(summary.name));
    const toSave = new Map<string, ConnectionProfile>();
    for (const imported of profiles) {
      const known = saved.get(imported.name);
      (known !== undefined || toSave.has(imported.name) ? report.profiles.replaced : report.profiles.added).push(imported.name);
      toSave.set(imported.name, known ? keepKnownPasswords(imported, known) : imported);
    }
    const knownTemplates = new Set((await this.options.store.listTemplates()).map((template) => template.name));
    for (const template of templates) {
      (knownTemplates.has(template.name) ? report.templates.replaced : report.templates.added).push(template.name);
      knownTemplates.add(template.name);
    }
    if (toSave.size > 0) {
      try {
        await this.options.profiles.saveAll([...toSave.values()]);
      } catch (err) {
        throw new BridgeError('internal', `Nothing was imported: the profiles could not be saved (${(err as Error).message}).`);
      }
    }
    if (templates.length > 0) {
      // One write for them all (one per template rewrote the whole file each time: minutes for 100,000), all or none.
      let saved: RequestTemplate[];
      try {
        saved = await this.options.store.saveTemplates(templates);
      } catch (err) {
        throw new BridgeError(
          err instanceof BridgeError ? err.code : 'internal',
          `The templates were not imported (${(err as Error).message.replace(/\.$/, '')}): ${toSave.size > 0 ? `the profiles ${listed([...toSave.keys()])} were saved` : 'no profile was in the file'}; none of the ${templates.length} templates was.`,
        );
      }
      this.options.emit('workspace.templates.changed', { templates: saved });
    }
    return report;
  }
}

function replyTextFor(body: NonNullable<SettledRequest['outcome']>['body']): string {
  if (body.kind === 'json') return JSON.stringify(body.value, null, 2);
  if (body.kind === 'text') return body.text;
  return `(${body.bytes} bytes of binary, base64) ${body.base64}`;
}
