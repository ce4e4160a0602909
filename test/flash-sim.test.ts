/**
 * The simulated Espruino Storage (host-sim/sim/flash-sim.ts): Espruino's documented behaviour, its
 * write/erase/compact rules, fault injection, and (when a Linux build of Espruino is found, see
 * host-sim/tools/engines.ts) byte-for-byte agreement of the medium with Espruino's own
 * espruino.flash after the same Storage calls and the same flash-store commits.
 */
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlashSim, PowerCut } from '../host-sim/sim/flash-sim.ts';
import * as acorn from 'acorn';
import { needEngine, skipped, titled } from './support/engines';
import { jsonObject } from './support/json';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('Storage rules', () => {
  it("behaves as Espruino's documentation of Storage.write says", () => {
    const f = new FlashSim();
    f.write('a', 'Hello', 0, 14);
    expect(f.read('a')).toBe('Hello' + '\xff'.repeat(9));
    f.write('a', ' ', 5);
    f.write('a', 'World!!!', 6);
    expect(f.read('a')).toBe('Hello World!!!');
    f.write('a', ' ', 0);
    expect(f.read('a')).toBe(' ');
    expect(f.read('nope')).toBe(undefined);
    expect(f.read('a', 0, 0)).toBe(' ');
  });

  it('refuses to write bytes already written, past the end, or into a missing file', () => {
    const f = new FlashSim();
    f.write('a', new Uint8Array([1, 2, 3]), 0, 8);
    expect(() => f.write('a', 'x', 1)).toThrow('File already written with different data');
    expect(() => f.write('a', 'xxxxxx', 4)).toThrow('Too much data for file size');
    expect(() => f.write('b', 'x', 4)).toThrow('Unable to find or create file');
    expect(() => f.write('c', '')).toThrow("Can't create zero length file");
    expect(f.write('a', 'x', -1)).toBe(false);
    f.write('a', new Uint8Array([0xff, 0xff]), 3); // 0xFF over blank bytes: allowed, and still blank
    f.write('a', 'z', 3);
    expect(hex(new Uint8Array(f.readArrayBuffer('a')!))).toBe('0102037affffffff');
  });

  it('rewriting a file at offset 0 replaces it, unless identical; erase only marks it (data stays until compact)', () => {
    const f = new FlashSim();
    const secret = new Uint8Array(32).map((_, i) => 0xa0 ^ i);
    f.write('k', secret);
    f.write('k', secret); // identical: nothing written
    expect(f.getStats().fileCount).toBe(1);
    expect(f.getStats().trashCount).toBe(0);
    f.write('k', 'other');
    expect(f.getStats().trashCount).toBe(1);
    expect(f.contains(secret)).toBe(true);
    f.write('keep', 'still here');
    f.erase('k');
    expect(f.read('k')).toBe(undefined);
    expect(f.list()).toEqual(['keep']);
    expect(f.contains(new TextEncoder().encode('other'))).toBe(true);
    const free = f.getFree();
    f.compact();
    expect(f.contains(secret)).toBe(false);
    expect(f.contains(new TextEncoder().encode('other'))).toBe(false);
    expect(f.read('keep')).toBe('still here');
    expect(f.getFree()).toBeGreaterThan(free);
    expect(f.getStats().trashBytes).toBe(0);
  });

  it('compaction moves files across pages and keeps their bytes', () => {
    const f = new FlashSim({ size: 16384, pageSize: 1024 });
    const files: Record<string, string> = {};
    for (let i = 0; i < 12; i++) {
      const name = 'f' + i;
      files[name] = String.fromCharCode(65 + i).repeat(300 + 97 * i);
      f.write(name, files[name]);
    }
    for (let i = 0; i < 12; i += 3) {
      f.erase('f' + i);
      delete files['f' + i];
    }
    f.compact();
    expect(f.list().sort()).toEqual(Object.keys(files).sort());
    for (const [n, c] of Object.entries(files)) expect(f.read(n)).toBe(c);
    expect(f.getStats().trashCount).toBe(0);
  });

  it('creating a file without room compacts first when that makes room, else throws', () => {
    const f = new FlashSim({ size: 8192, pageSize: 1024 });
    f.write('big', 'x'.repeat(5000));
    f.write('old', 'y'.repeat(2000));
    f.erase('old');
    f.write('new', 'z'.repeat(2500)); // needs the trash of 'old'
    expect(f.stats.compact).toBe(0);
    expect(f.getStats().trashCount).toBe(0);
    expect(f.read('big')).toBe('x'.repeat(5000));
    expect(() => f.write('more', 'w'.repeat(2000))).toThrow('Unable to find or create file');
  });

  it('Flash.getPage gives the page holding an address (jshFlashGetPage), undefined outside', () => {
    const f = new FlashSim({ size: 8192, pageSize: 1024, base: 0x10000000 });
    expect(f.flash.getPage(0x10000000)).toEqual({ addr: 0x10000000, length: 1024 });
    expect(f.flash.getPage(0x10000400 + 1023)).toEqual({ addr: 0x10000400, length: 1024 });
    expect(f.flash.getPage(0x10002000)).toBe(undefined);
    expect(f.flash.getPage(0x0fffffff)).toBe(undefined);
  });

  it('Flash.write programs NOR-style (1 -> 0 only) without the Storage check', () => {
    const f = new FlashSim();
    f.write('a', new Uint8Array([0xf0, 0x0f, 0xff, 0x55]));
    const at = f.addressOf('a');
    f.flash.write(new Uint8Array([0x3c, 0x3c, 0x00, 0xff]), at);
    expect(hex(f.flash.read(4, at))).toBe('300c0055');
  });
});

