/** One MQTT connection (mqtt.js 5): TCP_NODELAY, 3.1.1 by default or 5 where the broker speaks it, reconnect and status. */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { LinkStatus, QoS } from '../../shared/rpc';
import { BridgeError } from '../errors';
import { tlsFailure, type TlsFiles } from '../connection-details';
import { firstThatAnswers, type Answered } from './in-turn';
import { decodeUriPart, parsedAsTyped, passwordForms, redactUrl, scrubSecrets, typedCredentials, unreadableUrlMessage, hostlessUrlMessage } from '../../shared/redact';

export type MqttVersionChoice = 4 | 5 | 'auto';

export interface MqttLinkOptions {
  url: string;
  /**
   * Other nodes of the same cluster (same scheme and credentials), tried in order when `url` cannot be reached, and by
   * mqtt.js in turn on each reconnection (failover).
   */
  fallbackUrls?: readonly string[];
  clientId: string;
  protocolVersion?: MqttVersionChoice;
  keepaliveSeconds?: number;
  connectTimeoutMs?: number;
  /** reconnect interval; it doubles with each outage that follows a short-lived connection, up to maxReconnectDelayMs, with +-30% jitter */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** a connection the broker closes within this time after accepting it counts as a flap */
  flapWindowMs?: number;
  /** after this many flaps in a row, reconnecting stops: another client has the same id */
  maxFlaps?: number;
  /** for mqtts:// and wss://: CA, client certificate and key, and whether the broker's certificate is verified */
  tls?: TlsFiles;
  /** MQTT clean session / clean start (default true); false keeps the session (and its queue) on the broker between connections */
  clean?: boolean;
}

/** Exponential backoff with jitter, so a fleet of clients does not reconnect in lockstep. */
export function reconnectDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.7 + random() * 0.6));
}

interface MqttLinkEvents {
  status: [LinkStatus];
  message: [topic: string, payload: Buffer, packet: mqtt.IPublishPacket];
}

/** Where to connect, with the credentials apart: mqtt.js splits a URL's user-info at its last `:` and never decodes it. */
export interface MqttTarget {
  /** the URL without user-info */
  url: string;
  username?: string;
  password?: string;
}

export function validateMqttUrl(url: string): MqttTarget {
  const unreadable = (): BridgeError => new BridgeError('bad-input', unreadableUrlMessage(url, 'MQTT', 'mqtt://host:1883'));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw unreadable();
  }
  // No host (`mqtt:/host:1883`): the client would go to localhost's default port, perhaps another broker. Said before
  // the user-info check, which such a URL fails too (its credentials read as a path).
  if (['mqtt:', 'mqtts:', 'tcp:', 'ws:', 'wss:'].includes(parsed.protocol) && parsed.hostname === '') throw new BridgeError('bad-input', hostlessUrlMessage(url, parsed.protocol));
  if (!['mqtt:', 'mqtts:', 'tcp:', 'ws:', 'wss:'].includes(parsed.protocol)) {
    throw new BridgeError('bad-input', `An MQTT URL must start with mqtt://, mqtts://, ws:// or wss://, not ${parsed.protocol}//.`);
  }
  // A raw / ? or # in the password makes the parser take part of it for the host, port or path.
  if (!parsedAsTyped(url, parsed)) throw unreadable();
  const target: MqttTarget = { url };
  if (parsed.username || parsed.password) {
    target.username = decodeUriPart(parsed.username);
    if (parsed.password) target.password = decodeUriPart(parsed.password);
    parsed.username = '';
    parsed.password = '';
    target.url = parsed.toString();
  }
  return target;
}

/** The messages of mqtt-packet's parser for bytes it cannot read as MQTT packets. */
const NOT_MQTT = /^(Invalid |Malformed |Packet too short|Packet must not|Cannot parse |Not supported|Unknown property|Connect flag|Will (QoS|Retain))/;

