/**
 * Who is behind a connection the firehose names: the firehose says "127.0.0.1:56144 -> 127.0.0.1:1883" and a user,
 * never the MQTT client id a team knows its devices by. The management API lists the vhost's connections with their
 * client ids (`GET /api/vhosts/<vhost>/connections`: MQTT ones carry `client_properties.client_id`, on 3.10.8, 4.0.5 and
 * 4.3.6 alike), so the tracer asks it once at start and again, at most every few seconds, when a connection it does not
 * know shows up. A delivery to a subscription queue (`mqtt-subscription-<client id>qos1`) names its client at once.
 *
 * Each listing replaces what the last one said: a connection gone from it is forgotten (its address and port may come
 * back as another device's, behind a load balancer). A failed listing is asked again later and later (up to a minute).
 *
 * It also learns the broker's version once, for the one rule the trace needs of it: whether a non-persistent reply
 * reaches a QoS 1 subscription at QoS 0 (3.13+).
 *
 * An AMQP worker's connection is named too, by the name its client gave it (`connection_name` in its client properties:
 * pika's, amqplib's), so a verdict can say which worker took a request and never answered.
 *
 * Best effort: the management API may refuse or be slow; then connections stay unnamed, and nothing else changes.
 */
import { transientAtQos0Of } from '../../shared/broker-versions';
import { BoundedMap } from '../bounded-map';
import type { ManagementApi } from '../broker/management-api';

/** Connections remembered (a fleet of devices reconnecting is many names). */
const KEPT_CONNECTIONS = 50_000;
/** How long a connection that is not listed yet is asked for again: the broker lists a new one within a few seconds. */
const LISTED_WITHIN_MS = 10_000;
/** The longest wait between two listings after failures. */
const MAX_BACKOFF_MS = 60_000;

interface Known {
  /** its MQTT client id, or null for a connection listed without one (an AMQP worker's) */
  clientId: string | null;
  /** the name its client gave it (AMQP `connection_name`: pika's and amqplib's client properties), if any */
  name?: string;
  /** when this was learned: a listing that began before it cannot forget it */
  at: number;
}

export class MqttClients {
  private readonly ids = new BoundedMap<string, Known>(KEPT_CONNECTIONS);
  /** names seen and not listed yet, with when they were first seen: asked for until LISTED_WITHIN_MS have passed */
  private readonly unlisted = new BoundedMap<string, number>(KEPT_CONNECTIONS);
  /** when the last listing that answered began */
  private listedAt = Number.NEGATIVE_INFINITY;
  private lastAskedAt = 0;
  private failures = 0;
  private asking: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** whether the broker delivers a non-persistent message at QoS 0 to a QoS 1 subscription; undefined until its version is read */
  transientAtQos0: boolean | undefined;

  constructor(
    private readonly api: Pick<ManagementApi, 'vhostConnections' | 'overview'>,
    private readonly intervalMs = 5000,
  ) {}

  /** Lists the connections (and reads the version) now, so the clients already connected are named from the first event. */
  start(): Promise<void> {
    this.stopped = false;
    return this.refresh();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The MQTT client id of a connection, if known; an unknown name is asked for in the background (for its next event). */
  clientIdOf(connection: string): string | undefined {
    const known = this.ids.get(connection);
    if (known !== undefined) return known.clientId ?? undefined;
    if (!this.unlisted.has(connection)) {
      this.unlisted.add(connection, Date.now());
      this.schedule();
    }
    return undefined;
  }

  /** The name a connection's client gave it (a worker's `connection_name`), if listed; asks nothing (`clientIdOf` does). */
  connectionNameOf(connection: string): string | undefined {
    return this.ids.get(connection)?.name;
  }

  /** The MQTT client id of a connection if already known, without asking for it (a verdict read after the events). */
  knownClientIdOf(connection: string): string | undefined {
    return this.ids.get(connection)?.clientId ?? undefined;
  }

  /** A connection seen consuming from a client's subscription queue is that client's. */
  learn(connection: string, clientId: string): void {
    const known = this.ids.get(connection);
    if (known?.clientId !== clientId) this.ids.set(connection, { clientId, at: Date.now(), ...(known?.name !== undefined ? { name: known.name } : {}) });
  }

  private schedule(): void {
    if (this.stopped || this.timer !== undefined || this.asking !== undefined) return;
    const interval = Math.min(MAX_BACKOFF_MS, this.intervalMs * 2 ** this.failures);
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        void this.refresh();
      },
      Math.max(0, this.lastAskedAt + interval - Date.now()),
    );
    this.timer.unref();
  }

  private refresh(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.asking ??= this.ask().finally(() => {
      this.asking = undefined;
      if (this.stillAsking()) this.schedule();
    });
    return this.asking;
  }

  /**
   * Whether a name is still worth a listing: one first seen less than LISTED_WITHIN_MS before the last listing that
   * answered began (the broker lists a connection a few seconds late). The others are given up (a connection that
   * closed at once, an internal one) but kept, so their next events do not ask again (the map is bounded).
   */
  private stillAsking(): boolean {
    for (const name of this.unlisted.keys()) {
      if ((this.unlisted.get(name) ?? 0) > this.listedAt - LISTED_WITHIN_MS) return true;
    }
    return false;
  }

  private async ask(): Promise<void> {
    const startedAt = Date.now();
    this.lastAskedAt = startedAt;
    // Side by side: a slow version read does not hold the names back.
    const version =
      this.transientAtQos0 === undefined
        ? this.api.overview().then(
            (overview) => {
              if (!this.stopped) this.transientAtQos0 = transientAtQos0Of(overview.rabbitmqVersion);
            },
            // No version: deliveries to QoS 1 subscriptions say nothing of a QoS they cannot tell.
            () => undefined,
          )
        : undefined;
    try {
      const listed = await this.api.vhostConnections();
      if (this.stopped) return;
      const present = new Set<string>();
      for (const connection of listed) {
        present.add(connection.name);
        this.ids.set(connection.name, { clientId: connection.mqttClientId ?? null, at: startedAt, ...(connection.connectionName ? { name: connection.connectionName } : {}) });
        this.unlisted.delete(connection.name);
      }
      // Gone from the list: forgotten, unless learned after this listing began.
      for (const name of [...this.ids.keys()]) {
        if (!present.has(name) && (this.ids.get(name)?.at ?? 0) <= startedAt) this.ids.delete(name);
      }
      this.listedAt = startedAt;
      this.failures = 0;
    } catch {
      // Unnamed for now: asked again, later each time; the names waiting keep their turn.
      this.failures = Math.min(this.failures + 1, 8);
    }
    await version;
  }
}
