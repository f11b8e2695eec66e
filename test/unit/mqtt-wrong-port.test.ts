/** An MQTT URL that points at another protocol's port: one sentence that says so, not the MQTT parser's words. */
import { afterEach, describe, expect, it } from 'vitest';
import { MqttLink } from '../../src/core/links/mqtt-link';
import { closeAnsweringPorts, portAnswering } from '../support/ports';

afterEach(closeAnsweringPorts);

async function openError(port: number, connectTimeoutMs = 5000): Promise<Error> {
  const link = new MqttLink({ url: `mqtt://guest:secret-pw@127.0.0.1:${port}`, clientId: 'wrong-port', connectTimeoutMs });
  try {
    await link.open();
    throw new Error('connected');
  } catch (err) {
    return err as Error;
  } finally {
    await link.close().catch(() => undefined);
  }
}

describe('an MQTT URL at a port that does not speak MQTT', () => {
  it("an AMQP port (its protocol header) is named as not MQTT, with the plugin's port", async () => {
    const port = await portAnswering(Buffer.from('AMQP\u0000\u0000\u0009\u0001', 'latin1'));
    const err = await openError(port);
    expect(err.message).toMatch(new RegExp(`^The server at mqtt://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port} does not answer in MQTT \\(.+\\): is this its AMQP or HTTP port\\? RabbitMQ's MQTT plugin listens on 1883`));
    expect(err.message).not.toContain('secret-pw');
  });

  it('a port that accepts and never answers (an HTTP server waiting for a request) says the CONNECT went unanswered', async () => {
    const port = await portAnswering(undefined);
    const err = await openError(port, 300);
    expect(err.message).toMatch(/accepted the connection but never answered the MQTT CONNECT \(connack timeout\): is this an MQTT port/);
  });
});
