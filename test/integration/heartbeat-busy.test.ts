import type { Channel, ChannelModel } from 'amqplib';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { LinkStatus } from '../../src/shared/rpc';
import { AmqpLink } from '../../src/core/links/amqp-link';
import { uniqueName } from '../support/names';

const broker = inject('broker');
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

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

    // A round trip first, so both directions just carried data; then 1.85 s without reading a byte:
    // past our watchdog's 1.75 s, short of RabbitMQ's 2 missed 1 s heartbeats.
    await opened.checkQueue(queue);
    blockEventLoop(1850);
    const afterBlock = await opened.checkQueue(queue).then(
      () => 'answered',
      (err: Error) => `failed: ${err.message}`,
    );

    if (afterBlock === 'answered') {
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
});
