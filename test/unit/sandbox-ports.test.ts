import { describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { acceptsConnections, ephemeralPortRange, freePorts, isPortFree } from '../../src/core/broker/sandbox';

describe("the sandbox's ports", () => {
  it('are distinct, free, and outside the range the OS hands out to outgoing connections, so a restart gets them back', async () => {
    const { low, high } = ephemeralPortRange();
    expect(low).toBeLessThanOrEqual(high);
    const ports = await freePorts(12);
    expect(new Set(ports).size).toBe(12);
    for (const port of ports) {
      expect(port < low || port > high, `port ${port} lies in the ephemeral range ${low}-${high}`).toBe(true);
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect([15_672, 25_672]).not.toContain(port);
      expect(await isPortFree(port)).toBe(true);
    }
  });

  it('are watched for a starting listener without being taken: a listener binding while the wait asks still gets the port', async () => {
    // The epmd of a prepared root exits quietly when its port is held at its bind; the wait for it must never hold it.
    const [port] = (await freePorts(1)) as [number];
    expect(await acceptsConnections(port)).toBe(false);
    const asks = Array.from({ length: 20 }, () => acceptsConnections(port));
    const server: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await Promise.all(asks);
    expect(await acceptsConnections(port)).toBe(true);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
