/** MQTT 3.1.1 cannot say the broker's packet limit: the broker's version does (16 MiB from RabbitMQ 4.1). */
import { afterEach, describe, expect, it } from 'vitest';
import { RpcClient } from '../../src/core/rpc/client';
import { startFakeMqttBroker, type FakeMqttBroker } from '../support/fake-mqtt-broker';

const open: Array<{ broker: FakeMqttBroker; client: RpcClient }> = [];
afterEach(async () => {
  for (const { broker, client } of open.splice(0)) {
    await client.close();
    await broker.close();
  }
});

async function clientOn(brokerVersion: string | undefined): Promise<{ broker: FakeMqttBroker; client: RpcClient }> {
  const broker = await startFakeMqttBroker();
  const client = new RpcClient({ mqttUrl: broker.url, strategy: 'per-request', ...(brokerVersion ? { brokerVersion } : {}) });
  await client.connect();
  open.push({ broker, client });
  return { broker, client };
}

const seventeenMiB = 'x'.repeat(17 * 1024 * 1024);

describe('a request larger than the broker takes in one MQTT packet', () => {
  it('is refused before sending on RabbitMQ 4.1 (16 MiB), in one sentence naming the version and the setting', async () => {
    const { broker, client } = await clientOn('4.1.3');
    await expect(client.call({ topic: 'rpc_queue', qos: 1, params: seventeenMiB, timeoutMs: 1000 })).rejects.toMatchObject({
      code: 'too-large',
      message: expect.stringMatching(/16 MiB maximum MQTT packet of RabbitMQ 4\.1\.3.*mqtt\.max_packet_size_authenticated.*Nothing was sent\.$/),
    });
    expect(broker.published).toEqual([]);
  });

  it('is sent on RabbitMQ 4.0 (256 MiB), and with an unknown version it is sent too (the broker may be older than 4.1: a warning, not a refusal)', async () => {
    const { broker, client } = await clientOn('4.0.9');
    await expect(client.call({ topic: 'rpc_queue', qos: 1, params: seventeenMiB, timeoutMs: 300 })).rejects.toMatchObject({ code: 'timeout' });
    expect(broker.published).toEqual(['rpc_queue']);
    const unknown = await clientOn(undefined);
    await expect(unknown.client.call({ topic: 'rpc_queue', qos: 1, params: seventeenMiB, timeoutMs: 300 })).rejects.toMatchObject({ code: 'timeout' });
    expect(unknown.broker.published).toEqual(['rpc_queue']);
  });
});
