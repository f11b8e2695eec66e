/** Saved connection profiles; passwords are split out of the URLs and kept by a SecretBox (OS keychain, or memory). */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ConnectionProfile, ProfileSummary } from '../shared/contract';
import { BridgeError } from './errors';
import { decodeUriPart, REDACTED, redactUrl, splitTypedUrl, typedCredentials } from '../shared/redact';
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

interface StoredProfile extends Omit<ConnectionProfile, 'amqpUrl' | 'mqttUrl' | 'managementUrl'> {
  urls: { amqp: string; mqtt: string; management: string };
  /** sealed passwords by URL kind */
  secrets: Partial<Record<'amqp' | 'mqtt' | 'management', string>>;
}

type UrlKind = 'amqp' | 'mqtt' | 'management';

/** Splits the password out as typed (everything after the first `:` up to the last `@`), so a raw `/` or `#` in it never stays in the stored URL. */
function splitPassword(url: string): { bare: string; password: string | undefined } {
  const credentials = typedCredentials(url);
  if (credentials?.password === undefined) return { bare: url, password: undefined };
  const { prefix, rest } = splitTypedUrl(url);
  // The @ stays even after an empty user name, so the password goes back in the same place.
  return { bare: `${prefix}${credentials.username}@${rest}`, password: decodeUriPart(credentials.password) };
}

/** Puts a stored password back, percent-encoded, so the URL reads the same to every parser. */
function joinPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const { prefix, userinfo, rest } = splitTypedUrl(url);
  return `${prefix}${userinfo ?? ''}:${encodeURIComponent(password)}@${rest}`;
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
    await writeFile(this.file, JSON.stringify([...this.profiles.values()], null, 2), { mode: 0o600 });
  }

  private summary(profile: StoredProfile): ProfileSummary {
    return {
      name: profile.name,
      amqpUrl: redactUrl(profile.urls.amqp),
      mqttUrl: redactUrl(profile.urls.mqtt),
      managementUrl: redactUrl(profile.urls.management),
      vhost: profile.vhost,
      exchange: profile.exchange,
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
    const sources: Record<UrlKind, string> = { amqp: profile.amqpUrl, mqtt: profile.mqttUrl, management: profile.managementUrl };
    for (const kind of Object.keys(sources) as UrlKind[]) {
      const { bare, password } = splitPassword(sources[kind]);
      urls[kind] = bare;
      if (password !== undefined) secrets[kind] = this.secrets.seal(password);
    }
    this.profiles.set(profile.name, { name: profile.name, vhost: profile.vhost, exchange: profile.exchange, urls, secrets });
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
      return joinPassword(stored.urls[kind], sealed === undefined ? undefined : this.secrets.open(sealed));
    };
    return { name: stored.name, vhost: stored.vhost, exchange: stored.exchange, amqpUrl: open('amqp'), mqttUrl: open('mqtt'), managementUrl: open('management') };
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

/** The profile as shown to the UI: every password replaced by ***, so state broadcasts never carry secrets. */
export function redactProfile(profile: ConnectionProfile): ConnectionProfile {
  return { ...profile, amqpUrl: redactUrl(profile.amqpUrl), mqttUrl: redactUrl(profile.mqttUrl), managementUrl: redactUrl(profile.managementUrl) };
}

/** A URL sent back with *** as its password gets the password it had in `known` (same URL otherwise). */
export function restoreSecret(url: string, known: string | undefined): string {
  if (!known || !url.includes(`${REDACTED}@`)) return url;
  return redactUrl(known) === url ? known : url;
}

export function restoreSecrets(profile: ConnectionProfile, known: ConnectionProfile | undefined): ConnectionProfile {
  return {
    ...profile,
    amqpUrl: restoreSecret(profile.amqpUrl, known?.amqpUrl),
    mqttUrl: restoreSecret(profile.mqttUrl, known?.mqttUrl),
    managementUrl: restoreSecret(profile.managementUrl, known?.managementUrl),
  };
}
