#!/usr/bin/env node
/**
 * `npm run bench` (a benchmark, never a timed test): E4 protect and unprotect of 16, 64, 256 and
 * 1024-byte payloads through the built image, next to raw noble `aessiv` on the same payloads
 * (SIV key key|key, the 8-byte timestamp as the one associated-data component: the work E4 adds
 * framing to), in the same run and the same engine. Ratio = time per runtime op / time per raw op.
 *
 *   npm run bench -- [--engine node|sandbox|duk|jerry|espruino|PATH]... [--image FILE]
 *                    [--budget-ms N] [--json FILE]
 *   npm run bench -- --native [--engine espruino-o2|espruino32-2630|PATH]... [--budget-ms N]
 *
 * `--native`: the Puck.js image's native vault beside its reference, the same image built with
 * the native vault of commit b0e1690 (nativeRows below); ratios of time per operation.
 *
 * Engines (default: every one available): `node` (the image require()d in this process, raw =
 * @noble/ciphers itself), `sandbox` (the device-like node:vm realm), and engine binaries. In a
 * sandbox or binary, raw noble is an ES5 bundle of the unmodified @noble/ciphers aes.js (lowered
 * like the image, no substitution) with bench-only polyfills for the ES2015 methods it calls;
 * an engine that cannot load it (noble builds ~640 KB of tables at load) reports raw as n/a.
 * The client runs with replayCache 0 so that one message can be unprotected repeatedly, and
 * distinctStamps 0 so that protect is measured alone (the same payload at a fixed clock would
 * otherwise be stamped ahead, then refused).
 *
 * Then the speed figures of the footprint table (host-sim/tools/figures.mjs) beside the previous
 * release's (budgets/baseline.json), the budgets and goals (budgets/budget.json): the portable
 * vault on `duk` at 1 KB vs raw noble (from this run's duk rows), and the native vault vs the
 * reference image on `espruino-o2` (the --native rows, run when espruino-o2 is found). `--check`:
 * exit 1 when a figure is above its budget (with CI set, also when one was not measured).
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rollup } from 'rollup';
import { lowerToES5, resolveSources } from '../../build/es5.mjs';
import { availableEngines, describeEngine, engineIfPresent, openEngine } from './engines.mjs';
import { figureTable } from './figures.mjs';
import { answerHelpOrVersion } from '../cli.mjs';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
export const SIZES = [16, 64, 256, 1024];
/** Measurements are interleaved in rounds and the best of each kept. */
const ROUNDS = 3;
/** Rounds under --check: the median of per-round ratios over more rounds is steadier. */
const CHECK_ROUNDS = 7;
const TAG = '@@E4B ';
const END = '@@E4BEND';

/** Bench-only ES5 polyfills for the ES2015 methods noble calls (never part of an image). */
const POLYFILLS = `
(function () {
  function def(o, k, f) { if (typeof o[k] !== "function") o[k] = f; }
  // Espruino: Array.prototype.slice read off the prototype is undefined (instances have it).
  def(Array.prototype, "slice", function (s, e) { var o = [], n = this.length; s = s === undefined ? 0 : s < 0 ? n + s : s; e = e === undefined ? n : e < 0 ? n + e : e; for (var j = s; j < e; j++) o.push(this[j]); return o; });
  def(Array.prototype, "includes", function (x) { return this.indexOf(x) >= 0; });
  def(Number, "isSafeInteger", function (n) { return typeof n === "number" && Math.floor(n) === n && Math.abs(n) <= 9007199254740991; });
  def(ArrayBuffer, "isView", function (x) { return !!x && x.buffer instanceof ArrayBuffer && typeof x.byteLength === "number"; });
  def(Object, "freeze", function (o) { return o; });
  Object.assign = function (t) {
    for (var i = 1; i < arguments.length; i++) { var s = arguments[i]; for (var k in s) if (Object.prototype.hasOwnProperty.call(s, k)) t[k] = s[k]; }
    return t;
  };
  var TAs = [Uint8Array, Uint16Array, Uint32Array, Int32Array];
  for (var i = 0; i < TAs.length; i++) (function (T) {
    def(T, "from", function (a) { var o = new T(a.length); for (var j = 0; j < a.length; j++) o[j] = a[j]; return o; });
    def(T, "of", function () { return T.from(arguments); });
    var P = T.prototype;
    def(P, "fill", function (v, s, e) { var n = this.length; s = s === undefined ? 0 : s < 0 ? n + s : s; e = e === undefined ? n : e < 0 ? n + e : e; for (var j = s; j < e; j++) this[j] = v; return this; });
    def(P, "map", function (f) { var o = new T(this.length); for (var j = 0; j < this.length; j++) o[j] = f(this[j], j, this); return o; });
    def(P, "indexOf", function (x) { for (var j = 0; j < this.length; j++) if (this[j] === x) return j; return -1; });
    def(P, "forEach", function (f) { for (var j = 0; j < this.length; j++) f(this[j], j, this); });
    var sl = new T(1).slice;
    if (typeof sl !== "function" || !(new T(1).slice() instanceof T)) P.slice = function (s, e) { return T.from(this.subarray(s === undefined ? 0 : s, e === undefined ? this.length : e)); };
  })(TAs[i]);
})();
`;

