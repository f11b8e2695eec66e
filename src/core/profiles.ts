/** Saved connection profiles; passwords are split out of the URLs and kept by a SecretBox (OS keychain, or memory). */
import { z } from 'zod';
import type { ConnectionProfile, ProfileSummary } from '../shared/contract';
import { BridgeError } from './errors';
import { decodeUriPart, REDACTED, redactUrl, splitTypedUrl, typedCredentials } from '../shared/redact';
import { redactUrlList, splitUrls } from '../shared/url-list';
import { DEFAULT_MANAGEMENT_URL, DEFAULT_MQTT_EXCHANGE, DEFAULT_MQTT_URL, DEFAULT_VHOST } from '../shared/defaults';
import { tlsSettings } from '../shared/tls-settings';
import { OneAtATime, readOwnFile, setFileAside, writeFileWhole } from './json-file';

export interface SecretBox {
  kind: ProfileSummary['secretStorage'];
  seal(secret: string): string;
  open(sealed: string): string;
}

/** Keeps secrets in this process only: browser mode and the CLI never write them anywhere. */
export function memorySecretBox(): SecretBox {
  const secrets = new Map<string, string>();
  let next = 0;
  return {
    kind: 'memory',
    seal(secret) {
      next += 1;
      secrets.set(String(next), secret);
      return String(next);
    },
    open(sealed) {
      return secrets.get(sealed) ?? '';
    },
  };
}

type UrlKind = 'amqp' | 'mqtt' | 'management';

/** What a profile keeps besides its URLs; the password field is sealed apart. */
type Details = Pick<ConnectionProfile, 'mqttClientId' | 'username' | 'tls' | 'keepaliveSeconds' | 'cleanSession' | 'mqttVersion'>;

interface StoredProfile extends Details {
  name: string;
  vhost: string;
  exchange: string;
  /** each list without its passwords, as typed otherwise (one per line, or comma-separated) */
  urls: Record<UrlKind, string>;
  /**
   * sealed passwords by URL kind: one per URL of the list (null where a URL has none); a single string is the one URL
   * of a profile saved before lists; `field` is the password field's
   */
  secrets: Partial<Record<UrlKind, string | Array<string | null>>> & { field?: string };
}

const sealedList = z.union([z.string(), z.array(z.string().nullable())]);

/** One profile as profiles.json keeps it; an entry that does not read so is never loaded (the file is set aside). */
const storedSchema: z.ZodType<StoredProfile> = z.object({
  name: z.string().min(1),
  vhost: z.string(),
  exchange: z.string(),
  urls: z.object({ amqp: z.string(), mqtt: z.string(), management: z.string() }),
  secrets: z.object({ amqp: sealedList.optional(), mqtt: sealedList.optional(), management: sealedList.optional(), field: z.string().optional() }),
  mqttClientId: z.string().optional(),
  username: z.string().optional(),
  tls: z.object({ caFile: z.string().optional(), certFile: z.string().optional(), keyFile: z.string().optional(), verify: z.boolean().optional() }).optional(),
  keepaliveSeconds: z.number().optional(),
  cleanSession: z.boolean().optional(),
  mqttVersion: z.union([z.literal(4), z.literal(5), z.literal('auto')]).optional(),
});

const urlKinds: readonly UrlKind[] = ['amqp', 'mqtt', 'management'];
const fieldOf = { amqp: 'amqpUrl', mqtt: 'mqttUrl', management: 'managementUrl' } as const satisfies Record<UrlKind, keyof ConnectionProfile>;

/** The separator a list was typed with, to give it back the same way. */
const separatorOf = (text: string): string => (text.includes('\n') ? '\n' : ', ');

const joinList = (urls: readonly string[], typed: string): string => (urls.length < 2 ? (urls[0] ?? typed) : urls.join(separatorOf(typed)));

