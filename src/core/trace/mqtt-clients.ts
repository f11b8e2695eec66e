/**
 * Who is behind a connection the firehose names: the firehose says "127.0.0.1:56144 -> 127.0.0.1:1883" and a user,
 * never the MQTT client id a team knows its devices by. The management API lists every connection with its client id
 * (`GET /api/connections`: MQTT ones carry `client_properties.client_id`, on 3.10.8, 4.0.5 and 4.3.6 alike), so the
 * tracer asks it once at start and again, at most every few seconds, when a connection it does not know shows up. A
 * delivery to a subscription queue (`mqtt-subscription-<client id>qos1`) names its client at once.
 *
 * It also learns the broker's version once, for the one rule the trace needs of it: whether a non-persistent reply
 * reaches a QoS 1 subscription at QoS 0 (3.13+).
 *
 * Best effort: the management API may refuse or be slow; then connections stay unnamed, and nothing else changes.
 */
import { parseBrokerVersion, ruleHolds, VERSION_RULES, type VersionRule } from '../../shared/broker-versions';
import { BoundedMap } from '../bounded-map';
import type { ManagementApi } from '../broker/management-api';

/** Connections remembered (a fleet of devices reconnecting is many names). */
const KEPT_CONNECTIONS = 50_000;
/** How long a connection that is not listed yet is asked for again: the broker lists a new one within a few seconds. */
const LISTED_WITHIN_MS = 10_000;

const transientRule = VERSION_RULES.find((rule) => rule.key === 'transientAtQos0') as VersionRule;

export class MqttClients {
  /** connection name -> its MQTT client id, or null for a connection listed without one (an AMQP worker's) */
  private readonly ids = new BoundedMap<string, string | null>(KEPT_CONNECTIONS);
  /** names seen and not listed yet, with when they were first seen: asked for until LISTED_WITHIN_MS have passed */
  private readonly unlisted = new BoundedMap<string, number>(KEPT_CONNECTIONS);
  private newestUnlistedAt = 0;
  private lastAskedAt = 0;
  private asking: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** whether the broker delivers a non-persistent message at QoS 0 to a QoS 1 subscription; undefined until its version is read */
  transientAtQos0: boolean | undefined;

  constructor(
    private readonly api: Pick<ManagementApi, 'connections' | 'overview'>,
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
    if (known !== undefined) return known ?? undefined;
    if (!this.unlisted.has(connection)) {
      const now = Date.now();
      this.unlisted.add(connection, now);
      this.newestUnlistedAt = now;
      this.schedule();
    }
    return undefined;
  }

  /** A connection seen consuming from a client's subscription queue is that client's. */
  learn(connection: string, clientId: string): void {
    if (this.ids.get(connection) !== clientId) this.ids.set(connection, clientId);
  }

  private schedule(): void {
    if (this.stopped || this.timer !== undefined || this.asking !== undefined) return;
    const wait = Math.max(0, this.lastAskedAt + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh();
    }, wait);
    this.timer.unref();
  }

  private refresh(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.asking ??= this.ask().finally(() => {
      this.asking = undefined;
      // Names first seen within the last few seconds may not be listed yet: asked for again, a few times at most.
      if (this.newestUnlistedAt > this.lastAskedAt - LISTED_WITHIN_MS) this.scheduleIfUnlisted();
    });
    return this.asking;
  }

  private scheduleIfUnlisted(): void {
    const cutoff = this.lastAskedAt - LISTED_WITHIN_MS;
    for (const name of this.unlisted.keys()) {
      if ((this.unlisted.get(name) ?? 0) > cutoff && !this.ids.has(name)) {
        this.schedule();
        return;
      }
    }
  }

  private async ask(): Promise<void> {
    const startedAt = Date.now();
    this.lastAskedAt = startedAt;
    if (this.transientAtQos0 === undefined) {
      try {
        const version = parseBrokerVersion((await this.api.overview()).rabbitmqVersion);
        if (version && !this.stopped) this.transientAtQos0 = ruleHolds(transientRule, version);
      } catch {
        // No version: deliveries to QoS 1 subscriptions say nothing of a QoS they cannot tell.
      }
    }
    try {
      const listed = await this.api.connections();
      if (this.stopped) return;
      for (const connection of listed) {
        this.ids.set(connection.name, connection.mqttClientId ?? null);
        this.unlisted.delete(connection.name);
      }
    } catch {
      // Unnamed for now; the next unknown connection asks again.
    }
  }
}
