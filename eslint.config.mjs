// Lint for the whole tree (`npm run lint`). The device rules at the end catch, while editing,
// what the target engines lack (docs/targets.md); build/check.ts checks the bundled image again.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** Globals a device image cannot count on: absent from ES5 or from some target engine. */
const DEVICE_MISSING_GLOBALS = [
  'Map', 'Set', 'WeakMap', 'WeakSet', 'WeakRef', 'Symbol', 'Proxy', 'Reflect', 'Promise',
  'TextEncoder', 'TextDecoder', 'BigInt', 'BigInt64Array', 'BigUint64Array', 'globalThis',
  'queueMicrotask', 'structuredClone', 'Buffer', 'atob', 'btoa',
].map((name) => ({ name, message: 'not on every target engine (docs/targets.md): device code is ES5' }));

/** Platform services the core reaches only through the HAL (firmware/hal.ts). */
const CORE_PLATFORM_GLOBALS = ['require', 'process', 'console', 'setTimeout', 'setInterval', 'clearTimeout', 'clearInterval', 'Date'].map(
  (name) => ({ name, message: 'the core reaches the platform only through the HAL (firmware/hal.ts)' }),
);

const DEVICE_SYNTAX = [
  { selector: ':function[generator=true]', message: 'generators need a runtime the ES5 targets lack' },
  { selector: ':function[async=true]', message: 'async functions need Promise, which not every target has' },
  { selector: 'Literal[bigint]', message: 'BigInt is not on the ES5 targets' },
  { selector: 'Literal[regex.flags=/[suyvd]/]', message: 'regular expression flags beyond g, i, m are not ES5' },
  { selector: 'ForOfStatement', message: 'for-of compiles to ES5 only for arrays (downlevelIteration is off): use an index loop' },
];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'host-sim/tools/reference/', 'host-sim/sim/jerry-shim*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-use-before-define': ['error', { functions: false, classes: true, variables: true, typedefs: false }],
    },
  },
  {
    files: ['firmware/**/*.ts', 'boards/**/*.ts'],
    languageOptions: { globals: {} },
    rules: {
      // Device code is written as it runs: ES5, function-scoped `var` (TypeScript emits the same).
      'no-var': 'off',
      'no-restricted-globals': ['error', ...DEVICE_MISSING_GLOBALS],
      'no-restricted-syntax': ['error', ...DEVICE_SYNTAX],
    },
  },
  {
    files: ['firmware/**/*.ts'],
    rules: { 'no-restricted-globals': ['error', ...DEVICE_MISSING_GLOBALS, ...CORE_PLATFORM_GLOBALS] },
  },
);
