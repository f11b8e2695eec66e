/** The trace format version the docs state is the one Export writes (issue 26: they had drifted apart). */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { TRACE_EXPORT_VERSION } from '../../src/shared/trace';

describe('the trace format version in the docs', () => {
  it.each([
    ['README.md', /trace format version (\d+); versions 1\s+to (\d+) still import/],
    ['docs/USER-GUIDE.md', /trace format version (\d+); versions 1\s+to (\d+) still import/],
    ['docs/ARCHITECTURE.md', /writes format version (\d+)[\s\S]*?reads versions 1 to (\d+)/],
  ])('%s says what Export writes and what Import reads', async (file, pattern) => {
    const text = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8');
    const match = pattern.exec(text);
    expect(match, `${file} no longer states the trace format version`).not.toBeNull();
    const [, writes, reads] = match!;
    expect(Number(writes)).toBe(TRACE_EXPORT_VERSION);
    // README and the guide name the older versions that still import; ARCHITECTURE the newest one read, which is the one written.
    expect(Number(reads)).toBe(file !== 'docs/ARCHITECTURE.md' ? TRACE_EXPORT_VERSION - 1 : TRACE_EXPORT_VERSION);
  });
});