/** Our own code for a socket that closed before the CONNACK (mqtt.js only says 'close'). */
const CLOSED_BEFORE_CONNACK = 'ECONNCLOSED';

function explainMqttError(err: Error & { code?: string | number }, url: string): BridgeError {
  const where = redactUrl(url);
  // A library's message may quote what it was given; no form of the password may pass through.
  const message = scrubSecrets(err.message, passwordForms(url));
  const tls = tlsFailure(err, where);
  if (tls) return tls;
  if (err.code === 'ECONNREFUSED') return new BridgeError('unreachable', `Nothing accepts MQTT connections at ${where} (connection refused).`);
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return new BridgeError('unreachable', `The MQTT host in ${where} cannot be resolved.`);
  if (err.code === 4 || err.code === 5 || err.code === 134 || err.code === 135) {
    // RabbitMQ reads a user name "vhost:user" as a vhost and a user; a vhost it lacks is refused like a wrong password.
    const user = decodeUriPart(typedCredentials(url)?.username ?? '');
    const vhost = user.includes(':') ? user.slice(0, user.indexOf(':')) : undefined;
    const orVhost = vhost !== undefined ? `, or the vhost "${vhost}" (before the ":" of the user name) does not exist on it or is not this user's` : '';
    return new BridgeError('auth', `The broker at ${where} refused the MQTT credentials${orVhost}.`);
  }
  if (err.code === 2 || err.code === 133) return new BridgeError('auth', `The broker at ${where} refused the MQTT client id.`);
  if (err.code === 1 || err.code === 132) {
    return new BridgeError('unreachable', `The broker at ${where} does not speak this MQTT protocol version.`, { reason: 'protocol-version-refused' });
  }
  // mqtt-packet's parser could not read the answer as MQTT: another protocol's port (AMQP answers a CONNECT with its own
  // header, which mqtt.js read as "Invalid header flag bits, must be 0x0 for puback packet").
  if (err.code === undefined && NOT_MQTT.test(err.message)) {
    return new BridgeError(
      'unreachable',
      `The server at ${where} does not answer in MQTT (${message.replace(/\.$/, '')}): is this its AMQP or HTTP port? RabbitMQ's MQTT plugin listens on 1883 (8883 with TLS) unless configured otherwise.`,
      { cause: err },
    );
  }
  // Accepted and silent: an HTTP server (the management port, 15672) waits for a request line and never answers MQTT.
  if (err.message === 'connack timeout') {
    return new BridgeError('unreachable', `The server at ${where} accepted the connection but never answered the MQTT CONNECT (connack timeout): is this an MQTT port, not the management (HTTP) or AMQP one, and is the broker overloaded?`, { cause: err });
  }
  if (err.code === CLOSED_BEFORE_CONNACK) {
    return new BridgeError('unreachable', `Cannot connect over MQTT to ${where}: the connection closed before the broker answered the CONNECT.`, { cause: err, reason: 'closed-before-connack' });
  }
  return new BridgeError('unreachable', `Cannot connect over MQTT to ${where}: ${message}`, { cause: err });
}

/**
 * Points mqtt.js's options (the object its stream builder reads on every reconnection) at one URL: host, port, scheme,
 * WebSocket path, credentials, and the TLS server name of that host. mqtt.js's own `servers` list changes only host, port
 * and scheme, so a failover kept the first URL's TLS server name and WebSocket path.
 */
