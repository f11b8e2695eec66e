/** One AMQP 0-9-1 connection that recovers by itself (backoff with jitter) and re-runs its topology setup each time. */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import amqp, { type ChannelModel, type RecoveringChannelModel } from 'amqplib';
import type { LinkStatus } from '../../shared/rpc';
import { BridgeError } from '../errors';
import { tlsFailure, tlsSocketOptions, type TlsFiles } from '../connection-details';
import { withDeadline } from '../../shared/deadline';
import { firstThatAnswers, type Answered } from './in-turn';
import { readFramesWithoutCopies } from './amqp-frames';
import { decodeUriPart, parsedAsTyped, passwordForms, redactUrl, scrubSecrets, unreadableUrlMessage, hostlessUrlMessage } from '../../shared/redact';

export interface AmqpLinkOptions {
  url: string;
  /**
   * Other nodes of the same cluster, tried in order when `url` cannot be reached or its connection is lost (failover).
   * Each reconnection attempt goes to the next URL, round robin.
   */
  fallbackUrls?: readonly string[];
  /** shown in the management UI's connection list */
  connectionName: string;
  heartbeatSeconds?: number;
  /** called on every (re)connection: open channels, declare topology, start consumers */
  onConnected: (model: ChannelModel) => Promise<void>;
  /** retries before the first connection; 0 fails fast on a wrong URL or a dead broker */
  initialRetries?: number;
  maxReconnectDelayMs?: number;
  /** for amqps://: CA, client certificate and key, and whether the broker's certificate is verified */
  tls?: TlsFiles;
}

/** TLS files as socket options for amqplib (passed to tls.connect for amqps://; plain amqp:// ignores them). */
export const amqpTlsSocketOptions = tlsSocketOptions;

interface AmqpLinkEvents {
  status: [LinkStatus];
  /** something the user should know that did not change the link's state (e.g. our own event loop was blocked) */
  warning: [message: string];
}

/** Builds connection options from a URL, keeping its credentials out of anything printed. */
export function amqpConnectOptions(url: string, heartbeatSeconds: number): amqp.Options.Connect {
  const unreadable = (): BridgeError => new BridgeError('bad-input', unreadableUrlMessage(url, 'AMQP', 'amqp://user:pass@host:5672/vhost'));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw unreadable();
  }
  // No host (`mqtt:/host:1883`): the client would go to localhost's default port, perhaps another broker. Said before
  // the user-info check, which such a URL fails too (its credentials read as a path).
  if ((parsed.protocol === 'amqp:' || parsed.protocol === 'amqps:') && parsed.hostname === '') throw new BridgeError('bad-input', hostlessUrlMessage(url, parsed.protocol));
  // A raw / ? or # in the password makes the parser take part of it for the host, port or vhost.
  if (!parsedAsTyped(url, parsed)) throw unreadable();
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') {
    throw new BridgeError('bad-input', `An AMQP URL must start with amqp:// or amqps://, not ${parsed.protocol}//.`);
  }
  const vhost = parsed.pathname.length > 1 ? decodeUriPart(parsed.pathname.slice(1)) : '/';
  return {
    protocol: parsed.protocol.slice(0, -1),
    // WHATWG URL keeps an IPv6 address in brackets ([::1]); amqplib hands the hostname to net.connect, which wants it bare.
    hostname: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: parsed.port ? Number(parsed.port) : parsed.protocol === 'amqps:' ? 5671 : 5672,
    username: decodeUriPart(parsed.username) || 'guest',
    password: decodeUriPart(parsed.password) || 'guest',
    vhost,
    heartbeat: heartbeatSeconds,
  };
}

/**
 * A plain (non-recovering) AMQP connection. Its 'error' is handled at once: the 'close' that follows tells the caller,
 * and an error event without a listener would be thrown from inside the socket's handler and crash the process.
 */
export async function connectAmqp(target: string | amqp.Options.Connect, socketOptions: Record<string, unknown>): Promise<ChannelModel> {
  const model = await amqp.connect(target, socketOptions);
  model.on('error', () => undefined);
  return model;
}

