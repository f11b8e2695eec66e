/** Makes a named pipe (a file whose read never ends until a writer comes), as a hostile data dir could hold. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export async function mkfifo(path: string): Promise<void> {
  await promisify(execFile)('mkfifo', ['-m', '600', path]);
}
