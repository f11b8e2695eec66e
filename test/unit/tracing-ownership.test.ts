/** Which node boot a tracing marker's record was written on: a restart resets the firehose flag, not the durable marker (#27). */
import { describe, expect, it } from 'vitest';
import { SAME_BOOT_TOLERANCE_MS, sameBoot } from '../../src/core/trace/ownership';

const recorded = { node: 'rabbit@a', osPid: '4242', startedAt: 1_000_000, recordedAt: 1_600_000 };

describe('sameBoot', () => {
  it('holds for the same OS process, though its start is estimated a few seconds later from a lagging uptime', () => {
    expect(sameBoot(recorded, { node: 'rabbit@a', osPid: '4242', startedAt: 1_004_900 })).toBe(true);
  });

  it('holds while the node was paused past its statistics interval (its last uptime is older still)', () => {
    expect(sameBoot(recorded, { node: 'rabbit@a', osPid: '4242', startedAt: recorded.recordedAt + SAME_BOOT_TOLERANCE_MS })).toBe(true);
  });

  it('fails for another OS process: the node restarted', () => {
    expect(sameBoot(recorded, { node: 'rabbit@a', osPid: '5151', startedAt: 1_000_000 })).toBe(false);
  });

  it('fails for the same OS pid started well after the record (a container restart gives the node its pid again)', () => {
    expect(sameBoot(recorded, { node: 'rabbit@a', osPid: '4242', startedAt: recorded.recordedAt + SAME_BOOT_TOLERANCE_MS + 1 })).toBe(false);
  });

  it('fails for another node', () => {
    expect(sameBoot(recorded, { node: 'rabbit@b', osPid: '4242', startedAt: 1_000_000 })).toBe(false);
  });
});
