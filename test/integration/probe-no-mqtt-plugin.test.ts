import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagementApi } from '../../src/core/broker/management-api';
import { probeMqttExchange } from '../../src/core/broker/checks';
import { findRabbitMQ, startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { uniqueName } from '../support/names';
import { claimTestBroker } from '../support/reap';

/** A RabbitMQ of its own whose MQTT plugin is switched off after start: the shared broker must keep its plugin. */
let dir: string;
let broker: SandboxInfo;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-noplugin-'));
  await claimTestBroker(dir);
  broker = (await startSandbox({ dir, nodeName: `${uniqueName('bridgescope-test-noplugin')}@localhost`, timeoutMs: 120_000 })).info;
  // The sandbox's own cookie ($HOME) and plugins file, as the node was started with them.
  await promisify(execFile)(join(dirname(findRabbitMQ()), 'rabbitmq-plugins'), ['disable', 'rabbitmq_mqtt', '-n', broker.nodeName], {
    env: { ...process.env, HOME: dir, RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'), RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf') },
    timeout: 120_000,
  });
}, 240_000);

afterAll(async () => {
  await stopSandbox(dir);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('the exchange probe against a RabbitMQ without the MQTT plugin', () => {
  it('says the RabbitMQ has no MQTT listener and asks whether rabbitmq_mqtt is enabled, instead of blaming mqtt.exchange', async () => {
    const api = new ManagementApi(broker.urls.management);
    expect((await api.overview()).protocols).not.toContain('mqtt');
    const verdict = await probeMqttExchange({ mqttUrl: broker.urls.mqtt, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct', api });
    expect(verdict.lines).toEqual([
      expect.objectContaining({
        status: 'fail',
        message: expect.stringMatching(/^The RabbitMQ at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+\/? has no MQTT listener \(is the rabbitmq_mqtt plugin enabled\?\): nothing accepts MQTT connections at /),
      }),
    ]);
  });
});
