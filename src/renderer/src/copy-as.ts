/** A composed request as a command a user can paste into a POSIX shell: `bridgescope call ...` or `mosquitto_pub ...`. */
import type { ConnectionProfile, SendRequestArgs } from '../../shared/contract';
import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_MQTT_EXCHANGE, DEFAULT_REQUEST_QOS, DEFAULT_REQUEST_TOPIC } from '../../shared/defaults';
import { defaultEnvelopeFields, type Mqtt5RequestOptions } from '../../shared/rpc';
import { encodeBase64, rawPayloadBytes } from '../../shared/payload-format';

/** Characters a POSIX shell never treats specially inside a word; anything else is single-quoted. */
const SAFE_WORD = /^[A-Za-z0-9_/.:,=@%+-]+$/;

/** One word for a POSIX shell (sh, bash, zsh): bare when it is safe, else single-quoted with each `'` written as `'\''`. */
export function shellQuote(word: string): string {
  if (SAFE_WORD.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A word written as it is, for a shell expansion the user fills in (a password the app only shows as ***). */
interface RawWord {
  raw: string;
}

function command(words: Array<string | RawWord>): string {
  return words.map((word) => (typeof word === 'string' ? shellQuote(word) : word.raw)).join(' ');
}

/** The core shows saved passwords as ***: the command reads the real one from the environment instead. */
const REDACTED = '***';

/** The payload on one line when it is JSON (the box may span lines), else exactly as typed. */
function compactPayload(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return text;
  }
}

/**
 * The MQTT 5 options a connection speaking MQTT 3.1.1 did not send, named for the comment after the command (empty when
 * they were sent, or none were set). A copied command asks only for what was really sent: asking for MQTT 5 fails there.
 */
function droppedMqtt5(options: Mqtt5RequestOptions | undefined): string {
  if (!options) return '';
  const named = [
    ...(options.userProperties ?? []).map((pair) => `user property ${pair.key}=${pair.value}`),
    ...(options.correlationData ? [`correlation data ${options.correlationData}`] : []),
    ...(options.responseTopic ? [`response topic ${options.responseTopic}`] : []),
    ...(options.messageExpirySeconds !== undefined ? [`message expiry ${options.messageExpirySeconds} s`] : []),
  ];
  // A comment ends at the line's end: a line break in a value would start a command.
  return named.length === 0 ? '' : `MQTT 5 options not sent (this connection speaks MQTT 3.1.1), left out: ${named.join(', ').replace(/[\r\n]+/g, ' ')}`;
}

/** A URL shown with *** as its password: the command reads the real one from $MQTT_PASSWORD. */
function urlWord(url: string): string | RawWord {
  if (!url.includes(`:${REDACTED}@`)) return url;
  return { raw: url.split(REDACTED).map((part) => (part === '' ? '' : shellQuote(part))).join('"$MQTT_PASSWORD"') };
}

/**
 * `bridgescope call` with the same request: only the flags that differ from the CLI's defaults, the payload last.
 * `mqtt5Sent`: whether the connection sent the MQTT 5 options (false on MQTT 3.1.1: they are left out, and said so).
 */
export function asBridgescopeCall(request: SendRequestArgs, profile?: Pick<ConnectionProfile, 'mqttUrl' | 'exchange'>, mqtt5Sent = true): string {
  const words: Array<string | RawWord> = ['bridgescope', 'call'];
  if (profile?.mqttUrl) words.push('--mqtt', urlWord(profile.mqttUrl));
  if (request.topic !== DEFAULT_REQUEST_TOPIC) words.push('--topic', request.topic);
  if (request.qos !== DEFAULT_REQUEST_QOS) words.push('--qos', String(request.qos));
  if (request.strategy !== 'per-request') words.push('--reply', request.strategy);
  if (request.replyTopic) words.push('--reply-topic', request.replyTopic);
  if (request.method) words.push('--method', request.method);
  if (request.timeoutMs !== DEFAULT_CALL_TIMEOUT_MS) words.push('--timeout', String(request.timeoutMs));
  if (profile?.exchange && profile.exchange !== DEFAULT_MQTT_EXCHANGE) words.push('--exchange', profile.exchange);
  const mqtt5 = mqtt5Sent ? request.mqtt5 : undefined;
  const dropped = mqtt5Sent ? '' : droppedMqtt5(request.mqtt5);
  if (mqtt5) {
    words.push('--mqtt-version', '5');
    for (const pair of mqtt5.userProperties ?? []) words.push('--user-property', `${pair.key}=${pair.value}`);
    if (mqtt5.correlationData) words.push('--correlation-data', mqtt5.correlationData);
    if (mqtt5.responseTopic) words.push('--response-topic', mqtt5.responseTopic);
    if (mqtt5.messageExpirySeconds !== undefined) words.push('--message-expiry', String(mqtt5.messageExpirySeconds));
  }
  const format = request.payloadFormat ?? 'json';
  // The browser never learns a picked file's path: the command names the file, to be run where it is.
  if (format === 'file') words.push('--payload-file', request.payloadFileName || 'FILE');
  else if (format !== 'json') words.push('--payload-format', format, request.payloadText);
  else if (request.payloadText.trim() !== '') words.push(compactPayload(request.payloadText));
  return command(words) + (dropped ? `  # ${dropped}` : '');
}

/** The request body the core would publish (src/core/rpc/envelope.ts): the typed object, then id and reply_to, method, params. */
export function requestBody(request: SendRequestArgs, id: string, generatedReplyTopic: string): string {
  const fields = defaultEnvelopeFields;
  let extra: Record<string, unknown> = {};
  let params: unknown;
  if (request.payloadText.trim() !== '') {
    const value: unknown = JSON.parse(request.payloadText);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) extra = value as Record<string, unknown>;
    else params = value;
  }
  // The reply topic the core picks: the form's, else the payload's reply_to when it is a string, else a generated one.
  const payloadReplyTo = extra[fields.replyTo];
  const replyTopic = request.replyTopic || (typeof payloadReplyTo === 'string' ? payloadReplyTo : generatedReplyTopic);
  const body: Record<string, unknown> = { ...extra, [fields.id]: id, [fields.replyTo]: replyTopic };
  if (request.method) body[fields.method] = request.method;
  if (params !== undefined) body[fields.params] = params;
  return JSON.stringify(body);
}

