/**
 * The trace store's cost per RPC, this checkout against another (say, a copy of the last commit), side by side in one
 * process: each round feeds the same RPCs' steps, as the client and server hand them over (attach, then the setImmediate
 * that stores them), into a TraceStore of each tree, alternating which goes first. The wire of each step is built by
 * that tree's own message-view (the writers' share). CPU per RPC and the heap each store holds at its cap.
 *
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rpcs: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '5' } },
});
const other = positionals[0];
if (!other) throw new Error('Give the other tree: bench/trace-store-ab.ts <other-tree>');
const rpcs = Number(values.rpcs);
const rounds = Number(values.rounds);

interface Tree {
  name: string;
  TraceStore: new (options?: { maxRpcs?: number }) => { attach(source: EventEmitter): () => void; readonly size: number };
  amqpMessage: (properties: Record<string, unknown>, body: Uint8Array) => unknown;
  mqttMessage: (facts: { qos: number; retain?: boolean }, body: Uint8Array) => unknown;
  /** a tree whose writers leave wires to be built when read (issue 25, round three) */
  amqpWire?: (properties: Record<string, unknown>, body: Uint8Array) => unknown;
  mqttWire?: (facts: { qos: number; retain?: boolean }, body: Uint8Array) => unknown;
  WIRE_SOURCE?: symbol;
}

async function load(name: string, root: string): Promise<Tree> {
  const store = (await import(pathToFileURL(resolve(root, 'src/core/trace/trace-store.ts')).href)) as Pick<Tree, 'TraceStore'>;
  const view = (await import(pathToFileURL(resolve(root, 'src/core/trace/message-view.ts')).href)) as Omit<Tree, 'name' | 'TraceStore'>;
  return { name, TraceStore: store.TraceStore, amqpMessage: view.amqpMessage, mqttMessage: view.mqttMessage, amqpWire: view.amqpWire, mqttWire: view.mqttWire, WIRE_SOURCE: view.WIRE_SOURCE };
}

const trees = [await load('this', '.'), await load(other, other)];
const ids = Array.from({ length: rpcs }, () => randomUUID());
const queue = 'bench-queue';

/**
 * One RPC's steps as an untraced app call hands them over (client, then server), each with the wire as that tree's
 * writers make it: built at once, or left to be built when read (the request and reply bodies arrive as views of a
 * socket's buffer, as mqtt.js and amqplib hand them over; the composed request and the published reply are ours).
 */
