// The command line's bundle, out/cli/main.js: built by `npm run build` (electron.vite.config.ts calls buildCli after the
// main process) and, when the sources changed since, again by bin/bridgescope before it runs (see cliBundleState).
// Everything it runs is in it, the npm libraries too: resolving and loading ~260 files of node_modules cost more than half
// of a start. Each command's code is a chunk of its own (out/cli/chunks), loaded only when that command runs; minified
// (whitespace and syntax only: names stay, so stacks stay readable with `node --enable-source-maps`).
import { mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export const bundleRelative = join('out', 'cli', 'main.js');
const manifestRelative = join('out', 'cli', 'inputs.json');

/**
 * mqtt.js and mqtt-packet require the `debug` package: they get src/cli/quiet-debug.cjs, which hands out loggers that
 * do nothing unless DEBUG is set (see there). Only those two: any other library gets the real package, whatever of its
 * API it uses. The shim's path is a real path, as esbuild's own are (the build's list of inputs must find it).
 */
export function quietDebug(root) {
  const mqttModule = /[\\/]node_modules[\\/]mqtt(-packet)?[\\/]/;
  // Looked up at the first mqtt module: a bundle without mqtt (the launcher's tests build one) needs no shim.
  let shim;
  return {
    name: 'quiet-debug',
    setup(build) {
      build.onResolve({ filter: /^debug$/ }, (args) => {
        if (!mqttModule.test(args.importer)) return undefined;
        shim ??= realpathSync(join(root, 'src', 'cli', 'quiet-debug.cjs'));
        return { path: shim };
      });
    },
  };
}

/**
 * Bundles src/cli/main.ts into out/cli/main.js. Written under temporary names and renamed, so a launcher starting at the
 * same moment (tests start many at once) reads either the old bundle or the new one, never half a file.
 * Returns the build's duration in ms.
 */
export async function buildCli(root) {
  const started = Date.now();
  const { build } = await import('esbuild');
  const result = await build({
    absWorkingDir: root,
    entryPoints: [join(root, 'src', 'cli', 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minifyWhitespace: true,
    minifySyntax: true,
    // amqplib and mqtt's helpers are CommonJS and require Node's built-ins: give the ESM bundle a real require.
    banner: { js: "import { createRequire as bridgescopeCreateRequire } from 'node:module'; const require = bridgescopeCreateRequire(import.meta.url);" },
    // No run-time renaming of closures (what tsx's keepNames did per request on the hot path).
    keepNames: false,
    sourcemap: 'linked',
    metafile: true,
    write: false,
    // Each command's module in its own chunk (src/cli/main.ts imports them when they are needed).
    splitting: true,
    outdir: join(root, 'out', 'cli'),
    entryNames: '[name]',
    chunkNames: 'chunks/[name]-[hash]',
    logLevel: 'silent',
    plugins: [quietDebug(root)],
  });
  // Our own sources one by one; the libraries by the file npm rewrites at every install (a stat per library file would
  // cost a few ms per start).
  const inputs = Object.keys(result.metafile.inputs)
    .map((input) => relative(root, join(root, input)))
    .filter((input) => !input.split(/[\\/]/).includes('node_modules'));
  // This script too: what it puts in the bundle (the debug shim) changes with it.
  inputs.push('package.json', join('node_modules', '.package-lock.json'), join('scripts', 'cli-bundle.mjs'));
  const outDir = join(root, 'out', 'cli');
  mkdirSync(join(outDir, 'chunks'), { recursive: true });
  const suffix = `.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  // Maps and chunks first (named by their content's hash), the entry that imports them last, then the manifest that says
  // which sources (and when) the bundle was made from.
  const entry = join(root, bundleRelative);
  const files = [...result.outputFiles].sort((a, b) => rank(a.path) - rank(b.path));
  function rank(path) {
    return path.endsWith('.map') ? 0 : path === entry ? 2 : 1;
  }
  for (const file of files) {
    writeFileSync(file.path + suffix, file.contents);
    renameSync(file.path + suffix, file.path);
  }
  const manifest = join(root, manifestRelative);
  writeFileSync(manifest + suffix, JSON.stringify({ startedAt: started, inputs }));
  renameSync(manifest + suffix, manifest);
  // Chunks of earlier builds (another hash) are no longer imported by anything.
  const current = new Set(files.map((file) => file.path));
  for (const name of readdirSync(join(outDir, 'chunks'))) {
    const path = join(outDir, 'chunks', name);
    if (!current.has(path) && !name.endsWith('.tmp')) rmSync(path, { force: true });
  }
  return Date.now() - started;
}

/**
 * 'fresh' when out/cli/main.js exists and no source it was built from changed after its build started; 'missing' or
 * 'stale' otherwise. A source edited while the build ran counts as changed. Costs one stat per source (~1 ms).
 */
export function cliBundleState(root) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(root, manifestRelative), 'utf8'));
    statSync(join(root, bundleRelative));
  } catch {
    return 'missing';
  }
  for (const input of manifest.inputs) {
    let mtime;
    try {
      mtime = statSync(join(root, input)).mtimeMs;
    } catch {
      return 'stale';
    }
    if (mtime >= manifest.startedAt) return 'stale';
  }
  return 'fresh';
}

export const cliBundlePath = (root) => join(root, bundleRelative);
