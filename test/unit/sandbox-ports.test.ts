import { describe, expect, it } from 'vitest';
import { ephemeralPortRange, freePorts, isPortFree } from '../../src/core/broker/sandbox';

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

});
