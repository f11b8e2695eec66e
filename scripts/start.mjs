#!/usr/bin/env node
// `npm start`: build, then open the desktop app; where the Electron binary is missing, serve the same UI to a browser.
// `npm run web` (or `--web`): always the browser mode.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const webOnly = process.argv.includes('--web');

const build = spawnSync(process.execPath, [join(root, 'node_modules', 'electron-vite', 'bin', 'electron-vite.js'), 'build'], {
  cwd: root,
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (build.status !== 0) process.exit(build.status ?? 1);

let electronBinary;
if (!webOnly) {
  try {
    electronBinary = require('electron');
  } catch {
    console.log('The Electron binary is not installed (ELECTRON_SKIP_BINARY_DOWNLOAD was set): opening the inspector in browser mode instead.');
  }
}

const child = electronBinary
  ? spawn(electronBinary, [root], { stdio: 'inherit', cwd: root })
  : spawn(process.execPath, [join(root, 'bin', 'bridgescope'), 'ui', ...process.argv.slice(2).filter((arg) => arg !== '--web')], {
      stdio: 'inherit',
      cwd: root,
    });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code) => process.exit(code ?? 0));
