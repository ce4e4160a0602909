// Lint for the whole tree (`npm run lint`). The device rules at the end catch, while editing,
// what the target engines lack (docs/targets.md); build/check.ts checks the bundled image again.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** Globals a device image cannot count on: absent from ES5 or from some target engine. */
const DEVICE_MISSING_GLOBALS = [
  'Map',
  'Set',
  'WeakMap',
  'WeakSet',
  'WeakRef',
  'Symbol',
  'Proxy',
  'Reflect',
  'Promise',
  'TextEncoder',
  'TextDecoder',
  'BigInt',
  'BigInt64Array',
  'BigUint64Array',
  'globalThis',
  'queueMicrotask',
  'structuredClone',
  'Buffer',
  'atob',
  'btoa',
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
    },
  },
  {
    files: ['firmware/**/*.ts', 'boards/**/*.ts'],
    languageOptions: { globals: {} },
    rules: {
      // Device code is written as it runs: ES5, function-scoped `var` (TypeScript emits the same).
      'no-var': 'off',
      // Espruino does not hoist `var` declarations: a variable used above its declaration is
      // undefined there on the board, whatever Node does (docs/image.md, minification).
      '@typescript-eslint/no-use-before-define': ['error', { functions: false, classes: true, variables: true, typedefs: false }],
      // `x = null` after the last use lets Espruino free the variables a closure still holds
      // (the Puck.js RAM budget counts them): not a useless assignment on the board.
      'no-useless-assignment': 'off',
      'no-restricted-globals': ['error', ...DEVICE_MISSING_GLOBALS],
      'no-restricted-syntax': ['error', ...DEVICE_SYNTAX],
    },
  },
  {
    // Espruino applications and modules: ES5 scripts run by the board as they are.
    files: ['examples/**/*.js', 'boards/espruino/modules/*.js'],
    languageOptions: {
      ecmaVersion: 5,
      sourceType: 'script',
      globals: {
        E: 'readonly',
        E4: 'readonly',
        Puck: 'readonly',
        NRF: 'readonly',
        Bluetooth: 'readonly',
        Serial1: 'readonly',
        print: 'readonly',
        require: 'readonly',
        exports: 'writable',
        module: 'readonly',
        setInterval: 'readonly',
        setTimeout: 'readonly',
        clearInterval: 'readonly',
        clearTimeout: 'readonly',
        btoa: 'readonly',
        atob: 'readonly',
        getTime: 'readonly',
        getSerial: 'readonly',
        LED1: 'readonly',
        LED2: 'readonly',
        LED3: 'readonly',
        BTN: 'readonly',
      },
    },
    rules: {
      // The Espruino idiom for callbacks that need their object (no arrow functions in ES5).
      '@typescript-eslint/no-this-alias': 'off',
      // Espruino's module system is require()/exports.
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    files: ['firmware/**/*.ts'],
    rules: { 'no-restricted-globals': ['error', ...DEVICE_MISSING_GLOBALS, ...CORE_PLATFORM_GLOBALS] },
  },
);
