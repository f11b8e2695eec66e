/** An AMQP URL that points at another protocol's port: one sentence that names the likely mix-up, not amqplib's words. */
import { afterEach, describe, expect, it } from 'vitest';
import { connectFirstAmqp } from '../../src/core/links/amqp-link';
import { closeAnsweringPorts, portAnswering } from '../support/ports';

afterEach(closeAnsweringPorts);

async function openError(port: number, timeout: number): Promise<Error> {
  try {
    await connectFirstAmqp([`amqp://guest:secret-pw@127.0.0.1:${port}`], { timeout });
    throw new Error('connected');
  } catch (err) {
    return err as Error;
  }
}

describe('an AMQP URL at a port that does not speak AMQP', () => {
  it('a port that accepts and never answers (MQTT waiting for a CONNECT) says the handshake went unanswered and names the ports', async () => {
    const port = await portAnswering(undefined);
    const err = await openError(port, 300);
    expect(err.message).toMatch(/never answered AMQP's handshake\. Is it the AMQP port \(5672 by default\) and not MQTT's \(1883\)\?/);
    expect(err.message).not.toContain('secret-pw');
  });

  it('a port that answers and hangs up (the management API: HTTP 400) is named as not AMQP', async () => {
    const port = await portAnswering('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n', { hangUp: true });
    const err = await openError(port, 2000);
    expect(err.message).toMatch(new RegExp(`^The server at amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port} does not answer in AMQP 0-9-1 \\(.+\\): is this its HTTP or MQTT port, or its TLS listener \\(5671: use amqps:\\/\\/\\)\\?`));
    expect(err.message).not.toContain('secret-pw');
  });
});
