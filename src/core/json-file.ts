/** How BridgeScope keeps its own small JSON files (profiles, history): replaced whole, one write at a time, and a file it cannot read set aside, never overwritten. */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Writes through a temp file and a rename: a crash mid-write leaves the temp file, never half of `file`. */
export async function writeFileWhole(file: string, text: string): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(temp, text, { mode: 0o600 });
  await rename(temp, file);
}

/** Moves a file that cannot be read out of the way (next to it, named with the time) and gives its new path. */
export async function setFileAside(file: string, now: number): Promise<string> {
  const aside = `${file}.unreadable-${new Date(now).toISOString().replace(/[:.]/g, '-')}`;
  await rename(file, aside);
  return aside;
}

/** Runs jobs one after another, in the order given; a job that fails fails its own caller only. */
export class OneAtATime {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const done = this.tail.then(job, job);
    this.tail = done.catch(() => undefined);
    return done;
  }

  /** Waits for the jobs under way. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
