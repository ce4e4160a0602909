/**
 * AES-SIV (RFC 5297) for boards with native AES (Espruino's `require("crypto").AES`): the Vault
 * contract's case only (SIV key `key | key`, one associated-data component), over an AES block
 * with CBC. Byte-identical to firmware/crypto/siv.ts, which stays the compact generic version
 * (with a JavaScript AES the glue is noise; here the five native calls took ≈ 5 % of an sivEncrypt).
 *
 * Written for interpreters that walk the source text (Espruino runs every statement anew, so a
 * byte loop costs per byte and per token): block operations are unrolled over the 16 bytes, the
 * CTR xor runs on 32-bit words in place in the key-stream buffer, and CMAC(0) and the CMAC of
 * associated data up to 16 bytes share one ECB call. An sivEncrypt or sivDecrypt takes 4 native calls
 * whatever the length (L, those two CMACs, CMAC(T) by CBC, the key stream); 3 when empty.
 * `npm run bench -- --native` times it against the previous vault (host-sim/tools/reference).
 */
import type { AesBlock, Vault } from '../../firmware/hal';

/** An AES block with CBC (zero IV), as every native one here has. */
export interface CbcBlock extends AesBlock {
  cbc(key: Uint8Array, data: Uint8Array): Uint8Array;
}

/** Zeros to wipe with: one native `set` call (a byte loop costs a statement per byte on Espruino). */
var ZEROS = new Uint8Array(64);

/** Overwrites secret material: from ZEROS up to 64 bytes, from a zero-filled copy above. */
function wipe(b: Uint8Array): void {
  var n = b.length;
  b.set(n === 64 ? ZEROS : n < 64 ? ZEROS.subarray(0, n) : new Uint8Array(n));
}

/** RFC 5297 §2.3: dbl(S) = S << 1, xor 0x87 into the last byte when the bit shifted out was 1.
 * In place (typed-array stores keep the low 8 bits). */
function dbl(s: Uint8Array): Uint8Array {
  var c = s[0] >> 7;
  s[0] = (s[0] << 1) | (s[1] >> 7);
  s[1] = (s[1] << 1) | (s[2] >> 7);
  s[2] = (s[2] << 1) | (s[3] >> 7);
  s[3] = (s[3] << 1) | (s[4] >> 7);
  s[4] = (s[4] << 1) | (s[5] >> 7);
  s[5] = (s[5] << 1) | (s[6] >> 7);
  s[6] = (s[6] << 1) | (s[7] >> 7);
  s[7] = (s[7] << 1) | (s[8] >> 7);
  s[8] = (s[8] << 1) | (s[9] >> 7);
  s[9] = (s[9] << 1) | (s[10] >> 7);
  s[10] = (s[10] << 1) | (s[11] >> 7);
  s[11] = (s[11] << 1) | (s[12] >> 7);
  s[12] = (s[12] << 1) | (s[13] >> 7);
  s[13] = (s[13] << 1) | (s[14] >> 7);
  s[14] = (s[14] << 1) | (s[15] >> 7);
  s[15] = (s[15] << 1) ^ (c * 0x87);
  return s;
}

/** d[0..16) ^= s[0..16) (both at least 16 bytes). */
function xor16(d: Uint8Array, s: Uint8Array): void {
  d[0] ^= s[0];
  d[1] ^= s[1];
  d[2] ^= s[2];
  d[3] ^= s[3];
  d[4] ^= s[4];
  d[5] ^= s[5];
  d[6] ^= s[6];
  d[7] ^= s[7];
  d[8] ^= s[8];
  d[9] ^= s[9];
  d[10] ^= s[10];
  d[11] ^= s[11];
  d[12] ^= s[12];
  d[13] ^= s[13];
  d[14] ^= s[14];
  d[15] ^= s[15];
}

/** d[0..16) ^= a[0..16) ^ b[0..16). */
function xor16x2(d: Uint8Array, a: Uint8Array, b: Uint8Array): void {
  d[0] ^= a[0] ^ b[0];
  d[1] ^= a[1] ^ b[1];
  d[2] ^= a[2] ^ b[2];
  d[3] ^= a[3] ^ b[3];
  d[4] ^= a[4] ^ b[4];
  d[5] ^= a[5] ^ b[5];
  d[6] ^= a[6] ^ b[6];
  d[7] ^= a[7] ^ b[7];
  d[8] ^= a[8] ^ b[8];
  d[9] ^= a[9] ^ b[9];
  d[10] ^= a[10] ^ b[10];
  d[11] ^= a[11] ^ b[11];
  d[12] ^= a[12] ^ b[12];
  d[13] ^= a[13] ^ b[13];
  d[14] ^= a[14] ^ b[14];
  d[15] ^= a[15] ^ b[15];
}