describe('fault injection', () => {
  it('a power cut tears the write at the byte, then everything throws until reboot', () => {
    const f = new FlashSim();
    f.write('a', 'x', 0, 16);
    const e0 = f.events;
    f.cutAfter(3);
    expect(() => f.write('a', 'abcdef', 4)).toThrow(PowerCut);
    expect(f.events - e0).toBe(3);
    expect(() => f.read('a')).toThrow(PowerCut);
    expect(() => f.list()).toThrow(PowerCut);
    f.reboot();
    expect(f.read('a')).toBe('x\xff\xff\xffabc' + '\xff'.repeat(9));
  });

  it('with unit 4 a cut falls between words (nRF52 NVMC programs 32-bit words)', () => {
    const f = new FlashSim({ unit: 4 });
    f.write('a', 'x', 0, 16);
    f.cutAfter(1);
    expect(() => f.write('a', 'abcdefgh', 4)).toThrow(PowerCut);
    f.reboot();
    expect(f.read('a')).toBe('x\xff\xff\xffabcd' + '\xff'.repeat(8));
  });

  it('a page erase is one event; the trace tells what each event was', () => {
    const f = new FlashSim({ size: 8192, pageSize: 1024 });
    f.write('a', 'a'.repeat(100));
    f.write('b', 'b'.repeat(100));
    f.erase('a');
    f.resetStats();
    const e0 = f.events;
    f.compact();
    expect(f.stats.pageErases).toBeGreaterThan(0);
    expect(f.events - e0).toBe(f.stats.pageErases + f.stats.bytesProgrammed);
    expect(f.trace.every((t: { kind: string }) => t.kind === 'compact')).toBe(true);
    expect(f.kindOf(e0)).toBe('compact');
  });

  it('failNext fails one call, optionally after programming some bytes, or by returning false', () => {
    const f = new FlashSim();
    f.write('a', 'x', 0, 16);
    f.failNext('write', { after: 2 });
    expect(() => f.write('a', 'abcd', 4)).toThrow(/injected/);
    expect(f.read('a', 4, 4)).toBe('ab\xff\xff');
    f.failNext('write', { returnFalse: true });
    expect(f.write('a', 'z', 10)).toBe(false);
    expect(f.read('a', 10, 1)).toBe('\xff');
    f.failNext('erase');
    expect(() => f.erase('a')).toThrow(/injected/);
    expect(f.read('a')).not.toBe(undefined);
  });

  it("Espruino's boot check resets a Storage whose file chain ends in garbage", () => {
    const f = new FlashSim({ size: 8192, pageSize: 1024 });
    f.write('a', 'a'.repeat(100));
    f.reboot();
    expect(f.stats.resets).toBe(0);
    // A torn header at the end of the chain, with the next page blank: Espruino accepts it.
    f.corrupt(f.addressOf('a') + 100, 0x00);
    f.reboot();
    expect(f.stats.resets).toBe(0);
    expect(f.read('a')).toBe('a'.repeat(100));
    // Garbage at the start of the next page: Espruino erases all of Storage.
    f.corrupt(f.start + 1024, 0x12);
    f.reboot();
    expect(f.stats.resets).toBe(1);
    expect(f.list()).toEqual([]);
  });

  it('a file-backed medium survives the object', () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-flash-sim-'));
    try {
      const file = join(dir, 'espruino.flash');
      new FlashSim({ file, size: 4096, pageSize: 1024 }).write('a', 'kept');
      expect(readFileSync(file).length).toBe(4096);
      expect(new FlashSim({ file, size: 4096, pageSize: 1024 }).read('a')).toBe('kept');
      expect(() => new FlashSim({ file, size: 8192, pageSize: 1024 })).toThrow(/expected 8192/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// --- against Espruino's Linux build --------------------------------------------------------

// A 32-bit build, as on the boards (the script holds the store's bundle as source: more than a
// 2,630-variable build has room for).
const espruinoEngine = needEngine('espruino32-12000');
const espruino = espruinoEngine.path;

/** Storage calls and flash-store commits, as source that runs on Espruino and in Node alike
 * (`S` is Storage, `F` the Flash module, `FS` the flash-store bundle, `crc` the CRC-32 to use;
 * `FILL` bytes of unlinked trash are left in Storage first, so that with a large FILL the store
 * runs out of room and must not compact). The store finds its files in raw flash by walking
 * Storage's headers from Linux Espruino's Storage address (0x10000000, 256 KB). */
const SCRIPT = `
function bytes(n, v) { var b = new Uint8Array(n); for (var i = 0; i < n; i++) b[i] = (v + 7 * i) & 255; return b; }
S.write("app.js", "print('hello');");
S.write("a", "Hello", 0, 14); S.write("a", " World", 5);
S.write("big", bytes(3000, 1)); S.write("c", bytes(700, 2), 0, 900); S.write("c", bytes(10, 3), 700);
S.erase("a"); S.write("c", "replaced"); S.compact(); S.write("d", bytes(1500, 4));
if (FILL) { for (var o = 0; o < FILL; o += 500) S.write("fill", bytes(500, o), o, FILL); S.erase("fill"); }
var st = FS.flashStore(S, { size: 512, crc32: crc, zero: FS.storageZero(F, S, 0x10000000, 0x10000000 + 262144) });
st.load();
var k = function (v) { var b = new Uint8Array(32); for (var i = 0; i < 32; i++) b[i] = (v * 59 + i * i * 13 + 5) & 255; return b; };
var h = function (v) { return bytes(16, v); };
var errors = [];
function commit(c) { try { st.commit(c); } catch (e) { errors.push(e.message); } }
commit([{ op: "provision", id: h(1), key: k(2) }, { op: "topic", topic: { hash: h(3), key: k(4), prevKey: null, prevSince: -1 } }, { op: "topic", topic: { hash: h(5), key: k(6), prevKey: null, prevSince: -1 } }]);
commit([{ op: "topic", topic: { hash: h(3), key: k(7), prevKey: k(4), prevSince: 1767225700 } }, { op: "calibrate", time: 1767225700, tags: h(8) }]);
commit([{ op: "removeTopic", hash: h(5) }, { op: "calibrate", time: 1767225800, tags: h(9) }]);
for (var i = 0; i < 20; i++) commit([{ op: "calibrate", time: 1767225900 + i, tags: h(10 + i) }]);
commit([{ op: "clientKey", key: k(40) }]);
commit([{ op: "topic", topic: { hash: h(3), key: k(41), prevKey: null, prevSince: -1 } }]);
var s = st.load();
var live = [s.key[0]];
for (var i = 0; i < s.topics.length; i++) { live.push(s.topics[i].key[0]); if (s.topics[i].prevKey) live.push(s.topics[i].prevKey[0]); }
var out = [live, s.lastCommand, errors, S.list().sort().join(), JSON.stringify(S.getStats())];
`;

/** The script's `out`: first bytes of the live keys, the last command's time, the commits'
 * errors, Storage's file list and Storage.getStats() as JSON. */
type ScriptOut = [number[], number, string[], string, string];

function scriptOut(v: unknown): ScriptOut {
  if (!Array.isArray(v) || v.length !== 5) throw new Error('the script gave no 5-element out: ' + JSON.stringify(v));
  const [live, last, errors, list, stats]: unknown[] = v;
  const numbers = (x: unknown): x is number[] => Array.isArray(x) && x.every((e) => typeof e === 'number');
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((e) => typeof e === 'string');
  if (!numbers(live) || typeof last !== 'number' || !strings(errors) || typeof list !== 'string' || typeof stats !== 'string')
    throw new Error('unexpected out: ' + JSON.stringify(v));
  return [live, last, errors, list, stats];
}

async function storeBundle(): Promise<string> {
  const { rollup } = await import('rollup');
  const { resolveSources, lowerToES5 } = await import('../build/es5.ts');
  const ENTRY = '\0flash-store-entry';
  const b = await rollup({
    input: ENTRY,
    plugins: [
      {
        name: 'entry',
        resolveId: (s: string) => (s === ENTRY ? ENTRY : null),
        load: (id: string) =>
          id === ENTRY
            ? `export { flashStore } from ${JSON.stringify(join(__dirname, '../boards/shared/flash-store.ts'))};\nexport { storageZero } from ${JSON.stringify(join(__dirname, '../boards/espruino/storage-zero.ts'))};`
            : null,
      },
      resolveSources(),
      lowerToES5(),
    ],
    onwarn: () => {},
  });
  const { output } = await b.generate({
    format: 'iife',
    name: 'FS',
    exports: 'named',
    freeze: false,
    generatedCode: { preset: 'es5', constBindings: false, arrowFunctions: false, objectShorthand: false, symbols: false },
  });
  // Minified as the images are (mangled names expose a `var` Espruino has not declared yet:
  // an assignment to it reaches the enclosing scope).
  const { minifyImage } = await import('../build/minify.ts');
  return minifyImage(output[0].code);
}

/**
 * Uses of a function's `var` on a path where no declaration of it has been executed yet: Espruino
 * declares a `var` only when execution reaches it, so such an assignment lands in the enclosing
 * scope (a mangled name there can be another function of the image). Declarations dominate what
 * follows them in their block, a for-init dominates its loop, branches and loop bodies dominate
 * nothing after them.
 */
function undeclaredUses(code: string): string[] {
  const out: string[] = [];
  function fn(f: Scope, name: string): void {
    const vars = new Set<string>();
    const collect = (n: acorn.AnyNode): void => {
      if (n !== f.body && isFunction(n)) return;
      if (n.type === 'VariableDeclarator' && n.id.type === 'Identifier') vars.add(n.id.name);
      kids(n).forEach(collect);
    };
    collect(f.body);
    const expr = (n: acorn.AnyNode | null | undefined, dec: Set<string>): void => {
      if (!n) return;
      if (isFunction(n)) return fn(n, n.id ? n.id.name : name);
      if (n.type === 'Identifier') {
        if (vars.has(n.name) && !dec.has(n.name)) out.push(`${name}: ${n.name} (line ${n.loc?.start.line})`);
        return;
      }
      if (n.type === 'MemberExpression') return (expr(n.object, dec), n.computed ? expr(n.property, dec) : undefined);
      if (n.type === 'Property') return expr(n.value, dec);
      kids(n).forEach((c) => expr(c, dec));
    };
    const block = (list: acorn.AnyNode[], dec: Set<string>): Set<string> => {
      for (const c of list) dec = stmt(c, dec);
      return dec;
    };
    const stmt = (n: acorn.AnyNode | null | undefined, dec: Set<string>): Set<string> => {
      if (!n) return dec;
      switch (n.type) {
        case 'VariableDeclaration':
          for (const d of n.declarations) {
            if (d.init) expr(d.init, dec);
            if (d.id.type === 'Identifier') dec = new Set(dec).add(d.id.name);
          }
          return dec;
        case 'BlockStatement':
        case 'Program':
          return block(n.body, dec);
        case 'FunctionDeclaration':
          return (fn(n, n.id ? n.id.name : name), dec);
        case 'ForStatement':
        case 'ForInStatement': {
          const init = n.type === 'ForStatement' ? n.init : n.left;
          const d = init && init.type === 'VariableDeclaration' ? stmt(init, dec) : (expr(init, dec), dec);
          if (n.type === 'ForStatement') [n.test, n.update].forEach((e) => expr(e, d));
          else expr(n.right, d);
          stmt(n.body, d);
          return d;
        }
        case 'IfStatement':
          expr(n.test, dec);
          [n.consequent, n.alternate].forEach((c) => stmt(c, dec));
          return dec;
        case 'WhileStatement':
        case 'DoWhileStatement':
          expr(n.test, dec);
          stmt(n.body, dec);
          return dec;
        case 'TryStatement':
          [n.block, n.handler && n.handler.body, n.finalizer].forEach((c) => stmt(c, dec));
          return dec;
        case 'SwitchStatement':
          expr(n.discriminant, dec);
          n.cases.forEach((c) => (expr(c.test, dec), block(c.consequent, dec)));
          return dec;
        case 'LabeledStatement':
          stmt(n.body, dec);
          return dec;
      }
      kids(n).forEach((c) => expr(c, dec));
      return dec;
    };
    const hoisted = new Set<string>();
    for (const p of f.params) if (p.type === 'Identifier') hoisted.add(p.name);
    if (f.body.type === 'BlockStatement' || f.body.type === 'Program')
      for (const c of f.body.body) if (c.type === 'FunctionDeclaration') hoisted.add(c.id.name);
    stmt(f.body, hoisted);
  }
  const ast = acorn.parse(code, { ecmaVersion: 5, locations: true, allowReserved: true });
  fn({ params: [], body: ast }, '(top)');
  return out;
}

/** What declares `var`s: a function, or the script itself (its body the Program). */
type Scope = { params: acorn.Pattern[]; body: acorn.AnyNode };

/** An object of an acorn syntax tree with a `type` is a node. */
function isNode(c: unknown): c is acorn.AnyNode {
  return typeof c === 'object' && c !== null && 'type' in c && typeof c.type === 'string';
}

function isFunction(n: acorn.AnyNode): n is acorn.FunctionDeclaration | acorn.FunctionExpression | acorn.ArrowFunctionExpression {
  return n.type === 'FunctionDeclaration' || n.type === 'FunctionExpression' || n.type === 'ArrowFunctionExpression';
}

/** The nodes in the fields of `n` (its location aside). */
function kids(n: acorn.AnyNode): acorn.AnyNode[] {
  return Object.entries(n)
    .filter(([k]) => k !== 'loc')
    .flatMap(([, v]: [string, unknown]) => (Array.isArray(v) ? v : [v]))
    .filter(isNode);
}

describe('the flash store as Espruino runs it', () => {
  it('declares every var before any path uses it (Espruino declares a var only when execution reaches it)', async () => {
    expect(undeclaredUses(await storeBundle())).toEqual([]);
    // The check sees the bug it is for.
    expect(undeclaredUses('function f(x){ if (x) { for (var k = 0; k < 1; k++); } else { for (k = 0; k < 1; k++); } }')).toEqual([
      'f: k (line 1)',
      'f: k (line 1)',
      'f: k (line 1)',
    ]);
  });
});

describe.skipIf(skipped(espruinoEngine))(titled('against Espruino (Linux build)', espruinoEngine), () => {
  // 0: room to spare (the store rotates its file several times); 255,500: Storage nearly full of
  // trash, where a new file only fits after a Storage compaction, which the store never runs.
  for (const fill of [0, 255500]) {
    it(`the same Storage calls and flash-store commits leave espruino.flash identical to the simulated medium, removed keys zeroed in place (${fill ? 'Storage full of trash: commits needing a new file fail, nothing compacted' : 'room to spare'})`, async () => {
      const code = await storeBundle();
      const dir = mkdtempSync(join(tmpdir(), 'e4-espruino-'));
      try {
        const prelude = `var FILL = ${fill};`;
        writeFileSync(
          join(dir, 'run.js'),
          `${code}\n${prelude}\nvar S = require("Storage"); var F = require("Flash"); var crc = E.CRC32;\n${SCRIPT}\nprint("OUT " + JSON.stringify(out));\n`,
        );
        const text = execFileSync(espruino as string, ['run.js'], { cwd: dir, input: '', timeout: 120000 }).toString();
        const line = text.split('\n').find((l) => l.startsWith('OUT '));
        expect(line, text.slice(-2000)).toBeTruthy();
        // Linux Espruino: 256 KB of flash at 0x10000000 in 1 KB pages, all of it Storage.
        const sim = new FlashSim({ size: 262144, pageSize: 1024, base: 0x10000000 });
        const FS: unknown = new Function(code + '\nreturn FS;')();
        const out = scriptOut(new Function('S', 'F', 'FS', 'crc', prelude + SCRIPT + '\nreturn out;')(sim, sim.flash, FS, undefined));
        expect(JSON.parse(line!.slice(4).trim())).toEqual(out);
        const medium = readFileSync(join(dir, 'espruino.flash'));
        expect(medium.length).toBe(262144);
        expect(Buffer.compare(medium, Buffer.from(sim.bytes()))).toBe(0);
        expect(sim.stats.compact).toBe(1); // the script's own, before the store opens
        const k = (v: number) => Buffer.from(Array.from({ length: 32 }, (_, i) => (v * 59 + i * i * 13 + 5) & 255));
        const errors = out[2];
        if (fill) {
          // The rotations that need a new file fail; removals (append + zeroing) still work.
          expect(errors.length).toBeGreaterThan(0);
          for (const e of errors) expect(e).toMatch(/Storage full/);
          expect(jsonObject(JSON.parse(out[4])).trashBytes).toBeGreaterThan(fill);
        } else {
          expect(errors).toEqual([]);
        }
        // Espruino's flash holds exactly the keys of the final state (the keys' first bytes
        // differ): k(6) removed with its topic, k(2) replaced, k(4) and k(7) replaced without a
        // transition (unless that commit failed for want of room).
        const live = out[0];
        if (!fill) expect(live.sort()).toEqual([k(40)[0], k(41)[0]].sort());
        for (const v of [2, 4, 6, 7, 40, 41]) expect(medium.includes(k(v)), `k(${v})`).toBe(live.includes(k(v)[0]));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
