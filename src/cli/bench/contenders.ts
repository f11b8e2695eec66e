/** One benchmark run of one contender: the raw mqtt.js + amqplib floor, or BridgeScope's own client and server. */
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import type { Socket } from 'node:net';
import mqtt from 'mqtt';
import type { ConfirmChannel } from 'amqplib';
import type { BrokerUrls } from '../../core/broker/readiness';
import { ManagementApi } from '../../core/broker/management-api';
import { RpcClient } from '../../core/rpc/client';
import { RpcServer } from '../../core/rpc/server';
import { loadHandler } from '../../core/rpc/handlers';
import { FirehoseTracer } from '../../core/trace/firehose';
import { TraceStore } from '../../core/trace/trace-store';
import { LoadTraceSample } from '../../core/rpc/load-engine';
import { DEFAULT_LOAD_TRACE_EVERY } from '../../shared/defaults';
import { amqpConnectOptions, connectAmqp } from '../../core/links/amqp-link';

/** The V8 sampling profiler of this process, started now; `stop` returns the profile (the .cpuprofile format). */
async function startProfiler(): Promise<{ stop: () => Promise<unknown> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stop() {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      return profile;
    },
  };
}

export type ContenderName =
  | 'raw'
  | 'raw-reliable'
  | 'raw-traced'
  | 'bridgescope'
  | 'raw-per-request'
  | 'bridgescope-per-request'
  | 'bridgescope-traced'
  | 'bridgescope-keep-all';

export interface RunSpec {
  contender: ContenderName;
  urls: BrokerUrls;
  concurrency: number;
  requests: number;
  warmup: number;
  payloadBytes: number;
  /** write a CPU profile of the measured part (after warm-up) to this .cpuprofile file */
  cpuProfile?: string;
  /** the request queue (and key) to use, when the caller must know it (the watch bench watches it); default a fresh name */
  queue?: string;
}

export interface RunResult {
  contender: ContenderName;
  concurrency: number;
  payloadBytes: number;
  requests: number;
  durationMs: number;
  latenciesMs: number[];
  peakRssBytes: number;
  /** CPU time (user + system) this process spent in the measured part: both sides of the RPC run here */
  cpuMs?: number;
  /** the broker's CPU time over the whole run (set by the caller, who knows its pid) and the requests it carried then */
  brokerCpuMs?: number;
  brokerRequests?: number;
}

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux); NaN where it cannot be read. */
export async function processCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The fields after the command name (which may hold spaces): utime and stime are the 12th and 13th, in clock ticks (100/s).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/**
 * Waits until the broker is idle: its CPU over the last quarter second under a tenth of a core (or `boundMs` passed).
 * The contender before may have left it busy (tracing switched off, queues deleted, a backlog of confirms), and that
 * work would be charged to the next contender's broker CPU and throughput. Returns how long it waited.
 */
export async function brokerSettled(brokerPid: number, boundMs = 5000): Promise<number> {
  const begin = performance.now();
  let before = await processCpuMs(brokerPid);
  while (performance.now() - begin < boundMs) {
    await new Promise((done) => setTimeout(done, 250));
    const now = await processCpuMs(brokerPid);
    if (!Number.isFinite(now) || now - before < 25) break;
    before = now;
  }
  return performance.now() - begin;
}

/** Runs one contender and adds the broker's CPU time over it. */
export async function measureBroker(brokerPid: number, spec: RunSpec, run: (spec: RunSpec) => Promise<RunResult>): Promise<RunResult> {
  const before = await processCpuMs(brokerPid);
  const result = await run(spec);
  const spent = (await processCpuMs(brokerPid)) - before;
  return Number.isFinite(spent) ? { ...result, brokerCpuMs: spent, brokerRequests: spec.requests + spec.warmup } : result;
}

/** Something that answers one request: the contender's client side. */
type CallOnce = (payload: string) => Promise<void>;

interface Contender {
  call: CallOnce;
  close: () => Promise<void>;
}

/** Runs `total` calls with at most `concurrency` in flight; returns each call's latency. */
async function drive(call: CallOnce, total: number, concurrency: number, payload: string): Promise<number[]> {
  const latencies: number[] = [];
  let started = 0;
  const lane = async (): Promise<void> => {
    while (started < total) {
      started += 1;
      const begin = performance.now();
      await call(payload);
      latencies.push(performance.now() - begin);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane));
  return latencies;
}

