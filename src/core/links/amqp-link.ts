/** One AMQP 0-9-1 connection that recovers by itself (backoff with jitter) and re-runs its topology setup each time. */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import amqp, { type ChannelModel, type RecoveringChannelModel } from 'amqplib';
import type { LinkStatus } from '../../shared/rpc';
import { BridgeError } from '../errors';
import { decodeUriPart, parsedAsTyped, passwordForms, redactUrl, scrubSecrets, unreadableUrlMessage } from '../../shared/redact';

export interface AmqpLinkOptions {
  url: string;
  /** shown in the management UI's connection list */
  connectionName: string;
  heartbeatSeconds?: number;
  /** called on every (re)connection: open channels, declare topology, start consumers */
  onConnected: (model: ChannelModel) => Promise<void>;
  /** retries before the first connection; 0 fails fast on a wrong URL or a dead broker */
  initialRetries?: number;
  maxReconnectDelayMs?: number;
}

interface AmqpLinkEvents {
  status: [LinkStatus];
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
  // A raw / ? or # in the password makes the parser take part of it for the host, port or vhost.
  if (!parsedAsTyped(url, parsed)) throw unreadable();
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') {
    throw new BridgeError('bad-input', `An AMQP URL must start with amqp:// or amqps://, not ${parsed.protocol}//.`);
  }
  const vhost = parsed.pathname.length > 1 ? decodeUriPart(parsed.pathname.slice(1)) : '/';
  return {
    protocol: parsed.protocol.slice(0, -1),
    hostname: parsed.hostname,
    port: parsed.port ? Number(parsed.port) : parsed.protocol === 'amqps:' ? 5671 : 5672,
    username: decodeUriPart(parsed.username) || 'guest',
    password: decodeUriPart(parsed.password) || 'guest',
    vhost,
    heartbeat: heartbeatSeconds,
  };
}

/** Turns amqplib's connection errors into one sentence a user can act on. */
export function explainAmqpError(err: unknown, url: string): BridgeError {
  if (err instanceof BridgeError) return err;
  // A library's message may quote what it was given; no form of the password may pass through.
  const message = scrubSecrets((err as Error).message ?? String(err), passwordForms(url));
  const code = (err as NodeJS.ErrnoException).code;
  const where = redactUrl(url);
  if (code === 'ECONNREFUSED') return new BridgeError('unreachable', `Nothing accepts AMQP connections at ${where} (connection refused).`);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new BridgeError('unreachable', `The AMQP host in ${where} cannot be resolved.`);
  if (code === 'ETIMEDOUT' || /timeout/i.test(message)) return new BridgeError('timeout', `The AMQP connection to ${where} timed out.`);
  if (/ACCESS_REFUSED|403/.test(message)) return new BridgeError('auth', `The broker at ${where} refused the AMQP credentials.`);
  if (/NOT_ALLOWED|530/.test(message)) return new BridgeError('auth', `The broker at ${where} does not allow this vhost for this user.`);
  return new BridgeError('unreachable', `Cannot open an AMQP connection to ${where}: ${message}`, { cause: err });
}

/**
 * amqplib notices a silent broker only after two or three heartbeat intervals; RabbitMQ sends a frame every half
 * interval, so silence of 1.75 intervals already means the link is dead. The socket is closed then, which starts recovery.
 */
function watchHeartbeat(model: ChannelModel, heartbeatSeconds: number): void {
  if (heartbeatSeconds <= 0) return;
  // amqplib keeps the socket on the connection object; its types do not show it.
  const socket = (model.connection as unknown as { stream?: Socket }).stream;
  if (!socket) return;
  const limitMs = heartbeatSeconds * 1750;
  let lastData = Date.now();
  socket.on('data', () => {
    lastData = Date.now();
  });
  const timer = setInterval(() => {
    if (Date.now() - lastData > limitMs) socket.destroy(new Error(`no data from the broker for ${Math.round(limitMs / 1000)} s (heartbeat ${heartbeatSeconds} s)`));
  }, heartbeatSeconds * 250);
  timer.unref();
  socket.once('close', () => clearInterval(timer));
}

export class AmqpLink extends EventEmitter<AmqpLinkEvents> {
  private connection: RecoveringChannelModel | undefined;
  private current: LinkStatus = { state: 'idle' };

  constructor(private readonly options: AmqpLinkOptions) {
    super();
  }

  get status(): LinkStatus {
    return this.current;
  }

  private setStatus(status: LinkStatus): void {
    this.current = status;
    this.emit('status', status);
  }

  /** Resolves once connected and set up; rejects with one sentence when the first connection fails. */
  async open(): Promise<void> {
    const { url, heartbeatSeconds = 10 } = this.options;
    const connectOptions = amqpConnectOptions(url, heartbeatSeconds);
    this.setStatus({ state: 'connecting', since: Date.now() });
    const connection = await amqp.connect(connectOptions, {
      noDelay: true,
      timeout: 5000,
      clientProperties: { connection_name: this.options.connectionName },
      recovery: {
        initialMaxRetries: this.options.initialRetries ?? 0,
        initialDelay: 200,
        maxDelay: this.options.maxReconnectDelayMs ?? 5000,
        jitter: 0.3,
        waitForConnect: false,
        setup: async (model: ChannelModel) => {
          watchHeartbeat(model, heartbeatSeconds);
          await this.options.onConnected(model);
        },
      },
    });
    this.connection = connection;
    let attempt = 0;
    connection.on('connect', () => {
      attempt = 0;
      this.setStatus({ state: 'connected', since: Date.now() });
    });
    connection.on('disconnect', (err: Error) => {
      this.setStatus({ state: 'reconnecting', since: Date.now(), attempt, lastError: err.message });
    });
    connection.on('reconnect-scheduled', (info: { attempt: number; error: Error }) => {
      attempt = info.attempt;
      this.setStatus({ state: 'reconnecting', since: Date.now(), attempt, lastError: info.error.message });
    });
    connection.on('reconnect-failed', (err: Error) => {
      this.setStatus({ state: 'failed', message: explainAmqpError(err, url).message });
    });
    // Connection-level errors are followed by 'disconnect'; the listener keeps them from crashing the process.
    connection.on('error', () => undefined);
    try {
      await connection.waitForConnect();
    } catch (err) {
      const failure = explainAmqpError(err, url);
      this.setStatus({ state: 'failed', message: failure.message });
      await connection.close().catch(() => undefined);
      this.connection = undefined;
      throw failure;
    }
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    if (connection) await connection.close().catch(() => undefined);
    this.setStatus({ state: 'closed' });
  }
}
