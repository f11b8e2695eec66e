import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeLogHint } from '../../src/core/broker/sandbox';

// A cluster node that does not answer after joining says why from its own log, not only "connect ECONNREFUSED".
describe('nodeLogHint', () => {
  const dirs: string[] = [];
  const dirWithLog = (log?: string): string => {
    const dir = mkdtempSync(join(tmpdir(), 'bridgescope-log-'));
    dirs.push(dir);
    if (log !== undefined) writeFileSync(join(dir, 'node.log'), log);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("names the log's last error line and where the log is", () => {
    const dir = dirWithLog(['2026-12-07 [info] starting', '2026-12-07 [error] first failure', '2026-12-07 [error] Failed to start Ranch listener on 5672', '2026-12-07 [info] waiting'].join('\n'));
    expect(nodeLogHint(dir)).toBe(`its log's last error: 2026-12-07 [error] Failed to start Ranch listener on 5672 (${join(dir, 'node.log')})`);
  });

  it('says there is no error when the log has none, or no log at all', () => {
    expect(nodeLogHint(dirWithLog('[info] all good\n'))).toMatch(/^no error in its log \(.*node\.log\)$/);
    expect(nodeLogHint(dirWithLog())).toMatch(/^no error in its log \(.*node\.log\)$/);
  });
});
