/** One HTTP call to RabbitMQ's management API, with credentials taken from the URL and clear errors. */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { decodeUriPart, parsedAsTyped, unreadableUrlMessage, hostlessUrlMessage } from '../../shared/redact';
import { BridgeError } from '../errors';
import { tlsFailure, tlsSocketOptions, type TlsFiles } from '../connection-details';

/** Kept here for the callers that import it from this module; the one redactor lives in src/shared/redact.ts. */
export { redactUrl } from '../../shared/redact';

export interface ManagementRequestOptions {
  method?: 'GET' | 'PUT' | 'POST' | 'DELETE';
  body?: unknown;
  timeoutMs?: number;
  /** for https://: the profile's CA, client certificate and key, and whether the server's certificate is verified */
  tls?: TlsFiles;
}

/** A response read whole: the status and the body as text. */
interface HttpAnswer {
  status: number;
  text: string;
}

/**
 * One request with Node's http/https (its global agents pool the connections, per TLS settings): fetch cannot be given a
 * CA file or verify=false without a dispatcher from a package of its own. Rejects with the socket's error, or the
 * signal's reason once it fires, even while the body is being read.
 */
function send(target: string, method: string, headers: Record<string, string>, body: string | undefined, tls: TlsFiles | undefined, signal: AbortSignal): Promise<HttpAnswer> {
  const secure = target.startsWith('https:');
  return new Promise((resolve, reject) => {
    const onResponse = (response: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    };
    const options = { method, headers, signal, ...(secure ? tlsSocketOptions(tls) : {}) };
    const req = secure ? httpsRequest(target, options, onResponse) : httpRequest(target, options, onResponse);
    // reusedSocket: the request went out on a kept-alive connection, which the server may have closed as it was sent
    req.on('error', (err) => reject(signal.aborted ? signal.reason : Object.assign(err, { reusedSocket: req.reusedSocket })));
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    req.end(body);
  });
}

/** The user logged in, but lacks the tag `path` needs (RabbitMQ lets only administrators read or switch a vhost's tracing). */
export class MissingTagError extends BridgeError {
  constructor(
    display: string,
    readonly path: string,
    readonly tag: 'management' | 'administrator',
  ) {
    super('auth', `The management API at ${display} accepted the credentials but refused ${path} (401): the user needs the "${tag}" tag.`);
  }
}

/** Splits `http://user:pass@host:15672/` into a clean base URL and a basic-auth header (never printed). */
export function parseManagementUrl(url: string): { base: string; authorization: string; display: string } {
  const unreadable = (): BridgeError => new BridgeError('bad-input', unreadableUrlMessage(url, 'management', 'http://user:pass@host:15672'));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw unreadable();
  }
  // No host (`mqtt:/host:1883`): the client would go to localhost's default port, perhaps another broker. Said before
  // the user-info check, which such a URL fails too (its credentials read as a path).
  if ((parsed.protocol === 'http:' || parsed.protocol === 'https:') && parsed.hostname === '') throw new BridgeError('bad-input', hostlessUrlMessage(url, parsed.protocol));
  // A raw / ? or # in the password makes the parser take part of it for the host, port or path.
  if (!parsedAsTyped(url, parsed)) throw unreadable();
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new BridgeError('bad-input', `The management URL must start with http:// or https://, not ${parsed.protocol}//.`);
  }
  const username = decodeUriPart(parsed.username) || 'guest';
  const password = decodeUriPart(parsed.password) || 'guest';
  parsed.username = '';
  parsed.password = '';
  const base = parsed.toString().replace(/\/+$/, '');
  return {
    base,
    authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`,
    display: base,
  };
}

export async function managementRequest<T = unknown>(
  url: string,
  path: string,
  options: ManagementRequestOptions = {},
): Promise<T> {
  const { base, authorization, display } = parseManagementUrl(url);
  const timeoutMs = options.timeoutMs ?? 5000;
  const signal = AbortSignal.timeout(timeoutMs);
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  const method = options.method ?? 'GET';
  const ask = (): Promise<HttpAnswer> => send(`${base}${path}`, method, { authorization, 'content-type': 'application/json' }, body, options.tls, signal);
  let response: HttpAnswer;
  try {
    response = await ask().catch((err: NodeJS.ErrnoException & { reusedSocket?: boolean }) => {
      // RabbitMQ's web server closes idle kept-alive connections on a timer: a GET that met that close on a reused
      // connection is asked once more, on a new one (Node's documented remedy); a PUT or DELETE is never sent twice.
      if (method === 'GET' && err.reusedSocket === true && err.code === 'ECONNRESET' && !signal.aborted) return ask();
      throw err;
    });
  } catch (err) {
    if (signal.aborted) {
      throw new BridgeError('timeout', `The management API at ${display} did not answer within ${timeoutMs} ms.`);
    }
    const tls = tlsFailure(err as Error & { code?: string }, display);
    if (tls) throw tls;
    // Something answered, but not in HTTP: an AMQP or MQTT port given as the management URL (AMQP answers its own
    // protocol header), not a plugin that is off.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && code.startsWith('HPE_')) {
      throw new BridgeError('unreachable', `What answers at ${display} does not speak plain HTTP (${code}): the management URL names another port (an AMQP or MQTT one?), or a TLS port that needs https://; RabbitMQ's management API listens on 15672 (HTTP) or 15671 (HTTPS) by default.`, { cause: err });
    }
    throw new BridgeError(
      'unreachable',
      `Cannot reach the management API at ${display} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); is the rabbitmq_management plugin enabled?`,
      { cause: err },
    );
  }
  if (response.status === 401) {
    // RabbitMQ answers 401 for a missing user tag too ("Not administrator user"): the password was right, the user lacks the tag.
    const tag = /"Not (management|administrator) user"/.exec(response.text)?.[1] as 'management' | 'administrator' | undefined;
    if (tag) throw new MissingTagError(display, path, tag);
    throw new BridgeError('auth', `The management API at ${display} refused the credentials (401).`);
  }
  if (response.status === 403) {
    // A user without the management/administrator tag, or without permission on the vhost: a permission problem, not a broker failure.
    throw new BridgeError('auth', `The management API at ${display} refused ${path} for this user (403): the user needs the "management" tag, and "administrator" to switch tracing.`);
  }
  if (response.status === 404) {
    throw new BridgeError('not-found', `The management API at ${display} has nothing at ${path} (404).`);
  }
  if (response.status < 200 || response.status > 299) {
    throw new BridgeError('broker-failed', `The management API answered ${response.status} for ${path}: ${response.text.slice(0, 200)}`);
  }
  const { text } = response;
  if (text.length === 0) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new BridgeError('broker-failed', `${display} answered ${path} with something that is not JSON; is it really RabbitMQ's management API?`);
  }
}
