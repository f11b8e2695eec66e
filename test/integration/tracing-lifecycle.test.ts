/** Firehose tracing is a vhost-wide setting: every way a BridgeScope process can end must give it back. */
import { randomUUID } from 'node:crypto';
import { createServer, connect as connectTcp, type Socket } from 'node:net';
import amqp from 'amqplib';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { ManagementApi, TRACING_MARKER_EXCHANGE } from '../../src/core/broker/management-api';
import { managementRequest } from '../../src/core/broker/management-http';
import { checkAbandonedTracing, FirehoseTracer, releaseTracing, type FirehoseEvent } from '../../src/core/trace/firehose';
import { TraceStore } from '../../src/core/trace/trace-store';
import { TracingOwnership } from '../../src/core/trace/ownership';
import { Session } from '../../src/core/session/session';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { cliPath } from '../support/cli';
import { startGroupLeader, type GroupLeader } from '../support/processes';
import { uniqueName } from '../support/names';
import { createTestVhost, type TestVhost } from '../support/vhosts';

const broker = inject('broker');
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** Each test gets a vhost of its own: tracing is per vhost, and other test files trace "/" at the same time. */
async function freshVhost(): Promise<TestVhost> {
  const vhost = await createTestVhost(broker.urls, 'tracing');
  cleanups.push(() => vhost.remove());
  return vhost;
}

async function markerPresent(vhost: TestVhost): Promise<boolean> {
  return (await vhost.api.tracingMarker()) !== undefined;
}

/** What a BridgeScope process of this OS user leaves when it switches tracing on: its record, then its marker. */
function claimMarker(api: ManagementApi, since: string, by: string): Promise<string> {
  return new TracingOwnership().claimMarker(api, { since, by });
}

interface ManagementProxy {
  /** the broker's management URL, through the proxy */
  url: string;
  /** new requests wait (not forwarded) until `release`; resolves when the first one arrives */
  hold(): Promise<void>;
  release(): void;
  /** refuses every new request from now on (the management API became unreachable) */
  refuse(): Promise<void>;
}