/** Splits the password out as typed (everything after the first `:` up to the last `@`), so a raw `/` or `#` in it never stays in the stored URL. */
function splitPassword(url: string): { bare: string; password: string | undefined } {
  const credentials = typedCredentials(url);
  if (credentials?.password === undefined) return { bare: url, password: undefined };
  const { prefix, rest } = splitTypedUrl(url);
  // The @ stays even after an empty user name, so the password goes back in the same place.
  return { bare: `${prefix}${credentials.username}@${rest}`, password: decodeUriPart(credentials.password) };
}

/** A list as typed with the password of each of its URLs taken out (user names, hosts and separators kept). */
export function withoutUrlPasswords(list: string): string {
  return joinList(
    splitUrls(list).map((url) => splitPassword(url).bare),
    list,
  );
}

/** Puts a stored password back, percent-encoded, so the URL reads the same to every parser. */
export function joinPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const { prefix, userinfo, rest } = splitTypedUrl(url);
  return `${prefix}${userinfo ?? ''}:${encodeURIComponent(password)}@${rest}`;
}

/** The details of a profile that are set, and nothing else (an unset field stays absent, not undefined). */
function detailsOf(profile: Details): Details {
  const details: Details = {};
  if (profile.mqttClientId !== undefined) details.mqttClientId = profile.mqttClientId;
  if (profile.username !== undefined) details.username = profile.username;
  if (profile.tls !== undefined) details.tls = { ...profile.tls };
  if (profile.keepaliveSeconds !== undefined) details.keepaliveSeconds = profile.keepaliveSeconds;
  if (profile.cleanSession !== undefined) details.cleanSession = profile.cleanSession;
  if (profile.mqttVersion !== undefined) details.mqttVersion = profile.mqttVersion;
  return details;
}

export interface ProfileStoreOptions {
  /** told once, when the file could not be read (it is kept aside, or left alone) */
  onProblem?: (sentence: string) => void;
  now?: () => number;
}

export class ProfileStore {
  private profiles = new Map<string, StoredProfile>();
  private loaded: Promise<void> | undefined;
  private readonly writes = new OneAtATime();
  /** the one sentence about a file that could not be read */
  private problem: string | undefined;
  /** where profiles are written; undefined keeps them in memory (no file, or one that could not be set aside) */
  private file: string | undefined;

  /** `file` undefined keeps profiles in memory only. */
  constructor(
    private readonly secrets: SecretBox,
    file?: string,
    private readonly options: ProfileStoreOptions = {},
  ) {
    this.file = file;
  }

  /** What went wrong reading the file, if anything: one sentence naming where it was kept. */
  get notice(): string | undefined {
    return this.problem;
  }

  private load(): Promise<void> {
    this.loaded ??= this.readFile();
    return this.loaded;
  }

  /** A file that cannot be read, or holds anything but profiles, is moved aside (so nothing is lost) and never overwritten. */
  private async readFile(): Promise<void> {
    const file = this.file;
    if (file === undefined) return;
    const read = await readOwnFile(file);
    if (read.kind === 'missing') return;
    if (read.kind === 'refused') return this.setAside(file, read.why, []);
    let raw: unknown;
    try {
      raw = JSON.parse(read.text);
    } catch {
      return this.setAside(file, 'is not JSON', []);
    }
    if (!Array.isArray(raw)) return this.setAside(file, 'is not a list of profiles', []);
    const good: StoredProfile[] = [];
    for (const item of raw) {
      const parsed = storedSchema.safeParse(item);
      if (parsed.success) good.push(parsed.data);
    }
    if (good.length < raw.length) return this.setAside(file, `has ${raw.length - good.length} of ${raw.length} entries that are not saved profiles`, good);
    for (const profile of good) this.profiles.set(profile.name, profile);
  }