/**
 * RFC 5297 §2.4, S2V with one associated-data component: D = dbl(CMAC(0)) ^ CMAC(AD); the
 * plaintext is xorend'ed into D when it is at least 16 bytes long, else dbl(D) ^ pad(P);
 * V = CMAC(T). CMAC is RFC 4493: K1 = dbl(L), K2 = dbl(K1) with L = AES(0); a complete last
 * block is xored with K1, an incomplete one padded with 10* and xored with K2. A message of at
 * most one block has a one-block CMAC, AES(pad(M) ^ K): CMAC(0) = AES(K1), and so is the CMAC of
 * a short AD: both come from one ECB call.
 */
function s2v(block: CbcBlock, key: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  // Scratch: K1 | K2 | CMAC(0)'s input | CMAC(AD)'s input when AD is one block.
  var sub = new Uint8Array(64);
  // L = AES(0): the first block of the fresh scratch is the zero block.
  var k1 = sub.subarray(0, 16);
  var l = block.ecb(key, k1);
  sub.set(l);
  wipe(l);
  dbl(k1);
  sub.set(k1, 16);
  var k2 = dbl(sub.subarray(16, 32));
  sub.set(k1, 32);
  var n = ad.length;
  var last = sub.subarray(48);
  if (n <= 16) {
    last.set(ad);
    if (n === 16) xor16(last, k1);
    else {
      last[n] = 0x80;
      xor16(last, k2);
    }
  }
  var one = block.ecb(key, sub.subarray(32, n <= 16 ? 64 : 48));
  // D lives in the first block of that call's output (wiped with it).
  var d = dbl(one.subarray(0, 16));
  if (n <= 16) xor16(d, one.subarray(16));
  else xor16(d, cmac(block, key, ad, n, k1, k2));
  var t = cmacInput(plaintext, d, k1, k2);
  wipe(one);
  var all = block.cbc(key, t);
  wipe(t);
  wipe(sub);
  return all.subarray(all.length - 16);
}

/** T of S2V (the plaintext xorend D, or dbl(D) ^ pad(P)), padded and masked for CMAC. */
function cmacInput(p: Uint8Array, d: Uint8Array, k1: Uint8Array, k2: Uint8Array): Uint8Array {
  var len = p.length;
  var t: Uint8Array;
  if (len < 16) {
    t = new Uint8Array(16);
    t.set(dbl(d));
    for (var i = 0; i < len; i++) t[i] ^= p[i];
    // pad(P): a single block, which CMAC then treats as complete (K1).
    t[len] ^= 0x80;
    xor16(t, k1);
    return t;
  }
  t = new Uint8Array((len + 15) & ~15);
  t.set(p);
  if (len === t.length) {
    // xorend of D into the last block, which is complete: K1 too.
    xor16x2(t.subarray(len - 16), d, k1);
  } else {
    xor16(t.subarray(len - 16), d);
    t[len] = 0x80;
    xor16(t.subarray(t.length - 16), k2);
  }
  return t;
}

/** CMAC of a message longer than one block (`len` bytes), by CBC. */
function cmac(block: CbcBlock, key: Uint8Array, m: Uint8Array, len: number, k1: Uint8Array, k2: Uint8Array): Uint8Array {
  var t = new Uint8Array((len + 15) & ~15);
  t.set(m);
  var lastBlock = t.subarray(t.length - 16);
  if (len === t.length) xor16(lastBlock, k1);
  else {
    t[len] = 0x80;
    xor16(lastBlock, k2);
  }
  var all = block.cbc(key, t);
  return all.subarray(all.length - 16);
}

/**
 * RFC 5297 §2.5/2.6: CTR keyed with `key` from Q = V with bits 63 and 31 cleared. Returns
 * data ^ key stream in whole blocks, the bytes past the data 0. One ECB call encrypts every
 * counter block (Espruino's native CTR ignores the IV, so it cannot be used); the data is xored
 * into that call's output in place, by 32-bit words.
 */
