/** Saved connection profiles; passwords are split out of the URLs and kept by a SecretBox (OS keychain, or memory). */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ConnectionProfile, ProfileSummary } from '../shared/contract';
import { BridgeError } from './errors';
import { decodeUriPart, REDACTED, redactUrl, splitTypedUrl, typedCredentials } from '../shared/redact';
import { redactUrlList, splitUrls } from '../shared/url-list';
import { DEFAULT_MQTT_EXCHANGE } from '../shared/defaults';

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

export class ProfileStore {
  private profiles = new Map<string, StoredProfile>();
  private loaded = false;

  /** `file` undefined keeps profiles in memory only. */
  constructor(
    private readonly secrets: SecretBox,
    private readonly file?: string,
  ) {}

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    if (!this.file) return;
    try {
      const stored = JSON.parse(await readFile(this.file, 'utf8')) as StoredProfile[];
      for (const profile of stored) this.profiles.set(profile.name, profile);
    } catch {
      // No file yet, or unreadable: start empty rather than refuse to open.
    }
  }

  private async persist(): Promise<void> {
    if (!this.file) return;
    await mkdir(dirname(this.file), { recursive: true });
    // Secrets kept in memory only (browser mode) are numbers that mean nothing to the next run: the file keeps the
    // profiles without them, and the passwords are typed again after a restart.
    const stored = this.secrets.kind === 'memory' ? [...this.profiles.values()].map((profile) => ({ ...profile, secrets: {} })) : [...this.profiles.values()];
    await writeFile(this.file, JSON.stringify(stored, null, 2), { mode: 0o600 });
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
    await this.load();
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
    this.profiles.set(profile.name, { name: profile.name, vhost: profile.vhost, exchange: profile.exchange, ...detailsOf(profile), urls, secrets });
    await this.persist();
    return this.list();
  }

  async remove(name: string): Promise<ProfileSummary[]> {
    await this.load();
    this.profiles.delete(name);
    await this.persist();
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

/** A broker configured through the environment, or undefined to use the sandbox broker. */
export function profileFromEnv(env: NodeJS.ProcessEnv = process.env): ConnectionProfile | undefined {
  const amqpUrl = env.BRIDGESCOPE_AMQP_URL;
  if (!amqpUrl) return undefined;
  return {
    name: 'From environment',
    amqpUrl,
    mqttUrl: env.BRIDGESCOPE_MQTT_URL ?? 'mqtt://127.0.0.1:1883',
    managementUrl: env.BRIDGESCOPE_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672',
    vhost: env.BRIDGESCOPE_VHOST ?? '/',
    exchange: env.BRIDGESCOPE_EXCHANGE ?? DEFAULT_MQTT_EXCHANGE,
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