/** How long one AMQP connection attempt may take, TCP and handshake together (amqplib's socket timeout covers both). */
export const AMQP_CONNECT_TIMEOUT_MS = 5000;

/**
 * A plain AMQP connection to the first node of a list that answers: each attempt bounded, a node that cannot be reached
 * or never answers (a half-dead cluster node) is followed by the next. Every URL is checked before any is tried.
 */
export async function connectFirstAmqp(urls: readonly string[], socketOptions: Record<string, unknown>, heartbeatSeconds = 0): Promise<Answered<ChannelModel>> {
  const targets = urls.map((url) => amqpConnectOptions(url, heartbeatSeconds));
  return firstThatAnswers(urls, (_url, index) => connectAmqp(targets[index] as amqp.Options.Connect, { timeout: AMQP_CONNECT_TIMEOUT_MS, ...socketOptions }), explainAmqpError);
}

/** The first node of a list that accepts an AMQP connection (opened and closed again), for a caller that connects by itself. */
export async function reachableAmqpUrl(urls: readonly string[], tls?: TlsFiles): Promise<Omit<Answered<unknown>, 'value'>> {
  const { value: model, ...answered } = await connectFirstAmqp(urls, tlsSocketOptions(tls));
  await closeAmqpBounded(model, model);
  return answered;
}

/**
 * Closes an AMQP connection politely, but never waits longer than `boundMs` for a broker that does not answer (a
 * paused node): then the current socket (of `model`, the connection's latest) is destroyed.
 */
export async function closeAmqpBounded(connection: { close(): Promise<unknown> }, model: ChannelModel | undefined, boundMs = 5000): Promise<void> {
  const closed = await withDeadline(connection.close().catch(() => undefined), boundMs);
  // amqplib keeps the socket on the connection object; its types do not show it.
  if (!closed.done) (model?.connection as unknown as { stream?: Socket } | undefined)?.stream?.destroy();
}

/**
 * amqplib's error for a publish the broker answered with basic.nack on a confirm channel (lib/channel_model.js,
 * ConfirmChannel; seen for a full queue with x-overflow reject-publish).
 */
export const AMQPLIB_NACKED = 'message nacked';

/**
 * RabbitMQ's channel close for a message over max_message_size (rabbit_channel.erl, check_msg_size):
 * "PRECONDITION_FAILED - message size N is larger than configured max size M". Group 2 is the broker's limit.
 */
export const RABBITMQ_TOO_LARGE = /message size (\d+) is larger than configured max size (\d+)/;

/**
 * amqplib's own words (lib/connection.js, its opening handshake) when the broker answers connection.open with
 * connection.close: the frame is printed without its reply code, so this text is all there is to recognise.
 */
export const AMQPLIB_OPEN_ANSWERED_BY_CLOSE = 'Expected ConnectionOpenOk; got <ConnectionClose';

/** The vhost of the URL is not there for this user: it does not exist, or the user has no permission on it. */
function missingVhost(url: string): BridgeError {
  let vhost = '/';
  try {
    vhost = amqpConnectOptions(url, 0).vhost ?? '/';
  } catch {
    // an unreadable URL never got as far as a handshake; the default vhost is named then
  }
  return new BridgeError('auth', `The vhost "${vhost}" does not exist on this broker (or the user has no access to it).`);
}