  private async setAside(file: string, why: string, good: StoredProfile[]): Promise<void> {
    const kept = good.length > 0 ? `the ${good.length} readable ones are loaded` : 'saved profiles start empty';
    try {
      const aside = await setFileAside(file, (this.options.now ?? Date.now)());
      for (const profile of good) this.profiles.set(profile.name, profile);
      this.tell(`The profiles file ${file} ${why}: it was kept as ${aside}, and ${kept}.`);
    } catch (err) {
      // Never overwrite a file that could not be moved out of the way.
      this.file = undefined;
      for (const profile of good) this.profiles.set(profile.name, profile);
      this.tell(`The profiles file ${file} ${why} and could not be set aside (${(err as Error).message}): ${kept}, and nothing is written to it.`);
    }
  }

  private tell(sentence: string): void {
    this.problem = sentence;
    this.options.onProblem?.(sentence);
  }

  /** Writes the profiles as they are when its turn comes, whole (temp file and rename), one write at a time; a failed write throws. */
  private persist(): Promise<void> {
    return this.writes.run(async () => {
      const file = this.file;
      if (file === undefined) return;
      // Secrets kept in memory only (browser mode) are numbers that mean nothing to the next run: the file keeps the
      // profiles without them, and the passwords are typed again after a restart.
      const stored = this.secrets.kind === 'memory' ? [...this.profiles.values()].map((profile) => ({ ...profile, secrets: {} })) : [...this.profiles.values()];
      await writeFileWhole(file, JSON.stringify(stored, null, 2));
      // Said until the profiles are saved again: the file aside stays where the sentence named it.
      this.problem = undefined;
    });
  }

  private summary(profile: StoredProfile): ProfileSummary {
    return {
      name: profile.name,
      amqpUrl: redactUrlList(profile.urls.amqp),
      mqttUrl: redactUrlList(profile.urls.mqtt),
      managementUrl: redactUrlList(profile.urls.management),
      vhost: profile.vhost,
      exchange: profile.exchange,
      ...detailsOf(profile),
      ...(profile.secrets.field !== undefined ? { password: REDACTED } : {}),
      secretStorage: this.secrets.kind,
    };
  }

  async list(): Promise<ProfileSummary[]> {
    await this.load();
    return [...this.profiles.values()].map((profile) => this.summary(profile));
  }

  async save(profile: ConnectionProfile): Promise<ProfileSummary[]> {
    return this.saveAll([profile]);
  }

  /** Saves every profile or none: when the file cannot be written, the profiles are as they were before and the error is thrown. */
  async saveAll(profiles: readonly ConnectionProfile[]): Promise<ProfileSummary[]> {
    await this.load();
    const before = new Map(profiles.map((profile) => [profile.name, this.profiles.get(profile.name)]));
    for (const profile of profiles) this.profiles.set(profile.name, this.stored(profile));
    try {
      await this.persist();
    } catch (err) {
      for (const [name, kept] of before) {
        if (kept) this.profiles.set(name, kept);
        else this.profiles.delete(name);
      }
      throw err;
    }
    return this.list();
  }

  private stored(profile: ConnectionProfile): StoredProfile {
    const urls = {} as StoredProfile['urls'];
    const secrets: StoredProfile['secrets'] = {};
    for (const kind of urlKinds) {
      const typed = profile[fieldOf[kind]];
      const parts = splitUrls(typed).map((url) => splitPassword(url));
      urls[kind] = joinList(
        parts.map((part) => part.bare),
        typed,
      );
      if (parts.some((part) => part.password !== undefined)) {
        secrets[kind] = parts.map((part) => (part.password === undefined ? null : this.secrets.seal(part.password)));
      }
    }
    if (profile.password) secrets.field = this.secrets.seal(profile.password);
    return { name: profile.name, vhost: profile.vhost, exchange: profile.exchange, ...detailsOf(profile), urls, secrets };
  }

  async remove(name: string): Promise<ProfileSummary[]> {
    await this.load();
    const removed = this.profiles.get(name);
    this.profiles.delete(name);
    try {
      await this.persist();
    } catch (err) {
      if (removed) this.profiles.set(name, removed);
      throw err;
    }
    return this.list();
  }

