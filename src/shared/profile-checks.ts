/** What is wrong with a connection profile, one sentence per field, before connecting: the form shows them, the core refuses on them. */
import type { ConnectionProfile } from './contract';
import { splitUrls } from './url-list';

export type ProfileField = 'amqpUrl' | 'mqttUrl' | 'managementUrl' | 'mqttClientId' | 'keepaliveSeconds' | 'tls' | 'cleanSession' | 'username';

export interface ProfileProblem {
  field: ProfileField;
  message: string;
}

const SCHEMES: Record<'amqpUrl' | 'mqttUrl' | 'managementUrl', { names: string[]; what: string }> = {
  amqpUrl: { names: ['amqp:', 'amqps:'], what: 'An AMQP URL must start with amqp:// or amqps://' },
  mqttUrl: { names: ['mqtt:', 'mqtts:', 'tcp:', 'ws:', 'wss:'], what: 'An MQTT URL must start with mqtt://, mqtts://, ws:// or wss://' },
  managementUrl: { names: ['http:', 'https:'], what: 'The management URL must start with http:// or https://' },
};

const TLS_SCHEMES = new Set(['amqps:', 'mqtts:', 'wss:', 'https:']);

/** The scheme of a URL as typed (`amqp:`), lower-case, or undefined. */
function schemeOf(url: string): string | undefined {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  return match ? `${(match[1] as string).toLowerCase()}:` : undefined;
}

/** A client id for the app's MQTT client, as the form shows it before the user changes it. */
export function generatedClientId(): string {
  const bytes = new Uint8Array(4);
  globalThis.crypto.getRandomValues(bytes);
  return `bridgescope-${[...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join('')}`;
}

/** Whether any URL of the profile uses TLS. */
export function usesTls(profile: Pick<ConnectionProfile, 'amqpUrl' | 'mqttUrl' | 'managementUrl'>): boolean {
  return [profile.amqpUrl, profile.mqttUrl, profile.managementUrl].some((list) => splitUrls(list).some((url) => TLS_SCHEMES.has(schemeOf(url) ?? '')));
}

/** Every problem of a profile, each a sentence for the field it belongs to; none means it may be used. */
export function profileProblems(profile: ConnectionProfile): ProfileProblem[] {
  const problems: ProfileProblem[] = [];
  for (const field of ['amqpUrl', 'mqttUrl', 'managementUrl'] as const) {
    const urls = splitUrls(profile[field] ?? '');
    if (urls.length === 0) {
      problems.push({ field, message: `${field === 'amqpUrl' ? 'An AMQP' : field === 'mqttUrl' ? 'An MQTT' : 'A management'} URL is needed.` });
      continue;
    }
    const wrong = urls.findIndex((url) => !SCHEMES[field].names.includes(schemeOf(url) ?? ''));
    if (wrong !== -1) {
      const where = urls.length > 1 ? ` (URL ${wrong + 1} of ${urls.length})` : '';
      problems.push({ field, message: `${SCHEMES[field].what}${where}.` });
    }
  }
  const clientId = profile.mqttClientId;
  if (clientId !== undefined && clientId.trim() !== clientId) problems.push({ field: 'mqttClientId', message: 'The client id cannot start or end with a space.' });
  else if (clientId !== undefined && clientId.length > 255) problems.push({ field: 'mqttClientId', message: 'The client id must be at most 255 characters.' });
  else if (clientId !== undefined && /[+#/]/.test(clientId)) problems.push({ field: 'mqttClientId', message: 'The client id cannot hold +, # or / (RabbitMQ names queues after it).' });
  if (profile.cleanSession === false && !clientId) {
    problems.push({ field: 'cleanSession', message: 'A session the broker keeps (clean session off) needs a fixed client id.' });
  }
  const keepalive = profile.keepaliveSeconds;
  if (keepalive !== undefined && (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 65_535)) {
    problems.push({ field: 'keepaliveSeconds', message: 'The keepalive is a whole number of seconds from 0 (off) to 65535.' });
  }
  if (profile.password !== undefined && profile.password !== '' && !profile.username) {
    problems.push({ field: 'username', message: 'A password typed in the field needs the user name next to it.' });
  }
  const tls = profile.tls;
  if (tls) {
    const files = [tls.caFile, tls.certFile, tls.keyFile].some((file) => file !== undefined && file.trim() !== '');
    if ((files || tls.verify === false) && !usesTls(profile)) {
      problems.push({ field: 'tls', message: 'TLS settings apply to amqps://, mqtts://, wss:// and https:// URLs, and none of the URLs uses TLS.' });
    } else if (!!tls.certFile?.trim() !== !!tls.keyFile?.trim()) {
      problems.push({ field: 'tls', message: 'A client certificate needs its key file, and a key its certificate.' });
    }
  }
  return problems;
}
