import type { Channel, ChannelModel } from 'amqplib';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { LinkStatus } from '../../src/shared/rpc';
import { AmqpLink } from '../../src/core/links/amqp-link';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { uniqueName } from '../support/names';

const broker = inject('broker');
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A proxy in front of the shared broker, and the AMQP URL that goes through it. */
async function proxied(): Promise<{ proxy: FaultProxy; url: string }> {
  const direct = new URL(broker.urls.amqp);
  const proxy = await startFaultProxy({ host: direct.hostname, port: Number(direct.port) });
  const url = new URL(broker.urls.amqp);
  url.port = String(proxy.port);
  return { proxy, url: url.toString() };
}

function nextStatus(link: AmqpLink, state: LinkStatus['state']): Promise<{ status: LinkStatus; at: number }> {
  return new Promise((resolve) => {
    const listener = (status: LinkStatus): void => {
      if (status.state !== state) return;
      link.off('status', listener);
      resolve({ status, at: performance.now() });
    };
    link.on('status', listener);
  });
}

/** Keeps the event loop busy for `ms`, as a synchronous handler would (no timer, no socket read can run meanwhile). */
function blockEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy on purpose
  }
}

describe('the AMQP heartbeat watchdog', () => {
  it('blames the blocked event loop, not the broker, and keeps the link, when the process itself was busy past 1.75 intervals', async () => {
    const queue = uniqueName('heartbeat-busy');
    let channel: Channel | undefined;
    const link = new AmqpLink({
      url: broker.urls.amqp,
      connectionName: queue,
      heartbeatSeconds: 1,
      onConnected: async (model: ChannelModel) => {
        channel = await model.createChannel();
        await channel.assertQueue(queue, { exclusive: true });
      },
    });
    const statuses: LinkStatus[] = [];
    const warnings: string[] = [];
    link.on('status', (status) => statuses.push(status));
    link.on('warning', (message) => warnings.push(message));
    closers.push(() => link.close());
    await link.open();
    statuses.length = 0; // only what happens from here on counts
    const opened = channel as Channel;
    // The verdict waits for the bytes that queued up during the block, so the warning may come just after the answer.
    const warned = new Promise<void>((resolve) => link.once('warning', () => resolve()));

    // A round trip first, so both directions just carried data; then 1.85 s without reading a byte:
    // past our watchdog's 1.75 s, short of RabbitMQ's 2 missed 1 s heartbeats.
    await opened.checkQueue(queue);
    blockEventLoop(1850);
    const afterBlock = await opened.checkQueue(queue).then(
      () => 'answered',
      (err: Error) => `failed: ${err.message}`,
    );

    if (afterBlock === 'answered') {
      await warned;
      expect(warnings).toEqual([expect.stringMatching(/^the process was busy for 1\.\d s \(event loop blocked\); not the broker's fault/)]);
      expect(statuses.filter((status) => status.state !== 'connected')).toEqual([]);
      expect(link.status.state).toBe('connected');
    } else {
      // The broker may still have given up on our heartbeats: then the reason given is our busy loop, not its silence.
      const lost = statuses.find((status) => status.state === 'reconnecting');
      expect(lost).toMatchObject({ lastError: expect.stringMatching(/the process was busy for \d+\.\d s \(event loop blocked\)/) });
      expect(lost).not.toMatchObject({ lastError: expect.stringMatching(/no data from the broker/) });
    }
  });

  it('when the broker gave up on our heartbeats during a 4 s block, the link says the process was busy, not that the broker was silent', async () => {
    const queue = uniqueName('heartbeat-busy-lost');
    let channel: Channel | undefined;
    const link = new AmqpLink({
      url: broker.urls.amqp,
      connectionName: queue,
      heartbeatSeconds: 1,
      onConnected: async (model: ChannelModel) => {
        channel = await model.createChannel();
        await channel.assertQueue(queue, { exclusive: true });
      },
    });
    const statuses: LinkStatus[] = [];
    link.on('status', (status) => statuses.push(status));
    closers.push(() => link.close());
    await link.open();
    const opened = channel as Channel;
    await opened.checkQueue(queue);
    // Past 3 intervals: RabbitMQ closes a connection after 2 to 3 heartbeat intervals without a byte from it.
    blockEventLoop(4000);
    const lost = new Promise<LinkStatus>((resolve) => {
      const seen = statuses.find((status) => status.state === 'reconnecting');
      if (seen) resolve(seen);
      link.on('status', (status) => {
        if (status.state === 'reconnecting') resolve(status);
      });
    });
    // A write makes the closed socket show at once.
    void opened.checkQueue(queue).catch(() => undefined);
    expect(await lost).toMatchObject({ lastError: expect.stringMatching(/the process was busy for [34]\.\d s \(event loop blocked\), so the broker stopped hearing our heartbeats; not the broker's fault$/) });
    expect(statuses.map((status) => (status.state === 'reconnecting' ? status.lastError : '')).join(' ')).not.toMatch(/no data from the broker/);
  });

  it('drops a broker that stayed silent through a block of our own loop right after the block, not a whole interval later', async () => {
    const queue = uniqueName('heartbeat-silent-busy');
    const { proxy, url } = await proxied();
    let channel: Channel | undefined;
    const link = new AmqpLink({
      url,
      connectionName: queue,
      heartbeatSeconds: 1,
      maxReconnectDelayMs: 1000,
      onConnected: async (model: ChannelModel) => {
        channel = await model.createChannel();
        await channel.assertQueue(queue, { exclusive: true });
      },
    });
    const warnings: string[] = [];
    link.on('warning', (message) => warnings.push(message));
    closers.push(() => link.close(1000), () => proxy.close());
    await link.open();
    await (channel as Channel).checkQueue(queue);

    proxy.silence();
    const lastFromBroker = proxy.lastToClientAt();
    const lost = nextStatus(link, 'reconnecting');
    // Blocked until 2 s after the broker's last byte: past the watchdog's 1.75 s, and the check's lateness alone would
    // explain all of that silence. The broker sent nothing meanwhile, so nothing may excuse it.
    blockEventLoop(lastFromBroker + 2000 - performance.now());
    const { status, at } = await lost;
    // The old watchdog gave the silent broker a fresh 1.75 s here; amqplib's own check would only fire a second later.
    expect(at - lastFromBroker).toBeLessThan(2800);
    expect(status).toMatchObject({ lastError: expect.stringMatching(/^no data from the broker for 2 s \(heartbeat 1 s\)$/) });
    expect(warnings).toEqual([]);
  });
});

describe('an AMQP link whose connection the network resets', () => {
  it('does not crash the process when the reset comes while it sets the new connection up, and connects on the next attempt', async () => {
    const queue = uniqueName('link-reset-setup');
    const { proxy, url } = await proxied();
    let setups = 0;
    const link = new AmqpLink({
      url,
      connectionName: queue,
      heartbeatSeconds: 5,
      initialRetries: 3,
      maxReconnectDelayMs: 500,
      onConnected: async (model: ChannelModel) => {
        setups += 1;
        // The first connection is reset by the network in the middle of our topology setup.
        if (setups === 1) proxy.resetClients();
        const channel = await model.createChannel();
        await channel.assertQueue(queue, { exclusive: true });
      },
    });
    closers.push(() => link.close(1000), () => proxy.close());
    await link.open();
    expect(setups).toBe(2);
    expect(link.status.state).toBe('connected');
  });
});