/** Turns amqplib's connection errors into one sentence a user can act on. */
export function explainAmqpError(err: unknown, url: string): BridgeError {
  if (err instanceof BridgeError) return err;
  // A library's message may quote what it was given; no form of the password may pass through.
  const message = scrubSecrets((err as Error).message ?? String(err), passwordForms(url));
  const code = (err as NodeJS.ErrnoException).code;
  const where = redactUrl(url);
  const tls = tlsFailure(err as Error & { code?: string }, where);
  if (tls) return tls;
  if (code === 'ECONNREFUSED') return new BridgeError('unreachable', `Nothing accepts AMQP connections at ${where} (connection refused).`);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new BridgeError('unreachable', `The AMQP host in ${where} cannot be resolved.`);
  // amqplib's socket timeout ("connect ETIMEDOUT") covers the TCP connect and the handshake: a host that does not answer,
  // or a port that took the connection and never answered AMQP's protocol header (MQTT's: the broker waits for a CONNECT).
  if (code === 'ETIMEDOUT' || /\bETIMEDOUT\b/.test(message)) {
    return new BridgeError('timeout', `The AMQP connection to ${where} timed out: the host did not answer, or the port took the connection and never answered AMQP's handshake. Is it the AMQP port (5672 by default) and not MQTT's (1883)?`);
  }
  if (/timeout/i.test(message)) return new BridgeError('timeout', `The AMQP connection to ${where} timed out.`);
  if (/ACCESS_REFUSED|403/.test(message)) return new BridgeError('auth', `The broker at ${where} refused the AMQP credentials.`);
  // RabbitMQ answers connection.open with connection.close (530 NOT_ALLOWED) for a vhost it lacks or the user may not use;
  // amqplib gives no structured reply code for it, only its own text.
  if (/NOT_ALLOWED|530/.test(message) || message.startsWith(AMQPLIB_OPEN_ANSWERED_BY_CLOSE)) return missingVhost(url);
  // The port answered and hung up: another protocol's server (the management API's HTTP answers a 400 and closes).
  if (/closed abruptly during opening handshake|exceeds maxFrameSize|Expected ConnectionStart/i.test(message)) {
    return new BridgeError(
      'unreachable',
      `The server at ${where} does not answer in AMQP 0-9-1 (${message}): is this its HTTP or MQTT port, or its TLS listener (5671: use amqps://)? RabbitMQ's AMQP listener is on 5672 by default, the management API on 15672; a broker at its connection limit or a proxy with no broker behind it hangs up the same way.`,
      { cause: err },
    );
  }
  return new BridgeError('unreachable', `Cannot open an AMQP connection to ${where}: ${message}`, { cause: err });
}

/** A stretch when the process itself could not read its sockets: the event loop was blocked. */
export interface BusySpell {
  blockedMs: number;
  /** performance.now() when the watchdog noticed it */
  at: number;
}

function busyFor(blockedMs: number): string {
  return `the process was busy for ${(blockedMs / 1000).toFixed(1)} s (event loop blocked)`;
}

export function busyMessage(blockedMs: number): string {
  return `${busyFor(blockedMs)}; not the broker's fault`;
}

/** What the watchdog knows about our own event loop, asked when the connection drops. */
export interface LoopWatch {
  /** the busy spell the link was just lost in, or noticed within the last 3 intervals; undefined when the loop was free */
  recentBusy(): BusySpell | undefined;
}

/**
 * amqplib notices a silent broker only after two or three heartbeat intervals; RabbitMQ sends a frame every half
 * interval, so silence of 1.75 intervals already means the link is dead. The socket is closed then, which starts recovery.
 * A check that ran late (our own event loop was blocked, or the machine was loaded) proves nothing either way: bytes the
 * broker sent meanwhile still wait unread in the kernel. So the verdict waits for one socket read (setImmediate runs after
 * the loop's poll phase): bytes that arrive clear the broker, none condemn it, however late the check was.
 */
