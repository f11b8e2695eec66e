/** Compose's history and templates, kept in one JSON file in a data dir (or in memory only), bounded and written atomically. */
import { join } from 'node:path';
import { z } from 'zod';
import { VERDICT_CODES, VERDICT_WORDS } from '../shared/diagnosis';
import { HISTORY_LIMIT, forHistory, type HistoryEntry, type HistoryList, type RequestTemplate } from '../shared/workspace';
import { BridgeError } from './errors';
import { sendRequestSchema, templateSchema } from './contract-schemas';
import { DATA_FILE_LIMIT_BYTES, readOwnFile, setFileAside, writeFileWhole } from './json-file';

/** The file's format; a newer one is left in place (this run then works in memory), never overwritten by an older BridgeScope. */
export const WORKSPACE_FORMAT_VERSION = 1;
export const WORKSPACE_FILE = 'workspace.json';

const entrySchema: z.ZodType<HistoryEntry> = z.object({
  id: z.string().min(1),
  at: z.number(),
  topic: z.string(),
  replyTopic: z.string().optional(),
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  verdict: z.object({ code: z.enum(VERDICT_CODES), message: z.string() }).optional(),
  roundTripMs: z.number().optional(),
  rpcId: z.string().optional(),
  request: sendRequestSchema,
  bodyNotKept: z.number().int().nonnegative().optional(),
  error: z.string().optional(),
  replyText: z.string().optional(),
});

const fileSchema = z.object({
  version: z.literal(WORKSPACE_FORMAT_VERSION),
  history: z.array(entrySchema),
  templates: z.array(templateSchema),
});

export interface WorkspaceStoreOptions {
  /** the data dir; undefined keeps everything in memory (the CLI, tests) */
  dir?: string;
  /** entries kept (default HISTORY_LIMIT); the oldest are dropped */
  limit?: number;
  now?: () => number;
}

/** How much of a reply body is kept (for the search and Trace's body view): 500 entries stay under ~8 MiB. */
const REPLY_TEXT_LIMIT = 16 * 1024;

export function replyTextOf(text: string): string {
  return text.length > REPLY_TEXT_LIMIT ? `${text.slice(0, REPLY_TEXT_LIMIT)}…` : text;
}

export class WorkspaceStore {
  private history: HistoryEntry[] = [];
  private templates: RequestTemplate[] = [];
  private loaded: Promise<void> | undefined;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;
  /** what the last write failed with (undefined after one that worked) */
  private writeError: Error | undefined;
  /** the one sentence about a file that could not be read, said in every list until the next change is saved */
  private problem: string | undefined;
  readonly file: string | undefined;
  private readonly limit: number;

  constructor(private readonly options: WorkspaceStoreOptions = {}) {
    this.file = options.dir === undefined ? undefined : join(options.dir, WORKSPACE_FILE);
    this.limit = options.limit ?? HISTORY_LIMIT;
  }

  /**
   * A corrupt file is moved aside (so nothing is lost) and the store starts empty, with one sentence; a file from a newer
   * BridgeScope is left untouched and this run works from memory, also with one sentence.
   */
  load(): Promise<void> {
    this.loaded ??= this.readFile();
    return this.loaded;
  }

  /** What went wrong reading the file, if anything. */
  get notice(): string | undefined {
    return this.problem;
  }

  private async readFile(): Promise<void> {
    if (this.file === undefined) return;
    const read = await readOwnFile(this.file);
    if (read.kind === 'missing') return;
    // Never written over: a file that could not be read (a restore's mode 000, a FIFO, another user's) is moved aside first.
    if (read.kind === 'refused') return this.setAside(read.why);
    let raw: unknown;
    try {
      raw = JSON.parse(read.text);
    } catch {
      return this.setAside('is not JSON');
    }
    const version = (raw as { version?: unknown } | null)?.version;
    if (typeof version === 'number' && version > WORKSPACE_FORMAT_VERSION) {
      // Not corrupt, only newer: the newer build must find its history where it left it, so this run never touches it.
      this.problem = `The history file ${this.file} was written by a newer BridgeScope (format ${version}, this one reads ${WORKSPACE_FORMAT_VERSION}): it is left as it is, and this run keeps history and templates in memory only.`;
      this.workInMemory();
      return;
    }
    const parsed = fileSchema.safeParse(raw);
    if (!parsed.success) return this.setAside('is not a BridgeScope history file');
    // Files written before every body was capped may hold bodies of megabytes: trimmed here, smaller from the next write.
    this.history = parsed.data.history.slice(0, this.limit).map((entry) => (entry.bodyNotKept === undefined ? { ...entry, ...forHistory(entry.request) } : entry));
    this.templates = parsed.data.templates;
  }

  private async setAside(why: string): Promise<void> {
    const file = this.file as string;
    try {
      const aside = await setFileAside(file, this.now());
      this.problem = `The history file ${file} ${why}: it was kept as ${aside}, and history and templates start empty.`;
    } catch (err) {
      this.problem = `The history file ${file} ${why} and could not be set aside (${(err as Error).message}): history and templates start empty and are not saved.`;
      // Never overwrite a file we could not move out of the way.
      this.workInMemory();
    }
  }

