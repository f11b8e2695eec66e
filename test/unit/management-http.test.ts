/** The management API's failures, each one sentence, now that requests go through Node's http/https (TLS settings reach them). */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { managementRequest } from '../../src/core/broker/management-http';
import { ManagementApi } from '../../src/core/broker/management-api';

const servers: Array<HttpServer | NetServer> = [];
const sockets = new Set<Socket>();

afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await Promise.all(servers.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

async function listen(server: HttpServer | NetServer): Promise<number> {
  servers.push(server);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('management requests', () => {
  it('send the credentials as basic auth and the body as JSON, and read a JSON answer', async () => {
    const seen: Array<{ method?: string; authorization?: string; body: string }> = [];
    const port = await listen(
      createHttpServer((request, response) => {
        let body = '';
        request.on('data', (chunk: Buffer) => (body += chunk.toString()));
        request.on('end', () => {
          seen.push({ method: request.method, authorization: request.headers.authorization, body });
          response.end('{"ok":true}');
        });
      }),
    );
    expect(await managementRequest(`http://ann:s%40cret@127.0.0.1:${port}`, '/api/x', { method: 'PUT', body: { a: 1 } })).toEqual({ ok: true });
    expect(seen).toEqual([{ method: 'PUT', authorization: `Basic ${Buffer.from('ann:s@cret').toString('base64')}`, body: '{"a":1}' }]);
  });

  it('say nothing listens at a closed port', async () => {
    const port = await closedPort();
    await expect(managementRequest(`http://guest:guest@127.0.0.1:${port}`, '/api/overview')).rejects.toThrow(
      `Cannot reach the management API at http://127.0.0.1:${port} (ECONNREFUSED); is the rabbitmq_management plugin enabled?`,
    );
  });

  it('say an AMQP port given as the management URL is not an HTTP server, not that the plugin is off', async () => {
    // RabbitMQ's AMQP listener answers anything it cannot read with its own protocol header, then closes.
    const port = await listen(createNetServer((socket) => socket.end(Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]))));
    await expect(managementRequest(`http://guest:guest@127.0.0.1:${port}`, '/api/overview')).rejects.toThrow(
      expect.objectContaining({ code: 'unreachable', message: expect.stringMatching(new RegExp(`^What answers at http://127\\.0\\.0\\.1:${port} does not speak plain HTTP \\(HPE_\\w+\\): the management URL names another port`)) }),
    );
  });

  it('give up after the timeout when no answer comes, or when the answer stops halfway', async () => {
    const silent = await listen(createHttpServer(() => undefined));
    await expect(managementRequest(`http://127.0.0.1:${silent}`, '/api/overview', { timeoutMs: 200 })).rejects.toThrow(
      `The management API at http://127.0.0.1:${silent} did not answer within 200 ms.`,
    );
    const halfway = await listen(createHttpServer((_request, response) => response.writeHead(200).write('{"rabbitmq_')));
    await expect(managementRequest(`http://127.0.0.1:${halfway}`, '/api/overview', { timeoutMs: 200 })).rejects.toThrow(
      `The management API at http://127.0.0.1:${halfway} did not answer within 200 ms.`,
    );
  });

  it('say the port may not speak TLS when an https URL reaches a plain HTTP port', async () => {
    const port = await listen(createHttpServer((_request, response) => response.end('{}')));
    await expect(managementRequest(`https://guest:guest@127.0.0.1:${port}`, '/api/overview')).rejects.toThrow(
      new RegExp(`^The TLS handshake with https://127\\.0\\.0\\.1:${port} failed: the port may not speak TLS \\(\\w+\\)\\.$`),
    );
  });

  it('say what the answer was when it is not JSON or not a success', async () => {
    const port = await listen(
      createHttpServer((request, response) => {
        if (request.url === '/api/html') response.end('<html>');
        else response.writeHead(500).end('boom');
      }),
    );
    await expect(managementRequest(`http://127.0.0.1:${port}`, '/api/html')).rejects.toThrow("is not JSON; is it really RabbitMQ's management API?");
    await expect(managementRequest(`http://127.0.0.1:${port}`, '/api/fail')).rejects.toThrow('The management API answered 500 for /api/fail: boom');
  });
});

describe('a management API given the URLs of several nodes', () => {
  const overviewAt = (status: number) =>
    createHttpServer((_request, response) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(status === 200 ? JSON.stringify({ rabbitmq_version: '3.13.7', node: 'rabbit@b' }) : '{}');
    });

  it('asks the next node when the one in use cannot be reached, and keeps asking the one that answered', async () => {
    const dead = await closedPort();
    const alive = await listen(overviewAt(200));
    const api = new ManagementApi(`http://guest:guest@127.0.0.1:${dead}`, '/', undefined, undefined, [`http://guest:guest@127.0.0.1:${alive}`]);
    expect((await api.overview()).rabbitmqVersion).toBe('3.13.7');
    expect(api.url).toBe(`http://guest:guest@127.0.0.1:${alive}`);
  });

  it('does not move on when a node answers with a refusal: credentials are the whole cluster\'s', async () => {
    const refusing = await listen(overviewAt(401));
    const alive = await listen(overviewAt(200));
    const api = new ManagementApi(`http://guest:wrong@127.0.0.1:${refusing}`, '/', undefined, undefined, [`http://guest:wrong@127.0.0.1:${alive}`]);
    await expect(api.overview()).rejects.toMatchObject({ code: 'auth' });
  });

  it('says why the first node failed when none can be reached', async () => {
    const [first, second] = [await closedPort(), await closedPort()];
    const api = new ManagementApi(`http://127.0.0.1:${first}`, '/', undefined, undefined, [`http://127.0.0.1:${second}`]);
    await expect(api.overview()).rejects.toMatchObject({ code: 'unreachable', message: expect.stringContaining(`127.0.0.1:${first}`) });
  });
});