/** Host, port and credentials of the first MQTT URL of a profile (a cluster profile lists several, comma-separated). */
function mqttEndpoint(mqttUrl: string): { host: string; port: string; tls: boolean; username?: string; password?: string } | undefined {
  const first = mqttUrl.split(',')[0]?.trim() ?? '';
  let url: URL;
  try {
    url = new URL(first);
  } catch {
    return undefined;
  }
  const tls = url.protocol === 'mqtts:' || url.protocol === 'ssl:';
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port || (tls ? '8883' : '1883'),
    tls,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
  };
}

/**
 * `mosquitto_pub` publishing the body the core would send. It only publishes: the reply comes on the body's reply_to,
 * which `mosquitto_sub -t` can watch. RabbitMQ grants at most QoS 1 and answers a QoS 2 publish with a PUBACK that
 * mosquitto_pub reports as a protocol error, so QoS 2 is sent as 1, and the command says so.
 */
export function asMosquittoPub(request: SendRequestArgs, profile: Pick<ConnectionProfile, 'mqttUrl'> | undefined, id: string, generatedReplyTopic: string, mqtt5Sent = true): string {
  const mqtt5 = mqtt5Sent ? request.mqtt5 : undefined;
  const words: Array<string | RawWord> = ['mosquitto_pub'];
  const endpoint = profile ? mqttEndpoint(profile.mqttUrl) : undefined;
  if (endpoint) {
    words.push('-h', endpoint.host, '-p', endpoint.port);
    if (endpoint.tls) words.push('--capath', '/etc/ssl/certs');
    if (endpoint.username) words.push('-u', endpoint.username);
    if (endpoint.password) words.push('-P', endpoint.password === REDACTED ? { raw: '"$MQTT_PASSWORD"' } : endpoint.password);
  }
  const qos = request.qos === 2 ? 1 : request.qos;
  const format = request.payloadFormat ?? 'json';
  const body = format === 'json' ? requestBody(request, id, generatedReplyTopic) : undefined;
  // The response topic is the reply topic the body names (the form's, else the payload's reply_to, else a generated one).
  const replyTopic = body !== undefined ? String((JSON.parse(body) as Record<string, unknown>)[defaultEnvelopeFields.replyTo]) : request.replyTopic || generatedReplyTopic;
  if (mqtt5) words.push('-V', 'mqttv5', ...mqtt5Words(mqtt5, id, replyTopic));
  words.push('-t', request.topic, '-q', String(qos));
  const notes = request.qos === 2 ? ['QoS 2 sent as 1: RabbitMQ grants at most 1 and mosquitto_pub fails on its PUBACK'] : [];
  if (!mqtt5Sent && request.mqtt5) notes.push(droppedMqtt5(request.mqtt5));
  let pipe = '';
  if (format === 'json') words.push('-m', body ?? '');
  else if (format === 'text') words.push('-m', request.payloadText);
  else if (format === 'file') words.push('-f', request.payloadFileName || 'FILE');
  else {
    // Bytes a shell word cannot hold (NUL, say) go through stdin: base64 in the command, decoded by base64 -d.
    const decoded = rawPayloadBytes(format, request.payloadText);
    pipe = `printf %s ${shellQuote(decoded.ok ? encodeBase64(decoded.bytes) : '')} | base64 -d | `;
    words.push('-s');
  }
  if (format !== 'json' && !mqtt5) notes.push('a non-JSON body has no reply_to: only a server reading the MQTT 5 Response Topic can answer');
  return pipe + command(words) + (notes.length > 0 ? `  # ${notes.join('; ')}` : '');
}

/** mosquitto_pub's MQTT 5 properties for the request, as the core sends them (response topic and correlation data by default). */
function mqtt5Words(options: Mqtt5RequestOptions, id: string, replyTopic: string): string[] {
  const words = ['-D', 'publish', 'response-topic', options.responseTopic || replyTopic, '-D', 'publish', 'correlation-data', options.correlationData || id];
  for (const pair of options.userProperties ?? []) words.push('-D', 'publish', 'user-property', pair.key, pair.value);
  if (options.messageExpirySeconds !== undefined) words.push('-D', 'publish', 'message-expiry-interval', String(options.messageExpirySeconds));
  return words;
}
