/**
 * Loads the exact bytes of a built image (dist/e4.js by default), checks them by SHA-256, and runs
 * them in node:vm sandboxes that hold only what a device's JavaScript engine has.
 *
 * A sandbox is a fresh V8 context from which everything a device lacks is deleted before the image
 * runs: no Map/Set/WeakMap/Promise/Proxy/Reflect/Symbol/BigInt/Intl/WebAssembly/console, no
 * TextEncoder, no string code generation (eval, new Function). The `device` profile (default) also
 * removes the run-time methods that docs/targets.md lists as missing on Espruino or Duktape
 * (Array.from, Object.assign, typed-array slice/fill/from/of/map, Math.imul, ...), so an image that
 * relies on one of them fails here as it would on the board. `print` and `log` are injected.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_IMAGE = join(ROOT, 'dist', 'e4.js');
/** The link frame codec image (firmware/link/frame.ts), global E4Link. */
export const LINK_IMAGE = join(ROOT, 'dist', 'link.js');

/** Globals of an ES5 engine with typed arrays (what Espruino, Duktape and JerryScript share). */
const ES5_GLOBALS = new Set([
  'Object',
  'Function',
  'Array',
  'Number',
  'Boolean',
  'String',
  'Date',
  'RegExp',
  'Math',
  'JSON',
  'Error',
  'EvalError',
  'RangeError',
  'ReferenceError',
  'SyntaxError',
  'TypeError',
  'URIError',
  'parseFloat',
  'parseInt',
  'Infinity',
  'NaN',
  'undefined',
  'isFinite',
  'isNaN',
  'decodeURI',
  'decodeURIComponent',
  'encodeURI',
  'encodeURIComponent',
  'escape',
  'unescape',
  'globalThis',
  'ArrayBuffer',
  'DataView',
  'Uint8Array',
  'Int8Array',
  'Uint8ClampedArray',
  'Uint16Array',
  'Int16Array',
  'Uint32Array',
  'Int32Array',
  'Float32Array',
  'Float64Array',
]);

/**
 * Run-time methods missing on at least one target engine (docs/targets.md): deleted in the `device`
 * profile. Paths are evaluated inside the sandbox; `%TA%` is the shared typed-array prototype chain.
 */
const DEVICE_MISSING = [
  'Array.from',
  'Array.of',
  'Object.assign',
  'Object.freeze',
  'Object.entries',
  'Object.values',
  'Number.isSafeInteger',
  'Math.imul',
  'Math.clz32',
  'Math.trunc',
  'ArrayBuffer.isView',
  'String.prototype.padStart',
  'String.prototype.padEnd',
  'Array.prototype.includes',
  '%TA%.from',
  '%TA%.of',
  '%TA%.prototype.slice',
  '%TA%.prototype.fill',
  '%TA%.prototype.map',
  '%TA%.prototype.includes',
  '%TA%.prototype.filter',
  '%TA%.prototype.reduce',
];

/** device: ES5 globals and the targets' missing methods removed; es5: only the globals;
 * loose: nothing removed but console (for diagnosing an image that was not lowered to ES5). */
export const PROFILES = ['device', 'es5', 'loose'] as const;
export type SandboxProfile = (typeof PROFILES)[number];

/** The portable image's API (global `E4`, dist/e4.js): the firmware's own exports. */
export type E4Api = typeof import('../../firmware/index.ts');

/** A built image as loadImage() read and checked it. */
export interface LoadedImage {
  /** Absolute path of the file. */
  path: string;
  bytes: Buffer;
  size: number;
  /** SHA-256 of the bytes (hex). */
  sha256: string;
  /** What the hash was checked against: 'expected' (expectSha256), the size file's name, or
   * 'computed' (nothing to check against). */
  check: string;
  script: vm.Script;
}

/** What createSandbox runs: a loaded image, or any script that defines the global E4. */
export interface SandboxImage {
  path: string;
  script: { runInContext(context: vm.Context): unknown };
}

export interface LoadImageOptions {
  /** SHA-256 (hex) the bytes must have. */
  expectSha256?: string;
  /** The size.json that records the image's hash (default: size.json beside the image). */
  sizeJson?: string;
}