export function pointAt(options: IClientOptions, target: MqttTarget): void {
  const parsed = new URL(target.url);
  const protocol = parsed.protocol.slice(0, -1) as 'mqtt' | 'mqtts' | 'ws' | 'wss' | 'tcp';
  const defaultPort = protocol === 'mqtts' ? 8883 : protocol === 'ws' ? 80 : protocol === 'wss' ? 443 : 1883;
  // WHATWG keeps IPv6 brackets; sockets and TLS want the bare address.
  const hostname = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  options.protocol = protocol;
  options.host = hostname;
  options.hostname = hostname;
  options.port = parsed.port ? Number(parsed.port) : defaultPort;
  if (protocol === 'ws' || protocol === 'wss') options.path = `${parsed.pathname}${parsed.search}`;
  else delete options.path;
  // mqtt.js's TLS builder sets the server name from the host only when none is set yet.
  delete options.servername;
  if (target.username !== undefined) options.username = target.username;
  else delete options.username;
  if (target.password !== undefined) options.password = target.password;
  else delete options.password;
}

/** The TLS files as mqtt.js options, for a TLS URL only: mqtt.js turns mqtt:// into mqtts:// by itself when given a certificate and key. */
function tlsOptions(target: MqttTarget, tls: TlsFiles | undefined): Pick<IClientOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized'> {
  if (!tls || !/^(mqtts|wss):/i.test(target.url)) return {};
  return { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}), rejectUnauthorized: tls.rejectUnauthorized };
}

/** CONNACK codes that mean "this client may not connect" rather than "not now": 3.1.1 codes 2, 4, 5 and their MQTT 5 kin. */
const permanentRefusals = new Set([2, 4, 5, 133, 134, 135, 138, 140]);

/**
 * mqtt.js logs through the `debug` package, whose disabled logger still gathers its arguments into an array on each of
 * its calls (several per packet): a plain function that does nothing, unless DEBUG asks for mqtt.js's log. Measured at
 * c=100 (bench/profile.ts, 3 rounds): 241 against 254 us of CPU per RPC.
 */
export function quietLog(): Pick<IClientOptions, 'log'> {
  // The patterns of `debug` that name mqtt.js's log: mqttjs..., mqtt*, m*, or * alone.
  return /(^|[\s,])(mqttjs|mqtt\*|m\*|\*)/.test(process.env.DEBUG ?? '') ? {} : { log: doNothing };
}

function doNothing(): void {
  // mqtt.js's log, unless DEBUG asks for it (see quietLog)
}

export class MqttLink extends EventEmitter<MqttLinkEvents> {
  private current: LinkStatus = { state: 'idle' };
  private mqttClient: MqttClient | undefined;
  private closing = false;
  /** the protocol version the broker accepted: 4 (3.1.1) or 5 */
  protocolVersion: 4 | 5 = 4;
  /** what an MQTT 5 broker's last CONNACK said of its limits (empty for MQTT 3.1.1, which has no way to say them) */
  serverLimits: { maximumQoS?: 0 | 1; maximumPacketSize?: number } = {};

  constructor(private options: MqttLinkOptions) {
    super();
    this.currentUrl = options.url;
  }

  /** TLS and session settings, set by whoever made the link before open() (the RPC client builds its link itself). */
  useDetails(details: Pick<MqttLinkOptions, 'tls' | 'clean'>): void {
    this.options = { ...this.options, ...details };
  }

  get status(): LinkStatus {
    return this.current;
  }

  get client(): MqttClient {
    if (!this.mqttClient) throw new BridgeError('unreachable', 'The MQTT link is not connected.');
    return this.mqttClient;
  }

  private setStatus(status: LinkStatus): void {
    this.current = status;
    this.emit('status', status);
  }

  /** The URL of the node the link is connected to, or trying now (differs from `url` after a failover). */
  currentUrl: string;

