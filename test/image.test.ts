/**
 * The built ES5 images (npm test builds them first): they parse as ECMAScript 5, reference
 * nothing the target engines lack, build no large tables at load, expose E4 as a global and as
 * module.exports, and pass the reference vectors (test/vectors) in a node:vm realm that holds only ES5-era globals
 * plus typed arrays. Also: the static checker and the dependency-rewrite guard can fail, and the
 * compact crypto that the images carry instead of noble's modules (firmware/crypto/aes.ts,
 * sha3.ts under siv.ts) gives the same bytes as noble and node:crypto.
 */
import { describe, expect, it } from 'vitest';
import { createCipheriv } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { aessiv as nobleAessiv } from '@noble/ciphers/aes.js';
import { sha3_256 as nobleSha3 } from '@noble/hashes/sha3.js';
import { checkImage } from '../build/check.ts';
import { applyPatch, PATCHES } from '../build/deps.ts';
import { listImages, minFile } from '../build/images.ts';
import { aesBlock } from '../firmware/crypto/aes.ts';
import { sha3_256 as imageSha3 } from '../firmware/crypto/sha3.ts';
import { sivDecrypt, sivEncrypt } from '../firmware/crypto/siv.ts';
import { loadCases, runCases } from '../host-sim/tools/conformance.ts';
import { openEngine } from '../host-sim/tools/engines.ts';
import { createSandbox } from '../host-sim/shared/image.ts';
import type { SandboxProfile } from '../host-sim/shared/image.ts';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const VECTORS = join(ROOT, 'test', 'vectors');

/** Every image file the build makes (readable and minified). */
const files: { file: string; allow: string[]; globalName: string }[] = [];
for (const img of listImages()) {
  files.push({ file: img.file, allow: img.allow, globalName: img.globalName });
  if (img.minify) files.push({ file: minFile(img.file), allow: img.allow, globalName: img.globalName });
}
const portable = files.filter((f) => /dist\/e4(\.min)?\.js$/.test(f.file));

