/** The broker connection of a session: its links (MQTT client, AMQP inspector), the management API, and what is asked through them. */
import type { ChannelModel } from 'amqplib';
import type { BindingsView, ConnectionProfile, AppState, PreflightArgs } from '../../shared/contract';
import type { CheckLine, ProbeVerdict } from '../../shared/broker';
import type { LinkStatus } from '../../shared/rpc';
import { BridgeError, toErrorShape } from '../errors';
import { amqpConsumerCounter, preflight, probeMqttExchange } from '../broker/checks';
import { bindingsView } from '../broker/bindings-view';
import type { ManagementApi } from '../broker/management-api';
import type { AmqpLink } from '../links/amqp-link';
import type { RpcClient } from '../rpc/client';
import type { AbandonedTracing } from '../trace/firehose';
import { redactProfile } from '../profiles';
import { brokerTargets, tlsFiles, type TlsFiles } from '../connection-details';
import { rawPayloadBytes, type PayloadFormat } from '../../shared/payload-format';

/** How a connection's collaborators are made; the session passes the real ones, tests pass fakes. */
export interface ConnectionFactories {
  /** `tls` is the profile's TLS files, read (asynchronously, checked) before any of these is called */
  createClient(profile: ConnectionProfile, tls?: TlsFiles): RpcClient;
  /** `onConnected` gets each new AMQP connection (live consumer counts go through it) */
  createInspector(profile: ConnectionProfile, onConnected: (model: ChannelModel) => void, tls?: TlsFiles): AmqpLink;
  createApi(profile: ConnectionProfile, tls?: TlsFiles): ManagementApi;
  checkAbandonedTracing(api: ManagementApi): Promise<AbandonedTracing | undefined>;
}

export interface Connection {
  profile: ConnectionProfile;
  /** the profile's TLS files, read when it was opened: every other connection made for it (server, tracer, probe, diagnosis) uses them */
  tls?: TlsFiles;
  api: ManagementApi;
  client: RpcClient;
  inspector: AmqpLink;
  model: ChannelModel | undefined;
  /** tracing a dead BridgeScope process left on this vhost: switched off when this connection closes */
  abandonedTracing?: AbandonedTracing;
}

/**
 * Where a connection's links are now (a failover list's current node, the management URL that answered last), else the
 * first of its lists, each with the profile's user name and password applied: what the watch, the Trace's verdicts of
 * other teams' RPCs and a call's diagnosis connect to and ask.
 */
export function reachedUrls(connection: Pick<Connection, 'profile' | 'api' | 'inspector'>): { amqpUrl: string | undefined; managementUrl: string | undefined } {
  const targets = brokerTargets(connection.profile);
  return {
    amqpUrl: (connection.inspector as AmqpLink | undefined)?.currentUrl || targets.amqp[0],
    managementUrl: (connection.api as ManagementApi | undefined)?.url ?? targets.management[0],
  };
}

export interface ConnectionControllerOptions {
  factories: ConnectionFactories;
  /** feeds the client's trace steps into the trace store; returns the unsubscribe */
  attachSteps: (client: RpcClient) => () => void;
  onChange: () => void;
  /** a link dropped (the sandbox node may have stopped) and, later, both links are back */
  onLinksDown: () => void;
  onLinksUp: () => void;
}

const isDown = (status: LinkStatus): boolean => status.state === 'reconnecting' || status.state === 'failed';

/** The request's size as it will be sent (a JSON body gains only its id and reply_to); a body that cannot be decoded counts as typed. */
function payloadSize(format: PayloadFormat, text: string): number {
  if (format === 'json') return Buffer.byteLength(text);
  const decoded = rawPayloadBytes(format, text);
  return decoded.ok ? decoded.bytes.byteLength : Buffer.byteLength(text);
}

export const notConnected = (): BridgeError => new BridgeError('not-connected', 'Not connected: open a connection (or start the sandbox broker) first.');

export class ConnectionController {
  private connection: Connection | undefined;
  private detach: () => void = () => undefined;
  private overview: AppState['overview'];
  private notice: string | undefined;

  constructor(private readonly options: ConnectionControllerOptions) {}

  get current(): Connection | undefined {
    return this.connection;
  }

  require(): Connection {
    if (!this.connection) throw notConnected();
    return this.connection;
  }

  /** What the app state shows of the connection. */
  view(): Pick<AppState, 'profile' | 'links' | 'overview' | 'notice' | 'mqttClientId'> {
    const connection = this.connection;
    return {
      ...(connection ? { profile: redactProfile(connection.profile) } : {}),
      links: {
        amqp: connection ? connection.inspector.status : { state: 'idle' },
        mqtt: connection ? connection.client.link.status : { state: 'idle' },
      },
      ...(this.overview ? { overview: this.overview } : {}),
      ...(this.notice ? { notice: this.notice } : {}),
      ...(connection ? { mqttClientId: connection.client.clientId } : {}),
    };
  }