/** The in-engine bench (ES5): prints one tagged line per payload size. */
const HARNESS = `
(function (SIZES, BUDGET, ROUNDS) {
  var out = typeof print === "function" ? print : function (s) { console.log(s); };
  var topic = "bench/topic", now = 1700000000;
  var c = E4.create({ vault: E4.vault(), clock: { kind: "trusted", now: function () { return now; } } },
    { id: "00000000000000000000000000000000", key: "11111111111111111111111111111111" + "11111111111111111111111111111111",
      topics: [{ topic: topic, key: "22222222222222222222222222222222" + "22222222222222222222222222222222" }] }, { replayCache: 0, distinctStamps: 0 });
  var key = E4.fromHex("22222222222222222222222222222222" + "22222222222222222222222222222222");
  var sk = new Uint8Array(64); sk.set(key, 0); sk.set(key, 32);
  var ad = new Uint8Array(8); ad[0] = 1;
  function best(r, k, v) { if (!(r[k] >= v)) r[k] = v; }
  function rate(fn) { var n = 0, t0 = Date.now(), t; fn(); do { fn(); n++; t = Date.now() - t0; } while (t < BUDGET); return n * 1000 / t; }
  for (var i = 0; i < SIZES.length; i++) {
    var pt = new Uint8Array(SIZES[i]);
    for (var j = 0; j < pt.length; j++) pt[j] = j & 255;
    var msg = c.protect(topic, pt), r = { size: SIZES[i] }, sealed = null;
    if (typeof RAW !== "undefined") {
      try { sealed = RAW.aessiv(sk, ad).encrypt(pt); } catch (e) { r.rawError = String(e && e.message ? e.message : e); }
    }
    // Interleaved rounds, best of each: other load on the machine hits every measure alike. Each
    // round's own ratios are kept too: a ratio of two rates measured back to back (the median
    // over rounds is what the footprint table uses, steadier on a busy machine than best/best).
    r.ratios = [];
    for (var round = 0; round < ROUNDS; round++) {
      var q = {};
      q.protect = rate(function () { c.protect(topic, pt); });
      if (sealed) q.rawSeal = rate(function () { RAW.aessiv(sk, ad).encrypt(pt); });
      q.unprotect = rate(function () { c.unprotect(topic, msg); });
      if (sealed) q.rawOpen = rate(function () { RAW.aessiv(sk, ad).decrypt(sealed); });
      for (var key in q) best(r, key, q[key]);
      if (sealed) r.ratios.push([q.rawSeal / q.protect, q.rawOpen / q.unprotect]);
    }
    out("${TAG.trim()} " + JSON.stringify(r));
  }
  out("${END}");
})`;