function emitRpc(tree: Tree, client: EventEmitter, server: EventEmitter, id: string): void {
  const replyTopic = 'bridgescope/reply/5d1c0f3e';
  const request = Buffer.from(`{"id":"${id}","reply_to":"${replyTopic}","params":"${'x'.repeat(40)}"}`);
  const reply = Buffer.from(`{"id":"${id}","result":"${'x'.repeat(40)}"}`);
  const received = Buffer.concat([Buffer.alloc(16), request]).subarray(16);
  const delivered = Buffer.concat([Buffer.alloc(16), reply]).subarray(16);
  const now = Date.now();
  const amqp = <D extends { detail: object }>(draft: D, properties: Record<string, unknown>, body: Buffer): D =>
    tree.amqpWire && tree.WIRE_SOURCE ? { ...draft, [tree.WIRE_SOURCE]: tree.amqpWire(properties, body) } : { ...draft, detail: { ...draft.detail, wire: tree.amqpMessage(properties, body) } };
  const mqtt = <D extends { detail: object }>(draft: D, body: Buffer): D =>
    tree.mqttWire && tree.WIRE_SOURCE ? { ...draft, [tree.WIRE_SOURCE]: tree.mqttWire({ qos: 1, retain: false }, body) } : { ...draft, detail: { ...draft.detail, wire: tree.mqttMessage({ qos: 1, retain: false }, body) } };
  client.emit('step', mqtt({ rpcId: id, at: now, source: 'client', kind: 'composed', detail: { topic: queue, qos: 1, replyTopic, replyStrategy: 'shared', bytes: request.byteLength } }, request));
  client.emit('step', { rpcId: id, at: now, source: 'client', kind: 'mqtt.published', detail: { topic: queue, qosAsked: 1, predictedRoutingKey: queue } });
  server.emit(
    'step',
    amqp({ rpcId: id, at: now, source: 'server', kind: 'worker.received', detail: { worker: 'w1', consumerTag: 'amq.ctag-1', queue, routingKey: queue, redelivered: false } }, { deliveryMode: 2, headers: { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false } }, received),
  );
  client.emit('step', { rpcId: id, at: now, source: 'client', kind: 'mqtt.acknowledged', detail: { qosAsked: 1, acknowledgedAs: 1, packet: 'puback' } });
  server.emit('step', { rpcId: id, at: now, source: 'server', kind: 'handler.finished', detail: { worker: 'w1', durationMs: 0, outcome: 'result' } });
  server.emit(
    'step',
    amqp({ rpcId: id, at: now, source: 'server', kind: 'reply.published', detail: { worker: 'w1', exchange: 'amq.topic', routingKey: 'bridgescope.reply.5d1c0f3e', replyTopic, mandatory: true } }, { messageId: id, contentType: 'application/json', deliveryMode: 2 }, reply),
  );
  server.emit('step', { rpcId: id, at: now, source: 'server', kind: 'reply.confirmed', detail: { worker: 'w1', outcome: 'routed' } });
  client.emit('step', mqtt({ rpcId: id, at: now, source: 'client', kind: 'mqtt.reply.received', detail: { topic: replyTopic, replyTopic, topicMismatch: false, bytes: reply.byteLength, qos: 1 } }, delivered));
}

const gc = (globalThis as { gc?: () => void }).gc;
const tick = (): Promise<void> => new Promise((done) => setImmediate(done));

async function run(tree: Tree): Promise<{ cpuNsPerRpc: number; heapMiB: number }> {
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const store = new tree.TraceStore({ maxRpcs: 10_000 });
  const client = new EventEmitter();
  const server = new EventEmitter();
  store.attach(client);
  store.attach(server);
  const cpu = process.cpuUsage();
  // 100 RPCs per I/O turn, as at concurrency 100: the setImmediate hand-over stores them in one batch.
  for (let index = 0; index < ids.length; index += 1) {
    emitRpc(tree, client, server, ids[index] as string);
    if (index % 100 === 99) await tick();
  }
  await tick();
  const used = process.cpuUsage(cpu);
  gc?.();
  const heapMiB = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;
  if (store.size !== Math.min(10_000, rpcs)) throw new Error(`${tree.name}: ${store.size} RPCs kept`);
  return { cpuNsPerRpc: ((used.user + used.system) * 1000) / rpcs, heapMiB };
}

const results = new Map<string, Array<{ cpuNsPerRpc: number; heapMiB: number }>>();
for (let round = 0; round < rounds; round += 1) {
  for (const tree of round % 2 === 0 ? trees : [...trees].reverse()) {
    const result = await run(tree);
    results.set(tree.name, [...(results.get(tree.name) ?? []), result]);
    process.stdout.write(`round ${round + 1}  ${tree.name.padEnd(24)} ${(result.cpuNsPerRpc / 1000).toFixed(2).padStart(7)} us/RPC  heap held ${result.heapMiB.toFixed(1)} MiB\n`);
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
process.stdout.write(`\nMedians over ${rounds} rounds, ${rpcs} RPCs of 8 steps (writers' wire included), store capped at 10,000 RPCs:\n`);
for (const tree of trees) {
  const runs = results.get(tree.name) ?? [];
  process.stdout.write(`  ${tree.name.padEnd(24)} ${(median(runs.map((r) => r.cpuNsPerRpc)) / 1000).toFixed(2).padStart(7)} us/RPC  heap held ${median(runs.map((r) => r.heapMiB)).toFixed(1)} MiB\n`);
}
