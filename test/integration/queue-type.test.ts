/** The shared queue's type (issue 15): `quorum` when asked, an existing queue taken as it is, a clash said in one sentence. */
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { managementRequest } from '../../src/core/broker/management-http';
import { RpcServer } from '../../src/core/rpc/server';
import { uniqueName } from '../support/names';

const broker = inject('broker');
let connection: ChannelModel;
let channel: Channel;
const servers: RpcServer[] = [];

beforeAll(async () => {
  connection = await amqp.connect(broker.urls.amqp);
  channel = await connection.createChannel();
});

afterAll(async () => {
  for (const server of servers) await server.stop(0).catch(() => undefined);
  await connection.close();
});

const queueType = async (queue: string): Promise<string> =>
  (await managementRequest<{ type: string }>(broker.urls.management, `/api/queues/%2F/${encodeURIComponent(queue)}`)).type;

const serverOn = (queue: string, type?: 'classic' | 'quorum'): RpcServer => {
  const server = new RpcServer({ amqpUrl: broker.urls.amqp, queue, ...(type ? { queueType: type } : {}), handler: async () => 'ok' });
  servers.push(server);
  return server;
};

describe('the shared queue type', () => {
  it('declares a quorum queue when asked, and a server without a type then uses it as it is', async () => {
    const queue = uniqueName('rpc_quorum');
    await serverOn(queue, 'quorum').start();
    expect(await queueType(queue)).toBe('quorum');
    // a second server that does not say a type joins the same quorum queue instead of failing on its arguments
    await serverOn(queue).start();
    expect(await queueType(queue)).toBe('quorum');
    const { consumerCount } = await channel.checkQueue(queue);
    expect(consumerCount).toBeGreaterThanOrEqual(2);
    await channel.deleteQueue(queue);
  });

  it('declares a classic queue with x-queue-type classic (a vhost whose default type is quorum must not turn it quorum), and takes an existing classic queue', async () => {
    const queue = uniqueName('rpc_classic');
    await serverOn(queue, 'classic').start();
    const declared = await managementRequest<{ type: string; arguments: Record<string, unknown> }>(broker.urls.management, `/api/queues/%2F/${encodeURIComponent(queue)}`);
    expect(declared).toMatchObject({ type: 'classic', arguments: { 'x-queue-type': 'classic' } });
    await channel.deleteQueue(queue);
    // a classic queue declared without the argument (by an older server, say) is the same queue to the broker
    const older = uniqueName('rpc_classic');
    await channel.assertQueue(older, { durable: true });
    await serverOn(older, 'classic').start();
    expect(await queueType(older)).toBe('classic');
    await channel.deleteQueue(older);
  });

  it('says in one sentence that an existing classic queue cannot become a quorum queue, and what to do', async () => {
    const queue = uniqueName('rpc_classic');
    await channel.assertQueue(queue, { durable: true });
    await expect(serverOn(queue, 'quorum').start()).rejects.toMatchObject({
      code: 'broker-failed',
      message: expect.stringMatching(new RegExp(`^Cannot declare the queue "${queue}": .*x-queue-type.* It already exists with another type than quorum: delete it \\(its messages go with it\\) or use another --queue to get a quorum queue\\.$`)),
    });
    expect(await queueType(queue)).toBe('classic');
    await channel.deleteQueue(queue);
  });
});
