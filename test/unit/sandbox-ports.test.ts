import { describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { epmdListens, ephemeralPortRange, freePorts, isPortFree } from '../../src/core/broker/sandbox';

function listen(server: Server, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
}

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

  it("are watched for a starting epmd by asking it as a node does, never by taking the port, and another listener is not taken for it", async () => {
    // The epmd of a prepared root exits quietly when its port is held at its bind; the wait for it must never hold it.
    const [port] = (await freePorts(1)) as [number];
    expect(await epmdListens(port)).toBe(false);
    const asks = Array.from({ length: 20 }, () => epmdListens(port, 200));
    // A fake epmd: to the NAMES request (length 1, 'n') it answers its own port, then the names it knows.
    const epmd: Server = createServer((socket) => {
      socket.once('data', (request: Buffer) => {
        if (request.equals(Buffer.from([0, 1, 110]))) socket.end(Buffer.concat([Buffer.from([0, 0, port >> 8, port & 255]), Buffer.from('name rabbit at port 25672\n')]));
        else socket.destroy();
      });
    });
    await listen(epmd, port);
    await Promise.all(asks);
    expect(await epmdListens(port)).toBe(true);
    await new Promise<void>((resolve) => epmd.close(() => resolve()));
    // Someone else's listener on the port: it accepts the connection but is no epmd.
    const other: Server = createServer((socket) => socket.once('data', () => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')));
    await listen(other, port);
    expect(await epmdListens(port)).toBe(false);
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => other.close(() => resolve()));
    await listen(silent, port);
    expect(await epmdListens(port, 300)).toBe(false);
    silent.close();
  });
});
