/**
 * A compact AES encryption block (FIPS-197; 128-, 192- and 256-bit keys): the AES of every image
 * without native AES (the portable vault, portable-vault.ts) and of RFC 5297 conformance.
 *
 * noble's AES builds ~640 KB of lookup tables when it loads; this one builds the S-box and
 * one 256-entry round table (1.25 KB) and gets the other three by rotating its words inline.
 * Four tables (4 KB) were ~20 % faster on Espruino; one keeps RAM free on the small boards that
 * use this AES (MDBT42Q, Pixl.js: ~2,950 variables), and inline rotation was 1.7× faster there
 * than a rotate function. Only encryption is needed: AES-SIV uses the forward cipher for CMAC
 * and for CTR alike.
 * ES5 only (no typed-array fill/slice/from), and every function is declared before the code
 * that runs at load uses it (Espruino has no var hoisting).
 */
import type { AesBlock } from '../hal';

var SBOX = new Uint8Array(256);
/** T[x] = (2·S[x], S[x], S[x], 3·S[x]) as a big-endian word: SubBytes and MixColumns at once. */
var T = new Uint32Array(256);

function xtime(b: number): number {
  return ((b << 1) ^ (b & 0x80 ? 0x1b : 0)) & 255;
}

function rotl8(b: number, n: number): number {
  return ((b << n) | (b >> (8 - n))) & 255;
}

function initTables(): void {
  // Walk the multiplicative group with generator 3: p = 3^k and q = 3^-k, so q = p^-1; then the
  // affine transform of the inverse gives S[p].
  var p = 1;
  var q = 1;
  do {
    p = p ^ xtime(p);
    q ^= q << 1;
    q ^= q << 2;
    q ^= q << 4;
    q &= 255;
    if (q & 0x80) q ^= 0x09;
    SBOX[p] = q ^ rotl8(q, 1) ^ rotl8(q, 2) ^ rotl8(q, 3) ^ rotl8(q, 4) ^ 0x63;
  } while (p !== 1);
  SBOX[0] = 0x63;
  for (var x = 0; x < 256; x++) {
    var s = SBOX[x];
    var s2 = xtime(s);
    T[x] = (s2 << 24) | (s << 16) | (s << 8) | (s2 ^ s);
  }
}
initTables();

function subWord(w: number): number {
  return (SBOX[w >>> 24] << 24) | (SBOX[(w >>> 16) & 255] << 16) | (SBOX[(w >>> 8) & 255] << 8) | SBOX[w & 255];
}

/** The encryption key schedule: 4·(rounds+1) big-endian words. Throws on a bad key size. */
export function expandKey(key: Uint8Array): Uint32Array {
  var nk = key.length >> 2;
  if (!(key instanceof Uint8Array) || (key.length !== 16 && key.length !== 24 && key.length !== 32)) {
    throw new Error('AES key must be 16, 24 or 32 bytes');
  }
  var total = 4 * (nk + 7);
  var w = new Uint32Array(total);
  var i: number;
  for (i = 0; i < nk; i++) w[i] = (key[4 * i] << 24) | (key[4 * i + 1] << 16) | (key[4 * i + 2] << 8) | key[4 * i + 3];
  var rcon = 1;
  for (i = nk; i < total; i++) {
    var t = w[i - 1];
    if (i % nk === 0) {
      t = subWord((t << 8) | (t >>> 24)) ^ (rcon << 24);
      rcon = xtime(rcon);
    } else if (nk > 6 && i % nk === 4) t = subWord(t);
    w[i] = w[i - nk] ^ t;
  }
  return w;
}

function readWord(b: Uint8Array, o: number): number {
  return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
}

function writeWord(b: Uint8Array, o: number, w: number): void {
  b[o] = w >>> 24;
  b[o + 1] = (w >>> 16) & 255;
  b[o + 2] = (w >>> 8) & 255;
  b[o + 3] = w & 255;
}

/**
 * Encrypts `data` (a multiple of 16 bytes) block by block under the schedule `w`: ECB, or CBC
 * with a zero IV when `chain` is set. Returns a new array. The state is four big-endian column
 * words; one loop over the columns does ShiftRows (column c + j), SubBytes and MixColumns (T).
 */
export function encryptBlocks(w: Uint32Array, data: Uint8Array, chain: boolean): Uint8Array {
  if (!(data instanceof Uint8Array) || data.length % 16) throw new Error('AES input must be a multiple of 16 bytes');
  var last = w.length - 4;
  var out = new Uint8Array(data.length);
  var s = [0, 0, 0, 0];
  var t = [0, 0, 0, 0];
  var x: number[];
  var a: number;
  var b: number;
  var d: number;
  var c: number;
  for (var o = 0; o < data.length; o += 16) {
    for (c = 0; c < 4; c++) s[c] = readWord(data, o + 4 * c) ^ w[c] ^ (chain && o ? readWord(out, o - 16 + 4 * c) : 0);
    for (var k = 4; k < last; k += 4) {
      for (c = 0; c < 4; c++) {
        a = T[(s[(c + 1) & 3] >>> 16) & 255];
        b = T[(s[(c + 2) & 3] >>> 8) & 255];
        d = T[s[(c + 3) & 3] & 255];
        t[c] = T[s[c] >>> 24] ^ ((a >>> 8) | (a << 24)) ^ ((b >>> 16) | (b << 16)) ^ ((d >>> 24) | (d << 8)) ^ w[k + c];
      }
      x = s;
      s = t;
      t = x;
    }
    for (c = 0; c < 4; c++) {
      writeWord(
        out,
        o + 4 * c,
        ((SBOX[s[c] >>> 24] << 24) |
          (SBOX[(s[(c + 1) & 3] >>> 16) & 255] << 16) |
          (SBOX[(s[(c + 2) & 3] >>> 8) & 255] << 8) |
          SBOX[s[(c + 3) & 3] & 255]) ^
          w[last + c]
      );
    }
  }
  return out;
}

/** Overwrites a key schedule (it is as secret as the key). */
export function wipeSchedule(w: Uint32Array): void {
  for (var i = 0; i < w.length; i++) w[i] = 0;
}

function withSchedule(key: Uint8Array, data: Uint8Array, chain: boolean): Uint8Array {
  var w = expandKey(key);
  try {
    return encryptBlocks(w, data, chain);
  } finally {
    wipeSchedule(w);
  }
}

/** The image's pure-JS AES block for sivVault/sivEncrypt (any AES key size). */
export var aesBlock: AesBlock = {
  ecb: function (key, data) {
    return withSchedule(key, data, false);
  },
  cbc: function (key, data) {
    return withSchedule(key, data, true);
  },
};
