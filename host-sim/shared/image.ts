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
  'Object', 'Function', 'Array', 'Number', 'Boolean', 'String', 'Date', 'RegExp', 'Math', 'JSON',
  'Error', 'EvalError', 'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError',
  'parseFloat', 'parseInt', 'Infinity', 'NaN', 'undefined', 'isFinite', 'isNaN',
  'decodeURI', 'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape', 'unescape',
  'globalThis', 'ArrayBuffer', 'DataView', 'Uint8Array', 'Int8Array', 'Uint8ClampedArray',
  'Uint16Array', 'Int16Array', 'Uint32Array', 'Int32Array', 'Float32Array', 'Float64Array',
]);

/**
 * Run-time methods missing on at least one target engine (docs/targets.md): deleted in the `device`
 * profile. Paths are evaluated inside the sandbox; `%TA%` is the shared typed-array prototype chain.
 */
const DEVICE_MISSING = [
  'Array.from', 'Array.of', 'Object.assign', 'Object.freeze', 'Object.entries', 'Object.values',
  'Number.isSafeInteger', 'Math.imul', 'Math.clz32', 'Math.trunc', 'ArrayBuffer.isView',
  'String.prototype.padStart', 'String.prototype.padEnd', 'Array.prototype.includes',
  '%TA%.from', '%TA%.of', '%TA%.prototype.slice', '%TA%.prototype.fill', '%TA%.prototype.map',
  '%TA%.prototype.includes', '%TA%.prototype.filter', '%TA%.prototype.reduce',
];

/** device: ES5 globals and the targets' missing methods removed; es5: only the globals;
 * loose: nothing removed but console (for diagnosing an image that was not lowered to ES5). */
export const PROFILES = ['device', 'es5', 'loose'];

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Finds the recorded SHA-256 of `file` in a size.json of unknown shape: any object that names
 * the file (file/name/path/image) and carries a sha256, or a map keyed by the file name. */
function recordedHash(sizeJson, file) {
  const want = basename(file);
  let found = null;
  const visit = (node, key) => {
    if (found || !node || typeof node !== 'object') return;
    if (typeof node.sha256 === 'string') {
      const names = [node.file, node.name, node.path, node.image, key].filter((n) => typeof n === 'string');
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
export function loadImage(path = DEFAULT_IMAGE, { expectSha256, sizeJson } = {}) {
  const file = resolve(path);
  if (!existsSync(file)) {
    const err = new Error(`image ${file} not found: run \`npm run build\` first`);
    err.code = 'ENOIMAGE';
    throw err;
  }
  const bytes = readFileSync(file);
  const hash = sha256(bytes);
  let check = 'computed';
  let expected = expectSha256 ? String(expectSha256).toLowerCase() : null;
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
    const err = new Error(`image ${file}: sha256 ${hash} does not match ${expected} (${check}); rebuild with \`npm run build\``);
    err.code = 'EIMAGEHASH';
    throw err;
  }
  const script = new vm.Script(bytes.toString('utf8'), { filename: file });
  return { path: file, bytes, size: bytes.length, sha256: hash, check, script };
}

function strip(context, profile) {
  const names = vm.runInContext('Object.getOwnPropertyNames(globalThis)', context);
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
  for (const n of drop) code.push(`if (${JSON.stringify(n)} in globalThis) try { globalThis[${JSON.stringify(n)}] = undefined; } catch (e) {}`);
  vm.runInContext(code.join('\n'), context);
  const left = vm.runInContext('Object.getOwnPropertyNames(globalThis).filter(function (n) { return globalThis[n] !== undefined; }).join(",")', context).split(',');
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
export function createSandbox(image, { print, log, profile = 'device', name = 'device', modules = null } = {}) {
  if (!PROFILES.includes(profile)) throw new Error(`unknown sandbox profile ${profile} (${PROFILES.join(', ')})`);
  const context = vm.createContext(Object.create(null), {
    name,
    codeGeneration: { strings: false, wasm: false },
  });
  strip(context, profile);
  const sink = print || (() => {});
  const logSink = log || ((level, text) => sink(`[${level}] ${text}`));
  // Injected as sandbox-realm functions wrapping the host sinks, with only strings crossing.
  vm.runInContext('(function (p, l) { globalThis.print = function () { var s = []; for (var i = 0; i < arguments.length; i++) s.push(String(arguments[i])); p(s.join(" ")); }; globalThis.log = function (level, text) { l(String(level), String(text)); }; })', context)(
    (s) => sink(s),
    (level, text) => logSink(level, text),
  );
  if (modules) {
    const table = { ...modules };
    vm.runInContext('(function (get) { globalThis.require = function (n) { var m = get(String(n)); if (m === undefined) throw new Error("Module " + n + " not found"); return m; }; })', context)(
      (n) => (Object.prototype.hasOwnProperty.call(table, n) ? table[n] : undefined),
    );
  }
  image.script.runInContext(context);
  const E4 = vm.runInContext('typeof E4 !== "undefined" ? E4 : undefined', context);
  if (!E4 || typeof E4.create !== 'function') throw new Error(`image ${image.path} did not define a global E4 with create()`);
  const U8 = vm.runInContext('Uint8Array', context);
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
