/** The workspace as the app sees it: history recorded when a Compose send settles, templates, and the profiles-and-templates file. */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { ConnectionProfile, EventName, Events } from '../../shared/contract';
import { splitTypedUrl, typedCredentials } from '../../shared/redact';
import { forHistory, type HistoryEntry, type HistoryList, type ImportReport, type RequestTemplate, type WorkspaceExport } from '../../shared/workspace';
import { BridgeError } from '../errors';
import { profileSchema, templateSchema } from '../contract-schemas';
import type { ProfileStore } from '../profiles';
import { replyTextOf, type WorkspaceStore } from '../workspace';
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

/** Passwords out of every URL in a profile, and any field named like a secret dropped: the profile is carried as it is otherwise. */
export function withoutPasswords(profile: ConnectionProfile): ConnectionProfile {
  const strip = (value: unknown): unknown => {
    if (typeof value === 'string') {
      const credentials = typedCredentials(value);
      if (credentials?.password === undefined) return value;
      const { prefix, rest } = splitTypedUrl(value);
      return `${prefix}${credentials.username}@${rest}`;
    }
    if (Array.isArray(value)) return value.map(strip);
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).filter(([key]) => !SECRET_KEY.test(key)).map(([key, item]) => [key, strip(item)]));
    }
    return value;
  };
  return strip(profile) as ConnectionProfile;
}

const SECRET_KEY = /password|passphrase|secret|privatekey/i;

/**
 * A profile imported without passwords over a saved one keeps the saved passwords where nothing else changed: each field
 * that equals the saved one with its password taken out gets the saved value back (re-importing your own export loses nothing).
 */
export function keepKnownPasswords(imported: ConnectionProfile, saved: ConnectionProfile): ConnectionProfile {
  const bare = withoutPasswords(saved) as unknown as Record<string, unknown>;
  const known = saved as unknown as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...imported };
  for (const [key, value] of Object.entries(imported)) {
    if (typeof value === 'string' && value !== known[key] && value === bare[key]) merged[key] = known[key];
  }
  return merged as unknown as ConnectionProfile;
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return `${where}${issue?.message ?? 'not valid'}`;
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
    const knownProfiles = new Set((await this.options.profiles.list()).map((profile) => profile.name));
    for (const imported of profiles) {
      const profile = knownProfiles.has(imported.name) ? keepKnownPasswords(imported, await this.options.profiles.get(imported.name)) : imported;
      await this.options.profiles.save(profile);
      (knownProfiles.has(profile.name) ? report.profiles.replaced : report.profiles.added).push(profile.name);
      knownProfiles.add(profile.name);
    }
    const knownTemplates = new Set((await this.options.store.listTemplates()).map((template) => template.name));
    for (const template of templates) {
      await this.options.store.saveTemplate(template);
      (knownTemplates.has(template.name) ? report.templates.replaced : report.templates.added).push(template.name);
      knownTemplates.add(template.name);
    }
    if (templates.length > 0) this.options.emit('workspace.templates.changed', { templates: await this.options.store.listTemplates() });
    return report;
  }
}

function replyTextFor(body: NonNullable<SettledRequest['outcome']>['body']): string {
  if (body.kind === 'json') return JSON.stringify(body.value, null, 2);
  if (body.kind === 'text') return body.text;
  return `(${body.bytes} bytes of binary, base64) ${body.base64}`;
}
