/**
 * Joins the server's record of a request sent without an id (text, hex, base64, a file) to the RPC that sent it.
 *
 * Such a body carries no id, so the embedded server numbers the delivery itself (`delivery-…`): without this join the
 * trace listed every such send twice, the client's RPC and an "external" one holding the server's steps, which never got
 * a verdict. A send says what it expects (routing key and size) before it publishes; the first matching delivery the
 * server receives takes the sender's id, and every later step of that delivery follows it.
 */
import type { TraceStepDraft } from '../../shared/trace';
import { BoundedMap } from '../bounded-map';

interface Expected {
  routingKey: string;
  bytes: number;
  rpcId: string;
}

/** How the server numbers a delivery whose body carried no id (src/core/rpc/server.ts). */
export const DELIVERY_ID_PREFIX = 'delivery-';

/** How many server deliveries are remembered as renamed (a delivery's steps come within its handling, well under this). */
const KEPT_DELIVERIES = 1000;

export class RawRequestJoin {
  private expected: Expected[] = [];
  /** the server's id for a delivery -> the sender's RPC id */
  private readonly renamed = new BoundedMap<string, string>(KEPT_DELIVERIES);

  /** A raw body of `bytes` is about to be published on `routingKey` as `rpcId`; returns the cancel (no match expected any more). */
  expect(routingKey: string, bytes: number, rpcId: string): () => void {
    const entry: Expected = { routingKey, bytes, rpcId };
    this.expected.push(entry);
    return () => {
      this.expected = this.expected.filter((other) => other !== entry);
    };
  }

  /** The RPC id a server id is filed under: the sender's for a joined delivery, the id itself otherwise. */
  idOf(rpcId: string): string {
    return this.renamed.get(rpcId) ?? rpcId;
  }

  /** The draft under the sender's id when its delivery was joined; the draft itself otherwise. */
  rename(draft: TraceStepDraft): TraceStepDraft {
    let rpcId = this.renamed.get(draft.rpcId);
    if (rpcId === undefined && draft.kind === 'worker.received' && this.expected.length > 0) {
      const { routingKey, wire } = draft.detail;
      const index = this.expected.findIndex((entry) => entry.routingKey === routingKey && (wire === undefined || wire.body.bytes === entry.bytes));
      const match = this.expected[index];
      // A delivery whose body carried an id of its own (JSON) is that RPC's: only the server's own numbering is joined.
      if (match && draft.rpcId.startsWith(DELIVERY_ID_PREFIX)) {
        this.expected.splice(index, 1);
        this.renamed.set(draft.rpcId, match.rpcId);
        rpcId = match.rpcId;
      }
    }
    return rpcId === undefined ? draft : ({ ...draft, rpcId } as TraceStepDraft);
  }
}

/** How many requests sent as given are remembered for the firehose at most (each goes when its RPC leaves the store). */
const KEPT_AS_GIVEN = 256;

interface AsGivenRequest {
  rpcId: string;
  routingKey: string;
  bytes: number;
  /** a copy of the body's first bytes (at most a preview's) */
  head: Buffer;
  /** the queues the broker routed its publish to, once the firehose saw it */
  routedQueues: readonly string[] | undefined;
  /** the queues a copy of it was delivered from so far */
  deliveredFrom: Set<string>;
}

/**
 * Finds the RPC a firehose copy of a request sent as given belongs to. The firehose joins a message to its RPC by the
 * id in its JSON body; a body sent as given has none, so without this such a request never showed a broker step, and
 * its verdict advised turning on the firehose that was on. The client's `composed` step says a body was sent as given;
 * its routing key, size and first bytes are noted. The broker's publish of such a body goes to the oldest request not
 * yet seen published, and keeps the queues it was routed to; a delivery from a queue goes to the oldest request routed
 * there that has not been delivered from it yet (one request, several queues: a watcher's tap, an MQTT subscription of
 * the request topic, the server's queue); a redelivery to the oldest one already delivered from that queue. An RPC's
 * entry goes when the RPC leaves the store, so a later request with the same body is never taken for it.
 */
export class AsGivenRequests {
  /** in the order they were sent */
  private readonly entries = new Map<string, AsGivenRequest>();

  /** `rpcId` sent a body as given: `bytes` long, starting with `head`, predicted to be routed with `routingKey`. */
  note(rpcId: string, routingKey: string, bytes: number, head: Uint8Array): void {
    this.entries.delete(rpcId);
    this.entries.set(rpcId, { rpcId, routingKey, bytes, head: Buffer.from(head), routedQueues: undefined, deliveredFrom: new Set() });
    if (this.entries.size > KEPT_AS_GIVEN) this.entries.delete(this.entries.keys().next().value as string);
  }

  /** The client predicted another key for `rpcId` (its `mqtt.published` step, after the broker's own topic rules). */
  rekey(rpcId: string, routingKey: string): void {
    const entry = this.entries.get(rpcId);
    if (entry) entry.routingKey = routingKey;
  }

  /** The RPC left the store: none of its copies can be joined to it any more. */
  forget(rpcId: string): void {
    this.entries.delete(rpcId);
  }

  /** The RPC of a firehose copy (`routedQueues` of a publish; `queue` and `redelivered` of a delivery); undefined when none matches. */
  rpcOf(copy: { type: 'publish'; routedQueues: readonly string[] } | { type: 'deliver'; queue: string; redelivered: boolean }, routingKey: string, body: Buffer): string | undefined {
    for (const entry of this.entries.values()) {
      if (entry.routingKey !== routingKey || entry.bytes !== body.byteLength || !entry.head.equals(body.subarray(0, entry.head.byteLength))) continue;
      if (copy.type === 'publish') {
        if (entry.routedQueues !== undefined) continue;
        entry.routedQueues = copy.routedQueues;
        return entry.rpcId;
      }
      if (copy.redelivered) {
        if (entry.deliveredFrom.has(copy.queue)) return entry.rpcId;
        continue;
      }
      // Routed elsewhere (or nowhere): not this request's copy. A publish the firehose did not see (it started later) routes anywhere.
      if (entry.deliveredFrom.has(copy.queue) || (entry.routedQueues !== undefined && !entry.routedQueues.includes(copy.queue))) continue;
      entry.deliveredFrom.add(copy.queue);
      return entry.rpcId;
    }
    return undefined;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
