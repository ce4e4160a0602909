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
 * Then the speed figures of the footprint table (host-sim/tools/figures.ts) beside the previous
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
import type { OutputAsset, OutputChunk, Plugin } from 'rollup';
import { lowerToES5, resolveSources } from '../../build/es5.ts';
import { availableEngines, describeEngine, engineIfPresent, openEngine } from './engines.ts';
import type { Engine } from './engines.ts';
import { figureTable } from './figures.ts';
import type { Measured } from './figures.ts';
import { answerHelpOrVersion, isMain } from '../shared/cli.ts';

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
      {
        name: 'bench-raw-entry',
        resolveId: (s) => (s === entry ? entry : null),
        load: (id) => (id === entry ? 'export { aessiv } from "@noble/ciphers/aes.js";\n' : null),
      },
      resolveSources(),
      lowerToES5(),
    ],
    onwarn() {},
  });
  const { output } = await bundle.generate({ format: 'iife', name: 'RAW', freeze: false, esModule: false, generatedCode: 'es5' });
  // TypeScript's __spreadArray declares `ar` in a for-init that may never run; Espruino has no var
  // hoisting, so declare it first (bench-only: the image contains no such helper, build/check.ts).
  return output[0].code.replace(/(if \((?:pack \|\| )?arguments\.length === 2\) for \(var i = 0, l = from\.length), ar;/g, 'var ar; $1;');
}

/** One payload size of a run: best operations per second of each measure, and each round's
 * [rawSeal/protect, rawOpen/unprotect] (absent: raw noble did not load in that engine). */
export interface BenchRow {
  size: number;
  protect?: number;
  unprotect?: number;
  rawSeal?: number;
  rawOpen?: number;
  rawError?: string;
  ratios?: [number, number][];
}

/** The rows of one engine, or why it gave none. */
export type BenchResult = { engine: string; rows: BenchRow[]; error?: undefined } | { engine: string; error: string; rows?: undefined };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const numberIn = (r: Record<string, unknown>, k: string) => (typeof r[k] === 'number' ? r[k] : undefined);
const stringIn = (r: Record<string, unknown>, k: string) => (typeof r[k] === 'string' ? r[k] : undefined);

/** The tagged JSON lines of an engine's output (objects only). */
function parse(stdout: string): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (const line of stdout.split(/\r?\n/)) {
    const at = line.indexOf(TAG);
    if (at >= 0) {
      try {
        const row: unknown = JSON.parse(line.slice(at + TAG.length));
        if (isRecord(row)) rows.push(row);
      } catch {
        /* mangled line */
      }
    }
  }
  return rows;
}

/** A row of HARNESS's output, with the fields it prints. */
function benchRow(r: Record<string, unknown>): BenchRow {
  const ratios = Array.isArray(r.ratios)
    ? r.ratios.filter((x): x is [number, number] => Array.isArray(x) && typeof x[0] === 'number' && typeof x[1] === 'number')
    : undefined;
  return {
    size: Number(r.size),
    protect: numberIn(r, 'protect'),
    unprotect: numberIn(r, 'unprotect'),
    rawSeal: numberIn(r, 'rawSeal'),
    rawOpen: numberIn(r, 'rawOpen'),
    rawError: stringIn(r, 'rawError'),
    ratios,
  };
}

/** What the Node-built image (dist/e4.js, CommonJS) exports: the firmware's API. */
type E4Module = typeof import('../../firmware/index.ts');

