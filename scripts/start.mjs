#!/usr/bin/env node
// `npm start`: build, then open the desktop app; where the Electron binary is missing, serve the same UI to a browser.
// `npm run web` (or `--web`): always the browser mode. BRIDGESCOPE_SKIP_BUILD=1 skips the build (out/ must exist; tests use it).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const webOnly = process.argv.includes('--web');

if (process.env.BRIDGESCOPE_SKIP_BUILD !== '1') {
  const build = spawnSync(process.execPath, [join(root, 'node_modules', 'electron-vite', 'bin', 'electron-vite.js'), 'build'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (build.status !== 0) process.exit(build.status ?? 1);
}

let electronBinary;
// Electron 45 downloads its binary on first use (require('electron')), not at npm install: with ELECTRON_SKIP_BINARY_DOWNLOAD set, never try.
const electronInstalled = existsSync(join(root, 'node_modules', 'electron', 'path.txt'));
if (!webOnly && (electronInstalled || !process.env.ELECTRON_SKIP_BINARY_DOWNLOAD)) {
  // In a child: a failed download prints its whole stack; the user gets one sentence with the reason instead.
  const found = spawnSync(process.execPath, ['-e', "process.stdout.write(require('electron'))"], { cwd: root, encoding: 'utf8' });
  if (found.status === 0 && found.stdout) electronBinary = found.stdout;
  else {
    const reason = (found.stderr ?? '').split('\n').find((line) => /Error|ENOTFOUND|EAI_AGAIN|ECONN|fetch failed/.test(line))?.trim();
    console.log(`The Electron binary could not be downloaded${reason ? ` (${reason.slice(0, 200)})` : ''}: opening the inspector in browser mode instead.`);
  }
} else if (!webOnly) {
  console.log('The Electron binary is not installed (ELECTRON_SKIP_BINARY_DOWNLOAD is set): opening the inspector in browser mode instead.');
}

const child = electronBinary
  ? spawn(electronBinary, [root], { stdio: 'inherit', cwd: root })
  : spawn(process.execPath, [join(root, 'bin', 'bridgescope'), 'ui', ...process.argv.slice(2).filter((arg) => arg !== '--web')], {
      stdio: 'inherit',
      cwd: root,
    });
// The child shares this process group, so a terminal's Ctrl-C (and npm's forwarding of it) already reached it: forward
// only the first signal, for when this process alone was signalled; the child coalesces the echo and runs its cleanup.
let forwarded = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (forwarded) return;
    forwarded = true;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}
child.on('error', (err) => {
  console.error(`bridgescope: could not start ${electronBinary ? 'the desktop app' : 'bridgescope ui'}: ${err.message}`);
  process.exit(1);
});
// Exit only once the child has finished its cleanup, with its code (128 + the signal number when a signal ended it).
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1)));
