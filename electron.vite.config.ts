import { resolve } from 'node:path';
import { defineConfig } from 'electron-vite';
import vue from '@vitejs/plugin-vue';
// @ts-expect-error: a plain .mjs module (bin/bridgescope loads it too), no type declarations.
import { buildCli } from './scripts/cli-bundle.mjs';

// electron-vite 6 leaves the package's dependencies external in main and preload by itself (build.externalizeDeps, on by default):
// they are loaded from node_modules at run time, which is why electron-builder packs the production dependencies.
export default defineConfig({
  main: {
    build: { rollupOptions: { input: { index: resolve(__dirname, 'src/main/index.ts') } } },
    // The command line's bundle (out/cli/main.js, which bin/bridgescope runs) is built with the rest, by esbuild.
    plugins: [{ name: 'bridgescope-cli', apply: 'build', closeBundle: () => buildCli(__dirname) }],
  },
  preload: {
    build: {
      // A sandboxed preload must be CommonJS, and cannot require anything but electron: the contract's names are bundled in.
      rollupOptions: {
        input: { index: resolve(__dirname, 'src/preload/index.ts') },
        output: { format: 'cjs', entryFileNames: '[name].cjs' },
      },
    },
  },
  renderer: {
    root: resolve(__dirname, 'src/renderer'),
    build: { rollupOptions: { input: { index: resolve(__dirname, 'src/renderer/index.html') } } },
    plugins: [vue()],
  },
});