/** A deterministic byte generator (xorshift32) for the equivalence checks. */
function bytes(n: number, seed: number): Uint8Array {
  let x = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('static checks', () => {
  for (const f of files) {
    it(`${f.file.slice(ROOT.length)} parses as ES5 and uses nothing the targets lack`, () => {
      expect(existsSync(f.file), `${f.file} missing: run npm run build`).toBe(true);
      const code = readFileSync(f.file, 'utf8');
      expect(checkImage(code, { allow: f.allow })).toEqual([]);
    });
  }

  it('the checker rejects modern syntax and every kind of forbidden use', () => {
    const bad = {
      'let x = 1;': 'not ECMAScript 5',
      'var f = () => 1;': 'not ECMAScript 5',
      'function* g() {}': 'not ECMAScript 5',
      'var o = { a }': 'not ECMAScript 5',
      'var n = 1n;': 'not ECMAScript 5',
      'var m = new Map();': 'references Map',
      'var b = BigInt(1);': 'references BigInt',
      'new TextEncoder().encode("a");': 'references TextEncoder',
      'Promise.resolve(1);': 'references Promise',
      'var s = Symbol("x");': 'references Symbol',
      'Reflect.ownKeys({});': 'references Reflect',
      'var u = Uint8Array.from([1]);': 'uses Uint8Array.from',
      'Object.assign({}, {});': 'uses Object.assign',
      'Math.random();': 'uses Math.random',
      'new Uint8Array(4).fill(0);': 'calls .fill()',
      'var a = Array.prototype.slice.call(arguments);': 'reads Array.prototype.slice',
      'console.log(1);': 'references console',
      'function f(e) { try { g(); } catch (e) { return e; } }': 'catch parameter e repeats a name of its function',
      'function f() { var r = 1; try { g(); } catch (r) { return r; } }': 'catch parameter r repeats a name of its function',
      'function E(m) { this.message = m; }': 'assigns .message',
      'var e = new Error(); e.stack = "";': 'assigns .stack',
    };
    for (const [code, message] of Object.entries(bad)) {
      const findings = checkImage(code);
      expect(findings.length, code).toBeGreaterThan(0);
      expect(findings[0].message, code).toContain(message);
    }
    // Local names, property names and allowed globals are not references to the missing globals.
    expect(checkImage('function f(Map) { return Map; } var o = { Symbol: 1 }; o.Promise = 2; var a = [].slice.call([1]);')).toEqual([]);
    expect(checkImage('var c = require("crypto");', { allow: ['require'] })).toEqual([]);
    // A catch parameter may repeat a name of an enclosing function or of a nested one.
    expect(checkImage('function f(e) { return function () { try { g(); } catch (e) { return e; } }; }')).toEqual([]);
    expect(checkImage('function f() { try { g(); } catch (e) { return function (e) { return e; }; } }')).toEqual([]);
  });
});

describe('dependency rewrites are pinned', () => {
  for (const name of Object.keys(PATCHES)) {
    it(`${name}: applies to the pinned text and fails loudly on any other`, async () => {
      const text = readFileSync(join(ROOT, 'node_modules', name), 'utf8');
      const out = await applyPatch(name, text);
      const removed = name.endsWith('sha3.js') ? /BigInt\(/ : /Number\.isSafeInteger\(n\)|arrays\[i\]\.fill\(0\)/;
      expect(text).toMatch(removed);
      expect(out).not.toMatch(removed);
      // One changed character anywhere (a new release, a local edit) stops the build.
      await expect(applyPatch(name, text.replace('export', 'export '))).rejects.toThrow(/DEPENDENCY CHANGED[\s\S]*sha256 is/);
    });
  }
});

describe('the compact crypto of the images matches the libraries it stands for', () => {
  it('sivEncrypt/sivDecrypt over the compact AES (firmware/crypto/siv.ts, aes.ts) give noble aessiv bytes for every key size, AD count and length', () => {
    let seed = 1;
    for (const keyLen of [32, 48, 64]) {
      for (const adCount of [0, 1, 3]) {
        for (const n of [0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 257]) {
          const key = bytes(keyLen, seed++);
          const ads = Array.from({ length: adCount }, (_, i) => bytes(i * 7 + 1, seed++));
          const pt = bytes(n, seed++);
          const k1 = key.subarray(0, keyLen / 2);
          const k2 = key.subarray(keyLen / 2);
          const want = nobleAessiv(key, ...ads).encrypt(pt);
          const got = sivEncrypt(aesBlock, k1, k2, ads, pt);
          expect(hex(got), `key ${keyLen} ads ${adCount} len ${n}`).toBe(hex(want));
          const opened = sivDecrypt(aesBlock, k1, k2, ads, got);
          expect(opened && hex(opened)).toBe(hex(pt));
          const bad = Uint8Array.from(got);
          bad[(seed * 13) % bad.length] ^= 0x40;
          expect(() => nobleAessiv(key, ...ads).decrypt(bad)).toThrow(/invalid siv tag/);
          expect(sivDecrypt(aesBlock, k1, k2, ads, bad)).toBeNull();
        }
      }
    }
    expect(sivDecrypt(aesBlock, new Uint8Array(16), new Uint8Array(16), [], new Uint8Array(15))).toBeNull();
  });

  it('sha3_256 (firmware/crypto/sha3.ts, noble keccakP) gives noble sha3_256', () => {
    for (let n = 0; n <= 410; n += n < 140 ? 1 : 9) {
      const msg = bytes(n, n + 7);
      expect(hex(imageSha3(msg)), `length ${n}`).toBe(hex(nobleSha3(msg)));
    }
  });

  it('aesBlock (firmware/crypto/aes.ts) is AES-128/192/256 ECB and zero-IV CBC, like node:crypto', () => {
    const cbcOf = aesBlock.cbc;
    if (!cbcOf) throw new Error('aesBlock has no cbc');
    for (const keyLen of [16, 24, 32]) {
      for (const blocks of [1, 2, 5]) {
        const key = bytes(keyLen, keyLen * blocks);
        const data = bytes(16 * blocks, 99 + blocks);
        const ecb = createCipheriv(`aes-${keyLen * 8}-ecb`, key, null).setAutoPadding(false);
        const cbc = createCipheriv(`aes-${keyLen * 8}-cbc`, key, Buffer.alloc(16)).setAutoPadding(false);
        expect(hex(aesBlock.ecb(key, data))).toBe(hex(Buffer.concat([ecb.update(data), ecb.final()])));
        expect(hex(cbcOf(key, data))).toBe(hex(Buffer.concat([cbc.update(data), cbc.final()])));
      }
    }
    expect(() => aesBlock.ecb(new Uint8Array(20), new Uint8Array(16))).toThrow(/16, 24 or 32/);
    expect(() => aesBlock.ecb(new Uint8Array(16), new Uint8Array(15))).toThrow(/multiple of 16/);
  });
});

describe('loading', () => {
  for (const f of portable) {
    const label = f.file.slice(ROOT.length);

    it(`${label} defines the global E4 in an ES5 realm and builds no large tables at load`, () => {
      const code = readFileSync(f.file, 'utf8');
      for (const profile of ['es5', 'device'] satisfies SandboxProfile[]) {
        const before = process.memoryUsage().arrayBuffers;
        const box = createSandbox({ script: new vm.Script(code), path: f.file }, { profile });
        const grown = process.memoryUsage().arrayBuffers - before;
        expect(typeof box.E4.create).toBe('function');
        expect(typeof box.E4.vault).toBe('function');
        expect(box.run('typeof Map + typeof BigInt + typeof Symbol + typeof Promise')).toBe('undefinedundefinedundefinedundefined');
        // noble's AES would allocate ~640 KB of tables here; the image's AES needs 1.25 KB.
        expect(grown).toBeLessThan(64 * 1024);
      }
    });

    it(`${label} is module.exports where module exists`, () => {
      const E4 = createRequire(import.meta.url)(f.file);
      expect(typeof E4.create).toBe('function');
      const ctx = vm.createContext({ module: { exports: {} } });
      vm.runInContext(readFileSync(f.file, 'utf8'), ctx);
      expect(ctx.module.exports).toBe(vm.runInContext('E4', ctx));
    });

    it(`${label} passes every reference vector in the ES5 sandbox`, async () => {
      const cases = loadCases(join(VECTORS, 'e4-sk-vectors.json')).concat(loadCases(join(VECTORS, 'rfc5297.json')));
      const res = await runCases(openEngine('node'), readFileSync(f.file, 'utf8'), cases);
      const failed = res.cases.filter((c) => !c.ok).map((c) => `${c.c.section} ${c.c.name}: ${c.why}`);
      expect(failed).toEqual([]);
      expect(res.cases.length).toBeGreaterThan(100);
    });
  }
});
