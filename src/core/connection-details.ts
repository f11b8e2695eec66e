/** What a profile means to the links: every URL of each list with the user name and password fields applied, and the TLS files read. */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { ConnectionProfile } from '../shared/contract';
import { splitUrls } from '../shared/url-list';
import { decodeUriPart, splitTypedUrl, typedCredentials } from '../shared/redact';
import { BridgeError } from './errors';

export interface BrokerTargets {
  /** each list in order: the first URL is tried first, the others are the failover nodes */
  amqp: string[];
  mqtt: string[];
  management: string[];
}

/** TLS options as Node's tls.connect takes them (mqtt.js and amqplib pass them through). */
export interface TlsFiles {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
}

/**
 * A URL with the profile's user name and password fields in it. The fields win over what the URL holds, each for its own
 * part: a user name field alone keeps the URL's password (and a password field needs the user name field).
 */
export function withCredentials(url: string, username: string | undefined, password: string | undefined): string {
  if (!username && !password) return url;
  const { prefix, rest } = splitTypedUrl(url);
  const typed = typedCredentials(url);
  const user = username || decodeUriPart(typed?.username ?? '');
  const secret = password || (typed?.password === undefined ? undefined : decodeUriPart(typed.password));
  return `${prefix}${encodeURIComponent(user)}${secret === undefined ? '' : `:${encodeURIComponent(secret)}`}@${rest}`;
}

/** Every URL the links use, in order, with the credential fields applied. */
export function brokerTargets(profile: ConnectionProfile): BrokerTargets {
  const apply = (list: string): string[] => splitUrls(list).map((url) => withCredentials(url, profile.username, profile.password));
  return { amqp: apply(profile.amqpUrl), mqtt: apply(profile.mqttUrl), management: apply(profile.managementUrl) };
}

/** TLS files as the options of tls.connect / https.request (the AMQP links, the tracer and the management API pass them on). */
export function tlsSocketOptions(tls: TlsFiles | undefined): Record<string, unknown> {
  if (!tls) return {};
  return { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}), rejectUnauthorized: tls.rejectUnauthorized };
}

/** The most a TLS file may hold: a PEM bundle of a few certificates is kilobytes; a whole public CA bundle is about 250 KiB. */
export const TLS_FILE_MAX_BYTES = 1024 * 1024;

/**
 * One TLS file, read without ever blocking the process: a regular file only (not a device such as /dev/zero, a pipe
 * that nobody writes, a socket or a folder), at most TLS_FILE_MAX_BYTES. A profile can be imported, so the path may
 * be anything.
 */
async function readTlsFile(path: string | undefined, what: string): Promise<Buffer | undefined> {
  const file = path?.trim();
  if (!file) return undefined;
  const cannot = (why: string): BridgeError => new BridgeError('bad-input', `The ${what} "${file}" cannot be read: ${why}.`);
  let handle: FileHandle | undefined;
  try {
    // Non-blocking: opening a pipe nobody writes to would otherwise hold one of libuv's few threads forever.
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stats = await handle.stat();
    if (stats.isDirectory()) throw cannot('it is a folder');
    if (!stats.isFile()) throw cannot('it is not a regular file (a device, a pipe or a socket)');
    if (stats.size > TLS_FILE_MAX_BYTES) throw cannot(`it holds ${formatBytes(stats.size)}, more than the ${formatBytes(TLS_FILE_MAX_BYTES)} a certificate or key file may hold`);
    // A file that grows while it is read (or whose size the system does not tell) is still read up to the cap only.
    const buffer = Buffer.alloc(TLS_FILE_MAX_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > TLS_FILE_MAX_BYTES) throw cannot(`it holds more than the ${formatBytes(TLS_FILE_MAX_BYTES)} a certificate or key file may hold`);
    }
    return Buffer.from(buffer.subarray(0, length));
  } catch (err) {
    if (err instanceof BridgeError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw cannot(code === 'ENOENT' ? 'there is no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message);
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}

/** The profile's TLS files, read now (so a wrong path is one sentence before any connection); undefined when none is set. */
export async function tlsFiles(profile: Pick<ConnectionProfile, 'tls'>): Promise<TlsFiles | undefined> {
  const tls = profile.tls;
  if (!tls) return undefined;
  const ca = await readTlsFile(tls.caFile, 'CA file');
  const cert = await readTlsFile(tls.certFile, 'client certificate file');
  const key = await readTlsFile(tls.keyFile, 'client key file');
  const rejectUnauthorized = tls.verify !== false;
  if (!ca && !cert && !key && rejectUnauthorized) return undefined;
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), rejectUnauthorized };
}

const CERTIFICATE_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME/;

/** A TLS failure as one sentence (`where` is the redacted URL), or undefined when the error is not about TLS. */
export function tlsFailure(err: Error & { code?: string | number }, where: string): BridgeError | undefined {
  const code = typeof err.code === 'string' ? err.code : '';
  // The broker's alert: it verifies clients (mutual TLS) and got no certificate, or one it does not trust.
  if (/ALERT_CERTIFICATE_REQUIRED|ALERT_UNKNOWN_CA|ALERT_BAD_CERTIFICATE/.test(code) || /certificate required/i.test(err.message)) {
    return new BridgeError(
      'auth',
      `The broker at ${where} asks for a client certificate it trusts and refused the handshake (${code || err.message}): give your client certificate and its key (on the command line: --tls-cert and --tls-key).`,
    );
  }
  if (CERTIFICATE_CODES.test(code) || err.message === 'TLS not authorized') {
    return new BridgeError(
      'auth',
      `The broker at ${where} presented a certificate that could not be verified (${code || err.message}): give its CA file (on the command line: --tls-ca ca.pem), or turn certificate verification off (--tls-insecure).`,
    );
  }
  if (code === 'EPROTO' || code.startsWith('ERR_SSL') || /wrong version number|packet length too long/.test(err.message)) {
    return new BridgeError('unreachable', `The TLS handshake with ${where} failed: the port may not speak TLS (${code || 'handshake error'}).`);
  }
  return undefined;
}
