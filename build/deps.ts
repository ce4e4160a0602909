/**
 * Build-time rewrites of dependency files that go into the ES5 images.
 *
 * Every rewrite is pinned: the package version must be the exact one in package.json and the
 * file's SHA-256 must be the one recorded here, and every snippet replaced must occur exactly
 * once. Anything else fails the build with a message that says what to re-check. Nothing is
 * written to node_modules: the rollup `load` hook hands the rewritten text to the bundler.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';
import type { Plugin } from 'rollup';
import { isRecord, readJson } from './json.ts';

/** One pinned rewrite of a dependency file: `find` occurs exactly once and is replaced. */
export interface PatchEdit {
  find: string;
  replace: string | ((found: string) => Promise<string>);
}

/** The rewrites of one dependency file, written for this exact version and text (SHA-256). */
export interface Patch {
  version: string;
  sha256: string;
  edits: PatchEdit[];
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nodeModules = join(root, 'node_modules');

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function fail(file: string, why: string): never {
  throw new Error(
    `\n\n*** DEPENDENCY CHANGED: ${file}\n*** ${why}\n` +
      `*** The image build rewrites this file (build/deps.ts) and will not guess. Re-check the\n` +
      `*** rewrite against the new text, then update the pinned hash and snippets.\n`,
  );
}

// The sha3 round constants: computed once here, in Node, by running noble's own code (the exact
// snippet that the rewrite removes, with noble's own `split`), then inlined as literals.
const SHA3_CONSTANTS = [
  'const _0n = BigInt(0);',
  'const _1n = BigInt(1);',
  'const _2n = BigInt(2);',
  'const _7n = BigInt(7);',
  'const _256n = BigInt(256);',
  '// FIPS 202 Algorithm 5 rc(): when the outgoing bit is 1, the 8-bit LFSR xors',
  '// taps 0, 4, 5, and 6, which compresses to the feedback mask `0x71`.',
  'const _0x71n = BigInt(0x71);',
  'const SHA3_PI = [];',
  'const SHA3_ROTL = [];',
  'const _SHA3_IOTA = []; // no pure annotation: var is always used',
  'for (let round = 0, R = _1n, x = 1, y = 0; round < 24; round++) {',
  '    // Pi',
  '    [x, y] = [y, (2 * x + 3 * y) % 5];',
  '    SHA3_PI.push(2 * (5 * y + x));',
  '    // Rotational',
  '    SHA3_ROTL.push((((round + 1) * (round + 2)) / 2) % 64);',
  '    // Iota',
  '    let t = _0n;',
  '    for (let j = 0; j < 7; j++) {',
  '        R = ((R << _1n) ^ ((R >> _7n) * _0x71n)) % _256n;',
  '        if (R & _2n)',
  '            t ^= _1n << ((_1n << BigInt(j)) - _1n);',
  '    }',
  '    _SHA3_IOTA.push(t);',
  '}',
  'const IOTAS = split(_SHA3_IOTA, true);',
  '// `split(..., true)` keeps the local little-endian lane-word layout used by',
  "// `state32`, so these `H` / `L` tables follow the file's first-word /",
  "// second-word lane slots rather than `_u64.ts`'s usual high/low naming.",
  'const SHA3_IOTA_H = IOTAS[0];',
  'const SHA3_IOTA_L = IOTAS[1];',
].join('\n');

/** 24 numbers in an `Array` or a `Uint32Array` made in the vm context (another realm, where
 * `instanceof` fails: the built-in tag tells the kind). */
function lanes(a: unknown, kind: 'Array' | 'Uint32Array'): a is ArrayLike<number> {
  if (
    Object.prototype.toString.call(a) !== `[object ${kind}]` ||
    typeof a !== 'object' ||
    a === null ||
    !('length' in a) ||
    a.length !== 24
  )
    return false;
  return Array.prototype.every.call(a, (n: unknown) => typeof n === 'number');
}

async function sha3Constants(snippet: string): Promise<string> {
  const u64: unknown = await import(pathToFileURL(join(nodeModules, '@noble/hashes/_u64.js')).href);
  if (!isRecord(u64) || typeof u64.split !== 'function') throw new Error('sha3 constants: @noble/hashes/_u64.js exports no split()');
  const c: unknown = vm.runInNewContext(snippet + '\n;({ SHA3_PI, SHA3_ROTL, SHA3_IOTA_H, SHA3_IOTA_L })', { split: u64.split, BigInt });
  const list = (a: ArrayLike<number>) => Array.prototype.join.call(a, ', ');
  if (
    !isRecord(c) ||
    !lanes(c.SHA3_PI, 'Array') ||
    !lanes(c.SHA3_ROTL, 'Array') ||
    !lanes(c.SHA3_IOTA_H, 'Uint32Array') ||
    !lanes(c.SHA3_IOTA_L, 'Uint32Array')
  ) {
    throw new Error('sha3 constants: unexpected shape');
  }
  return (
    '// Keccak round constants computed at build time from the code this replaces (build/deps.ts).\n' +
    `const SHA3_PI = [${list(c.SHA3_PI)}];\n` +
    `const SHA3_ROTL = [${list(c.SHA3_ROTL)}];\n` +
    `const SHA3_IOTA_H = new Uint32Array([${list(c.SHA3_IOTA_H)}]);\n` +
    `const SHA3_IOTA_L = new Uint32Array([${list(c.SHA3_IOTA_L)}]);`
  );
}

/**
 * package-relative path -> { pkg, version, sha256, edits: [{ find, replace: string | async fn }] }.
 * Only the files that need a change are listed; every other dependency file is only lowered to
 * ES5 (build/es5.ts), and its modern runtime APIs are caught by the image checks.
 */
export const PATCHES: Record<string, Patch> = {
  '@noble/hashes/sha3.js': {
    version: '2.4.0',
    sha256: '9a81e1edb24eae27b335533220167609cfb58008c5690e140ce478acdc669f32',
    edits: [
      // BigInt is missing on Espruino (where `1n` even parses as 1) and on Duktape/JerryScript 2.
      { find: 'import { split } from "./_u64.js";\n', replace: '' },
      { find: SHA3_CONSTANTS, replace: sha3Constants },
    ],
  },
  '@noble/hashes/utils.js': {
    version: '2.4.0',
    sha256: '037ad49adb78168b6b699598fd33f85f7877456b1d28b4d032e2a1a16807947c',
    edits: [
      // keccakP checks its round count with anumber(): Number.isSafeInteger is ES2015.
      {
        find: '    if (!Number.isSafeInteger(n) || n < 0)\n',
        replace: '    if (!(n >= 0 && n <= 9007199254740991 && Math.floor(n) === n))\n',
      },
      // keccakP wipes its scratch buffer with clean(): typed-array fill is missing on Duktape.
      {
        find: '    for (let i = 0; i < arrays.length; i++) {\n        arrays[i].fill(0);\n    }\n',
        replace:
          '    for (let i = 0; i < arrays.length; i++) {\n        for (let j = 0; j < arrays[i].length; j++)\n            arrays[i][j] = 0;\n    }\n',
      },
    ],
  },
};

function countOf(text: string, find: string): number {
  let n = 0;
  for (let at = text.indexOf(find); at >= 0; at = text.indexOf(find, at + find.length)) n++;
  return n;
}

/** The package-relative name of a node_modules file ("@noble/hashes/sha3.js"), or null. */
export function depName(id: string): string | null {
  const rel = relative(nodeModules, id);
  if (rel.startsWith('..')) return null;
  return rel.split(sep).join('/');
}

function installedVersion(name: string): { pkg: string; version: unknown } {
  const parts = name.split('/');
  const pkg = name.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  const manifest = readJson(join(nodeModules, pkg, 'package.json'));
  return { pkg, version: isRecord(manifest) ? manifest.version : undefined };
}

/** The version package.json gives `pkg` (dependencies first, then devDependencies). */
function pinnedVersion(pkg: string): unknown {
  const pinned = readJson(join(root, 'package.json'));
  const listed = (field: string): unknown => {
    const deps = isRecord(pinned) ? pinned[field] : undefined;
    return isRecord(deps) ? deps[pkg] : undefined;
  };
  return listed('dependencies') || listed('devDependencies');
}

/** Applies the pinned rewrite of `name` to `text` (throws loudly on any mismatch). */
export async function applyPatch(name: string, text: string): Promise<string> {
  const patch = PATCHES[name];
  if (!patch) return text;
  const { pkg, version } = installedVersion(name);
  if (version !== patch.version) fail(name, `${pkg} is ${version}; the rewrite was written for ${patch.version}.`);
  const wanted = pinnedVersion(pkg);
  if (wanted !== patch.version) fail(name, `package.json must pin ${pkg} exactly to ${patch.version} (has ${wanted}).`);
  const hash = sha256(text);
  if (hash !== patch.sha256) fail(name, `sha256 is ${hash}, expected ${patch.sha256}.`);
  let out = text;
  for (const edit of patch.edits) {
    const n = countOf(out, edit.find);
    if (n !== 1) fail(name, `a replaced snippet occurs ${n} times (expected once):\n${edit.find.slice(0, 200)}`);
    const replacement = typeof edit.replace === 'function' ? await edit.replace(edit.find) : edit.replace;
    out = out.replace(edit.find, () => replacement);
  }
  return out;
}

/** Rollup plugin: loads the pinned dependency files through their rewrite. */
export function pinnedRewrites(): Plugin {
  return {
    name: 'e4-pinned-rewrites',
    async load(id) {
      const name = depName(id);
      if (!name || !PATCHES[name]) return null;
      return applyPatch(name, readFileSync(id, 'utf8'));
    },
  };
}