  /**
   * Connects once (failing fast with one sentence; with fallbacks, each URL is tried once, in order); afterwards mqtt.js
   * reconnects and resubscribes by itself, moving to the next URL on each attempt when there are several.
   */
  async open(): Promise<void> {
    const urls = [this.options.url, ...(this.options.fallbackUrls ?? [])];
    const targets = urls.map((url) => validateMqttUrl(url));
    this.setStatus({ state: 'connecting', since: Date.now() });
    let answered: Answered<MqttClient>;
    try {
      answered = await firstThatAnswers(
        urls,
        (url, index) => this.connectAt(targets[index] as MqttTarget, url),
        (err, url) => (err instanceof BridgeError ? err : explainMqttError(err as Error, url)),
      );
    } catch (err) {
      this.setStatus({ state: 'failed', message: (err as Error).message });
      throw err;
    }
    this.mqttClient = answered.value;
    this.currentUrl = answered.url;
    this.targetIndex = answered.index;
    this.targets = targets;
    this.targetUrls = urls;
    this.watch(this.mqttClient);
    this.setStatus({ state: 'connected', since: Date.now() });
  }

  private targets: MqttTarget[] = [];
  private targetUrls: string[] = [];
  private targetIndex = 0;

  /** Each reconnection goes to the next URL (round robin), with that URL's own host, server name, path and credentials. */
  private failOver(client: MqttClient): void {
    if (this.targets.length < 2) return;
    this.targetIndex = (this.targetIndex + 1) % this.targets.length;
    const target = this.targets[this.targetIndex] as MqttTarget;
    pointAt(client.options, target);
    Object.assign(client.options, { ca: undefined, cert: undefined, key: undefined, rejectUnauthorized: undefined }, tlsOptions(target, this.options.tls));
    this.currentUrl = this.targetUrls[this.targetIndex] as string;
  }

  private async connectAt(target: MqttTarget, url: string): Promise<MqttClient> {
    const choice = this.options.protocolVersion ?? 4;
    if (choice !== 'auto') return this.connectOnce(target, choice, url);
    try {
      return await this.connectOnce(target, 5, url);
    } catch (err) {
      // RabbitMQ before 3.13 closes the socket on an MQTT 5 CONNECT instead of answering it.
      if (!(err instanceof BridgeError) || (err.reason !== 'protocol-version-refused' && err.reason !== 'closed-before-connack')) throw err;
      return this.connectOnce(target, 4, url);
    }
  }

  private connectOnce(target: MqttTarget, version: 4 | 5, url: string): Promise<MqttClient> {
    const options: IClientOptions = {
      ...tlsOptions(target, this.options.tls),
      ...(target.username !== undefined ? { username: target.username } : {}),
      ...(target.password !== undefined ? { password: target.password } : {}),
      clientId: this.options.clientId,
      protocolVersion: version,
      keepalive: this.options.keepaliveSeconds ?? 30,
      connectTimeout: this.options.connectTimeoutMs ?? 5000,
      // mqtt.js keeps its reconnect loop (it resends in-flight QoS 1 packets and resubscribes);
      // watch() sets the interval for each outage: jittered, and growing when connections keep dropping.
      reconnectPeriod: this.options.reconnectDelayMs ?? 1000,
      clean: this.options.clean ?? true,
      resubscribe: true,
      // Without it mqtt.js stops its reconnect loop for good after one refused CONNACK (a restarting RabbitMQ answers
      // "Server unavailable" while its vhost is not up yet), and the link would say "reconnecting" forever.
      reconnectOnConnackError: true,
      ...quietLog(),
    };
    const client = mqtt.connect(target.url, options);
    // Nagle's algorithm costs ~40 ms per request here (docs/RABBITMQ.md, "Latency: Nagle's algorithm"); set it on every new socket.
    client.on('connect', (connack) => {
      (client.stream as Partial<Socket>).setNoDelay?.(true);
      // MQTT 5 brokers say their limits in the CONNACK; RabbitMQ 3.13+ sends Maximum QoS 1 and its Maximum Packet Size.
      const properties = version === 5 ? connack.properties : undefined;
      this.serverLimits = {
        ...(properties?.maximumQoS === 0 || properties?.maximumQoS === 1 ? { maximumQoS: properties.maximumQoS } : {}),
        ...(properties?.maximumPacketSize !== undefined ? { maximumPacketSize: properties.maximumPacketSize } : {}),
      };
    });
    return new Promise((resolve, reject) => {
      const fail = (err: Error & { code?: string | number }): void => {
        cleanup();
        client.on('error', () => undefined);
        client.end(true);
        reject(explainMqttError(err, url));
      };
      const onClose = (): void => fail(Object.assign(new Error('the connection closed before CONNACK'), { code: CLOSED_BEFORE_CONNACK }));
      const onConnect = (): void => {
        cleanup();
        this.protocolVersion = version;
        resolve(client);
      };
      const cleanup = (): void => {
        client.off('error', fail);
        client.off('close', onClose);
        client.off('connect', onConnect);
      };
      client.on('error', fail);
      client.on('close', onClose);
      client.on('connect', onConnect);
    });
  }

