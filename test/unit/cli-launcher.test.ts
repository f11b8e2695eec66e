/**
 * bin/bridgescope runs the built bundle (out/cli/main.js), never an old one: in a checkout whose sources changed since the
 * build it rebuilds first and says so; with no bundle and no sources it says what to run. BRIDGESCOPE_DEV=1 runs the sources.
 * Proven on a small stand-in checkout (the real launcher and build module, a two-file src/cli), not on this tree's sources.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
let checkout: string;

function run(env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [join(checkout, 'bin', 'bridgescope'), 'x'], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function writeSource(answer: string): void {
  writeFileSync(join(checkout, 'src', 'cli', 'answer.ts'), `export const answer: string = '${answer}';\n`);
}

beforeAll(() => {
  checkout = mkdtempSync(join(tmpdir(), 'bridgescope-launcher-'));
  for (const dir of ['bin', 'scripts', 'src/cli']) mkdirSync(join(checkout, dir), { recursive: true });
  cpSync(join(root, 'bin', 'bridgescope'), join(checkout, 'bin', 'bridgescope'));
  cpSync(join(root, 'scripts', 'cli-bundle.mjs'), join(checkout, 'scripts', 'cli-bundle.mjs'));
  writeFileSync(join(checkout, 'package.json'), JSON.stringify({ name: 'stand-in', version: '1.0.0', type: 'module' }));
  symlinkSync(join(root, 'node_modules'), join(checkout, 'node_modules'));
  writeFileSync(join(checkout, 'src', 'cli', 'main.ts'), "import { answer } from './answer';\nconsole.log(`${answer} ${process.argv[2]}`);\n");
  writeSource('first');
});

afterAll(() => rmSync(checkout, { recursive: true, force: true }));

describe('bin/bridgescope', () => {
  it('builds the missing bundle, says so once, then runs it silently', () => {
    const first = run();
    expect(first).toMatchObject({ code: 0, stdout: 'first x\n' });
    expect(first.stderr).toMatch(/^bridgescope: out\/cli\/main\.js is not built yet; rebuilt it in \d+ ms\.\n$/);
    expect(run()).toEqual({ code: 0, stdout: 'first x\n', stderr: '' });
  });

  it('never runs a bundle older than an edited source: it rebuilds and says why', () => {
    run();
    writeSource('second');
    // An edit lands at least a moment after the build started, whatever the file system's clock granularity.
    const later = new Date(Date.now() + 2000);
    utimesSync(join(checkout, 'src', 'cli', 'answer.ts'), later, later);
    const edited = run();
    expect(edited).toMatchObject({ code: 0, stdout: 'second x\n' });
    expect(edited.stderr).toMatch(/^bridgescope: the sources changed since out\/cli\/main\.js was built; rebuilt it in \d+ ms\.\n$/);
  });

  it('with BRIDGESCOPE_DEV=1 runs the sources themselves', () => {
    writeSource('from-source');
    rmSync(join(checkout, 'out'), { recursive: true, force: true });
    expect(run({ BRIDGESCOPE_DEV: '1' })).toEqual({ code: 0, stdout: 'from-source x\n', stderr: '' });
  });

  it('without a bundle or sources, says what to run in one sentence', () => {
    rmSync(join(checkout, 'out'), { recursive: true, force: true });
    rmSync(join(checkout, 'src'), { recursive: true, force: true });
    const result = run();
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe('bridgescope: out/cli/main.js is not built yet and there are no sources here to build it from: run `npm run build` in a checkout.\n');
  });
});