  /** The full profile with its passwords, for connecting; never sent to logs or exports. */
  async get(name: string): Promise<ConnectionProfile> {
    await this.load();
    const stored = this.profiles.get(name);
    if (!stored) throw new BridgeError('not-found', `There is no saved profile named "${name}".`);
    const open = (kind: UrlKind): string => {
      const sealed = stored.secrets[kind];
      const list = sealed === undefined ? [] : typeof sealed === 'string' ? [sealed] : sealed;
      const bare = splitUrls(stored.urls[kind]);
      const opened = bare.map((url, index) => {
        const secret = list[index];
        return joinPassword(url, secret === undefined || secret === null ? undefined : this.secrets.open(secret));
      });
      return joinList(opened, stored.urls[kind]);
    };
    return {
      name: stored.name,
      vhost: stored.vhost,
      exchange: stored.exchange,
      amqpUrl: open('amqp'),
      mqttUrl: open('mqtt'),
      managementUrl: open('management'),
      ...detailsOf(stored),
      ...(stored.secrets.field !== undefined ? { password: this.secrets.open(stored.secrets.field) } : {}),
    };
  }
}

/** The vhost an AMQP URL names (its path, percent-decoded; none or empty is "/"). */
export function amqpUrlVhost(amqpUrl: string): string {
  const { rest } = splitTypedUrl(amqpUrl.trim());
  const path = /\/([^?#]*)/.exec(rest)?.[1] ?? '';
  return path === '' ? '/' : decodeUriPart(path);
}

/**
 * The MQTT or management URL a broker's AMQP URL implies: the same host and user, the plugin's default port (TLS ports
 * for amqps). Undefined when the AMQP URL cannot be read that way. An AMQP URL without a user stands for guest, which the
 * management API needs spelled out. The MQTT plugin takes a vhost other than its default from a "vhost:user" user
 * name: for `vhost` (default: the AMQP URL's) other than "/", the MQTT URL's user name is that.
 */
export function siblingUrl(amqpUrl: string, kind: 'mqtt' | 'management', vhost = amqpUrlVhost(amqpUrl)): string | undefined {
  const { prefix, userinfo, rest } = splitTypedUrl(amqpUrl.trim());
  const tls = /^amqps:\/\/$/i.test(prefix);
  if (!tls && !/^amqp:\/\/$/i.test(prefix)) return undefined;
  const hostAndPort = rest.split(/[/?#]/, 1)[0] ?? '';
  const host = /^\[[^\]]*\]/.exec(hostAndPort)?.[0] ?? hostAndPort.replace(/:\d*$/, '');
  if (host === '' || host.includes(':') !== host.startsWith('[')) return undefined;
  if (kind === 'mqtt') {
    const user = vhost === '/' ? userinfo : `${encodeURIComponent(`${vhost}:`)}${userinfo ?? 'guest:guest'}`;
    return `${tls ? 'mqtts' : 'mqtt'}://${user !== undefined ? `${user}@` : ''}${host}:${tls ? 8883 : 1883}`;
  }
  return `${tls ? 'https' : 'http'}://${userinfo ?? 'guest:guest'}@${host}:${tls ? 15671 : 15672}`;
}

/** Each URL of an AMQP list turned into its sibling (see siblingUrl), leaving out any it cannot read; undefined when none is left. */
export function siblingList(amqpUrls: string, kind: 'mqtt' | 'management', vhost?: string): string | undefined {
  const siblings = splitUrls(amqpUrls)
    .map((url) => siblingUrl(url, kind, vhost ?? amqpUrlVhost(url)))
    .filter((url) => url !== undefined);
  return siblings.length > 0 ? siblings.join(', ') : undefined;
}

/**
 * A broker configured through the environment, or undefined to use the sandbox broker. An MQTT or management URL not
 * given is the AMQP URL's host with the plugin's default port (before, 127.0.0.1: a remote broker's app then talked to
 * whatever ran locally); `note` is told which, in one sentence each (passwords shown as ***).
 */
export function profileFromEnv(env: NodeJS.ProcessEnv = process.env, note?: (sentence: string) => void): ConnectionProfile | undefined {
  const amqpUrl = env.BRIDGESCOPE_AMQP_URL;
  if (!amqpUrl) return undefined;
  const vhost = env.BRIDGESCOPE_VHOST || undefined;
  const implied = (variable: string, kind: 'mqtt' | 'management', fallback: string): string => {
    const given = env[variable];
    if (given) return given;
    const sibling = siblingList(amqpUrl, kind, vhost);
    const what = kind === 'mqtt' ? 'the MQTT plugin' : 'the management plugin';
    const named = kind === 'mqtt' && (vhost ?? amqpUrlVhost(splitUrls(amqpUrl)[0] ?? '')) !== '/' ? '; the vhost in its user name, as the MQTT plugin reads it' : '';
    note?.(
      sibling !== undefined
        ? `${variable} is not set: using ${redactUrlList(sibling)} (the AMQP URL's host and user, ${what}'s default port${named}).`
        : `${variable} is not set, and the AMQP URL does not say a host: using ${redactUrlList(fallback)}.`,
    );
    return sibling ?? fallback;
  };
  const tls = tlsSettings({}, env);
  return {
    name: 'From environment',
    amqpUrl,
    mqttUrl: implied('BRIDGESCOPE_MQTT_URL', 'mqtt', DEFAULT_MQTT_URL),
    managementUrl: implied('BRIDGESCOPE_MANAGEMENT_URL', 'management', DEFAULT_MANAGEMENT_URL),
    // The AMQP URL's vhost unless BRIDGESCOPE_VHOST says another: the management API, requests and Watch look there.
    vhost: env.BRIDGESCOPE_VHOST || (amqpUrlVhost(splitUrls(amqpUrl)[0] ?? '') ?? DEFAULT_VHOST),
    exchange: env.BRIDGESCOPE_EXCHANGE ?? DEFAULT_MQTT_EXCHANGE,
    ...(tls !== undefined ? { tls } : {}),
  };
}

/** The profile as shown to the UI: every password of every URL, and the password field, replaced by ***, so state broadcasts never carry secrets. */
export function redactProfile(profile: ConnectionProfile): ConnectionProfile {
  return {
    ...profile,
    amqpUrl: redactUrlList(profile.amqpUrl),
    mqttUrl: redactUrlList(profile.mqttUrl),
    managementUrl: redactUrlList(profile.managementUrl),
    ...(profile.password ? { password: REDACTED } : {}),
  };
}

/** A URL sent back with *** as its password gets the password it had in `known` (same URL otherwise). */
export function restoreSecret(url: string, known: string | undefined): string {
  if (!known || !url.includes(`${REDACTED}@`)) return url;
  if (redactUrlList(known) === url) return known;
  // Edited lists: each URL still shown redacted gets its password back from the known URL it is the redaction of.
  const knownUrls = splitUrls(known);
  const urls = splitUrls(url);
  const restored = urls.map((part) => (part.includes(`${REDACTED}@`) ? (knownUrls.find((candidate) => redactUrl(candidate) === part) ?? part) : part));
  return restored.every((part, index) => part === urls[index]) ? url : joinList(restored, url);
}

export function restoreSecrets(profile: ConnectionProfile, known: ConnectionProfile | undefined): ConnectionProfile {
  const restored: ConnectionProfile = {
    ...profile,
    amqpUrl: restoreSecret(profile.amqpUrl, known?.amqpUrl),
    mqttUrl: restoreSecret(profile.mqttUrl, known?.mqttUrl),
    managementUrl: restoreSecret(profile.managementUrl, known?.managementUrl),
  };
  if (profile.password === REDACTED && known?.password) restored.password = known.password;
  return restored;
}
