/**
 * What can be proven of the installers without the Electron download: electron-builder loads and validates the configuration,
 * it names every target and an icon that exists, and the app it packs holds everything the built main loads at run time.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Arch, Platform, build } from 'electron-builder';
import type { Configuration } from 'electron-builder';
import type * as Asar from '@electron/asar';

const root = join(import.meta.dirname, '..', '..');
const require = createRequire(import.meta.url);
const asar = require('@electron/asar') as typeof Asar;
const { getConfig, validateConfiguration } = require('app-builder-lib/out/util/config/config') as {
  getConfig(projectDir: string, configPath: string | null, configFromOptions: Configuration | null): Promise<Configuration>;
  validateConfiguration(config: Configuration, debugLogger: unknown): Promise<void>;
};

let config: Configuration;
let work: string;
let app: string;
let packed: string[];

beforeAll(async () => {
  if (!existsSync(join(root, 'out', 'main', 'index.js'))) throw new Error('Run `npm run build` first: the app is packed from out/');
  config = await getConfig(root, null, null);
  await validateConfiguration(config, { isEnabled: false, add: () => undefined });

  // electron-builder's own packer, on a stand-in Electron distribution (one executable): the dir target is the app
  // folder every installer wraps. The fuses are flipped in the real binary only, so not here.
  work = mkdtempSync(join(tmpdir(), 'bridgescope-pack-'));
  const electronDist = join(work, 'electron-dist');
  mkdirSync(electronDist);
  writeFileSync(join(electronDist, 'electron'), '#!/bin/sh\nexit 0\n');
  chmodSync(join(electronDist, 'electron'), 0o755);
  await build({
    projectDir: root,
    targets: Platform.LINUX.createTarget('dir', Arch.x64),
    config: { electronDist, electronFuses: null, npmRebuild: false, directories: { output: join(work, 'dist') } },
    publish: 'never',
  });
  const archive = join(work, 'dist', 'linux-unpacked', 'resources', 'app.asar');
  packed = asar.listPackage(archive, { isPack: false }).map((file) => file.replaceAll('\\', '/'));
  app = join(work, 'app');
  asar.extractAll(archive, app);
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('packaging', () => {
  it('has a valid configuration naming the installers of each OS and an icon that exists', () => {
    expect(config.appId).toBe('dev.bridgescope.app');
    expect(config.productName).toBe('BridgeScope');
    expect(config.linux?.target).toEqual(['AppImage', 'deb']);
    expect(config.mac?.target).toBe('dmg');
    expect(config.win?.target).toBe('nsis');
    const icon = join(root, config.icon as string);
    const png = readFileSync(icon);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    // electron-builder wants at least 256x256 for every OS (512 for macOS).
    expect(png.readUInt32BE(16)).toBeGreaterThanOrEqual(512);
    expect(png.readUInt32BE(20)).toBeGreaterThanOrEqual(512);
  });

  it('sets the Electron fuses: no run-as-Node, no NODE_OPTIONS or inspector flags, asar integrity, app only from the asar', () => {
    expect(config.electronFuses).toMatchObject({
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
    });
  });

  it("packs the built main, the preload, the page with its assets, and the window's icon", () => {
    const built = ['out/main/index.js', 'out/preload/index.cjs', 'out/renderer/index.html', 'resources/icon.png'];
    for (const file of built) expect(packed).toContain(`/${file}`);
    const page = readFileSync(join(root, 'out', 'renderer', 'index.html'), 'utf8');
    for (const [, asset] of page.matchAll(/(?:src|href)="\.?\/?([^"]+)"/g)) expect(packed).toContain(`/out/renderer/${asset}`);
    const main = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')) as { main: string };
    expect(packed).toContain(`/${main.main.replace(/^\.\//, '')}`);
  });

  it('holds every package the built main imports, with what they need in turn', () => {
    const source = readFileSync(join(app, 'out', 'main', 'index.js'), 'utf8');
    const imported = new Set([...source.matchAll(/^import\s[^;]*?from\s+"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)|\brequire2?\(\s*"([^"]+)"\s*\)/gm)].map((match) => match[1] ?? match[2] ?? match[3] ?? ''));
    const packages = [...imported].filter((name) => name !== 'electron' && !name.startsWith('node:') && !name.startsWith('.'));
    expect(packages).toEqual(expect.arrayContaining(['amqplib', 'mqtt', 'zod']));
    const missing: string[] = [];
    const seen = new Set<string>();
    const visit = (name: string, from: string): void => {
      // Node's lookup: the nearest node_modules up from the importing package.
      let dir = from;
      let found: string | undefined;
      for (;;) {
        const candidate = join(dir, 'node_modules', name);
        if (existsSync(join(candidate, 'package.json'))) {
          found = candidate;
          break;
        }
        if (dir === app) break;
        dir = join(dir, '..');
      }
      if (!found) return void missing.push(`${name} (needed by ${from.slice(app.length) || 'the main'})`);
      if (seen.has(found)) return;
      seen.add(found);
      const manifest = JSON.parse(readFileSync(join(found, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
      for (const dependency of Object.keys(manifest.dependencies ?? {})) if (!(dependency in (manifest.optionalDependencies ?? {}))) visit(dependency, found);
    };
    for (const name of packages) visit(name, app);
    expect(missing).toEqual([]);
  });

  it('leaves out what the app does not load: the libraries already bundled into the page, and the command line\'s TypeScript runner', () => {
    const packages = new Set(packed.filter((file) => file.startsWith('/node_modules/')).map((file) => file.split('/').slice(2, file.split('/')[2]?.startsWith('@') ? 4 : 3).join('/')));
    for (const name of ['vue', 'pinia', 'chart.js', '@tanstack/vue-virtual', 'tsx', 'esbuild']) expect(packages).not.toContain(name);
    expect(readdirSync(join(work, 'dist', 'linux-unpacked', 'resources')).filter((file) => file.endsWith('.unpacked'))).toEqual([]);
  });

  it('loads the packed main in Node with every import resolved from inside the package', () => {
    // A stand-in electron that declines the single-instance lock: the main imports everything, then quits at once.
    const stub = `export const app = { requestSingleInstanceLock: () => false, quit: () => console.log('quit') }; export const BrowserWindow = {}, Menu = {}, ipcMain = {}, safeStorage = {}, session = {}, shell = {};`;
    const hooks = `export async function resolve(specifier, context, next) { return specifier === 'electron' ? { url: ${JSON.stringify(`data:text/javascript,${encodeURIComponent(stub)}`)}, shortCircuit: true } : next(specifier, context); }`;
    const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
    const run = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, join(app, 'out', 'main', 'index.js')], {
      cwd: work,
      encoding: 'utf8',
      // Outside the project: nothing may come from the developer's node_modules.
      env: { PATH: process.env.PATH ?? '', NODE_PATH: '' },
      timeout: 30_000,
    });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('quit');
    expect(run.status).toBe(0);
  });
});
