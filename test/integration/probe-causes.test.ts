import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { ManagementApi } from '../../src/core/broker/management-api';
import { probeMqttExchange } from '../../src/core/broker/checks';
import { freePorts } from '../../src/core/broker/sandbox';
import { startFakeMqttBroker } from '../support/fake-mqtt-broker';
import { runCli } from '../support/cli';

const broker = inject('broker');
const api = new ManagementApi(broker.urls.management);
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A TCP listener that is not MQTT: it takes the connection and never answers. */
async function silentListener(): Promise<string> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const failLine = (message: RegExp) => expect.objectContaining({ status: 'fail', message: expect.stringMatching(message) });

describe('the exchange probe names the real cause', () => {
  it('says the MQTT broker is not the RabbitMQ when a non-RabbitMQ MQTT broker acked the probe, instead of blaming mqtt.exchange', async () => {
    const fake = await startFakeMqttBroker();
    closers.push(() => fake.close());
    const verdict = await probeMqttExchange({ mqttUrl: fake.url, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct', api, timeoutMs: 500 });
    expect(fake.published).toHaveLength(1);
    expect(verdict.observedExchange).toBeUndefined();
    expect(verdict.lines[0]).toEqual(
      failLine(new RegExp(`^The MQTT broker at ${fake.url}/? accepted our message but the RabbitMQ at amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${broker.ports.amqp}/? never saw it: they are not the same broker \\(is ${fake.url}/? a Mosquitto\\?\\)\\.$`)),
    );
    expect(JSON.stringify(verdict)).not.toMatch(/mqtt\.exchange/);
  });

  it('ends, naming the other broker, when an MQTT broker never acknowledges the subscription or the probe', async () => {
    const fake = await startFakeMqttBroker({ silentAfterConnect: true });
    closers.push(() => fake.close());
    const verdict = await probeMqttExchange({ mqttUrl: fake.url, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct', api, timeoutMs: 300 });
    expect(verdict.lines[0]).toEqual(failLine(/did not acknowledge our message within 300 ms but the RabbitMQ at .* never saw it: they are not the same broker/));
  });

  it('says nothing accepts MQTT connections when the MQTT port is closed, and that this RabbitMQ listens for MQTT elsewhere', async () => {
    const [closedPort] = await freePorts(1);
    const verdict = await probeMqttExchange({ mqttUrl: `mqtt://127.0.0.1:${closedPort}`, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct', api });
    expect(verdict.lines).toEqual([
      failLine(/^Nothing accepts MQTT connections at mqtt:\/\/127\.0\.0\.1:\d+\/? \(connection refused\); the RabbitMQ at .* does have an MQTT listener, so check the MQTT URL's host and port\.$/),
    ]);
  });

  it('asks whether the rabbitmq_mqtt plugin is enabled when the MQTT port does not speak MQTT and the management API cannot tell', async () => {
    const url = await silentListener();
    const verdict = await probeMqttExchange({ mqttUrl: url, amqpUrl: broker.urls.amqp, configuredExchange: 'amq.direct' });
    expect(verdict.lines).toEqual([failLine(/is the rabbitmq_mqtt plugin enabled\?$/)]);
    expect(verdict.lines[0]?.message).not.toMatch(/mqtt\.exchange/);
  });

  it('names a management API that refused the credentials, next to a probe that otherwise passed', async () => {
    const wrong = new URL(broker.urls.management);
    wrong.password = 'wrong-password';
    const verdict = await probeMqttExchange({
      mqttUrl: broker.urls.mqtt,
      amqpUrl: broker.urls.amqp,
      configuredExchange: 'amq.direct',
      api: new ManagementApi(wrong.toString()),
    });
    expect(verdict.observedExchange).toBe('amq.direct');
    expect(verdict.lines).toEqual([
      expect.objectContaining({ check: 'MQTT exchange', status: 'pass' }),
      failLine(/^The management API at http:\/\/127\.0\.0\.1:\d+\/? refused the credentials/),
    ]);
  });

  it('bridgescope probe against a non-RabbitMQ MQTT broker prints that cause and exits 1', async () => {
    const fake = await startFakeMqttBroker();
    closers.push(() => fake.close());
    const result = await runCli(['probe', '--mqtt', fake.url, '--amqp', broker.urls.amqp, '--management', broker.urls.management]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/FAIL {2}The MQTT broker at .* accepted our message but the RabbitMQ at .* never saw it: they are not the same broker/);
    expect(result.stdout).not.toMatch(/mqtt\.exchange/);
  });
});