function watchHeartbeat(model: ChannelModel, heartbeatSeconds: number, onBusy: (spell: BusySpell) => void): LoopWatch | undefined {
  if (heartbeatSeconds <= 0) return undefined;
  // amqplib keeps the socket on the connection object; its types do not show it.
  const socket = (model.connection as unknown as { stream?: Socket }).stream;
  if (!socket) return undefined;
  const limitMs = heartbeatSeconds * 1750;
  const checkEveryMs = heartbeatSeconds * 250;
  // Monotonic: a wall-clock step (NTP, a manual change) is neither silence nor a busy loop.
  let lastData = performance.now();
  let lastCheck = lastData;
  let lastBusy: BusySpell | undefined;
  let closedAt: number | undefined;
  let verdictPending = false;
  socket.on('data', () => {
    lastData = performance.now();
  });
  const timer = setInterval(() => {
    const now = performance.now();
    // How late this check ran: while the loop was blocked, bytes waited unread in the kernel.
    const blockedMs = Math.max(0, now - lastCheck - checkEveryMs);
    lastCheck = now;
    const silentMs = now - lastData;
    if (silentMs <= limitMs || verdictPending) return;
    // The lateness explains the silence: remembered at once, so a loss that follows names our busy loop.
    const ours = silentMs - blockedMs <= limitMs;
    if (ours) lastBusy = { blockedMs, at: now };
    verdictPending = true;
    setImmediate(() => {
      verdictPending = false;
      if (socket.destroyed) return;
      if (lastData >= now) {
        if (ours) onBusy({ blockedMs, at: now });
        return;
      }
      // Nothing was waiting in the kernel either: the broker itself is silent, whatever our loop did meanwhile.
      if (ours) lastBusy = undefined;
      socket.destroy(new Error(`no data from the broker for ${Math.round(limitMs / 1000)} s (heartbeat ${heartbeatSeconds} s)`));
    });
  }, checkEveryMs);
  timer.unref();
  socket.once('close', () => {
    clearInterval(timer);
    closedAt = performance.now();
  });
  return {
    recentBusy() {
      // Measured up to the socket's end: a dead watch must not count later time as busy.
      const now = closedAt ?? performance.now();
      // A write that fails right after the loop unblocks is reported before this check gets to run.
      const overdueMs = now - lastCheck - checkEveryMs;
      if (overdueMs >= heartbeatSeconds * 1000) return { blockedMs: overdueMs, at: now };
      return lastBusy && now - lastBusy.at <= heartbeatSeconds * 3000 ? lastBusy : undefined;
    },
  };
}

export class AmqpLink extends EventEmitter<AmqpLinkEvents> {
  private connection: RecoveringChannelModel | undefined;
  /** the current connection's model, whose socket a close that is never answered destroys */
  private model: ChannelModel | undefined;
  private current: LinkStatus = { state: 'idle' };
  private loopWatch: LoopWatch | undefined;
  /** the reason given for the last lost connection; amqplib hands the same error to 'reconnect-scheduled' */
  private lost: { error: Error; reason: string } | undefined;

  constructor(private readonly options: AmqpLinkOptions) {
    super();
    this.urls = [options.url, ...(options.fallbackUrls ?? [])];
  }

  get status(): LinkStatus {
    return this.current;
  }

  private setStatus(status: LinkStatus): void {
    this.current = status;
    this.emit('status', status);
  }

  /** The URL of the node the link is connected to (or trying now); differs from `url` after a failover. */
  get currentUrl(): string {
    return this.urls[this.urlIndex] ?? this.options.url;
  }

  private readonly urls: string[];
  private urlIndex = 0;

  /**
   * Resolves once connected and set up; rejects with one sentence when the first connection fails (on every URL, with
   * fallbacks: each is tried once, in order).
   */
  async open(): Promise<void> {
    const { heartbeatSeconds = 10 } = this.options;
    // Checked up front: a wrong fallback URL is a usage error now, not a surprise during a failover.
    const targets = this.urls.map((url) => amqpConnectOptions(url, heartbeatSeconds));
    try {
      await firstThatAnswers(
        this.urls,
        (_url, index) => {
          this.urlIndex = index;
          return this.openAt(targets, index);
        },
        explainAmqpError,
      );
    } catch (err) {
      const failure = explainAmqpError(err, this.currentUrl);
      this.setStatus({ state: 'failed', message: failure.message });
      throw failure;
    }
  }