/** An image that is missing (ENOIMAGE) or whose bytes do not match their hash (EIMAGEHASH). */
export type ImageError = Error & { code: 'ENOIMAGE' | 'EIMAGEHASH' };

/** Host sinks of the device's output: `print(...)` and `log(level, text)` in the sandbox. */
export type PrintSink = (text: string) => void;
export type LogSink = (level: string, text: string) => void;

export interface SandboxOptions {
  print?: PrintSink | null;
  log?: LogSink | null;
  profile?: SandboxProfile;
  /** The realm's name (node:vm context name). */
  name?: string;
  /** Modules served by a global `require(name)`, as Espruino serves its built-in ones. */
  modules?: Record<string, unknown> | null;
}

/** A device realm with the image loaded. */
export interface Sandbox {
  /** The image's global E4. */
  E4: E4Api;
  context: vm.Context;
  name: string;
  profile: SandboxProfile;
  /** The realm's own Uint8Array constructor. */
  U8: Uint8ArrayConstructor;
  /** Host bytes -> a Uint8Array of the realm (the same object when it already is one). */
  bytesIn(b: ArrayLike<number>): Uint8Array;
  /** Realm bytes -> a host Buffer copy. */
  bytesOut(u: Uint8Array): Buffer;
  /** Evaluates code in the realm. */
  run(code: string): unknown;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Finds the recorded SHA-256 of `file` in a size.json of unknown shape: any object that names
 * the file (file/name/path/image) and carries a sha256, or a map keyed by the file name. */
function recordedHash(sizeJson: unknown, file: string): string | null {
  const want = basename(file);
  let found: string | null = null;
  const visit = (value: unknown, key: string | null): void => {
    if (found || !value || typeof value !== 'object') return;
    const node = value as Record<string, unknown>;
    if (typeof node.sha256 === 'string') {
      const names = [node.file, node.name, node.path, node.image, key].filter((n): n is string => typeof n === 'string');
      if (names.some((n) => basename(n) === want || basename(n) === want.replace(/\.js$/, ''))) {
        found = node.sha256.toLowerCase();
        return;
      }
    }
    for (const k of Object.keys(node)) visit(node[k], k);
  };
  visit(sizeJson, null);
  return found;
}

/**
 * Reads an image. `expectSha256` (hex) makes a mismatch an error; otherwise the hash recorded for
 * the file in size.json beside it (dist/size.json) is checked when there is one, and the computed
 * hash is reported either way (`image.check` says which).
 */
export function loadImage(path: string = DEFAULT_IMAGE, { expectSha256, sizeJson }: LoadImageOptions = {}): LoadedImage {
  const file = resolve(path);
  if (!existsSync(file)) {
    const err: ImageError = Object.assign(new Error(`image ${file} not found: run \`npm run build\` first`), { code: 'ENOIMAGE' as const });
    throw err;
  }
  const bytes = readFileSync(file);
  const hash = sha256(bytes);
  let check = 'computed';
  let expected: string | null = expectSha256 ? String(expectSha256).toLowerCase() : null;
  if (expected) check = 'expected';
  else {
    const sizeFile = sizeJson || join(dirname(file), 'size.json');
    if (existsSync(sizeFile)) {
      try {
        expected = recordedHash(JSON.parse(readFileSync(sizeFile, 'utf8')), file);
      } catch {
        expected = null;
      }
      if (expected) check = basename(sizeFile);
    }
  }
  if (expected && expected !== hash) {
    const err: ImageError = Object.assign(
      new Error(`image ${file}: sha256 ${hash} does not match ${expected} (${check}); rebuild with \`npm run build\``),
      { code: 'EIMAGEHASH' as const },
    );
    throw err;
  }
  const script = new vm.Script(bytes.toString('utf8'), { filename: file });
  return { path: file, bytes, size: bytes.length, sha256: hash, check, script };
}

function strip(context: vm.Context, profile: SandboxProfile): void {
  const names: string[] = vm.runInContext('Object.getOwnPropertyNames(globalThis)', context);
  const drop = profile === 'loose' ? ['console'] : names.filter((n) => !ES5_GLOBALS.has(n));
  const code = [];
  for (const n of drop) code.push(`delete globalThis[${JSON.stringify(n)}];`);
  if (profile === 'device') {
    code.push('(function () { var __ta = Object.getPrototypeOf(Uint8Array);');
    for (const p of DEVICE_MISSING) {
      const parts = p.split('.');
      const owner = parts.slice(0, -1).join('.').replace('%TA%', '__ta');
      code.push(`delete ${owner}[${JSON.stringify(parts[parts.length - 1])}];`);
    }
    code.push('})();');
  }
  // What cannot be deleted (e.g. `gc` under --expose-gc) is overwritten with undefined.
  for (const n of drop)
    code.push(`if (${JSON.stringify(n)} in globalThis) try { globalThis[${JSON.stringify(n)}] = undefined; } catch (e) {}`);
  vm.runInContext(code.join('\n'), context);
  const left: string[] = vm
    .runInContext('Object.getOwnPropertyNames(globalThis).filter(function (n) { return globalThis[n] !== undefined; }).join(",")', context)
    .split(',');
  const extra = profile === 'loose' ? left.filter((n) => n === 'console') : left.filter((n) => n && !ES5_GLOBALS.has(n));
  if (extra.length) throw new Error('sandbox: could not remove ' + extra.join(', '));
}

/**
 * A device realm with the image loaded. Returns { E4, context, bytesIn, bytesOut, run }.
 * - print(text) / log(level, text): where the device's output goes (host functions).
 * - profile: 'device' (default) or 'es5' (only the non-ES5 globals removed).
 * - modules: { name: object } served by a global `require(name)` the way Espruino serves its
 *   built-in modules (e.g. { crypto: espruinoCrypto(), Storage: ... }); absent: no `require`.
 * Bytes cross the realm boundary through bytesIn (host bytes -> the sandbox's own Uint8Array:
 * the core checks `instanceof Uint8Array`) and bytesOut (-> a host Buffer copy).
 */
export function createSandbox(
  image: SandboxImage,
  { print, log, profile = 'device', name = 'device', modules = null }: SandboxOptions = {},
): Sandbox {
  if (!PROFILES.includes(profile)) throw new Error(`unknown sandbox profile ${profile} (${PROFILES.join(', ')})`);
  const context = vm.createContext(Object.create(null), {
    name,
    codeGeneration: { strings: false, wasm: false },
  });
  strip(context, profile);
  const sink: PrintSink = print || (() => {});
  const logSink: LogSink = log || ((level, text) => sink(`[${level}] ${text}`));
  // Injected as sandbox-realm functions wrapping the host sinks, with only strings crossing.
  vm.runInContext(
    '(function (p, l) { globalThis.print = function () { var s = []; for (var i = 0; i < arguments.length; i++) s.push(String(arguments[i])); p(s.join(" ")); }; globalThis.log = function (level, text) { l(String(level), String(text)); }; })',
    context,
  )(
    (s: string) => sink(s),
    (level: string, text: string) => logSink(level, text),
  );
  if (modules) {
    const table = { ...modules };
    vm.runInContext(
      '(function (get) { globalThis.require = function (n) { var m = get(String(n)); if (m === undefined) throw new Error("Module " + n + " not found"); return m; }; })',
      context,
    )((n: string) => (Object.prototype.hasOwnProperty.call(table, n) ? table[n] : undefined));
  }
  image.script.runInContext(context);
  const E4: E4Api | undefined = vm.runInContext('typeof E4 !== "undefined" ? E4 : undefined', context);
  if (!E4 || typeof E4.create !== 'function') throw new Error(`image ${image.path} did not define a global E4 with create()`);
  const U8: Uint8ArrayConstructor = vm.runInContext('Uint8Array', context);
  return {
    E4,
    context,
    name,
    profile,
    U8,
    bytesIn(b) {
      if (b instanceof U8) return b;
      const out = new U8(b.length);
      out.set(b);
      return out;
    },
    bytesOut(u) {
      const out = Buffer.allocUnsafe(u.length);
      out.set(new Uint8Array(u.buffer, u.byteOffset, u.length));
      return out;
    },
    run(code) {
      return vm.runInContext(code, context);
    },
  };
}