function ctr(block: AesBlock, key: Uint8Array, v: Uint8Array, data: Uint8Array): Uint8Array {
  var len = data.length;
  var size = (len + 15) & ~15;
  var c = new Uint8Array(size);
  if (!len) return c;
  c.set(v);
  c[8] &= 0x7f;
  c[12] &= 0x7f;
  // Bit 31 is clear, so adding a block count below 2^31 to the last 32-bit word never carries
  // into the rest of Q: the 128-bit increment is an add on that word, and on its last byte
  // alone while that byte does not wrap.
  var q = c.subarray(0, 16);
  var o: number;
  var x = c[15];
  if (x + (size >> 4) <= 256) {
    for (o = 16; o < size; o += 16) {
      c.set(q, o);
      c[o + 15] = ++x;
    }
  } else {
    var lo = (c[12] << 24) | (c[13] << 16) | (c[14] << 8) | x;
    for (o = 16; o < size; o += 16) {
      c.set(q, o);
      x = lo + (o >> 4);
      c[o + 12] = x >>> 24;
      c[o + 13] = x >> 16;
      c[o + 14] = x >> 8;
      c[o + 15] = x;
    }
  }
  var s = block.ecb(key, c);
  if (s.byteOffset & 3) {
    c.set(s);
    wipe(s);
    s = c;
  }
  var whole = len >> 2;
  var d = data;
  if (data.byteOffset & 3) {
    d = new Uint8Array(len);
    d.set(data);
  }
  var sw = new Uint32Array(s.buffer, s.byteOffset, whole);
  var dw = new Uint32Array(d.buffer, d.byteOffset, whole);
  for (o = 0; o + 4 <= whole; o += 4) {
    sw[o] ^= dw[o];
    sw[o + 1] ^= dw[o + 1];
    sw[o + 2] ^= dw[o + 2];
    sw[o + 3] ^= dw[o + 3];
  }
  for (; o < whole; o++) sw[o] ^= dw[o];
  for (o = whole << 2; o < len; o++) s[o] ^= data[o];
  if (d !== data) wipe(d);
  // The padding bytes hold key stream: clear them.
  if (size > len) s.set(ZEROS.subarray(0, size - len), len);
  return s;
}

/** SIV-ENCRYPT with the SIV key key | key: V (16) | ciphertext. */
function encrypt(block: CbcBlock, key: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  var v = s2v(block, key, ad, plaintext);
  var c = ctr(block, key, v, plaintext);
  var out = new Uint8Array(16 + plaintext.length);
  out.set(v);
  out.set(c.length === plaintext.length ? c : c.subarray(0, plaintext.length), 16);
  return out;
}

/** SIV-DECRYPT: the plaintext, or null when V does not verify (the candidate plaintext is wiped,
 * never returned). The comparison is constant-time. Errors of the block primitive propagate. */
function decrypt(block: CbcBlock, key: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null {
  if (ciphertext.length < 16) return null;
  var v = ciphertext.subarray(0, 16);
  var len = ciphertext.length - 16;
  var p = ctr(block, key, v, ciphertext.subarray(16));
  if (p.length !== len) {
    var whole = p;
    p = new Uint8Array(len);
    p.set(whole.subarray(0, len));
    wipe(whole);
  }
  var t = s2v(block, key, ad, p);
  // Constant time: every byte is compared whatever the first difference.
  var diff =
    (t[0] ^ v[0]) |
    (t[1] ^ v[1]) |
    (t[2] ^ v[2]) |
    (t[3] ^ v[3]) |
    (t[4] ^ v[4]) |
    (t[5] ^ v[5]) |
    (t[6] ^ v[6]) |
    (t[7] ^ v[7]) |
    (t[8] ^ v[8]) |
    (t[9] ^ v[9]) |
    (t[10] ^ v[10]) |
    (t[11] ^ v[11]) |
    (t[12] ^ v[12]) |
    (t[13] ^ v[13]) |
    (t[14] ^ v[14]) |
    (t[15] ^ v[15]);
  if (!diff) return p;
  wipe(p);
  return null;
}

/** The Vault over a native AES block with CBC; `sha3` is optional (see Vault). */
export function nativeSivVault(block: CbcBlock, sha3?: (data: Uint8Array) => Uint8Array): Vault {
  var vault: Vault = {
    sivEncrypt: function (key, ad, plaintext) {
      return encrypt(block, key, ad, plaintext);
    },
    sivDecrypt: function (key, ad, ciphertext) {
      return decrypt(block, key, ad, ciphertext);
    },
  };
  if (sha3) vault.sha3 = sha3;
  return vault;
}
