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
/** RFC 4180 rows: a quoted cell may hold commas, quotes (doubled) and line breaks, as the samples of CSP findings do. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i];
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        cell += '"';
        i += 1;
      } else if (char === '"') quoted = false;
      else cell += char;
    } else if (char === '"') quoted = true;
    else if (char === ',') {
      row.push(cell);
      cell = '';
    } else if (char === '\n' || char === '\r') {
      if (char === '\r' && text[i + 1] === '\n') i += 1;
      row.push(cell);
      if (row.some((value) => value.trim() !== '')) rows.push(row);
      row = [];
      cell = '';
    } else cell += char;
  }
  row.push(cell);
  if (row.some((value) => value.trim() !== '')) rows.push(row);
  return rows;
}
const rows = parseCsv(readFileSync(csv, 'utf8')).slice(1);
rmSync(dir, { recursive: true, force: true });
const findings = rows.map(([check = '', severity = '', confidence = '', file = '', location = '']) => ({ check, severity, confidence, file, location }));
for (const finding of findings) console.log(`${finding.severity.padEnd(13)} ${finding.check.padEnd(26)} ${finding.file}:${finding.location}`);
const isSuppressed = (finding) => suppressed[finding.check]?.file === finding.file.replaceAll('\\', '/');
for (const finding of findings.filter(isSuppressed)) console.log(`suppressed ${finding.check} in ${finding.file}: ${suppressed[finding.check].reason}`);
const high = findings.filter((finding) => finding.severity === 'HIGH' && !isSuppressed(finding));
console.log(`electronegativity (Electron ${electronVersion}): ${findings.length} finding(s), ${high.length} high.`);
process.exit(high.length > 0 ? 1 : 0);