  private watch(client: MqttClient): void {
    let attempt = 0;
    let lastError = '';
    let connectedAt = Date.now();
    let flaps = 0;
    const flapWindow = this.options.flapWindowMs ?? 3000;
    client.on('error', (err: Error & { code?: string | number }) => {
      lastError = err.message;
      // A refusal that retrying cannot cure (credentials, client id, banned) ends the loop with the reason.
      if (typeof err.code === 'number' && permanentRefusals.has(err.code) && !this.closing) {
        this.setStatus({ state: 'failed', message: `${explainMqttError(err, this.options.url).message} Reconnecting stopped.` });
        client.end(true);
      }
    });
    client.on('connect', () => {
      attempt = 0;
      connectedAt = Date.now();
      this.setStatus({ state: 'connected', since: connectedAt });
    });
    // 'offline' comes once per outage, just before mqtt.js arms its reconnect timer with options.reconnectPeriod.
    client.on('offline', () => {
      if (this.closing) return;
      // RabbitMQ closes the older of two connections with one client id right after the newer one is accepted.
      flaps = Date.now() - connectedAt < flapWindow ? flaps + 1 : 0;
      if (flaps >= (this.options.maxFlaps ?? 3)) {
        this.setStatus({
          state: 'failed',
          message: `The broker keeps closing this MQTT connection right after accepting it: another client is probably using the client id "${this.options.clientId}". Reconnecting stopped.`,
        });
        client.end(true);
        return;
      }
      client.options.reconnectPeriod = reconnectDelay(flaps + 1, this.options.reconnectDelayMs ?? 1000, this.options.maxReconnectDelayMs ?? 5000);
      this.setStatus({ state: 'reconnecting', since: Date.now(), attempt, lastError: lastError || 'connection lost' });
    });
    client.on('reconnect', () => {
      attempt += 1;
      // Emitted just before mqtt.js builds the next stream from its options.
      this.failOver(client);
      if (this.current.state !== 'failed') {
        this.setStatus({ state: 'reconnecting', since: Date.now(), attempt, lastError: lastError || 'connection lost' });
      }
    });
    client.on('message', (topic, payload, packet) => this.emit('message', topic, payload, packet));
  }

  /** Subscribes and returns the QoS the broker granted (RabbitMQ grants at most 1), or 'refused'. */
  async subscribe(topic: string, qos: QoS): Promise<QoS | 'refused'> {
    const granted = await this.client.subscribeAsync(topic, { qos });
    const grant = granted[0]?.qos;
    return grant === 0 || grant === 1 || grant === 2 ? grant : 'refused';
  }

  async unsubscribe(topic: string): Promise<void> {
    await this.client.unsubscribeAsync(topic);
  }

  get connected(): boolean {
    return this.current.state === 'connected';
  }

  async close(): Promise<void> {
    this.closing = true;
    const client = this.mqttClient;
    this.mqttClient = undefined;
    // Forced: a dead broker never answers the DISCONNECT, and nothing waits for in-flight acks on close.
    if (client) await client.endAsync(true).catch(() => undefined);
    this.setStatus({ state: 'closed' });
  }
}
