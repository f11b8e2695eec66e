/**
 * `bridgescope trace` on other people's RPCs: an MQTT device (mqtt.js) and an amqplib worker neither written by
 * BridgeScope, each RPC the firehose joins given its verdict in the stream (a line, or with --json an rpc.diagnosed step),
 * and `--export FILE` written when the command ends (one signal, or SIGINT to its whole process group), in the app's
 * Trace > Export format, mode 0600, with tracing given back first; a folder that does not exist refused before anything
 * connects. Each test traces a vhost of its own (tracing is per vhost; other files trace "/").
 */
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import mqtt from 'mqtt';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { TraceStore } from '../../src/core/trace/trace-store';
import type { TraceStep } from '../../src/shared/trace';
import { cliPath, runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { startGroupLeader, type GroupLeader } from '../support/processes';
import { startThirdPartyWorker } from '../support/third-party-worker';
import { createTestVhost, type TestVhost } from '../support/vhosts';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A vhost of the test's own, a folder for the export, and their worker on a queue of its own there. */
async function setUp(): Promise<{ vhost: TestVhost; dir: string; queue: string }> {
  const vhost = await createTestVhost(broker.urls, 'trace-export');
  cleanups.push(() => vhost.remove());
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-trace-export-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const queue = uniqueName('their_rpc');
  // Their worker: answers "ok-" ids at once, on the reply topic with "/" turned into "." as the seed's server does; takes
  // every other request and never answers it.
  const worker = await startThirdPartyWorker(vhost.amqpUrl, queue, (request, channel) => {
    if (request.id.startsWith('ok-')) channel.publish('amq.direct', request.reply_to.replaceAll('/', '.'), Buffer.from(JSON.stringify({ id: request.id, result: 'done', worker: 'their-worker' })));
  });
  cleanups.push(() => worker.close());
  return { vhost, dir, queue };
}

/** Their device: an MQTT client in the vhost, subscribed to its reply topic, sending seed requests. */
async function startDevice(vhost: TestVhost): Promise<{ send: (topic: string, id: string) => Promise<unknown>; reply: (id: string) => Promise<void> }> {
  const clientId = uniqueName('their-device');
  const user = encodeURIComponent(`${vhost.name}:guest`);
  const client = await mqtt.connectAsync(broker.urls.mqtt.replace('mqtt://', `mqtt://${user}:guest@`), { clientId, reconnectPeriod: 0 });
  cleanups.push(() => client.endAsync());
  const replyTopic = `reply/${clientId}`;
  await client.subscribeAsync(replyTopic, { qos: 1 });
  return {
    send: (topic, id) => client.publishAsync(topic, JSON.stringify({ id, reply_to: replyTopic }), { qos: 1 }),
    reply: (id) =>
      new Promise<void>((resolve) => {
        const listener = (_topic: string, payload: Buffer): void => {
          if ((JSON.parse(payload.toString()) as { id?: string }).id !== id) return;
          client.off('message', listener);
          resolve();
        };
        client.on('message', listener);
      }),
  };
}

function startTrace(vhost: TestVhost, args: string[]): GroupLeader {
  const leader = startGroupLeader(process.execPath, [cliPath, 'trace', '--amqp', vhost.amqpUrl, '--management', vhost.managementUrl, ...args]);
  cleanups.push(() => leader.kill());
  return leader;
}

const escaped = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The file's trace as the app's Import reads it: each RPC's verdicts (rpc.diagnosed steps). */
async function imported(file: string): Promise<{ store: TraceStore; verdicts: (rpcId: string) => Array<{ source: string; code: string }> }> {
  const store = TraceStore.import(JSON.parse(await readFile(file, 'utf8')));
  const verdicts = (rpcId: string) =>
    store
      .steps(rpcId)
      .filter((step): step is Extract<TraceStep, { kind: 'rpc.diagnosed' }> => step.kind === 'rpc.diagnosed')
      .map((step) => ({ source: step.source, code: step.detail.verdict.code }));
  return { store, verdicts };
}

describe('bridgescope trace: verdicts for other people\'s RPCs, and --export', () => {
  it('prints a replied verdict for a device request their worker answered, and after SIGINT writes it to the export (mode 0600) as the app imports it', async () => {
    const { vhost, dir, queue } = await setUp();
    const file = join(dir, 'trace.json');
    const trace = startTrace(vhost, ['--export', file]);
    await trace.waitForLine(/^Tracing vhost .* \(turned on/);
    const device = await startDevice(vhost);
    const id = uniqueName('ok');
    const replied = device.reply(id);
    await device.send(queue, id);
    await replied;
    const line = await trace.waitForLine(new RegExp(`verdict replied .*id ${escaped(id)} `));
    expect(line).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}  ${escaped(id.slice(0, 8))}  verdict replied \\(arrived at mqtt-deliver\\): The reply to "${escaped(queue)}" id ${escaped(id)} was published by their-worker on "reply\\.their-device-[0-9a-f]+" \\d+ ms after the request, routed to "mqtt-subscription-their-device-[0-9a-f]+qos1"\\.$`));

    trace.child.kill('SIGINT');
    expect((await trace.exited).code).toBe(0);
    expect(trace.lines).toContain(`Tracing restored: switched off on vhost ${vhost.name}.`);
    // Tracing is given back first, then the file is written.
    const wrote = trace.lines.find((candidate) => candidate.startsWith('Wrote '));
    expect(wrote).toMatch(new RegExp(`^Wrote 1 RPC \\(\\d+ steps\\) to ${escaped(file)}\\.$`));
    expect(trace.lines.indexOf(wrote as string)).toBeGreaterThan(trace.lines.indexOf(`Tracing restored: switched off on vhost ${vhost.name}.`));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // In the app's Export format, and the app's Import reads it back with the verdict.
    const json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    expect(json).toMatchObject({ format: 'bridgescope-trace', version: 4, loadRuns: [], dropped: { rpcs: 0, steps: 0 } });
    const { store, verdicts } = await imported(file);
    expect(store.rpcIds()).toEqual([id]);
    expect(Number(/\((\d+) steps\)/.exec(wrote as string)?.[1])).toBe(store.steps(id).length);
    expect(verdicts(id)).toEqual([{ source: 'broker', code: 'replied' }]);
    expect(store.steps(id).map((step) => step.kind)).toEqual(expect.arrayContaining(['broker.published', 'broker.delivered', 'rpc.diagnosed']));
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('gives a request their worker took and never answered server-slow, and one to a queue nobody consumes no-consumer, as JSON steps (--json)', async () => {
    const { vhost, dir, queue } = await setUp();
    // A queue bound for its own name that nobody consumes.
    const idle = uniqueName('their_idle');
    const connection = await amqp.connect(vhost.amqpUrl);
    cleanups.push(() => connection.close());
    const channel = await connection.createChannel();
    await channel.assertQueue(idle, { durable: false, autoDelete: false });
    await channel.bindQueue(idle, 'amq.direct', idle);
    const file = join(dir, 'slow.json');
    const trace = startTrace(vhost, ['--export', file, '--timeout', '1500', '--json']);
    await trace.waitForLine(/^Tracing vhost .* \(turned on/);
    const device = await startDevice(vhost);
    const slow = uniqueName('none');
    const unserved = uniqueName('idle');
    await device.send(queue, slow);
    await device.send(idle, unserved);
    const verdictStep = async (rpcId: string): Promise<Extract<TraceStep, { kind: 'rpc.diagnosed' }>> =>
      JSON.parse(await trace.waitForLine(new RegExp(`^\\{(?=.*"rpcId":"${escaped(rpcId)}")(?=.*"kind":"rpc\\.diagnosed")`))) as Extract<TraceStep, { kind: 'rpc.diagnosed' }>;
    const [slowStep, unservedStep] = await Promise.all([verdictStep(slow), verdictStep(unserved)]);
    // The worker's queue has a consumer (their worker took the request): the server is slow, not absent.
    expect(slowStep).toMatchObject({ rpcId: slow, source: 'broker', kind: 'rpc.diagnosed', seq: expect.any(Number), detail: { verdict: { code: 'server-slow', hop: 'server' } } });
    expect(slowStep.detail.verdict.message).toContain(queue);
    expect(unservedStep).toMatchObject({ rpcId: unserved, source: 'broker', kind: 'rpc.diagnosed', detail: { verdict: { code: 'no-consumer', hop: 'queue' } } });
    expect(unservedStep.detail.verdict.message).toContain(`Queue "${idle}"`);
    // Every other step is a JSON line too, the request's publish among them.
    expect(trace.lines.some((line) => line.startsWith('{') && line.includes(`"rpcId":"${slow}"`) && line.includes('"kind":"broker.published"'))).toBe(true);

    trace.child.kill('SIGTERM');
    expect((await trace.exited).code).toBe(0);
    expect(trace.lines).toContainEqual(expect.stringMatching(new RegExp(`^Wrote 2 RPCs \\(\\d+ steps\\) to ${escaped(file)}\\.$`)));
    const { verdicts } = await imported(file);
    expect(verdicts(slow)).toEqual([{ source: 'broker', code: 'server-slow' }]);
    expect(verdicts(unserved)).toEqual([{ source: 'broker', code: 'no-consumer' }]);
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('still writes the export and switches tracing back off when SIGINT reaches its whole process group (twice, as a terminal and npm send it)', async () => {
    const { vhost, dir, queue } = await setUp();
    const file = join(dir, 'group.json');
    const trace = startTrace(vhost, ['--export', file]);
    await trace.waitForLine(/^Tracing vhost .* \(turned on/);
    expect(await vhost.api.tracing()).toBe(true);
    const device = await startDevice(vhost);
    const id = uniqueName('ok');
    await device.send(queue, id);
    await trace.waitForLine(new RegExp(`verdict replied .*id ${escaped(id)} `));

    process.kill(-trace.pid, 'SIGINT');
    process.kill(-trace.pid, 'SIGINT');
    expect((await trace.exited).code).toBe(0);
    expect(trace.lines).toContain(`Tracing restored: switched off on vhost ${vhost.name}.`);
    expect(trace.lines).toContainEqual(expect.stringMatching(new RegExp(`^Wrote 1 RPC \\(\\d+ steps\\) to ${escaped(file)}\\.$`)));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const { verdicts } = await imported(file);
    expect(verdicts(id)).toEqual([{ source: 'broker', code: 'replied' }]);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await vhost.api.tracingMarker()).toBeUndefined();
  });

  it('gives tracing back even when the export cannot be written, says why in one sentence and exits 1', async () => {
    const { vhost, dir } = await setUp();
    const gone = join(dir, 'gone');
    await mkdir(gone);
    const file = join(gone, 'trace.json');
    const trace = startTrace(vhost, ['--export', file]);
    await trace.waitForLine(/^Tracing vhost .* \(turned on/);
    // The folder checked at the start is gone by the end.
    await rm(gone, { recursive: true });
    trace.child.kill('SIGINT');
    expect((await trace.exited).code).toBe(1);
    expect(trace.lines).toContain(`Tracing restored: switched off on vhost ${vhost.name}.`);
    expect(trace.lines).toContain(`warning: could not write the trace to ${file}: its folder no longer exists`);
    expect(trace.lines.some((line) => line.startsWith('Wrote '))).toBe(false);
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('refuses --export in a folder that does not exist with one sentence (exit 2), before tracing is switched on', async () => {
    const vhost = await createTestVhost(broker.urls, 'trace-export');
    cleanups.push(() => vhost.remove());
    const result = await runCli(['trace', '--amqp', vhost.amqpUrl, '--management', vhost.managementUrl, '--export', '/nonexistent-dir/x.json']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    // (A launcher that rebuilt the bundle first says so on a line of its own.)
    const said = result.stderr.split('\n').filter((line) => line !== '' && !/rebuilt it in \d+ ms/.test(line));
    expect(said).toEqual(['bridgescope: --export /nonexistent-dir/x.json: the folder /nonexistent-dir does not exist; create it first or name a file in another folder.']);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await vhost.api.tracingMarker()).toBeUndefined();
  });
});