async function benchHostNode(imageFile: string, budgetMs: number): Promise<BenchRow[]> {
  const E4: E4Module = createRequire(import.meta.url)(imageFile);
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
  const rate = (fn: () => unknown) => {
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
  const rows: BenchRow[] = [];
  for (const size of SIZES) {
    const pt = new Uint8Array(size).map((_, j) => j & 255);
    const msg = c.protect(topic, pt);
    const sealed = aessiv(sk, ad).encrypt(pt);
    const r: BenchRow = { size };
    const best = (k: 'protect' | 'unprotect' | 'rawSeal' | 'rawOpen', v: number) => (r[k] = Math.max(r[k] || 0, v));
    for (let round = 0; round < ROUNDS; round++) {
      best(
        'protect',
        rate(() => c.protect(topic, pt)),
      );
      best(
        'unprotect',
        rate(() => c.unprotect(topic, msg)),
      );
      best(
        'rawSeal',
        rate(() => aessiv(sk, ad).encrypt(pt)),
      );
      best(
        'rawOpen',
        rate(() => aessiv(sk, ad).decrypt(sealed)),
      );
    }
    rows.push(r);
  }
  return rows;
}

const fmt = (x: number | undefined) => (x === undefined ? 'n/a' : x >= 100 ? Math.round(x).toString() : x.toFixed(1));
const ratio = (raw: number | undefined, rt: number | undefined) => (raw === undefined || !rt ? 'n/a' : (raw / rt).toFixed(2));

export function formatTable(results: BenchResult[]): string {
  const rows = [['engine', 'bytes', 'protect/s', 'raw seal/s', 'ratio', 'unprotect/s', 'raw open/s', 'ratio']];
  for (const r of results) {
    if (r.error !== undefined) {
      rows.push([r.engine, '-', 'error: ' + r.error, '', '', '', '', '']);
      continue;
    }
    for (const x of r.rows) {
      rows.push([
        r.engine,
        String(x.size),
        fmt(x.protect),
        fmt(x.rawSeal),
        ratio(x.rawSeal, x.protect),
        fmt(x.unprotect),
        fmt(x.rawOpen),
        ratio(x.rawOpen, x.unprotect),
      ]);
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
const NATIVE_OPS = ['protect', 'unprotect', 'seal', 'open'] as const;
type NativeOp = (typeof NATIVE_OPS)[number];
/** Where a native row keeps the reference image's figure and the rounds' ratios of each op. */
const REF_KEY = { protect: 'refProtect', unprotect: 'refUnprotect', seal: 'refSeal', open: 'refOpen' } as const;
const RATIOS_KEY = { protect: 'protectRatios', unprotect: 'unprotectRatios', seal: 'sealRatios', open: 'openRatios' } as const;

/** One payload size of an engine run of nativeHarness: operations per second, or what failed. */
type NativeRun = { size: number; error?: string } & Partial<Record<NativeOp, number>>;

/** One payload size in nativeRows: best operations per second of the current image (`protect`, …)
 * and of the reference (`refProtect`, …), and each round's reference/current ratio. */
export type NativeRow = { size: number; error?: string } & Partial<Record<NativeOp | (typeof REF_KEY)[NativeOp], number>> &
  Record<(typeof RATIOS_KEY)[NativeOp], number[]>;

/** The rows of one engine and the image that ran (Puck.js, core or vault), or why none did. */
export type NativeResult =
  | { engine: string; image: string; rows: NativeRow[]; error?: undefined }
  | { engine: string; error: string; image?: string; rows?: undefined };

/** The part of the image a run builds (nativeImage). */
type NativePart = 'image' | 'core' | 'vault';

function nativeRun(r: Record<string, unknown>): NativeRun {
  return {
    size: Number(r.size),
    error: stringIn(r, 'error'),
    protect: numberIn(r, 'protect'),
    unprotect: numberIn(r, 'unprotect'),
    seal: numberIn(r, 'seal'),
    open: numberIn(r, 'open'),
  };
}
/** Alternating runs per image (process start-up and load on a shared machine add noise). */
const NATIVE_ROUNDS = 5;
const NATIVE_BOARD = 'boards/espruino-puckjs/main.ts';
const NATIVE_CORE = '\0e4-native-core';
const REFERENCE_DIR = join(ROOT, 'host-sim/tools/reference/native-vault-b0e1690');
const REFERENCE_FILES: Record<string, string> = {
  [join(ROOT, 'firmware/crypto/siv.ts')]: join(REFERENCE_DIR, 'siv.ts'),
  [join(ROOT, 'boards/espruino/native-aes.ts')]: join(REFERENCE_DIR, 'native-aes.ts'),
};

/**
 * The minified Puck.js image from the build's own configuration (`part` 'core': an image of the
 * client and the native vault only, 'vault': of the native vault only, same configuration);
 * `reference`: with the reference vault sources loaded in place of the current files (imports
 * resolve as before).
 */
export async function nativeImage({ reference = false, part = 'image' }: { reference?: boolean; part?: NativePart } = {}): Promise<string> {
  const configs = (await import('../../rollup.config.ts')).default;
  const config = configs.find((c) => typeof c.input === 'string' && resolve(c.input) === join(ROOT, NATIVE_BOARD));
  if (!config) throw new Error(`no build configuration for ${NATIVE_BOARD}`);
  const vaultExport = `export { nativeVault as vault } from ${JSON.stringify(join(ROOT, 'boards/espruino/native-aes.ts'))};\n`;
  const coreEntry =
    part === 'core' ? `export { create } from ${JSON.stringify(join(ROOT, 'firmware/client.ts'))};\n${vaultExport}` : vaultExport;
  const swap: Plugin = {
    name: 'e4-reference-native-vault',
    resolveId: (id) => (id === NATIVE_CORE ? id : null),
    // The reference vault's methods under their current names (seal/open then, sivEncrypt/sivDecrypt now).
    load: (id) =>
      id === NATIVE_CORE
        ? coreEntry
        : reference && REFERENCE_FILES[id]
          ? readFileSync(REFERENCE_FILES[id], 'utf8')
              .replace(/\bseal: /g, 'sivEncrypt: ')
              .replace(/\bopen: /g, 'sivDecrypt: ')
          : null,
  };
  const plugins = [swap, ...config.plugins.filter((p) => p.name !== 'e4-size-report')];
  const bundle = await rollup({ ...config, input: part === 'image' ? config.input : NATIVE_CORE, plugins });
  const { output } = await bundle.generate(config.output);
  const min = output.find((o: OutputChunk | OutputAsset): o is OutputAsset => o.type === 'asset' && o.fileName.endsWith('.min.js'));
  if (!min) throw new Error(`${NATIVE_BOARD}: the build made no minified image`);
  return String(min.source);
}

/** The in-engine part (ES5), after the image: one tagged line per size. */
function nativeHarness(sizes: number[], budgetMs: number): string {
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
export async function nativeRows({
  engines = NATIVE_ENGINES,
  budgetMs = 200,
  sizes = NATIVE_SIZES,
  log = () => {},
}: { engines?: string[]; budgetMs?: number; sizes?: number[]; log?: (m: string) => void } = {}): Promise<NativeResult[]> {
  const images: Record<string, string> = {};
  const imageOf = async (which: 'reference' | 'current', part: NativePart) =>
    (images[which + part] = images[which + part] || (await nativeImage({ reference: which === 'reference', part })));
  const results: NativeResult[] = [];
  for (const spec of engines) {
    let engine: Engine;
    try {
      engine = openEngine(spec);
    } catch (e) {
      results.push({ engine: spec, error: e instanceof Error ? e.message : String(e) });
      continue;
    }
    const attempt = async (part: NativePart): Promise<{ rows: NativeRow[]; error?: undefined } | { error: string }> => {
      log(
        `running ${describeEngine(engine)}: ${part === 'image' ? 'Puck.js image' : part === 'core' ? 'client + native vault' : 'native vault (seal/open)'}, reference and current, ${NATIVE_ROUNDS} rounds…`,
      );
      const best: Record<number, NativeRow> = {};
      for (let round = 0; round < NATIVE_ROUNDS; round++) {
        const got: { reference: NativeRun[]; current: NativeRun[] } = { reference: [], current: [] };
        for (const which of ['reference', 'current'] as const) {
          const script = `${await imageOf(which, part)}\n${nativeHarness(sizes, budgetMs)}`;
          const run = await engine.run(script, { endTag: END, timeoutMs: budgetMs * sizes.length * 4 + 60000 });
          const rows = parse(run.stdout).map(nativeRun);
          if (!rows.length) return { error: `${which}: no result (exit ${run.exit}) ${(run.stdout + run.stderr).trim().slice(-200)}` };
          got[which] = rows;
        }
        for (const x of got.current) {
          const ref: Partial<NativeRun> = got.reference.find((y) => y.size === x.size) || {};
          const b = (best[x.size] = best[x.size] || {
            size: x.size,
            protectRatios: [],
            unprotectRatios: [],
            sealRatios: [],
            openRatios: [],
          });
          for (const op of NATIVE_OPS) {
            const refKey = REF_KEY[op];
            const now = x[op];
            const then = ref[op];
            if (now !== undefined && !((b[op] ?? NaN) >= now)) b[op] = now;
            if (then !== undefined && !((b[refKey] ?? NaN) >= then)) b[refKey] = then;
            // The two runs of a round are adjacent in time: their ratio shares the machine's load.
            if (now !== undefined && then !== undefined) b[RATIOS_KEY[op]].push(then / now);
          }
          for (const [which, e] of [
            ['reference', ref.error],
            ['current', x.error],
          ])
            if (e && round === 0) b.error = (b.error ? b.error + '; ' : '') + which + ': ' + e;
        }
      }
      return { rows: Object.values(best) };
    };
    let r: Awaited<ReturnType<typeof attempt>> = { error: 'not run' };
    let image: NativePart = 'image';
    for (image of ['image', 'core', 'vault'] as const) {
      r = await attempt(image);
      if (!r.error) break;
      log(`${engine.name}: the ${image} does not run from RAM (${r.error.replace(/\s+/g, ' ').slice(-80)})`);
    }
    results.push({ engine: engine.name, image: image === 'image' ? 'Puck.js' : image, ...r });
  }
  return results;
}

/** The median of a list of numbers (ratios of rounds). */
function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** Time per operation of the current image over that of the reference (below 1: faster): the
 * median of the rounds' ratios (each from two adjacent runs). */
const medianText = (xs: number[] | undefined) => (!xs || !xs.length ? 'n/a' : median(xs).toFixed(2));
const us = (opsPerSecond: number | undefined) => (opsPerSecond === undefined ? 'n/a' : (1e6 / opsPerSecond).toFixed(0));

export function formatNativeTable(results: NativeResult[]): string {
  const rows = [['engine', 'bytes', 'operation', 'µs ref', 'µs now', 'ratio']];
  for (const r of results) {
    if (r.error !== undefined) {
      rows.push([r.engine, '-', 'error: ' + r.error, '', '', '']);
      continue;
    }
    for (const x of r.rows) {
      for (const op of NATIVE_OPS) {
        const refKey = REF_KEY[op];
        if (x[op] === undefined && x[refKey] === undefined) continue;
        rows.push([`${r.engine} (${r.image})`, String(x.size), op, us(x[refKey]), us(x[op]), medianText(x[RATIOS_KEY[op]])]);
      }
    }
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const notes: string[] = [];
  for (const r of results)
    for (const x of r.rows || []) if (x.error) notes.push(`${r.engine} ${x.size}: ${x.error.replace(/\s+/g, ' ').slice(0, 160)}`);
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
export function speedFigures(results: BenchResult[], native: NativeResult[] | null = null): Measured {
  const out: Measured = {};
  const duk = results.find((r) => r.engine === 'duk' && r.rows);
  const kb = duk && duk.rows && duk.rows.find((x) => x.size === 1024);
  // The median of the per-round ratios when the engine reported them, else best over best.
  const ratioOf = (row: BenchRow, k: 0 | 1, raw: number, rt: number) =>
    row.ratios && row.ratios.length ? median(row.ratios.map((x) => x[k])) : raw / rt;
  if (kb && kb.rawSeal && kb.protect) out['duk.protect1kRatio'] = ratioOf(kb, 0, kb.rawSeal, kb.protect);
  else out['duk.protect1kRatio'] = { missing: duk ? 'no raw noble figure on duk' : 'duk not run (absent, or not among --engine)' };
  const protectMissing = out['duk.protect1kRatio'];
  if (kb && kb.rawOpen && kb.unprotect) out['duk.unprotect1kRatio'] = ratioOf(kb, 1, kb.rawOpen, kb.unprotect);
  else
    out['duk.unprotect1kRatio'] = {
      missing: (typeof protectMissing === 'object' && protectMissing.missing) || 'no raw noble figure on duk',
    };
  // The native vault against the reference image (issue 10, point 3): the Puck.js image on
  // espruino-o2, 64 bytes, median of the rounds' ratios.
  const o2 = (native || []).find((r) => r.engine === 'espruino-o2' && r.rows && r.image === 'Puck.js');
  const row = o2 && o2.rows && o2.rows.find((x) => x.size === 64);
  for (const op of ['protect', 'unprotect'] as const) {
    const ratios = row && row[RATIOS_KEY[op]];
    out[`native.${op}Ratio`] =
      ratios && ratios.length
        ? median(ratios)
        : { missing: native ? 'espruino-o2 gave no Puck.js image rows' : 'espruino-o2 not run (absent, or not among --engine)' };
  }
  return out;
}

async function main() {
  const argv = process.argv.slice(2);
  const answered = answerHelpOrVersion(argv, USAGE);
  if (answered !== null) return answered;
  const opts: {
    engines: string[];
    image: string | null;
    budgetMs: number;
    json: string | null;
    check: boolean;
    build: boolean;
    native: boolean;
  } = { engines: [], image: null, budgetMs: 200, json: null, check: false, build: true, native: false };
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
    const native = await nativeRows({
      engines: opts.engines.length ? opts.engines : NATIVE_ENGINES,
      budgetMs: opts.budgetMs,
      log: (m) => console.log(m),
    });
    console.log(
      'native vault, Puck.js image: best time per operation, reference (b0e1690) and now; ratio = now / reference, median over the rounds',
    );
    console.log(formatNativeTable(native));
    if (opts.json) writeFileSync(opts.json, JSON.stringify({ budgetMs: opts.budgetMs, native }, null, 2) + '\n');
    return;
  }
  const imageFile = opts.image || [join(ROOT, 'dist/e4.min.js'), join(ROOT, 'dist/e4.js')].find(existsSync);
  if (!imageFile || !existsSync(imageFile)) {
    console.error('bench: no image: run `npm run build` first');
    return 1;
  }
  const specs = opts.engines.length
    ? opts.engines
    : [
        'node',
        'sandbox',
        ...availableEngines()
          .filter((e) => e.path)
          .map((e) => e.spec),
      ];
  const imageCode = readFileSync(imageFile, 'utf8');
  const raw = await rawNobleBundle();
  console.log(`image ${imageFile}; raw = @noble/ciphers aessiv (SIV key key|key, 8-byte AD); ${opts.budgetMs} ms per measurement`);
  const results: BenchResult[] = [];
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
      let rows = parse(run.stdout).map(benchRow);
      if (!rows.length) {
        // The engine could not load noble (memory): the runtime alone.
        run = await engine.run(`${imageCode}\n${harness}`, { endTag: END, timeoutMs });
        rows = parse(run.stdout).map(benchRow);
      }
      if (!rows.length) throw new Error(`no result (exit ${run.exit}) ${run.stderr.trim().slice(-300)}`);
      results.push({ engine: name, rows });
    } catch (e) {
      results.push({ engine: spec, error: e instanceof Error ? e.message : String(e) });
    }
  }
  console.log(formatTable(results));
  for (const r of results)
    for (const x of r.rows || []) if (x.rawError) console.log(`${r.engine} ${x.size}: raw noble failed: ${x.rawError}`);
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ image: imageFile, budgetMs: opts.budgetMs, results }, null, 2) + '\n');
  // The native-vault figures: the Puck.js image beside its reference on espruino-o2, when found
  // (any run without --engine, one naming espruino-o2, and every --check).
  let native: NativeResult[] | null = null;
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

if (isMain(import.meta.url)) main().then((code) => process.exit(code));
