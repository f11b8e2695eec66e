/** One HTTP call to RabbitMQ's management API, with credentials taken from the URL and clear errors. */
import { decodeUriPart, parsedAsTyped, unreadableUrlMessage } from '../../shared/redact';
import { BridgeError } from '../errors';

/** Kept here for the callers that import it from this module; the one redactor lives in src/shared/redact.ts. */
export { redactUrl } from '../../shared/redact';

export interface ManagementRequestOptions {
  method?: 'GET' | 'PUT' | 'POST' | 'DELETE';
  body?: unknown;
  timeoutMs?: number;
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
  const init: RequestInit = {
    method: options.method ?? 'GET',
    headers: { authorization, 'content-type': 'application/json' },
    signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
  };
  if (options.body !== undefined) init.body = JSON.stringify(options.body);
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    if ((err as Error).name === 'TimeoutError') {
      throw new BridgeError('timeout', `The management API at ${display} did not answer within ${options.timeoutMs ?? 5000} ms.`);
    }
    throw new BridgeError(
      'unreachable',
      `Cannot reach the management API at ${display} (${cause?.code ?? (err as Error).message}); is the rabbitmq_management plugin enabled?`,
      { cause: err },
    );
  }
  if (response.status === 401) {
    throw new BridgeError('auth', `The management API at ${display} refused the credentials (401).`);
  }
  if (response.status === 403) {
    // A user without the management/administrator tag, or without permission on the vhost: a permission problem, not a broker failure.
    throw new BridgeError('auth', `The management API at ${display} refused ${path} for this user (403): the user needs the "management" tag, and "administrator" to switch tracing.`);
  }
  if (response.status === 404) {
    throw new BridgeError('not-found', `The management API at ${display} has nothing at ${path} (404).`);
  }
  if (!response.ok) {
    const text = await response.text().catch(() => '');
    throw new BridgeError('broker-failed', `The management API answered ${response.status} for ${path}: ${text.slice(0, 200)}`);
  }
  const text = await response.text();
  if (text.length === 0) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new BridgeError('broker-failed', `${display} answered ${path} with something that is not JSON; is it really RabbitMQ's management API?`);
  }
}
