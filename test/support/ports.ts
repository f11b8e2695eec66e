/** Ports for tests of what a client says at a port that is not its protocol's: one that answers, and one that refuses. */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

const servers: Server[] = [];
const sockets = new Set<Socket>();

/**
 * A TCP server on 127.0.0.1 that answers every connection with `answer` (and hangs up when `hangUp`), or says nothing at
 * all: another protocol's port. Close them all with `closeAnsweringPorts` after each test.
 */
export async function portAnswering(answer: Buffer | string | undefined, { hangUp = false } = {}): Promise<number> {
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    if (answer === undefined) return;
    if (hangUp) socket.end(answer);
    else socket.write(answer);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

export async function closeAnsweringPorts(): Promise<void> {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
}

/** A port on 127.0.0.1 that refuses connections: listened on, then closed. */
export function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
