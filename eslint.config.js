// One lint setup for the whole tree; the layering of docs/ARCHITECTURE.md is enforced here, per folder.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import vue from 'eslint-plugin-vue';
import globals from 'globals';
import noImportCycle from './eslint/no-import-cycle.js';

const nodeBuiltins = { regex: '^node:', message: 'Node built-ins are not available in this layer.' };
const electron = { name: 'electron', message: 'Only src/main and src/preload may import electron.' };
const layer = (names, message) => ({ regex: `^(\\.\\./)+(${names.join('|')})(/|$)`, message });
const typesOnlyShared = {
  regex: '^(\\.\\./)+shared(/|$)',
  allowTypeImports: true,
  message: 'This layer may import only types from src/shared.',
};

const rules = (patterns, paths = []) => ({ 'no-restricted-imports': ['error', { patterns, paths }] });

export default tseslint.config(
  { ignores: ['out/**', 'dist/**', 'node_modules/**', 'test-results/**', 'bench/results/**', '.scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  // Essential Vue rules; formatting is not a lint concern here.
  ...vue.configs['flat/essential'],
  {
    files: ['**/*.vue'],
    languageOptions: { parserOptions: { parser: tseslint.parser } },
  },
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    files: ['src/shared/**'],
    rules: rules([{ regex: '^[^.]', message: 'src/shared is pure TypeScript: it imports nothing outside itself.' }, layer(['core', 'main', 'preload', 'host', 'cli', 'renderer'], 'src/shared imports nothing outside itself.')]),
  },
  {
    // No import circles inside src/shared, type-only ones included: a type two modules need lives in a leaf module
    // both import (verdict.ts, profile.ts, send-request.ts).
    files: ['src/shared/**/*.ts'],
    plugins: { local: { rules: { 'no-import-cycle': noImportCycle } } },
    rules: { 'local/no-import-cycle': 'error' },
  },
  {
    files: ['src/core/**'],
    rules: rules([layer(['main', 'preload', 'host', 'cli', 'renderer'], 'src/core may import only src/shared, Node and npm libraries.')], [electron, { name: 'vue', message: 'src/core is UI-free.' }]),
  },
  {
    files: ['src/main/**'],
    rules: rules([layer(['preload', 'host', 'cli', 'renderer'], 'src/main may import core, shared and electron.')]),
  },
  {
    files: ['src/preload/**'],
    // The contract's name lists are the one runtime import: the bridge refuses names not in them.
    rules: rules([
      layer(['core', 'main', 'host', 'cli', 'renderer'], 'src/preload may import electron and types from shared.'),
      { ...typesOnlyShared, regex: '^(\\.\\./)+shared/(?!contract$)' },
    ]),
  },
  {
    files: ['src/host/**', 'src/cli/**'],
    rules: rules([layer(['main', 'preload', 'renderer'], 'src/host and src/cli may import core and shared.')], [electron]),
  },
  {
    files: ['src/renderer/**'],
    languageOptions: { globals: { ...globals.browser } },
    rules: rules(
      [
        nodeBuiltins,
        // src/shared is pure TypeScript (the web tsconfig type-checks it without Node), so its functions may run here too.
        layer(['core', 'main', 'preload', 'host', 'cli'], 'src/renderer talks to the core only through the contract client.'),
      ],
      [electron, { name: 'amqplib', message: 'Not in the renderer.' }, { name: 'mqtt', message: 'Not in the renderer.' }, { name: 'ws', message: 'Use the browser WebSocket.' }],
    ),
  },
  {
    // A CommonJS shim that must hook require() itself.
    files: ['**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['test/**', 'bench/**'],
    rules: { 'vue/one-component-per-file': 'off' },
  },
);
