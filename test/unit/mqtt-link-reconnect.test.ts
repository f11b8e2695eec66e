import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { LinkStatus } from '../../src/shared/rpc';
import { MqttLink } from '../../src/core/links/mqtt-link';

/**
 * A minimal MQTT listener that answers each CONNECT with the next CONNACK return code of a script: it stands in for a
 * restarting broker that refuses a connection while it boots, which a real RabbitMQ does only in a narrow window.
 */
async function scriptedBroker(returnCodes: number[]): Promise<{ server: Server; url: string; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    const returnCode = returnCodes.shift() ?? 0;
    socket.once('data', () => {
      socket.write(Buffer.from([0x20, 0x02, 0x00, returnCode]));
      if (returnCode !== 0) socket.end();
    });
    socket.on('data', (chunk) => {
      // PINGREQ -> PINGRESP, so keepalive never closes an accepted connection
      if (chunk[0] === 0xc0) socket.write(Buffer.from([0xd0, 0x00]));
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return { server, url: `mqtt://127.0.0.1:${address.port}`, sockets };
}

function until(link: MqttLink, states: LinkStatus['state'][]): Promise<LinkStatus> {
  if (states.includes(link.status.state)) return Promise.resolve(link.status);
  return new Promise((resolve) => {
    const listener = (status: LinkStatus): void => {
      if (!states.includes(status.state)) return;
      link.off('status', listener);
      resolve(status);
    };
    link.on('status', listener);
  });
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function connectedLink(returnCodes: number[]): Promise<{ link: MqttLink; sockets: Socket[] }> {
  const broker = await scriptedBroker(returnCodes);
  const link = new MqttLink({ url: broker.url, clientId: 'device-under-test', reconnectDelayMs: 20, maxReconnectDelayMs: 40, flapWindowMs: 0 });
  cleanups.push(async () => {
    await link.close();
    for (const socket of broker.sockets) socket.destroy();
    await new Promise<void>((resolve) => broker.server.close(() => resolve()));
  });
  await link.open();
  return { link, sockets: broker.sockets };
}

describe('the MQTT link after the broker drops it', () => {
  it('keeps reconnecting through a "Server unavailable" refusal and ends connected', async () => {
    // accepted, then (after the drop) refused with 3 = Server unavailable, then accepted again
    const { link, sockets } = await connectedLink([0, 3, 0]);
    const states: string[] = [];
    link.on('status', (status) => states.push(status.state));
    const reconnected = new Promise<void>((resolve) => {
      link.on('status', (status) => {
        if (status.state === 'connected') resolve();
      });
    });
    sockets[0]?.destroy();
    await reconnected;
    expect(states[0]).toBe('reconnecting');
    expect(link.status.state).toBe('connected');
  }, 15_000);

  it('says failed with the reason when the broker refuses the credentials on a reconnect, never "reconnecting" for ever', async () => {
    const { link, sockets } = await connectedLink([0, 5]);
    sockets[0]?.destroy();
    const failed = await until(link, ['failed']);
    expect(failed).toMatchObject({ state: 'failed', message: expect.stringMatching(/refused the MQTT credentials\. Reconnecting stopped\.$/) });
  }, 15_000);
});