/** ES5 bundle of the unmodified noble aessiv, defining the global RAW. */
export async function rawNobleBundle() {
  const entry = '\0bench-raw';
  const bundle = await rollup({
    input: entry,
    plugins: [
      { name: 'bench-raw-entry', resolveId: (s) => (s === entry ? entry : null), load: (id) => (id === entry ? 'export { aessiv } from "@noble/ciphers/aes.js";\n' : null) },
      resolveSources(),
      lowerToES5(),
    ],
    onwarn() {},
  });
  const { output } = await bundle.generate({ format: 'iife', name: 'RAW', freeze: false, esModule: false, generatedCode: 'es5' });
  // TypeScript's __spreadArray declares `ar` in a for-init that may never run; Espruino has no var
  // hoisting, so declare it first (bench-only: the image contains no such helper, build/check.mjs).
  return output[0].code.replace(/(if \((?:pack \|\| )?arguments\.length === 2\) for \(var i = 0, l = from\.length), ar;/g, 'var ar; $1;');
}

function parse(stdout) {
  const rows = [];
  for (const line of stdout.split(/\r?\n/)) {
    const at = line.indexOf(TAG);
    if (at >= 0) {
      try {
        rows.push(JSON.parse(line.slice(at + TAG.length)));
      } catch {
        /* mangled line */
      }
    }
  }
  return rows;
}

async function benchHostNode(imageFile, budgetMs) {
  const E4 = createRequire(import.meta.url)(imageFile);
  const { aessiv } = await import('@noble/ciphers/aes.js');
  const topic = 'bench/topic';
  const keyHex = '22'.repeat(32);
  const c = E4.create(
    { vault: E4.vault(), clock: { kind: 'trusted', now: () => 1700000000 } },
    { id: '00'.repeat(16), key: '11'.repeat(32), topics: [{ topic, key: keyHex }] },
    { replayCache: 0, distinctStamps: 0 },
  );
  const key = Buffer.from(keyHex, 'hex');
  const sk = new Uint8Array(64);
  sk.set(key, 0);
  sk.set(key, 32);
  const ad = new Uint8Array(8);
  ad[0] = 1;
  const rate = (fn) => {
    fn();
    let n = 0;
    const t0 = performance.now();
    let t;
    do {
      fn();
      n++;
      t = performance.now() - t0;
    } while (t < budgetMs);
    return (n * 1000) / t;
  };
  const rows = [];
  for (const size of SIZES) {
    const pt = new Uint8Array(size).map((_, j) => j & 255);
    const msg = c.protect(topic, pt);
    const sealed = aessiv(sk, ad).encrypt(pt);
    const r = { size };
    const best = (k, v) => (r[k] = Math.max(r[k] || 0, v));
    for (let round = 0; round < ROUNDS; round++) {
      best('protect', rate(() => c.protect(topic, pt)));
      best('unprotect', rate(() => c.unprotect(topic, msg)));
      best('rawSeal', rate(() => aessiv(sk, ad).encrypt(pt)));
      best('rawOpen', rate(() => aessiv(sk, ad).decrypt(sealed)));
    }
    rows.push(r);
  }
  return rows;
}

const fmt = (x) => (x === undefined ? 'n/a' : x >= 100 ? Math.round(x).toString() : x.toFixed(1));
const ratio = (raw, rt) => (raw === undefined || !rt ? 'n/a' : (raw / rt).toFixed(2));

export function formatTable(results) {
  const rows = [['engine', 'bytes', 'protect/s', 'raw seal/s', 'ratio', 'unprotect/s', 'raw open/s', 'ratio']];
  for (const r of results) {
    if (r.error) {
      rows.push([r.engine, '-', 'error: ' + r.error, '', '', '', '', '']);
      continue;
    }
    for (const x of r.rows) {
      rows.push([r.engine, String(x.size), fmt(x.protect), fmt(x.rawSeal), ratio(x.rawSeal, x.protect), fmt(x.unprotect), fmt(x.rawOpen), ratio(x.rawOpen, x.unprotect)]);
    }
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((v, c) => (c === 0 ? v.padEnd(w[c]) : v.padStart(w[c]))).join('  ')).join('\n');
}

// --- the native vault beside its reference (issue 10) ---------------------------------------
/**
 * The Puck.js image (native `crypto.AES`) against the same image built with the native vault as
 * it was at commit b0e1690 (host-sim/tools/reference/native-vault-b0e1690: siv.ts and
 * native-aes.ts in place of the current ones; same entry, build and minifier). Each engine run
 * loads one image as a script and times the vault's seal/open (8-byte associated data, as E4's
 * timestamp) and protect/unprotect through E4.create with that vault. A 2,630-variable build
 * cannot hold the whole image's source in RAM (a Puck.js runs it from flash, which the Linux
 * build emulates with file reads, too slow to time anything): there the runs fall back to the
 * client and the native vault alone (`core`), then to the native vault alone (`vault`: seal/open
 * only), built the same way. Reference and current runs alternate, NATIVE_ROUNDS times; the
 * figure is the median over the rounds of current time / reference time (two adjacent runs),
 * next to the best time of each.
 */
export const NATIVE_ENGINES = ['espruino-o2', 'espruino32-2630'];
export const NATIVE_SIZES = [16, 64, 256, 1024];
/** Client protect/unprotect (when the image has the client) and the vault's own seal/open. */
const NATIVE_OPS = ['protect', 'unprotect', 'seal', 'open'];
/** Alternating runs per image (process start-up and load on a shared machine add noise). */
const NATIVE_ROUNDS = 5;
const NATIVE_BOARD = 'boards/espruino-puckjs/main.ts';
const NATIVE_CORE = '\0e4-native-core';
const REFERENCE_DIR = join(ROOT, 'host-sim/tools/reference/native-vault-b0e1690');
const REFERENCE_FILES = {
  [join(ROOT, 'firmware/crypto/siv.ts')]: join(REFERENCE_DIR, 'siv.ts'),
  [join(ROOT, 'boards/espruino/native-aes.ts')]: join(REFERENCE_DIR, 'native-aes.ts'),
};

/**
 * The minified Puck.js image from the build's own configuration (`part` 'core': an image of the
 * client and the native vault only, 'vault': of the native vault only, same configuration);
 * `reference`: with the reference vault sources loaded in place of the current files (imports
 * resolve as before).
 */
export async function nativeImage({ reference = false, part = 'image' } = {}) {
  const configs = (await import('../../rollup.config.mjs')).default;
  const config = configs.find((c) => typeof c.input === 'string' && resolve(c.input) === join(ROOT, NATIVE_BOARD));
  if (!config) throw new Error(`no build configuration for ${NATIVE_BOARD}`);
  const vaultExport = `export { nativeVault as vault } from ${JSON.stringify(join(ROOT, 'boards/espruino/native-aes.ts'))};\n`;
  const coreEntry = part === 'core' ? `export { create } from ${JSON.stringify(join(ROOT, 'firmware/client.ts'))};\n${vaultExport}` : vaultExport;
  const swap = {
    name: 'e4-reference-native-vault',
    resolveId: (id) => (id === NATIVE_CORE ? id : null),
    // The reference vault's methods under their current names (seal/open then, sivEncrypt/sivDecrypt now).
    load: (id) => (id === NATIVE_CORE ? coreEntry : reference && REFERENCE_FILES[id] ? readFileSync(REFERENCE_FILES[id], 'utf8').replace(/\bseal: /g, 'sivEncrypt: ').replace(/\bopen: /g, 'sivDecrypt: ') : null),
  };
  const plugins = [swap, ...config.plugins.filter((p) => p.name !== 'e4-size-report')];
  const bundle = await rollup({ ...config, input: part === 'image' ? config.input : NATIVE_CORE, plugins });
  const { output } = await bundle.generate(config.output);
  const min = output.find((o) => o.type === 'asset' && o.fileName.endsWith('.min.js'));
  if (!min) throw new Error(`${NATIVE_BOARD}: the build made no minified image`);
  return String(min.source);
}

/** The in-engine part (ES5), after the image: one tagged line per size. */
function nativeHarness(sizes, budgetMs) {
  return `
(function (SIZES, BUDGET) {
  var topic = "bench/topic", vault = E4.vault(), c = null;
  var key = new Uint8Array(32), ad = new Uint8Array(8);
  for (var k = 0; k < 32; k++) key[k] = 0x22;
  ad[0] = 1;
  if (E4.create) c = E4.create({ vault: vault, clock: { kind: "trusted", now: function () { return 1700000000; } } },
    { id: "00000000000000000000000000000000", key: "${'11'.repeat(32)}",
      topics: [{ topic: topic, hash: "00112233445566778899aabbccddeeff", key: "${'22'.repeat(32)}" }] }, { replayCache: 0, distinctStamps: 0 });
  function rate(fn) { var n = 0, t0 = Date.now(), t; fn(); do { fn(); n++; t = Date.now() - t0; } while (t < BUDGET); return n * 1000 / t; }
  for (var i = 0; i < SIZES.length; i++) {
    var r = { size: SIZES[i] };
    try {
      var pt = new Uint8Array(SIZES[i]);
      for (var j = 0; j < pt.length; j++) pt[j] = j & 255;
      var sealed = vault.sivEncrypt(key, ad, pt);
      r.seal = rate(function () { vault.sivEncrypt(key, ad, pt); });
      r.open = rate(function () { vault.sivDecrypt(key, ad, sealed); });
      sealed = undefined;
      if (c) {
        var msg = c.protect(topic, pt);
        r.protect = rate(function () { c.protect(topic, pt); });
        r.unprotect = rate(function () { c.unprotect(topic, msg); });
      }
    } catch (e) { r.error = String(e && e.message ? e.message : e); }
    pt = msg = undefined;
    print("${TAG.trim()} " + JSON.stringify(r));
  }
  print("${END}");
})(${JSON.stringify(sizes)}, ${budgetMs});
`;
}

/** Results per engine of NATIVE_ENGINES found (or `engines`): { engine, image: 'Puck.js' |
 * 'core' | 'vault', rows: [{ size, protect, unprotect, seal, open, refProtect, …, protectRatios,
 * … }] } in operations per second, best of NATIVE_ROUNDS alternating runs, or { engine, error }. */
export async function nativeRows({ engines = NATIVE_ENGINES, budgetMs = 200, sizes = NATIVE_SIZES, log = () => {} } = {}) {
  const images = {};
  const imageOf = async (which, part) => (images[which + part] = images[which + part] || (await nativeImage({ reference: which === 'reference', part })));
  const results = [];
  for (const spec of engines) {
    let engine;
    try {
      engine = openEngine(spec);
    } catch (e) {
      results.push({ engine: spec, error: e.message });
      continue;
    }
    const attempt = async (part) => {
      log(`running ${describeEngine(engine)}: ${part === 'image' ? 'Puck.js image' : part === 'core' ? 'client + native vault' : 'native vault (seal/open)'}, reference and current, ${NATIVE_ROUNDS} rounds…`);
      const best = {};
      for (let round = 0; round < NATIVE_ROUNDS; round++) {
        const got = {};
        for (const which of ['reference', 'current']) {
          const script = `${await imageOf(which, part)}\n${nativeHarness(sizes, budgetMs)}`;
          const run = await engine.run(script, { endTag: END, timeoutMs: budgetMs * sizes.length * 4 + 60000 });
          const rows = parse(run.stdout);
          if (!rows.length) return { error: `${which}: no result (exit ${run.exit}) ${(run.stdout + run.stderr).trim().slice(-200)}` };
          got[which] = rows;
        }
        for (const x of got.current) {
          const ref = got.reference.find((y) => y.size === x.size) || {};
          const b = (best[x.size] = best[x.size] || { size: x.size, protectRatios: [], unprotectRatios: [], sealRatios: [], openRatios: [] });
          for (const op of NATIVE_OPS) {
            const refKey = 'ref' + op[0].toUpperCase() + op.slice(1);
            if (x[op] !== undefined && !(b[op] >= x[op])) b[op] = x[op];
            if (ref[op] !== undefined && !(b[refKey] >= ref[op])) b[refKey] = ref[op];
            // The two runs of a round are adjacent in time: their ratio shares the machine's load.
            if (x[op] !== undefined && ref[op] !== undefined) b[op + 'Ratios'].push(ref[op] / x[op]);
          }
          for (const [which, e] of [['reference', ref.error], ['current', x.error]]) if (e && round === 0) b.error = (b.error ? b.error + '; ' : '') + which + ': ' + e;
        }
      }
      return { rows: Object.values(best) };
    };
    let r;
    let image;
    for (image of ['image', 'core', 'vault']) {
      r = await attempt(image);
      if (!r.error) break;
      log(`${engine.name}: the ${image} does not run from RAM (${r.error.replace(/\s+/g, ' ').slice(-80)})`);
    }
    results.push({ engine: engine.name, image: image === 'image' ? 'Puck.js' : image, ...r });
  }
  return results;
}

/** The median of a list of numbers (ratios of rounds). */
function median(xs) {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** Time per operation of the current image over that of the reference (below 1: faster): the
 * median of the rounds' ratios (each from two adjacent runs). */
const medianText = (xs) => (!xs || !xs.length ? 'n/a' : median(xs).toFixed(2));
const us = (opsPerSecond) => (opsPerSecond === undefined ? 'n/a' : (1e6 / opsPerSecond).toFixed(0));

export function formatNativeTable(results) {
  const rows = [['engine', 'bytes', 'operation', 'µs ref', 'µs now', 'ratio']];
  for (const r of results) {
    if (r.error) {
      rows.push([r.engine, '-', 'error: ' + r.error, '', '', '']);
      continue;
    }
    for (const x of r.rows) {
      for (const op of NATIVE_OPS) {
        const refKey = 'ref' + op[0].toUpperCase() + op.slice(1);
        if (x[op] === undefined && x[refKey] === undefined) continue;
        rows.push([`${r.engine} (${r.image})`, String(x.size), op, us(x[refKey]), us(x[op]), medianText(x[op + 'Ratios'])]);
      }
    }
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const notes = [];
  for (const r of results) for (const x of r.rows || []) if (x.error) notes.push(`${r.engine} ${x.size}: ${x.error.replace(/\s+/g, ' ').slice(0, 160)}`);
  return [...rows.map((r) => r.map((v, c) => (c === 0 ? v.padEnd(w[c]) : v.padStart(w[c]))).join('  ')), ...notes].join('\n');
}

export const USAGE = `usage: npm run bench -- [--engine node|sandbox|duk|jerry|espruino|PATH]... [--image FILE]
                      [--budget-ms N] [--json FILE] [--no-build] [--check] [--native]

Protect and unprotect of 16, 64, 256 and 1024 bytes through the image beside raw noble aessiv,
in every engine given (default: node, the sandbox and every engine found in $E4_ENGINES, $PATH),
then the speed figures of the footprint table beside the previous release's figures
(budgets/baseline.json) and the budgets (budgets/budget.json).

  --native     only the native vault beside its reference image (commit b0e1690) on the
               engines given (default espruino-o2 and espruino32-2630)
  --no-build   use the images in dist/ as they are (default: \`npm run build\` first)
  --check   exit 1 when a figure is above its budget (with CI set: also when one could not be
            measured, e.g. duk absent or not among --engine); 7 rounds instead of 3
  --help    this text (nothing is run)
  --version the package's version`;

/** The speed figures of the footprint table from this run's results. */
export function speedFigures(results, native = null) {
  const out = {};
  const duk = results.find((r) => r.engine === 'duk' && r.rows);
  const kb = duk && duk.rows.find((x) => x.size === 1024);
  // The median of the per-round ratios when the engine reported them, else best over best.
  const ratioOf = (k, raw, rt) => (kb.ratios && kb.ratios.length ? median(kb.ratios.map((x) => x[k])) : kb[raw] / kb[rt]);
  if (kb && kb.rawSeal && kb.protect) out['duk.protect1kRatio'] = ratioOf(0, 'rawSeal', 'protect');
  else out['duk.protect1kRatio'] = { missing: duk ? 'no raw noble figure on duk' : 'duk not run (absent, or not among --engine)' };
  if (kb && kb.rawOpen && kb.unprotect) out['duk.unprotect1kRatio'] = ratioOf(1, 'rawOpen', 'unprotect');
  else out['duk.unprotect1kRatio'] = { missing: out['duk.protect1kRatio'].missing || 'no raw noble figure on duk' };
  // The native vault against the reference image (issue 10, point 3): the Puck.js image on
  // espruino-o2, 64 bytes, median of the rounds' ratios.
  const o2 = (native || []).find((r) => r.engine === 'espruino-o2' && r.rows && r.image === 'Puck.js');
  const row = o2 && o2.rows.find((x) => x.size === 64);
  for (const op of ['protect', 'unprotect']) {
    const ratios = row && row[op + 'Ratios'];
    out[`native.${op}Ratio`] = ratios && ratios.length ? median(ratios) : { missing: native ? 'espruino-o2 gave no Puck.js image rows' : 'espruino-o2 not run (absent, or not among --engine)' };
  }
  return out;
}

async function main() {
  const argv = process.argv.slice(2);
  const answered = answerHelpOrVersion(argv, USAGE);
  if (answered !== null) return answered;
  const opts = { engines: [], image: null, budgetMs: 200, json: null, check: false, build: true, native: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--check') opts.check = true;
    else if (a === '--no-build') opts.build = false;
    else if (a === '--engine') opts.engines.push(argv[++i]);
    else if (a === '--image') opts.image = argv[++i];
    else if (a === '--budget-ms') opts.budgetMs = Number(argv[++i]);
    else if (a === '--json') opts.json = argv[++i];
    else if (a === '--native') opts.native = true;
    else {
      console.error(`bench: unknown argument ${a} (see npm run bench -- --help)`);
      return 2;
    }
  }
  // The images are built first (not as an npm pre-script: `--help` must not touch dist/).
  if (opts.build && !opts.image) {
    const b = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
    if (b.status !== 0) {
      console.error('bench: the build failed');
      return 1;
    }
  }
  if (opts.native) {
    // Only the native vault beside its reference (engines given with --engine, else NATIVE_ENGINES).
    const native = await nativeRows({ engines: opts.engines.length ? opts.engines : NATIVE_ENGINES, budgetMs: opts.budgetMs, log: (m) => console.log(m) });
    console.log('native vault, Puck.js image: best time per operation, reference (b0e1690) and now; ratio = now / reference, median over the rounds');
    console.log(formatNativeTable(native));
    if (opts.json) writeFileSync(opts.json, JSON.stringify({ budgetMs: opts.budgetMs, native }, null, 2) + '\n');
    return;
  }
  const imageFile = opts.image || [join(ROOT, 'dist/e4.min.js'), join(ROOT, 'dist/e4.js')].find(existsSync);
  if (!imageFile || !existsSync(imageFile)) {
    console.error('bench: no image: run `npm run build` first');
    return 1;
  }
  const specs = opts.engines.length ? opts.engines : ['node', 'sandbox', ...availableEngines().filter((e) => e.path).map((e) => e.spec)];
  const imageCode = readFileSync(imageFile, 'utf8');
  const raw = await rawNobleBundle();
  console.log(`image ${imageFile}; raw = @noble/ciphers aessiv (SIV key key|key, 8-byte AD); ${opts.budgetMs} ms per measurement`);
  const results = [];
  for (const spec of specs) {
    try {
      if (spec === 'node') {
        results.push({ engine: 'node', rows: await benchHostNode(imageFile, opts.budgetMs) });
        continue;
      }
      const engine = openEngine(spec === 'sandbox' ? 'node' : spec);
      const name = spec === 'sandbox' ? 'node sandbox' : engine.name;
      console.log(`running ${describeEngine(engine)}…`);
      const rounds = opts.check ? CHECK_ROUNDS : ROUNDS;
      const harness = `${HARNESS}(${JSON.stringify(SIZES)}, ${opts.budgetMs}, ${rounds});\n`;
      const timeoutMs = opts.budgetMs * SIZES.length * rounds * 8 + 120000;
      let run = await engine.run(`${POLYFILLS}\n${raw}\n${imageCode}\n${harness}`, { endTag: END, timeoutMs });
      let rows = parse(run.stdout);
      if (!rows.length) {
        // The engine could not load noble (memory): the runtime alone.
        run = await engine.run(`${imageCode}\n${harness}`, { endTag: END, timeoutMs });
        rows = parse(run.stdout);
      }
      if (!rows.length) throw new Error(`no result (exit ${run.exit}) ${run.stderr.trim().slice(-300)}`);
      results.push({ engine: name, rows });
    } catch (e) {
      results.push({ engine: spec, error: e.message });
    }
  }
  console.log(formatTable(results));
  for (const r of results) for (const x of r.rows || []) if (x.rawError) console.log(`${r.engine} ${x.size}: raw noble failed: ${x.rawError}`);
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ image: imageFile, budgetMs: opts.budgetMs, results }, null, 2) + '\n');
  // The native-vault figures: the Puck.js image beside its reference on espruino-o2, when found
  // (any run without --engine, one naming espruino-o2, and every --check).
  let native = null;
  if ((!opts.engines.length || opts.engines.includes('espruino-o2') || opts.check) && engineIfPresent('espruino-o2')) {
    native = await nativeRows({ engines: ['espruino-o2'], budgetMs: opts.budgetMs, sizes: [64], log: (m) => console.log(m) });
    console.log(formatNativeTable(native));
  }
  console.log('');
  const { lines, failures } = figureTable('bench', speedFigures(results, native));
  console.log(lines.join('\n'));
  if (opts.check) {
    for (const f of failures) console.log(`bench: FAIL ${f}`);
    console.log(`bench: ${failures.length ? 'over budget' : 'every figure within budget'}`);
    return failures.length ? 1 : 0;
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main().then((code) => process.exit(code));
