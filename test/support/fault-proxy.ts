/** A loopback TCP proxy in front of a real broker that injects network faults on command: silence, or a reset. */
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface FaultProxy {
  port: number;
  /** performance.now() when the proxy last passed bytes from the broker to a client */
  lastToClientAt(): number;
  /** Stops passing anything from the broker to the clients (both sockets stay open): a broker that went silent. */
  silence(): void;
  /** Resets every client socket (TCP RST) and its broker side: a network that drops the connection. */
  resetClients(): void;
  /** resolves once `count` client connections were accepted in all */
  accepted(count: number): Promise<void>;
  close(): Promise<void>;
}

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  let lastToClient = performance.now();
  let silent = false;
  let acceptedCount = 0;
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  const acceptWaiters: Array<{ count: number; resolve: () => void }> = [];
  const server: Server = createServer((client) => {
    acceptedCount += 1;
    const upstream = createConnection(target);
    const pair = { client, upstream };
    pairs.add(pair);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.on('data', (bytes) => upstream.write(bytes));
    upstream.on('data', (bytes) => {
      if (silent) return;
      lastToClient = performance.now();
      client.write(bytes);
    });
    // A silenced broker's close must not reach the client either: it looks dead, not gone.
    upstream.on('close', () => {
      if (!silent) client.destroy();
    });
    client.on('close', () => {
      upstream.destroy();
      pairs.delete(pair);
    });
    for (const waiter of acceptWaiters.splice(0)) {
      if (acceptedCount >= waiter.count) waiter.resolve();
      else acceptWaiters.push(waiter);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    lastToClientAt: () => lastToClient,
    silence() {
      silent = true;
    },
    resetClients() {
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.destroy();
      }
    },
    accepted(count) {
      if (acceptedCount >= count) return Promise.resolve();
      return new Promise((resolve) => acceptWaiters.push({ count, resolve }));
    },
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
