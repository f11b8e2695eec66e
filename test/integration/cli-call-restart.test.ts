/**
 * A plain `bridgescope call` waiting for its reply while the broker restarts: it says when its MQTT link goes and when it
 * is back (not only in the verdict at the timeout), subscribes its reply topic again, and gets the reply a worker sends
 * after the restart to the request the broker redelivered. This file restarts its broker: it gets a node of its own.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxInfo } from '../../src/core/broker/sandbox';
import { ManagementApi } from '../../src/core/broker/management-api';
import { cliPath } from '../support/cli';
import { uniqueName } from '../support/names';
import { removeOwnTestBroker, restartOwnTestBroker, startOwnTestBroker } from '../support/reap';
import { startGroupLeader, type GroupLeader } from '../support/processes';

let dir: string;
let broker: SandboxInfo;
const leaders: GroupLeader[] = [];
const connections: ChannelModel[] = [];

beforeAll(async () => {
  ({ dir, broker } = await startOwnTestBroker('own-call-restart'));
}, 150_000);

afterAll(async () => {
  for (const leader of leaders.splice(0)) await leader.kill();
  for (const connection of connections.splice(0)) await connection.close().catch(() => undefined);
  await removeOwnTestBroker(dir);
}, 60_000);

async function connect(): Promise<ChannelModel> {
  const connection = await amqp.connect(broker.urls.amqp);
  // The restart closes it: that is the test, not an error.
  connection.on('error', () => undefined);
  connections.push(connection);
  return connection;
}

describe('bridgescope call through a broker restart', () => {
  it('says the link went and came back, subscribes its reply topic again, and gets the reply to its redelivered request', async () => {
    const queue = uniqueName('call_restart');
    // A worker that takes the request and holds it unacked: the restart gives it back to the durable queue.
    const holding = await (await connect()).createChannel();
    holding.on('error', () => undefined);
    await holding.assertQueue(queue, { durable: true });
    await holding.bindQueue(queue, 'amq.direct', queue);
    const taken = new Promise<{ id: string; reply_to: string }>((resolve) => {
      void holding.consume(queue, (message) => {
        if (message) resolve(JSON.parse(message.content.toString()) as { id: string; reply_to: string });
      });
    });
    const call = startGroupLeader(process.execPath, [cliPath, 'call', '--mqtt', broker.urls.mqtt, '--amqp', broker.urls.amqp, '--management', broker.urls.management, '--topic', queue, '--timeout', '90000', '{"n":1}']);
    leaders.push(call);
    const request = await taken;

    broker = await restartOwnTestBroker(dir, broker);
    await call.waitForLine(/^warning: the MQTT connection was lost [\d,]+ ms into the call \(.+\); reconnecting, and waiting for the reply until the timeout \(90,000 ms\)\./);
    await call.waitForLine(/^MQTT connection back after [\d,]+ ms; still waiting for the reply/);

    // Its reply topic is bound again (the broker answers each ask; no sleep), then a worker answers the redelivered request.
    const replyKey = request.reply_to.replaceAll('/', '.');
    const api = new ManagementApi(broker.urls.management);
    const deadline = Date.now() + 60_000;
    while (!(await api.bindings('amq.direct')).some((binding) => binding.bindingKey === replyKey && binding.mqttClientId !== undefined)) {
      if (Date.now() > deadline) throw new Error(`the call's reply topic ${request.reply_to} was not subscribed again within 60 s of its link coming back`);
    }
    const worker = await (await connect()).createChannel();
    await worker.consume(queue, (message) => {
      if (!message) return;
      const redelivered = JSON.parse(message.content.toString()) as { id: string; reply_to: string };
      worker.publish('amq.direct', redelivered.reply_to.replaceAll('/', '.'), Buffer.from(JSON.stringify({ id: redelivered.id, result: 'after the restart' })));
      worker.ack(message);
    });

    const { code } = await call.exited;
    expect(code).toBe(0);
    expect(call.lines).toContain(JSON.stringify({ id: request.id, result: 'after the restart' }));
    await worker.deleteQueue(queue);
  }, 120_000);
});
