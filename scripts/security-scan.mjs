#!/usr/bin/env node
// Electronegativity over src (run by `npm test`): fails on any HIGH finding that is not suppressed with a written reason.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const electronVersion = require('electron/package.json').version;
// check id -> the one file where it does not apply, and why. The scanner reads each file alone and cannot follow a
// function call: it flags `new BrowserWindow(windowOptions(...))` as if the options had no contextIsolation.
const suppressed = {
  CONTEXT_ISOLATION_JS_CHECK: {
    file: 'main/index.ts',
    reason: 'the options come from windowOptions() in src/main/window.ts; shell-main.test.ts checks them on the built bundle',
  },
};

const dir = mkdtempSync(join(tmpdir(), 'electronegativity-'));
const csv = join(dir, 'findings.csv');
const run = spawnSync(process.execPath, [join(root, 'scripts', 'electronegativity.cjs'), '-i', join(root, 'src'), '-r', '-v', 'false', '-e', electronVersion, '-o', csv], {
  encoding: 'utf8',
});
if (run.status !== 0) {
  console.error(`electronegativity failed to run (exit ${run.status}): ${run.stderr.trim().split('\n').at(-1)}`);
  process.exit(1);
}
const rows = readFileSync(csv, 'utf8').trim().split('\n').slice(1);
rmSync(dir, { recursive: true, force: true });
const findings = rows.map((row) => {
  const [check, severity, confidence, file, location] = row.split(',').map((cell) => cell.replaceAll('"', ''));
  return { check, severity, confidence, file, location };
});
for (const finding of findings) console.log(`${finding.severity.padEnd(13)} ${finding.check.padEnd(26)} ${finding.file}:${finding.location}`);
const isSuppressed = (finding) => suppressed[finding.check]?.file === finding.file.replaceAll('\\', '/');
for (const finding of findings.filter(isSuppressed)) console.log(`suppressed ${finding.check} in ${finding.file}: ${suppressed[finding.check].reason}`);
const high = findings.filter((finding) => finding.severity === 'HIGH' && !isSuppressed(finding));
console.log(`electronegativity (Electron ${electronVersion}): ${findings.length} finding(s), ${high.length} high.`);
process.exit(high.length > 0 ? 1 : 0);
