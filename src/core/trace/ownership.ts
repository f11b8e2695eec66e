/**
 * What BridgeScope can prove about the firehose on a shared broker: which markers and which tracer queues are its own.
 * Any user who may declare exchanges and queues can make a `bridgescope.tracing-owner.*` exchange or an exclusive
 * `bridgescope.tracer.*` queue, so neither proves anything by its name. Each one BridgeScope makes has a record in this
 * OS user's config folder (which no other broker user can write): a marker counts when its record names the same vhost
 * and the same boot of every node it was written on (a restart resets the flag but keeps the durable exchange), a tracer
 * queue when its record names the same vhost and a process that is still alive.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { defaultDataDir } from '../data-dir';
import { LIVE_TRACER_QUEUE_PREFIX, TRACING_MARKER_EXCHANGE, type ManagementApi, type NodeBoot, type TracingMarker, type TracingMarkerRecord } from '../broker/management-api';
import { isProcessAlive } from '../processes';

/**
 * How much later than the marker a node's start may seem and still be the same boot: a start is estimated from the
 * uptime the node last reported, which lags by its statistics interval (5 s by default), more while it is paused.
 */
export const SAME_BOOT_TOLERANCE_MS = 30_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A node's boot as recorded, with when it was read (a restart after that starts later). */
const bootSchema = z.object({ node: z.string(), osPid: z.string(), startedAt: z.number(), recordedAt: z.number() });
const markerRecordSchema = z.object({ exchange: z.string(), vhost: z.string(), boots: z.array(bootSchema), pid: z.number() });
const tracerRecordSchema = z.object({ queue: z.string(), vhost: z.string(), pid: z.number() });

type MarkerRecord = z.infer<typeof markerRecordSchema>;
type RecordedBoot = z.infer<typeof bootSchema>;

const recordedNow = (boots: readonly NodeBoot[]): RecordedBoot[] => {
  const recordedAt = Date.now();
  return boots.map((boot) => ({ ...boot, recordedAt }));
};

/** The uuid at the end of one of our names, or undefined for any other name (never a path: names come from the broker). */
function idOf(name: string, prefix: string): string | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const id = name.slice(prefix.length);
  return UUID.test(id) ? id : undefined;
}

const markerId = (exchange: string): string | undefined => idOf(exchange, `${TRACING_MARKER_EXCHANGE}.`);
const tracerId = (queue: string): string | undefined => idOf(queue, LIVE_TRACER_QUEUE_PREFIX);

/**
 * Whether `now` (a reading of a node) is the `recorded` boot: the same OS process, started before it was recorded (a
 * restart starts later; a late estimate is allowed for). A container may give a restarted node the same OS pid: then
 * its start, later than the record, tells.
 */
export function sameBoot(recorded: RecordedBoot, now: NodeBoot): boolean {
  return recorded.node === now.node && recorded.osPid === now.osPid && now.startedAt <= recorded.recordedAt + SAME_BOOT_TOLERANCE_MS;
}

/** The markers found on a vhost, sorted: ours (recorded, same boot), ours but stale (a node restarted since), and the rest. */
export interface MarkerClaims {
  ours: TracingMarkerRecord[];
  stale: TracingMarkerRecord[];
}

/** $XDG_CONFIG_HOME/bridgescope/tracing (or ~/.config/...): shared by the CLI, `bridgescope ui` and the app of this OS user. */
export function defaultOwnershipDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(defaultDataDir(env), 'tracing');
}

export class TracingOwnership {
  constructor(readonly dir: string = defaultOwnershipDir()) {}