  /** Opens both links (the caller closed any previous connection); `previousFailure` is told in the notice. */
  async open(profile: ConnectionProfile, previousFailure?: string): Promise<void> {
    const { factories } = this.options;
    const tls = await tlsFiles(profile);
    const api = factories.createApi(profile, tls);
    const client = factories.createClient(profile, tls);
    // Each AMQP (re)connection of the inspector, possibly before this function has the connection object.
    const latest: { model?: ChannelModel; connection?: Connection } = {};
    const inspector = factories.createInspector(
      profile,
      (model) => {
        latest.model = model;
        if (latest.connection) latest.connection.model = model;
      },
      tls,
    );
    const connection: Connection = { profile, ...(tls ? { tls } : {}), api, client, inspector, model: latest.model };
    latest.connection = connection;
    const detachSteps = this.options.attachSteps(client);
    // A link that drops or comes back is when the node's real state may have changed: look at it then.
    let wasDown = false;
    const onStatus = (): void => {
      const down = isDown(client.link.status) || isDown(connection.inspector.status);
      const up = client.link.status.state === 'connected' && connection.inspector.status.state === 'connected';
      if (down && !wasDown) this.options.onLinksDown();
      if (up && wasDown) this.options.onLinksUp();
      if (down) wasDown = true;
      if (up) wasDown = false;
      this.options.onChange();
    };
    client.link.on('status', onStatus);
    connection.inspector.on('status', onStatus);
    const detach = (): void => {
      detachSteps();
      client.link.off('status', onStatus);
      connection.inspector.off('status', onStatus);
    };
    try {
      await Promise.all([client.connect(), connection.inspector.open()]);
    } catch (err) {
      detach();
      await Promise.all([client.close(), connection.inspector.close()]);
      throw err;
    }
    this.connection = connection;
    this.detach = detach;
    this.overview = await api.overview().catch(() => undefined);
    // The version's rules (e.g. 16 MiB MQTT packets from 4.1) apply to what the client sends from now on.
    if (this.overview && this.overview.rabbitmqVersion !== 'unknown') client.brokerVersion = this.overview.rabbitmqVersion;
    // Tracing that a BridgeScope process which died left on: said once, and switched off when this session is done.
    connection.abandonedTracing = await factories.checkAbandonedTracing(api).catch(() => undefined);
    const notices = [previousFailure, connection.abandonedTracing?.message].filter((sentence) => sentence !== undefined);
    if (notices.length > 0) this.notice = notices.join(' ');
    this.options.onChange();
  }

  /** Adds a sentence to what the app state's notice says of this connection (until it closes). */
  addNotice(sentence: string): void {
    this.notice = this.notice === undefined ? sentence : `${this.notice} ${sentence}`;
    this.options.onChange();
  }

  /** Closes both links and gives back abandoned tracing; resolves with that failure (to be told), if any. */
  async close(): Promise<BridgeError | undefined> {
    const connection = this.connection;
    this.connection = undefined;
    this.overview = undefined;
    this.notice = undefined;
    if (!connection) return undefined;
    this.detach();
    this.detach = () => undefined;
    let failure: BridgeError | undefined;
    try {
      const restored = await connection.abandonedTracing?.restore();
      if (restored?.outcome === 'failed') failure = new BridgeError(restored.code ?? 'internal', restored.reason);
    } finally {
      await Promise.all([connection.client.close(), connection.inspector.close()]);
    }
    return failure;
  }

  /** Live consumer counts over the inspector's AMQP connection, while it is up. */
  private consumerCount(connection: Connection): ((queue: string) => Promise<number>) | undefined {
    return connection.model ? amqpConsumerCounter(connection.model) : undefined;
  }

  async bindings(exchange: string): Promise<BindingsView> {
    const connection = this.require();
    return bindingsView(connection.api, exchange, this.consumerCount(connection));
  }

  async preflight(args: PreflightArgs): Promise<CheckLine[]> {
    const connection = this.require();
    const replyTopic = args.replyTopic || (args.strategy === 'shared' ? connection.client.sharedTopic : undefined);
    const consumerCount = this.consumerCount(connection);
    const version = this.overview?.rabbitmqVersion;
    return preflight(connection.api, {
      exchange: connection.profile.exchange,
      requestTopic: args.topic,
      replyTopic,
      strategy: args.strategy,
      ...(consumerCount ? { consumerCount } : {}),
      // the version read on connecting; the rules of the request as it will be sent, by the MQTT version this client speaks
      ...(version !== undefined && version !== 'unknown' ? { brokerVersion: version } : {}),
      mqttVersion: connection.client.link.protocolVersion,
      mqttClientId: connection.client.clientId,
      ...(args.qos !== undefined ? { qos: args.qos } : {}),
      ...(args.payloadText !== undefined ? { payloadBytes: payloadSize(args.payloadFormat ?? 'json', args.payloadText) } : {}),
    });
  }

  async probe(): Promise<ProbeVerdict> {
    const connection = this.require();
    // The nodes the links reached, credential fields applied.
    return probeMqttExchange({
      mqttUrl: connection.client.link.currentUrl,
      amqpUrl: connection.inspector.currentUrl,
      configuredExchange: connection.profile.exchange,
      api: connection.api,
      ...(connection.tls ? { tls: connection.tls } : {}),
    });
  }
}

/** The sentence of a failure, for a notice or a view. */
export const sentenceOf = (err: unknown): string => toErrorShape(err).message;
