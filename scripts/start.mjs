#!/usr/bin/env node
// `npm start`: make sure a broker is there (the sandbox broker unless one is configured), then open the app.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'bin', 'bridgescope');
const require = createRequire(import.meta.url);

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: root, ...options });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

if (!process.env.BRIDGESCOPE_AMQP_URL) {
  console.log('No broker configured (BRIDGESCOPE_AMQP_URL unset): using the sandbox broker.');
  run(process.execPath, [cli, 'broker', 'start']);
}

let electronBinary;
try {
  electronBinary = require('electron');
} catch {
  electronBinary = undefined;
}

if (electronBinary) {
  run(process.execPath, [join(root, 'node_modules', 'electron-vite', 'bin', 'electron-vite.js'), 'build']);
  const app = spawn(electronBinary, [root], { stdio: 'inherit', cwd: root });
  app.on('exit', (code) => process.exit(code ?? 0));
} else {
  console.log('The Electron binary is not installed (ELECTRON_SKIP_BINARY_DOWNLOAD was set); the broker is ready for the CLI.');
}