  /** From now on nothing is written: the file stays exactly as it was found. */
  private workInMemory(): void {
    this.options.dir = undefined;
    (this as { file: string | undefined }).file = undefined;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Newest first; `search` matches topic, reply topic, verdict (code, word, sentence), body, reply and error, case-insensitive. */
  async list(search?: string, limit?: number): Promise<HistoryList> {
    await this.load();
    const needle = search?.trim().toLowerCase() ?? '';
    const matching = needle === '' ? this.history : this.history.filter((entry) => searchableText(entry).includes(needle));
    return { entries: matching.slice(0, limit ?? this.limit), total: this.history.length, ...(this.problem ? { notice: this.problem } : {}) };
  }

  async add(entry: HistoryEntry): Promise<void> {
    await this.load();
    this.history = [entry, ...this.history.filter((kept) => kept.id !== entry.id)].slice(0, this.limit);
    await this.save();
  }

  async delete(id: string): Promise<boolean> {
    await this.load();
    const before = this.history.length;
    this.history = this.history.filter((entry) => entry.id !== id);
    if (this.history.length === before) return false;
    await this.save();
    return true;
  }

  async clear(): Promise<number> {
    await this.load();
    const cleared = this.history.length;
    this.history = [];
    await this.save();
    return cleared;
  }

  async listTemplates(): Promise<RequestTemplate[]> {
    await this.load();
    return [...this.templates];
  }

  /** Saves under its name, replacing a template of that name in place (a new one goes last). */
  async saveTemplate(template: RequestTemplate): Promise<RequestTemplate[]> {
    await this.load();
    const at = this.templates.findIndex((kept) => kept.name === template.name);
    if (at === -1) this.templates = [...this.templates, template];
    else this.templates = this.templates.map((kept, index) => (index === at ? template : kept));
    await this.save();
    return this.listTemplates();
  }

  /**
   * Saves many at once, each as saveTemplate would (a name kept is replaced in place, a new one goes last), in one write,
   * all or none: when the file cannot be written (or would grow past what a data file may hold) the templates are as they
   * were and the error is thrown.
   */
  async saveTemplates(templates: readonly RequestTemplate[]): Promise<RequestTemplate[]> {
    await this.load();
    const before = this.templates;
    const next = [...before];
    const at = new Map(next.map((kept, index) => [kept.name, index]));
    for (const template of templates) {
      const index = at.get(template.name);
      if (index === undefined) {
        at.set(template.name, next.length);
        next.push(template);
      } else next[index] = template;
    }
    this.templates = next;
    if (this.file !== undefined) {
      const bytes = Buffer.byteLength(this.text());
      if (bytes > DATA_FILE_LIMIT_BYTES) {
        this.templates = before;
        throw new BridgeError(
          'too-large',
          `${templates.length} templates would make ${this.file} ${Math.ceil(bytes / (1024 * 1024))} MiB, over the ${DATA_FILE_LIMIT_BYTES / (1024 * 1024)} MiB a data file may have.`,
        );
      }
    }
    await this.save();
    const failed = this.writeError;
    if (failed !== undefined) {
      this.templates = before;
      // The file keeps the templates it had: written again as they were.
      void this.save();
      throw failed;
    }
    return this.listTemplates();
  }

  async renameTemplate(from: string, to: string): Promise<RequestTemplate[]> {
    await this.load();
    const source = this.templates.find((kept) => kept.name === from);
    if (!source) throw new BridgeError('not-found', `There is no template named "${from}".`);
    if (from !== to) {
      if (this.templates.some((kept) => kept.name === to)) throw new BridgeError('bad-input', `A template named "${to}" already exists: delete it first or pick another name.`);
      this.templates = this.templates.map((kept) => (kept.name === from ? { ...kept, name: to } : kept));
      await this.save();
    }
    return this.listTemplates();
  }

  async deleteTemplate(name: string): Promise<RequestTemplate[]> {
    await this.load();
    this.templates = this.templates.filter((kept) => kept.name !== name);
    await this.save();
    return this.listTemplates();
  }

  /** Waits for the writes under way (a clean shutdown, tests). */
  flushed(): Promise<void> {
    return this.writing;
  }

  /** Writes coalesce: while one write runs, the next one waits and then writes the latest state once. */
  private save(): Promise<void> {
    if (this.file === undefined) return Promise.resolve();
    this.dirty = true;
    this.writing = this.writing.then(() => (this.dirty ? this.write() : undefined));
    return this.writing;
  }

  private text(): string {
    return JSON.stringify({ version: WORKSPACE_FORMAT_VERSION, history: this.history, templates: this.templates });
  }

  private async write(): Promise<void> {
    const file = this.file as string;
    this.dirty = false;
    try {
      // A crash mid-write leaves the temp file, never half a history file: rename replaces it whole.
      await writeFileWhole(file, this.text());
      this.problem = undefined;
      this.writeError = undefined;
    } catch (err) {
      this.writeError = err as Error;
      this.problem = `The history could not be saved to ${file}: ${(err as Error).message}.`;
    }
  }
}

function searchableText(entry: HistoryEntry): string {
  const verdict = entry.verdict ? `${entry.verdict.code} ${VERDICT_WORDS[entry.verdict.code]} ${entry.verdict.message}` : '';
  return [entry.topic, entry.replyTopic ?? '', verdict, entry.request.payloadText, entry.request.method ?? '', entry.replyText ?? '', entry.error ?? ''].join('\n').toLowerCase();
}
