import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagementApi } from '../../src/core/broker/management-api';
import { probeMqttExchange } from '../../src/core/broker/checks';
import { startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { rabbitmqTool } from '../../src/core/broker/cluster';
import { resolveRabbitMQ } from '../../src/core/broker/installations';
import { uniqueName } from '../support/names';
import { claimTestBroker } from '../support/reap';
import { mqttPluginWarning } from '../../src/cli/commands/rpc';

/**
 * A RabbitMQ of its own, with mqtt.exchange set to an exchange the probe does not watch, and whose MQTT plugin the last
 * test switches off: the shared broker must keep its settings.
 */
let dir: string;
let broker: SandboxInfo;
const elsewhere = uniqueName('bridgescope.elsewhere');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-noplugin-'));
  await claimTestBroker(dir);
  broker = (await startSandbox({ dir, nodeName: `${uniqueName('bridgescope-test-noplugin')}@localhost`, mqttExchange: elsewhere, timeoutMs: 120_000 })).info;
  const connection = await amqp.connect(broker.urls.amqp);
  await (await connection.createChannel()).assertExchange(elsewhere, 'topic', { durable: false });
  await connection.close();
}, 240_000);

afterAll(async () => {
  await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('the exchange probe on a RabbitMQ of its own', () => {
  it('blames mqtt.exchange when the probe reached RabbitMQ but none of the watched exchanges', async () => {
    const api = new ManagementApi(broker.urls.management);
    const verdict = await probeMqttExchange({ mqttUrl: broker.urls.mqtt, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct', api, timeoutMs: 1000 });
    expect(verdict.observedExchange).toBeUndefined();
    expect(verdict.lines).toEqual([
      expect.objectContaining({
        status: 'fail',
        message: expect.stringMatching(/^The probe reached RabbitMQ \(it came back to our own subscription\), but none of amq\.direct, amq\.topic received it within 1000 ms: the broker's mqtt\.exchange is set to another exchange\.$/),
      }),
    ]);
  });

  it('says the RabbitMQ has no MQTT listener and asks whether rabbitmq_mqtt is enabled, once the plugin is off, and `serve` warns of it at start', async () => {
    // The sandbox's own cookie ($HOME) and plugins file, as the node was started with them; the tool of its RabbitMQ.
    await rabbitmqTool('rabbitmq-plugins', broker.nodeName, dir, ['disable', 'rabbitmq_mqtt'], process.env, resolveRabbitMQ(broker.rabbitmq), broker.epmdPort);
    const api = new ManagementApi(broker.urls.management);
    expect((await api.overview()).protocols).not.toContain('mqtt');
    const verdict = await probeMqttExchange({ mqttUrl: broker.urls.mqtt, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct', api });
    expect(verdict.lines).toEqual([
      expect.objectContaining({
        status: 'fail',
        message: expect.stringMatching(/^The RabbitMQ at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+\/? has no MQTT listener \(is the rabbitmq_mqtt plugin enabled\?\): nothing accepts MQTT connections at /),
      }),
    ]);
    // `serve` says it once at start (issue 27: it said nothing while devices called through another broker).
    const queue = uniqueName('rpc_queue');
    expect(await mqttPluginWarning({ amqpUrl: broker.urls.amqp, mqtt: broker.urls.mqtt, management: broker.urls.management, queue, exchange: 'amq.direct' })).toMatch(
      new RegExp(`^The broker at amqp://.*@127\\.0\\.0\\.1:${broker.ports.amqp}/? has no MQTT listener \\(is the rabbitmq_mqtt plugin enabled\\?\\): no device can call "${queue}" through it, and a device that gets replies is calling another broker\\.$`),
    );
  }, 150_000);
});