/** A TCP relay in front of the real management API, so a test can make the API slow or unreachable at a chosen moment. */
async function managementProxy(managementUrl: string): Promise<ManagementProxy> {
  const target = new URL(managementUrl);
  const sockets = new Set<Socket>();
  /** while holding: what clients sent, to be forwarded on release (kept connections are held too, request by request) */
  let held: Array<() => void> | undefined;
  let arrived: (() => void) | undefined;
  const server = createServer((client) => {
    const upstream = connectTcp(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    client.on('data', (chunk: Buffer) => {
      if (!held) {
        upstream.write(chunk);
        return;
      }
      held.push(() => upstream.write(chunk));
      arrived?.();
      arrived = undefined;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const refuse = async (): Promise<void> => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  };
  cleanups.push(refuse);
  const proxied = new URL(managementUrl);
  proxied.host = `127.0.0.1:${port}`;
  return {
    url: proxied.toString().replace(/\/+$/, ''),
    hold: () => {
      held = [];
      return new Promise<void>((resolve) => (arrived = resolve));
    },
    release: () => {
      const waiting = held ?? [];
      held = undefined;
      for (const forward of waiting) forward();
    },
    refuse,
  };
}

/** Starts a command as the leader of its own process group, killed with its group after the test. */
function spawnGroup(command: string, args: string[]): GroupLeader {
  const leader = startGroupLeader(command, args);
  cleanups.push(() => leader.kill());
  return leader;
}

function traceArgs(vhost: TestVhost): string[] {
  return [cliPath, 'trace', '--amqp', vhost.amqpUrl, '--management', vhost.managementUrl, '--vhost', vhost.name];
}

function startTrace(vhost: TestVhost): GroupLeader {
  return spawnGroup(process.execPath, traceArgs(vhost));
}

/** Awaits each answer of the management API in turn until `done` holds (the broker removes a dead connection's queues on its own schedule). */
async function until(done: () => Promise<boolean>): Promise<void> {
  while (!(await done())) await new Promise((resolve) => setImmediate(resolve));
}

describe('signals', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('`trace` sent %s twice quickly to its process group switches tracing back off', async (signal) => {
    const vhost = await freshVhost();
    const trace = startTrace(vhost);
    await trace.waitForLine(/Tracing vhost .* \(turned on/);
    expect(await vhost.api.tracing()).toBe(true);
    process.kill(-trace.pid, signal);
    process.kill(-trace.pid, signal);
    expect((await trace.exited).code).toBe(0);
    expect(trace.lines).toContain(`Tracing restored: switched off on vhost ${vhost.name}.`);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('`trace` signalled again while its cleanup waits for the broker says what is pending, then still switches tracing back off', async () => {
    const vhost = await freshVhost();
    const proxy = await managementProxy(vhost.managementUrl);
    const trace = spawnGroup(process.execPath, [cliPath, 'trace', '--amqp', vhost.amqpUrl, '--management', proxy.url, '--vhost', vhost.name]);
    await trace.waitForLine(/Tracing vhost .* \(turned on/);
    const cleanupWaiting = proxy.hold();
    process.kill(-trace.pid, 'SIGTERM');
    await trace.waitForLine(/^Stopping/);
    const stoppingAt = Date.now();
    await cleanupWaiting;
    // A second signal within the echo window (750 ms) counts as the same Ctrl-C: the broker's answers pace the wait past it.
    await until(async () => (await vhost.api.tracing()) && Date.now() - stoppingAt > 1000);
    process.kill(-trace.pid, 'SIGTERM');
    await trace.waitForLine(/^Still cleaning up \(stop tracing and restore firehose tracing on vhost /);
    proxy.release();
    expect((await trace.exited).code).toBe(0);
    expect(trace.lines).toContain(`Tracing restored: switched off on vhost ${vhost.name}.`);
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('`trace` under `timeout -s TERM 10` (which signals the child and then its process group) switches tracing back off', async () => {
    const vhost = await freshVhost();
    const run = spawnGroup('timeout', ['-s', 'TERM', '10', ...traceArgs(vhost)]);
    await run.waitForLine(/Tracing vhost .* \(turned on/);
    expect(await vhost.api.tracing()).toBe(true);
    expect((await run.exited).code).toBe(124);
    expect(run.lines).toContain(`Tracing restored: switched off on vhost ${vhost.name}.`);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('`call --trace` interrupted mid-call by SIGTERM to its process group switches tracing back off and exits 143', async () => {
    const vhost = await freshVhost();
    const call = spawnGroup(process.execPath, [
      cliPath, 'call', '--trace', '--mqtt', broker.urls.mqtt, '--amqp', vhost.amqpUrl, '--management', vhost.managementUrl,
      '--topic', uniqueName('nobody-serves'), '--timeout', '120000', '"hello"',
    ]);
    await call.waitForLine(/Firehose tracing switched on for vhost/);
    expect(await vhost.api.tracing()).toBe(true);
    process.kill(-call.pid, 'SIGTERM');
    process.kill(-call.pid, 'SIGTERM');
    expect((await call.exited).code).toBe(143);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });
});

describe('a plain call interrupted', () => {
  it('by SIGINT to its process group while it waits for a reply: says what it waited for, exits 130', async () => {
    const topic = uniqueName('nobody-answers');
    // A queue that takes the request and answers nothing: the call is in flight once the broker delivered it here.
    const connection = await amqp.connect(broker.urls.amqp);
    cleanups.push(() => connection.close());
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, 'amq.direct', topic);
    const delivered = new Promise<string>((resolve) => void channel.consume(queue, (message) => message && resolve(message.content.toString()), { noAck: true }));
    const call = spawnGroup(process.execPath, [cliPath, 'call', '--mqtt', broker.urls.mqtt, '--topic', topic, '--timeout', '120000', '{"n": 1}']);
    const request = JSON.parse(await delivered) as { id: string; reply_to: string };
    process.kill(-call.pid, 'SIGINT');
    expect((await call.exited).code).toBe(130);
    expect(call.lines).toContainEqual(expect.stringMatching(new RegExp(`^Interrupted \\(SIGINT\\): no reply yet to ${request.id} after [\\d,]+ ms on "${request.reply_to}"\\.$`)));
  });
});

describe('refused credentials', () => {
  it('`call --trace` with a refused AMQP password says so, exits 4 and leaves tracing off', async () => {
    const vhost = await freshVhost();
    const call = spawnGroup(process.execPath, [
      cliPath, 'call', '--trace', '--mqtt', broker.urls.mqtt, '--amqp', vhost.amqpUrl.replace('guest:guest', 'guest:wrong'),
      '--management', vhost.managementUrl, '--topic', uniqueName('nobody-serves'), '--timeout', '60000', '"hello"',
    ]);
    expect((await call.exited).code).toBe(4);
    // The management URL's password is "guest" too, so the last-line scrubber may hide the user name "guest" as well.
    expect(call.lines.join('\n')).toMatch(/^bridgescope: The broker at amqp:\/\/(guest|\*\*\*):\*\*\*@.* refused the AMQP credentials\.$/m);
    expect(call.lines.join('\n')).not.toMatch(/wrong/);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('`call --trace` with no AMQP listener says the AMQP side failed, not "check the MQTT URL", and exits 4', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));
    const call = spawnGroup(process.execPath, [
      cliPath, 'call', '--trace', '--mqtt', broker.urls.mqtt, '--amqp', `amqp://guest:guest@127.0.0.1:${port}`,
      '--management', broker.urls.management, '--topic', uniqueName('nobody-serves'), '--timeout', '5000', '"hello"',
    ]);
    expect((await call.exited).code).toBe(4);
    const why = call.lines.find((line) => line.startsWith('why: '));
    expect(why).toMatch(/--trace reads the broker's firehose over AMQP and its management API, and could not: Nothing accepts AMQP connections at .*; check --amqp and --management/);
    expect(why).not.toMatch(/check the MQTT URL/);
  });

  it('`trace` with a refused management password says so, exits 4 and changes nothing', async () => {
    const vhost = await freshVhost();
    const trace = spawnGroup(process.execPath, [
      cliPath, 'trace', '--amqp', vhost.amqpUrl, '--management', vhost.managementUrl.replace('guest:guest', 'guest:wrong'), '--vhost', vhost.name,
    ]);
    expect((await trace.exited).code).toBe(4);
    expect(trace.lines).toEqual([expect.stringMatching(/^bridgescope: The management API at .* refused the credentials \(401\)\.$/)]);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
    expect(await vhost.api.liveTracerQueues()).toEqual([]);
  });
});

describe('ownership', () => {
  it('tracing left on by a SIGKILLed `trace` is noticed by the next `trace`, said in one sentence, and switched off when it ends', async () => {
    const vhost = await freshVhost();
    const first = startTrace(vhost);
    await first.waitForLine(/Tracing vhost .* \(turned on/);
    process.kill(-first.pid, 'SIGKILL');
    await first.exited;
    await until(async () => (await vhost.api.liveTracerQueues()).length === 0);
    expect(await vhost.api.tracing()).toBe(true);

    const next = startTrace(vhost);
    const sentence = await next.waitForLine(/left on by a BridgeScope process/);
    expect(sentence).toMatch(
      new RegExp(`^Firehose tracing on vhost ${vhost.name} was left on by a BridgeScope process that ended without restoring it \\(since \\d{4}-\\d\\d-\\d\\dT[^)]*\\); it will be switched off when this one is done\\.$`),
    );
    await next.waitForLine(/Tracing vhost .* \(it was already on\)/);
    process.kill(-next.pid, 'SIGINT');
    expect((await next.exited).code).toBe(0);
    expect(next.lines.filter((line) => line.startsWith('Tracing restored'))).toEqual([`Tracing restored: switched off on vhost ${vhost.name}.`]);
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('tracing left on by a dead BridgeScope process is noticed by `call --trace` too, and switched off when the call ends', async () => {
    const vhost = await freshVhost();
    await claimMarker(vhost.api, '2026-11-26T01:00:00.000Z', 'bridgescope trace (pid 1)');
    await vhost.api.setTracing(true);
    const call = spawnGroup(process.execPath, [
      cliPath, 'call', '--trace', '--mqtt', broker.urls.mqtt, '--amqp', vhost.amqpUrl, '--management', vhost.managementUrl,
      '--topic', uniqueName('nobody-serves'), '--timeout', '300', '"hello"',
    ]);
    expect((await call.exited).code).toBe(3);
    expect(call.lines).toContain(
      `Firehose tracing on vhost ${vhost.name} was left on by a BridgeScope process that ended without restoring it (since 2026-11-26T01:00:00.000Z); it will be switched off when this one is done.`,
    );
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('of two tracers, the first to stop leaves tracing on for the second, and the second switches it off', async () => {
    const vhost = await freshVhost();
    const first = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore() });
    const second = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore() });
    cleanups.push(() => first.stop(), () => second.stop());
    expect(await first.start()).toMatchObject({ state: 'on', turnedOnByUs: true });
    expect(await second.start()).toMatchObject({ state: 'on', turnedOnByUs: false });
    expect(await first.stop()).toEqual({ outcome: 'left-on', why: 'in-use' });
    expect(await vhost.api.tracing()).toBe(true);
    expect(await second.stop()).toEqual({ outcome: 'switched-off' });
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('gives tracing back to a tracer that joined while the last one was switching it off', async () => {
    const vhost = await freshVhost();
    /** The real API, with a second tracer arriving right after tracing is switched off (the race being tested). */
    class JoinDuringSwitchOff extends ManagementApi {
      join: (() => Promise<void>) | undefined;
      override async setTracing(on: boolean): Promise<void> {
        await super.setTracing(on);
        const join = this.join;
        this.join = undefined;
        if (!on && join) await join();
      }
    }
    const api = new JoinDuringSwitchOff(vhost.managementUrl, vhost.name);
    await claimMarker(api, '2026-11-26T01:00:00.000Z', 'the tracer that is stopping');
    await api.setTracing(true);
    api.join = async () => {
      // What a starting tracer does first: its record, then its exclusive live queue.
      const queue = `bridgescope.tracer.${randomUUID()}`;
      await new TracingOwnership().registerTracer(queue, vhost.name);
      cleanups.push(() => new TracingOwnership().unregisterTracer(queue));
      const connection = await amqp.connect(vhost.amqpUrl);
      cleanups.push(() => connection.close());
      const channel = await connection.createChannel();
      await channel.assertQueue(queue, { exclusive: true });
    };
    expect(await releaseTracing(api)).toEqual({ outcome: 'left-on', why: 'in-use' });
    expect(await api.tracing()).toBe(true);
    expect(await markerPresent(vhost)).toBe(true);
  });

  it('leaves tracing owned by the tracer that started while the last one was removing its marker, which then switches it off (#16)', async () => {
    const vhost = await freshVhost();
    /** The real API, with a second tracer starting right before the stopping tracer removes the marker (the race being tested). */
    class StartDuringMarkerRemoval extends ManagementApi {
      beforeRemoval: (() => Promise<void>) | undefined;
      override async deleteTracingMarkers(...args: Parameters<ManagementApi['deleteTracingMarkers']>): Promise<void> {
        const hook = this.beforeRemoval;
        this.beforeRemoval = undefined;
        if (hook) await hook();
        await super.deleteTracingMarkers(...args);
      }
    }
    const stoppingApi = new StartDuringMarkerRemoval(vhost.managementUrl, vhost.name);
    const first = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: stoppingApi, store: new TraceStore() });
    const second = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore() });
    cleanups.push(() => first.stop(), () => second.stop());
    expect(await first.start()).toMatchObject({ state: 'on', turnedOnByUs: true });
    stoppingApi.beforeRemoval = async () => {
      expect(await second.start()).toMatchObject({ state: 'on', turnedOnByUs: true });
    };
    expect(await first.stop()).toEqual({ outcome: 'switched-off' });
    expect(await vhost.api.tracing()).toBe(true);
    expect(await markerPresent(vhost)).toBe(true);
    expect(await second.stop()).toEqual({ outcome: 'switched-off' });
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('replaces a stale marker (tracing off, e.g. after a node restart) with one naming the tracer that switches tracing on', async () => {
    const vhost = await freshVhost();
    await claimMarker(vhost.api, '2026-11-26T01:00:00.000Z', 'bridgescope trace (pid 1)');
    const startedAt = Date.now();
    const tracer = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore(), owner: 'the tracer after the restart' });
    cleanups.push(() => tracer.stop());
    expect(await tracer.start()).toMatchObject({ state: 'on', turnedOnByUs: true });
    const marker = await vhost.api.tracingMarker();
    expect(marker?.by).toBe('the tracer after the restart');
    expect(Date.parse(marker?.since ?? '')).toBeGreaterThanOrEqual(startedAt - 1000);
  });

  it('says "an unknown time" for a marker whose since is not an ISO date (any vhost user can write it)', async () => {
    const vhost = await freshVhost();
    await claimMarker(vhost.api, 'yesterday); run rm -rf / (really', 'x\u001b[2Jcleared\nthe screen');
    await vhost.api.setTracing(true);
    const abandoned = await checkAbandonedTracing(vhost.api);
    expect(abandoned?.message).toBe(
      `Firehose tracing on vhost ${vhost.name} was left on by a BridgeScope process that ended without restoring it (since an unknown time); it will be switched off when this one is done.`,
    );
    expect(await vhost.api.tracingMarker()).toEqual({ since: 'an unknown time', by: 'an unknown BridgeScope process' });
  });

  it('leaves on the tracing a human switched on, even when the tracer ran alone', async () => {
    const vhost = await freshVhost();
    await vhost.api.setTracing(true);
    const tracer = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore() });
    cleanups.push(() => tracer.stop());
    expect(await tracer.start()).toMatchObject({ state: 'on', turnedOnByUs: false });
    expect(await checkAbandonedTracing(vhost.api)).toBeUndefined();
    expect(await tracer.stop()).toEqual({ outcome: 'left-on', why: 'not-ours' });
    expect(await vhost.api.tracing()).toBe(true);
  });

  it('lets an app that only connects (no tracer) notice abandoned tracing and switch it off when done', async () => {
    const vhost = await freshVhost();
    // What a BridgeScope process that died while tracing leaves behind: its marker and the flag on, no live tracer queue.
    await claimMarker(vhost.api, '2026-11-26T01:00:00.000Z', 'bridgescope trace (pid 1)');
    await vhost.api.setTracing(true);
    const abandoned = await checkAbandonedTracing(vhost.api);
    expect(abandoned?.message).toBe(
      `Firehose tracing on vhost ${vhost.name} was left on by a BridgeScope process that ended without restoring it (since 2026-11-26T01:00:00.000Z); it will be switched off when this one is done.`,
    );
    expect(await vhost.api.tracing()).toBe(true);
    expect(await abandoned?.restore()).toEqual({ outcome: 'switched-off' });
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('has the app say, on connecting, that a dead BridgeScope process left tracing on, and switch it off when it closes', async () => {
    const vhost = await freshVhost();
    await claimMarker(vhost.api, '2026-11-26T01:00:00.000Z', 'bridgescope trace (pid 1)');
    await vhost.api.setTracing(true);
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    cleanups.push(() => session.dispose());
    const state = await session.open({
      name: 'abandoned',
      amqpUrl: vhost.amqpUrl,
      mqttUrl: broker.urls.mqtt,
      managementUrl: broker.urls.management,
      vhost: vhost.name,
      exchange: 'amq.direct',
    });
    expect(state.notice).toMatch(new RegExp(`^Firehose tracing on vhost ${vhost.name} was left on by a BridgeScope process that ended without restoring it`));
    expect(await vhost.api.tracing()).toBe(true);
    await session.close();
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
    expect(session.state().notice).toBeUndefined();
  });

  it('has the app say why, and fail its "tracing off" step, when the management API cannot switch tracing off', async () => {
    const vhost = await freshVhost();
    const proxy = await managementProxy(vhost.managementUrl);
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    cleanups.push(() => session.dispose());
    await session.open({ name: 'release-fails', amqpUrl: vhost.amqpUrl, mqttUrl: broker.urls.mqtt, managementUrl: proxy.url, vhost: vhost.name, exchange: 'amq.direct' });
    expect(await session.setTracing(true)).toMatchObject({ state: 'on' });
    await proxy.refuse();
    await expect(session.setTracing(false)).rejects.toThrow(/^Could not switch firehose tracing off on vhost .*; it may still be on\.$/);
    expect(session.state().tracer).toMatchObject({ state: 'off', reason: expect.stringMatching(/it may still be on/) });
    expect(await vhost.api.tracing()).toBe(true);
  });

  it('has the app fail its close, after closing its links, when tracing a dead process left on cannot be switched off', async () => {
    const vhost = await freshVhost();
    await claimMarker(vhost.api, '2026-11-26T01:00:00.000Z', 'bridgescope trace (pid 1)');
    await vhost.api.setTracing(true);
    const proxy = await managementProxy(vhost.managementUrl);
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    cleanups.push(() => session.dispose());
    const state = await session.open({ name: 'restore-fails', amqpUrl: vhost.amqpUrl, mqttUrl: broker.urls.mqtt, managementUrl: proxy.url, vhost: vhost.name, exchange: 'amq.direct' });
    expect(state.notice).toMatch(/was left on by a BridgeScope process/);
    await proxy.refuse();
    await expect(session.close()).rejects.toThrow(/^Could not switch firehose tracing off on vhost .*; it may still be on\.$/);
    expect(session.state().links).toEqual({ amqp: { state: 'idle' }, mqtt: { state: 'idle' } });
    expect(await vhost.api.tracing()).toBe(true);
  });

  it('removes quietly a marker whose tracing is already off (a node restart resets the flag)', async () => {
    const vhost = await freshVhost();
    await claimMarker(vhost.api, '2026-11-26T01:00:00.000Z', 'bridgescope trace (pid 1)');
    expect(await checkAbandonedTracing(vhost.api)).toBeUndefined();
    expect(await markerPresent(vhost)).toBe(false);
  });
});

describe('garbage', () => {
  it('keeps consuming, without a crash, after 1,000 generated bodies that are not what an RPC carries', async () => {
    const vhost = await freshVhost();
    const run = uniqueName('garbage');
    let seen = 0;
    let allSeen: () => void = () => undefined;
    const complete = new Promise<void>((resolve) => (allSeen = resolve));
    const bodies = [
      Buffer.alloc(0),
      Buffer.from([0xff, 0xfe, 0x00, 0xc3]),
      Buffer.from('{"id":'),
      Buffer.from('null'),
      Buffer.from('[{"id":1,"reply_to":2}]'),
      Buffer.from('{"id":{"nested":true},"reply_to":"reply/#/+"}'),
      Buffer.from(`{"id":"__proto__","reply_to":"${'x/'.repeat(200)}"}`),
      Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`),
      ...fc.sample(fc.uint8Array({ maxLength: 300 }), { numRuns: 496, seed: 10 }).map((bytes) => Buffer.from(bytes)),
      ...fc.sample(fc.json(), { numRuns: 500, seed: 11 }).map((text) => Buffer.from(text)),
    ];
    expect(bodies.length).toBe(1004);
    const onEvent = (event: FirehoseEvent): void => {
      if (event.type !== 'publish' || event.routingKeys[0] !== run) return;
      seen += 1;
      if (seen === bodies.length) allSeen();
    };
    const tracer = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore(), onEvent });
    cleanups.push(() => tracer.stop());
    expect((await tracer.start()).state).toBe('on');

    const connection = await amqp.connect(vhost.amqpUrl);
    cleanups.push(() => connection.close());
    const channel = await connection.createConfirmChannel();
    for (const body of bodies) channel.publish('amq.direct', run, body, { headers: { 'x-garbage': body.subarray(0, 8) } });
    await channel.waitForConfirms();
    await complete;
    expect(tracer.status.state).toBe('on');
    expect(await tracer.stop()).toEqual({ outcome: 'switched-off' });
  });
});

describe('a broken stream', () => {
  it('costs one event when a listener throws on it, and the stream goes on', async () => {
    const vhost = await freshVhost();
    const run = uniqueName('throwing');
    let seen = 0;
    let bothSeen: () => void = () => undefined;
    const complete = new Promise<void>((resolve) => (bothSeen = resolve));
    const onEvent = (event: FirehoseEvent): void => {
      if (event.type !== 'publish' || event.routingKeys[0] !== run) return;
      seen += 1;
      if (seen === 2) bothSeen();
      throw new Error('a listener that fails on what it was given');
    };
    const tracer = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore(), onEvent });
    cleanups.push(() => tracer.stop());
    await tracer.start();
    const connection = await amqp.connect(vhost.amqpUrl);
    cleanups.push(() => connection.close());
    const channel = await connection.createConfirmChannel();
    channel.publish('amq.direct', run, Buffer.from('first'));
    channel.publish('amq.direct', run, Buffer.from('second'));
    await channel.waitForConfirms();
    await complete;
    expect(tracer.status.state).toBe('on');
  });

  it('reports reconnecting, then on again, when an operator force-closes its connection', async () => {
    const vhost = await freshVhost();
    const tracer = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore() });
    cleanups.push(() => tracer.stop());
    await tracer.start();
    const states: string[] = [];
    const resumed = new Promise<void>((resolve) =>
      tracer.on('status', (status) => {
        states.push(status.state);
        if (status.state === 'on') resolve();
      }),
    );
    let connection: string | undefined;
    await until(async () => {
      const all = await managementRequest<Array<{ name: string; vhost: string }>>(vhost.managementUrl, '/api/connections?columns=name,vhost');
      connection = all.find((candidate) => candidate.vhost === vhost.name)?.name;
      return connection !== undefined;
    });
    await managementRequest(vhost.managementUrl, `/api/connections/${encodeURIComponent(connection as string)}`, { method: 'DELETE' });
    await resumed;
    expect(states[0]).toBe('reconnecting');
    expect(states.at(-1)).toBe('on');
    expect(tracer.status).toMatchObject({ state: 'on', resumed: true });
    expect(await vhost.api.liveTracerQueues()).toHaveLength(1);
    expect(await tracer.stop()).toEqual({ outcome: 'switched-off' });
  });
});

describe('the marker', () => {
  it('is a durable internal exchange of its own per owner, named for BridgeScope', async () => {
    const vhost = await freshVhost();
    const tracer = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore(), owner: 'a test' });
    cleanups.push(() => tracer.stop());
    await tracer.start();
    const [marker] = await vhost.api.tracingMarkers();
    expect(marker?.exchange).toMatch(new RegExp(`^${TRACING_MARKER_EXCHANGE.replaceAll('.', '\\.')}\\.[0-9a-f-]{36}$`));
    const exchange = await managementRequest<Record<string, unknown>>(vhost.managementUrl, `/api/exchanges/${encodeURIComponent(vhost.name)}/${marker?.exchange}`);
    expect(exchange).toMatchObject({ durable: true, internal: true, arguments: { 'x-bridgescope-by': 'a test' } });
  });

  it('left by an older BridgeScope (one exchange named exactly so, which anyone can make) proves nothing: tracing is left as found (#27)', async () => {
    const vhost = await freshVhost();
    await managementRequest(vhost.managementUrl, `/api/exchanges/${encodeURIComponent(vhost.name)}/${TRACING_MARKER_EXCHANGE}`, {
      method: 'PUT',
      body: { type: 'fanout', durable: true, internal: true, arguments: { 'x-bridgescope-since': '2026-11-26T01:00:00.000Z', 'x-bridgescope-by': 'bridgescope trace (pid 1)' } },
    });
    await vhost.api.setTracing(true);
    expect(await checkAbandonedTracing(vhost.api)).toBeUndefined();
    expect(await releaseTracing(vhost.api)).toEqual({ outcome: 'left-on', why: 'not-ours' });
    expect(await vhost.api.tracing()).toBe(true);
  });
});

/** Another user of the broker (a tenant), with the tags and the permissions on `vhost` given; deleted after the test. */
async function otherUser(vhost: TestVhost, tags: string): Promise<{ name: string; managementUrl: string; amqpUrl: string }> {
  const name = uniqueName('tenant');
  const password = uniqueName('pw');
  await managementRequest(vhost.managementUrl, `/api/users/${encodeURIComponent(name)}`, { method: 'PUT', body: { password, tags } });
  cleanups.push(() => managementRequest(vhost.managementUrl, `/api/users/${encodeURIComponent(name)}`, { method: 'DELETE' }));
  await managementRequest(vhost.managementUrl, `/api/permissions/${encodeURIComponent(vhost.name)}/${encodeURIComponent(name)}`, {
    method: 'PUT',
    body: { configure: '.*', write: '.*', read: '.*' },
  });
  const withUser = (url: string): string => {
    const parsed = new URL(url);
    parsed.username = name;
    parsed.password = password;
    return parsed.toString().replace(/\/+$/, '');
  };
  return { name, managementUrl: withUser(vhost.managementUrl), amqpUrl: withUser(vhost.amqpUrl) };
}

describe('a shared broker (#27)', () => {
  it('takes no `bridgescope.tracing-owner.*` exchange another user made as ours: `trace` leaves the tracing it found on', async () => {
    const vhost = await freshVhost();
    const tenant = await otherUser(vhost, 'management');
    // What any user who may declare exchanges can make: our name, our arguments.
    await managementRequest(tenant.managementUrl, `/api/exchanges/${encodeURIComponent(vhost.name)}/${TRACING_MARKER_EXCHANGE}.x`, {
      method: 'PUT',
      body: { type: 'fanout', durable: true, internal: true, arguments: { 'x-bridgescope-since': '2026-11-26T01:00:00.000Z', 'x-bridgescope-by': 'bridgescope trace (pid 1)' } },
    });
    // The operator switches tracing on by hand.
    await vhost.api.setTracing(true);
    expect(await checkAbandonedTracing(vhost.api)).toBeUndefined();
    const trace = startTrace(vhost);
    await trace.waitForLine(/Tracing vhost .* \(it was already on\)/);
    process.kill(-trace.pid, 'SIGINT');
    expect((await trace.exited).code).toBe(0);
    expect(trace.lines.join('\n')).not.toMatch(/left on by a BridgeScope process/);
    expect(trace.lines).toContain('Tracing restored: left on, as it was found.');
    expect(await vhost.api.tracing()).toBe(true);
  });

  it('does not let a `bridgescope.tracer.*` queue another user made keep on the tracing our last tracer switched on', async () => {
    const vhost = await freshVhost();
    const tenant = await otherUser(vhost, '');
    const connection = await amqp.connect(tenant.amqpUrl, { clientProperties: { connection_name: 'bridgescope-tracer' } });
    cleanups.push(() => connection.close());
    const channel = await connection.createChannel();
    await channel.assertQueue(`bridgescope.tracer.${uniqueName('forged')}`, { exclusive: true, autoDelete: true });
    const tracer = new FirehoseTracer({ amqpUrl: vhost.amqpUrl, api: vhost.api, store: new TraceStore() });
    cleanups.push(() => tracer.stop());
    expect(await tracer.start()).toMatchObject({ state: 'on', turnedOnByUs: true });
    expect(await tracer.stop()).toEqual({ outcome: 'switched-off' });
    expect(await vhost.api.tracing()).toBe(false);
    expect(await markerPresent(vhost)).toBe(false);
  });

  it('tells a management user who is not an administrator that tracing needs the administrator tag, and `call --trace` goes on without the firehose', async () => {
    const vhost = await freshVhost();
    const tenant = await otherUser(vhost, 'management');
    const call = spawnGroup(process.execPath, [
      cliPath, 'call', '--trace', '--mqtt', broker.urls.mqtt, '--amqp', vhost.amqpUrl, '--management', tenant.managementUrl,
      '--topic', uniqueName('nobody-serves'), '--timeout', '300', '"hello"',
    ]);
    // Exit 3: the call ran to its timeout (nobody serves the topic), with the client's own steps.
    expect((await call.exited).code).toBe(3);
    expect(call.lines).toContain(
      `warning: Firehose tracing on vhost ${vhost.name} needs a management user with the "administrator" tag (RabbitMQ lets only administrators switch it); showing client and server steps only.`,
    );
    expect(call.lines.join('\n')).not.toMatch(/refused the credentials/);
    expect(await vhost.api.tracing()).toBe(false);
  });

  it('says the same to the app, whose session goes on without the firehose', async () => {
    const vhost = await freshVhost();
    const tenant = await otherUser(vhost, 'management');
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    cleanups.push(() => session.dispose());
    // Only the management API is asked as that user: the links keep the test's own credentials.
    await session.open({
      name: 'not-admin',
      amqpUrl: vhost.amqpUrl,
      mqttUrl: broker.urls.mqtt,
      managementUrl: tenant.managementUrl,
      vhost: vhost.name,
      exchange: 'amq.direct',
    });
    expect(await session.setTracing(true)).toEqual({
      state: 'unavailable',
      reason: `Firehose tracing on vhost ${vhost.name} needs a management user with the "administrator" tag (RabbitMQ lets only administrators switch it); showing client and server steps only.`,
    });
    expect(session.state().links).toMatchObject({ amqp: { state: 'connected' }, mqtt: { state: 'connected' } });
  });
});