/**
 * The floors: an amqplib consumer that replies to reply_to with / -> ., and an mqtt.js client matching replies by id.
 * `reliable` gives it BridgeScope's server's guarantees: a confirm channel, `mandatory` replies, each request acked
 * only once its reply is confirmed (a request whose reply is lost goes back to the queue), and persistent replies
 * (delivery_mode 2) with a message id. Persistent, because RabbitMQ 3.12+ delivers a non-persistent AMQP message to a
 * QoS 1 MQTT subscriber at QoS 0 (docs/RABBITMQ.md), and a durable subscription queue keeps it over a restart; a message
 * id, because a basic.return comes apart from its confirm and must say which reply came back. Before round three the
 * floor's replies were transient without an id: the broker then did less for it than for BridgeScope (a third less CPU
 * per RPC on 3.10.8), which the ratios counted against BridgeScope.
 */
async function raw(urls: BrokerUrls, queue: string, perRequest: boolean, reliable = false, traced = false): Promise<Contender> {
  // raw-traced: the reliable floor with the broker's firehose on and a bare consumer of it (no parsing), so the broker
  // does the same work as for BridgeScope traced: what is left between the two is BridgeScope's tracer, not the firehose.
  const firehose = traced ? await bareFirehose(urls) : undefined;
  const connection = await connectAmqp(amqpConnectOptions(urls.amqp, 10), { noDelay: true });
  const channel = reliable ? await connection.createConfirmChannel() : await connection.createChannel();
  // The same topology as BridgeScope's server: a durable queue, so QoS 1 (persistent) requests cost the broker the same.
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, 'amq.direct', queue);
  await channel.prefetch(200);
  let replies = 0;
  await channel.consume(queue, (message) => {
    if (!message) return;
    const request = JSON.parse(message.content.toString()) as { id: string; reply_to: string; params: unknown };
    const body = Buffer.from(JSON.stringify({ id: request.id, result: request.params }));
    const key = request.reply_to.replaceAll('/', '.');
    if (!reliable) {
      channel.publish('amq.direct', key, body);
      channel.ack(message);
      return;
    }
    replies += 1;
    (channel as ConfirmChannel).publish('amq.direct', key, body, { mandatory: true, deliveryMode: 2, messageId: `r${replies}` }, (err: unknown) => {
      if (err) channel.nack(message, false, true);
      else channel.ack(message);
    });
  });

  const client = await mqtt.connectAsync(urls.mqtt, { clientId: `bench-raw-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
  (client.stream as Partial<Socket>).setNoDelay?.(true);
  const pending = new Map<string, () => void>();
  client.on('message', (_topic, payload) => {
    const { id } = JSON.parse(payload.toString()) as { id: string };
    pending.get(id)?.();
    pending.delete(id);
  });
  const shared = `reply/${randomUUID()}`;
  if (!perRequest) await client.subscribeAsync(shared, { qos: 1 });

  const call: CallOnce = async (params) => {
    const id = randomUUID();
    const replyTo = perRequest ? `reply/${randomUUID()}` : shared;
    if (perRequest) await client.subscribeAsync(replyTo, { qos: 1 });
    const replied = new Promise<void>((resolve) => pending.set(id, resolve));
    await client.publishAsync(queue, JSON.stringify({ id, reply_to: replyTo, params }), { qos: 1 });
    await replied;
    if (perRequest) await client.unsubscribeAsync(replyTo);
  };
  return {
    call,
    async close() {
      await client.endAsync();
      await channel.deleteQueue(queue);
      await connection.close();
      await firehose?.close();
    },
  };
}

/** Tracing on for the vhost, an exclusive queue bound to every trace message, consumed without ack and without a look inside. */
async function bareFirehose(urls: BrokerUrls): Promise<{ close: () => Promise<void> }> {
  const api = new ManagementApi(urls.management);
  const wasOn = await api.tracing();
  const connection = await connectAmqp(amqpConnectOptions(urls.amqp, 10), { noDelay: true });
  const channel = await connection.createChannel();
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, arguments: { 'x-max-length': 100_000 } });
  await channel.bindQueue(queue, 'amq.rabbitmq.trace', '#');
  let seen = 0;
  await channel.consume(queue, () => void (seen += 1), { noAck: true });
  if (!wasOn) await api.setTracing(true);
  return {
    async close() {
      if (!wasOn) await api.setTracing(false);
      await connection.close();
    },
  };
}

/**
 * BridgeScope as the app's load run drives it: RpcClient + RpcServer (confirm channel, mandatory replies) and the trace
 * store, which keeps every failed request and a sample of the replied ones (LoadTraceSample: the Load panel's default),
 * or every request (`keepAll`, and while the firehose traces).
 */
async function bridgescope(urls: BrokerUrls, queue: string, perRequest: boolean, traced: boolean, keepAll: boolean): Promise<Contender> {
  const server = new RpcServer({ amqpUrl: urls.amqp, queue, workers: 1, prefetch: 200, handler: await loadHandler({ kind: 'echo' }) });
  await server.start();
  const client = new RpcClient({ mqttUrl: urls.mqtt, strategy: perRequest ? 'per-request' : 'shared' });
  await client.connect();
  const store = new TraceStore({ maxRpcs: 10_000 });
  const detach = [store.attach(client), store.attach(server)];
  let tracer: FirehoseTracer | undefined;
  if (traced) {
    tracer = new FirehoseTracer({ amqpUrl: urls.amqp, api: new ManagementApi(urls.management), store });
    await tracer.start();
  }
  const sample = traced || keepAll ? undefined : new LoadTraceSample(DEFAULT_LOAD_TRACE_EVERY, store);
  return {
    // As the load engine does (runLoad): one in ten in full, the others held and kept if they fail or are slow.
    call: sample
      ? async (params) => {
          const id = randomUUID();
          const loadRun = sample.send(id);
          const held = loadRun === undefined;
          const t0 = performance.now();
          try {
            await client.call({ id, topic: queue, qos: 1, params, timeoutMs: 60_000, loadRun });
          } catch (err) {
            sample.failed(id, held, false);
            throw err;
          }
          sample.replied(id, held, performance.now() - t0);
        }
      : async (params) => {
          await client.call({ topic: queue, qos: 1, params, timeoutMs: 60_000 });
        },
    async close() {
      for (const off of detach) off();
      await tracer?.stop();
      await client.close();
      await server.stop();
    },
  };
}

/**
 * The environment of a contender's process. The command line's bundle gives mqtt.js a `debug` that does nothing while
 * DEBUG is unset (src/cli/quiet-debug.cjs); the raw loops stand for the program a user writes with mqtt.js and amqplib,
 * which loads the real package: DEBUG=-* (no namespace on) gives them exactly that, its disabled loggers included.
 */
export function contenderEnv(contender: ContenderName, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return contender.startsWith('raw') && !env.DEBUG ? { ...env, DEBUG: '-*' } : env;
}

/** Sets one contender up, warms it, measures it, tears it down. Run it in its own process for a clean RSS. */
export async function runContender(spec: RunSpec): Promise<RunResult> {
  const queue = spec.queue ?? `bench-${spec.contender}-${randomUUID().slice(0, 8)}`;
  const contender =
    spec.contender === 'raw' || spec.contender === 'raw-per-request' || spec.contender === 'raw-reliable' || spec.contender === 'raw-traced'
      ? await raw(spec.urls, queue, spec.contender === 'raw-per-request', spec.contender === 'raw-reliable' || spec.contender === 'raw-traced', spec.contender === 'raw-traced')
      : await bridgescope(spec.urls, queue, spec.contender === 'bridgescope-per-request', spec.contender === 'bridgescope-traced', spec.contender === 'bridgescope-keep-all');
  const payload = 'x'.repeat(spec.payloadBytes);
  try {
    await drive(contender.call, spec.warmup, spec.concurrency, payload);
    const profiler = spec.cpuProfile ? await startProfiler() : undefined;
    const cpuBefore = process.cpuUsage();
    const begin = performance.now();
    const latenciesMs = await drive(contender.call, spec.requests, spec.concurrency, payload);
    const durationMs = performance.now() - begin;
    const cpu = process.cpuUsage(cpuBefore);
    if (profiler && spec.cpuProfile) await writeFile(spec.cpuProfile, JSON.stringify(await profiler.stop()));
    return {
      contender: spec.contender,
      concurrency: spec.concurrency,
      payloadBytes: spec.payloadBytes,
      requests: spec.requests,
      durationMs,
      latenciesMs,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
  } finally {
    await contender.close();
  }
}