  private async openAt(targets: amqp.Options.Connect[], start: number): Promise<void> {
    const url = this.urls[start] as string;
    const { heartbeatSeconds = 10 } = this.options;
    // amqplib's recovery reads this object on every attempt: moving it to the next node is how a reconnection fails over.
    const connectOptions: amqp.Options.Connect = { ...(targets[start] as amqp.Options.Connect) };
    let connectedOnce = false;
    const failOver = (): void => {
      // Before the first connection, open() itself tries the next URL (and says which one failed).
      if (targets.length < 2 || !connectedOnce) return;
      this.urlIndex = (this.urlIndex + 1) % targets.length;
      Object.assign(connectOptions, targets[this.urlIndex]);
    };
    this.setStatus({ state: 'connecting', since: Date.now() });
    const connection = await amqp.connect(connectOptions, {
      ...amqpTlsSocketOptions(this.options.tls),
      noDelay: true,
      timeout: AMQP_CONNECT_TIMEOUT_MS,
      clientProperties: { connection_name: this.options.connectionName },
      recovery: {
        initialMaxRetries: this.options.initialRetries ?? 0,
        initialDelay: 200,
        maxDelay: this.options.maxReconnectDelayMs ?? 5000,
        jitter: 0.3,
        waitForConnect: false,
        setup: async (model: ChannelModel) => {
          // amqplib's recovery listens for the model's errors only after this setup succeeds; a reset or a broker
          // shutting down meanwhile (or while recovery closes a failed attempt) would throw from the socket's handler.
          model.on('error', () => undefined);
          // Its frames' bytes gathered without amqplib's copy of every read (a server's deliveries come as many small ones).
          readFramesWithoutCopies((model as unknown as { connection?: unknown }).connection);
          this.model = model;
          this.loopWatch = watchHeartbeat(model, heartbeatSeconds, (spell) => this.emit('warning', busyMessage(spell.blockedMs)));
          await this.options.onConnected(model);
        },
      },
    });
    this.connection = connection;
    let attempt = 0;
    connection.on('connect', () => {
      connectedOnce = true;
      attempt = 0;
      this.setStatus({ state: 'connected', since: Date.now() });
    });
    connection.on('disconnect', (err: Error) => {
      failOver();
      this.setStatus({ state: 'reconnecting', since: Date.now(), attempt, lastError: this.lossReason(err) });
    });
    // An attempt that failed: the next one goes to the next node.
    connection.on('connect-failed', () => failOver());
    connection.on('reconnect-scheduled', (info: { attempt: number; error: Error }) => {
      attempt = info.attempt;
      this.setStatus({ state: 'reconnecting', since: Date.now(), attempt, lastError: this.lost?.error === info.error ? this.lost.reason : info.error.message });
    });
    connection.on('reconnect-failed', (err: Error) => {
      this.setStatus({ state: 'failed', message: explainAmqpError(err, this.currentUrl).message });
    });
    // Connection-level errors are followed by 'disconnect'; the listener keeps them from crashing the process.
    connection.on('error', () => undefined);
    try {
      await connection.waitForConnect();
    } catch (err) {
      await connection.close().catch(() => undefined);
      this.connection = undefined;
      throw explainAmqpError(err, url);
    }
  }

  /** A connection lost right after our loop was blocked: the broker most likely stopped hearing our heartbeats. */
  private lossReason(error: Error): string {
    const spell = this.loopWatch?.recentBusy();
    const reason = spell
      ? `${error.message}: ${busyFor(spell.blockedMs)}, so the broker stopped hearing our heartbeats; not the broker's fault`
      : error.message;
    this.lost = { error, reason };
    return reason;
  }

  /** Closes politely, but never waits longer than `boundMs` for a broker that does not answer (a paused node). */
  async close(boundMs = 5000): Promise<void> {
    const connection = this.connection;
    const model = this.model;
    this.connection = undefined;
    this.model = undefined;
    if (connection) await closeAmqpBounded(connection, model, boundMs);
    this.setStatus({ state: 'closed' });
  }
}
