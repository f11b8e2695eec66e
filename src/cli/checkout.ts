/** Where the checkout (or installed package) is, found the same way from the sources (src/cli) and from the bundle (out/cli). */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return join(from, '..', '..');
  }
}

/** The folder holding package.json, out/ and (in a checkout) bench/. */
export const packageRoot = findRoot(dirname(fileURLToPath(import.meta.url)));
