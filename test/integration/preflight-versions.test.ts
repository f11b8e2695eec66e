/**
 * The pre-flight applies the rules of the broker's real version (issue 15): here the sandbox's RabbitMQ 3.10, the one
 * version this machine runs. The rules of 3.12 to 4.1 are unit-tested in test/unit/broker-versions.test.ts.
 *
 * Version-specific on purpose: it holds the exact lines of 3.10 (no MQTT 5, QoS 2 granted as 1) on a real 3.10 node,
 * and its first test fails on any other version. So .ci/run runs it in the whole-suite pass on 3.10.8 only, not in
 * the 4.0.5 and 4.3.6 passes (issue 22); what 4.x itself does is seen in broker-shapes, requests-formats, trace-bodies.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ManagementApi } from '../../src/core/broker/management-api';
import amqp, { type ChannelModel } from 'amqplib';
import { amqpConsumerCounter, preflight } from '../../src/core/broker/checks';
import { RpcServer } from '../../src/core/rpc/server';
import type { CheckLine } from '../../src/shared/broker';
import { RULE_SOURCES } from '../../src/shared/broker-versions';
import { runCli } from '../support/cli';
import { uniqueName } from '../support/names';
import { Session } from '../../src/core/session/session';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { validateArgs } from '../../src/core/contract-schemas';
import { DEFAULT_MQTT_EXCHANGE } from '../../src/shared/defaults';

const broker = inject('broker');
const api = new ManagementApi(broker.urls.management);
let server: RpcServer;
let version: string;
let connection: ChannelModel;
/** live consumer counts, as the app and the CLI use (the management API's lag by its stats interval) */
let consumerCount: (queue: string) => Promise<number>;

beforeAll(async () => {
  server = new RpcServer({ amqpUrl: broker.urls.amqp, queue: uniqueName('rpc_versions'), handler: async () => 'ok' });
  await server.start();
  version = (await api.overview()).rabbitmqVersion;
  connection = await amqp.connect(broker.urls.amqp);
  consumerCount = amqpConsumerCounter(connection);
});
afterAll(async () => {
  await connection.close();
  await server.stop(0);
});

const versionLines = (lines: CheckLine[]): CheckLine[] => lines.filter((line) => line.check === 'broker version');

describe('the pre-flight on the real RabbitMQ 3.10', () => {
  it('says what 3.10 does with MQTT 5, QoS 2 and direct reply-to, each line with the version and the rule source', async () => {
    expect(version).toMatch(/^3\.10\./);
    const lines = await preflight(api, {
      exchange: DEFAULT_MQTT_EXCHANGE,
      requestTopic: server.queue,
      replyTopic: 'amq.rabbitmq.reply-to',
      strategy: 'per-request',
      consumerCount,
      qos: 2,
      mqttVersion: 5,
      payloadBytes: 100,
    });
    // the path itself is fine: routed and consumed
    expect(lines).toContainEqual(expect.objectContaining({ check: 'request routed', status: 'pass' }));
    expect(lines).toContainEqual(expect.objectContaining({ check: 'request consumed', status: 'pass' }));
    const rules = versionLines(lines);
    expect(rules.map((line) => [line.status, line.source])).toEqual([
      ['warn', RULE_SOURCES.mqtt5],
      ['warn', RULE_SOURCES.qos2Downgraded],
      ['fail', RULE_SOURCES.directReplyTo],
    ]);
    for (const line of rules) {
      expect(line.message).toContain(`RabbitMQ ${version}`);
      expect(line.message).toContain(`Source: ${line.source}`);
    }
    expect(rules[0]?.message).toMatch(/has no MQTT 5 \(it came in 3\.13\)/);
    expect(rules[1]?.message).toMatch(/accepts QoS 2 as QoS 1 .*at-least-once, not exactly-once/);
    expect(rules[2]?.message).toMatch(/direct reply-to, which is for AMQP clients only/);
    // 3.10 still sets x-mqtt-dup and x-mqtt-publish-qos, and takes MQTT packets up to MQTT's own limit: nothing to say there
    expect(rules.map((line) => line.message).join(' ')).not.toMatch(/x-mqtt-|maximum MQTT packet/);
  });

  it('says nothing of the version where the request is an ordinary QoS 1 over MQTT 3.1.1', async () => {
    const lines = await preflight(api, { exchange: DEFAULT_MQTT_EXCHANGE, requestTopic: server.queue, replyTopic: undefined, strategy: 'per-request', consumerCount, qos: 1, mqttVersion: 4 });
    expect(versionLines(lines)).toEqual([]);
    expect(lines.map((line) => line.status)).not.toContain('fail');
    // a single node: no node is named
    expect(lines.map((line) => line.check)).not.toContain('cluster');
    expect(lines.find((line) => line.check === 'request consumed')?.message).toBe(`${server.queue} has 1 consumer(s).`);
  });

  it('`bridgescope preflight` prints the same lines and exits 1 on a failing one', async () => {
    const args = ['preflight', '--management', broker.urls.management, '--amqp', broker.urls.amqp, '--topic', server.queue];
    const bad = await runCli([...args, '--qos', '2', '--mqtt-version', '5', '--reply-topic', 'amq/rabbitmq/reply-to', '--json', '{"n":1}']);
    expect(bad.code, bad.stderr).toBe(1);
    const printed = JSON.parse(bad.stdout) as CheckLine[];
    expect(versionLines(printed).map((line) => line.source)).toEqual([RULE_SOURCES.mqtt5, RULE_SOURCES.qos2Downgraded, RULE_SOURCES.directReplyTo]);
    const good = await runCli(args);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toMatch(/^PASS {2}request routed: /m);
    expect(good.stdout).not.toMatch(/broker version/);
  });

  it('the app\'s rpc.preflight.run takes the QoS and the payload and says the same, with the version read on connecting', async () => {
    const session = new Session({ mode: 'browser', profiles: new ProfileStore(memorySecretBox()), emit: () => undefined });
    try {
      await session.open({ name: 'versions', amqpUrl: broker.urls.amqp, mqttUrl: broker.urls.mqtt, managementUrl: broker.urls.management, vhost: '/', exchange: DEFAULT_MQTT_EXCHANGE });
      const args = validateArgs('rpc.preflight.run', { topic: server.queue, strategy: 'shared', qos: 2, payloadText: '{"n":1}' });
      const lines = await session.handlers['rpc.preflight.run'](args);
      expect(versionLines(lines).map((line) => line.source)).toEqual([RULE_SOURCES.qos2Downgraded]);
      expect(versionLines(lines)[0]?.message).toContain(`RabbitMQ ${version} accepts QoS 2 as QoS 1`);
      // without QoS and payload (what the Compose panel sends today) nothing is said of them
      const plain = await session.handlers['rpc.preflight.run'](validateArgs('rpc.preflight.run', { topic: server.queue, strategy: 'shared' }));
      expect(versionLines(plain)).toEqual([]);
      expect(() => validateArgs('rpc.preflight.run', { topic: server.queue, strategy: 'shared', qos: 3 })).toThrow(/QoS must be 0, 1 or 2/);
    } finally {
      await session.dispose();
    }
  });
});
