/**
 * A kept-alive connection the management API's web server closes while our next request is on its way (RabbitMQ's Cowboy
 * closes idle keep-alive connections on a timer): Node then fails the request with ECONNRESET on the reused socket. Seen
 * as "Cannot reach the management API ... (ECONNRESET)" on a healthy 4.3.6 cluster (issue 22). A GET is asked once more
 * on a new connection; anything else is still said as unreachable.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { managementRequest } from '../../src/core/broker/management-http';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** Answers every first request on a connection; a second request on the same connection gets its socket destroyed. */
async function resettingServer(): Promise<string> {
  const seen = new WeakMap<object, number>();
  server = createServer((req, res) => {
    const count = (seen.get(req.socket) ?? 0) + 1;
    seen.set(req.socket, count);
    if (count > 1) {
      req.socket.destroy();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive' });
    res.end(JSON.stringify({ n: count }));
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', () => resolve()));
  return `http://127.0.0.1:${(server?.address() as AddressInfo).port}`;
}

describe('the management API closing a kept-alive connection under a request', () => {
  it('a GET is asked once more on a new connection and answered', async () => {
    const url = await resettingServer();
    expect(await managementRequest(url, '/api/overview')).toEqual({ n: 1 });
    // the global agent reuses the kept-alive socket, which the server resets
    expect(await managementRequest(url, '/api/overview')).toEqual({ n: 1 });
  });

  it('a PUT is not sent twice: said as unreachable, with the reset', async () => {
    const url = await resettingServer();
    expect(await managementRequest(url, '/api/overview')).toEqual({ n: 1 });
    await expect(managementRequest(url, '/api/traces', { method: 'PUT', body: {} })).rejects.toMatchObject({ code: 'unreachable', message: expect.stringContaining('ECONNRESET') });
  });
});