  private async write(file: string, record: unknown): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const path = join(this.dir, file);
    const temp = `${path}.${process.pid}.tmp`;
    await writeFile(temp, JSON.stringify(record), { mode: 0o600 });
    await rename(temp, path);
  }

  private async read<T>(file: string, schema: z.ZodType<T>): Promise<T | undefined> {
    try {
      const parsed = schema.safeParse(JSON.parse(await readFile(join(this.dir, file), 'utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  private async remove(file: string): Promise<void> {
    await unlink(join(this.dir, file)).catch(() => undefined);
  }

  /**
   * Records, then writes, a marker of ours on `api`'s vhost with the boot of every node that reports one (none yet right
   * after a restart: `completeBoots` adds them later). Record first: a marker exchange without its record is never ours.
   */
  async claimMarker(api: ManagementApi, marker: TracingMarker): Promise<string> {
    const id = randomUUID();
    const exchange = `${TRACING_MARKER_EXCHANGE}.${id}`;
    const boots = await api.nodeBoots().catch(() => []);
    await this.write(`marker-${id}.json`, { exchange, vhost: api.vhost, boots: recordedNow(boots), pid: process.pid } satisfies MarkerRecord);
    try {
      return await api.setTracingMarker(marker, id);
    } catch (err) {
      await this.remove(`marker-${id}.json`);
      throw err;
    }
  }

  /**
   * Adds the boots a marker's record lacks (nodes report theirs some seconds after they start); only the writer may call
   * it, while its link has stayed up since it wrote the marker (so the boots are still the ones it switched on), or the
   * keeper switched the restarted node `renew` on again. Resolves whether every running node's boot is now recorded.
   */
  async completeBoots(api: ManagementApi, exchange: string, renew?: string): Promise<boolean> {
    const id = markerId(exchange);
    const file = `marker-${id}.json`;
    const record = id !== undefined ? await this.read(file, markerRecordSchema) : undefined;
    if (!record) return true;
    const [boots, nodes] = await Promise.all([api.nodeBoots(), api.nodes()]);
    // `renew`: a node that restarted under the writer (who switched it on again): its old boot is forgotten.
    const known = new Map(record.boots.filter((boot) => boot.node !== renew).map((boot) => [boot.node, boot]));
    for (const boot of recordedNow(boots)) if (!known.has(boot.node)) known.set(boot.node, boot);
    await this.write(file, { ...record, boots: [...known.values()] });
    return nodes.filter((node) => node.running).every((node) => known.has(node.name));
  }

  /** Sorts the markers found: only a recorded marker of this vhost counts, and only for the boots it was written on. */
  async classify(api: ManagementApi, markers: readonly TracingMarkerRecord[], vouched: readonly string[] = []): Promise<MarkerClaims> {
    const claims: MarkerClaims = { ours: [], stale: [] };
    let current: NodeBoot[] | undefined;
    for (const marker of markers) {
      const id = markerId(marker.exchange);
      if (id === undefined) continue;
      if (vouched.includes(marker.exchange)) {
        claims.ours.push(marker);
        continue;
      }
      const record = await this.read(`marker-${id}.json`, markerRecordSchema);
      if (!record || record.exchange !== marker.exchange || record.vhost !== api.vhost) continue;
      current ??= await api.nodeBoots().catch(() => []);
      const now = current;
      const restarted = record.boots.some((boot) => now.some((seen) => seen.node === boot.node && !sameBoot(boot, seen)));
      const valid = record.boots.length > 0 && record.boots.every((boot) => now.some((seen) => sameBoot(boot, seen)));
      if (restarted) claims.stale.push(marker);
      else if (valid) claims.ours.push(marker);
      // Otherwise the boot cannot be told (not reported yet, or not to this user): not ours, left alone.
    }
    return claims;
  }

  /** Our records of these markers, whatever their boot (to replace them when tracing is found off). */
  async recorded(api: ManagementApi, markers: readonly TracingMarkerRecord[]): Promise<TracingMarkerRecord[]> {
    const ours: TracingMarkerRecord[] = [];
    for (const marker of markers) {
      const id = markerId(marker.exchange);
      const record = id !== undefined ? await this.read(`marker-${id}.json`, markerRecordSchema) : undefined;
      if (record && record.exchange === marker.exchange && record.vhost === api.vhost) ours.push(marker);
    }
    return ours;
  }

  /**
   * Removes our markers: each record first, then its exchange, so a marker someone recreates by the same name later is
   * not ours. A marker that is already gone is fine; another failure is thrown.
   */
  async removeMarkers(api: ManagementApi, exchanges: readonly string[]): Promise<void> {
    for (const exchange of exchanges) {
      const id = markerId(exchange);
      if (id !== undefined) await this.remove(`marker-${id}.json`);
    }
    await api.deleteTracingMarkers(exchanges);
  }

  /** Records a tracer queue of this process before it is declared. */
  async registerTracer(queue: string, vhost: string): Promise<void> {
    const id = tracerId(queue);
    if (id !== undefined) await this.write(`tracer-${id}.json`, { queue, vhost, pid: process.pid });
  }

  async unregisterTracer(queue: string): Promise<void> {
    const id = tracerId(queue);
    if (id !== undefined) await this.remove(`tracer-${id}.json`);
  }

  /** The live tracer queues on `api`'s vhost that a live BridgeScope process of this OS user declared; a forged one is not. */
  async liveTracers(api: ManagementApi): Promise<string[]> {
    const live: string[] = [];
    for (const queue of await api.liveTracerQueues()) {
      const id = tracerId(queue);
      const record = id !== undefined ? await this.read(`tracer-${id}.json`, tracerRecordSchema) : undefined;
      if (!record || record.queue !== queue || record.vhost !== api.vhost) continue;
      if (isProcessAlive(record.pid)) live.push(queue);
      else await this.unregisterTracer(queue);
    }
    return live;
  }
}
