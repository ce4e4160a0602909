/**
 * AES-SIV (RFC 5297) over any AES block primitive, so that a board with only native AES-ECB/CBC
 * (Espruino's `require("crypto").AES`) gets a Vault byte-identical to the portable one.
 * Blocks are batched: with a CBC primitive, sealing a message costs four native calls whatever
 * its length (L, the single-block CMACs, CMAC(T), the key stream); with ECB only, CMAC(T) takes
 * one call per block.
 *
 * Written for interpreters that walk the source text (Espruino runs every statement anew, so a
 * byte loop costs per byte and per token): block operations are unrolled over the 16 bytes, the
 * CTR xor runs on 32-bit words of buffers this module allocates (so they are aligned), and the
 * S2V subkeys live in one scratch buffer, wiped once.
 */
import type { AesBlock, Vault } from '../hal';
import { wipe } from '../bytes';

var ZERO_BLOCK = new Uint8Array(16);

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

/** The last block of a padded CMAC input `t` (RFC 4493 §2.4 step 6): one CBC call, or ECB block
 * by block without one. */
function cmacLast(block: AesBlock, key: Uint8Array, t: Uint8Array): Uint8Array {
  if (block.cbc) {
    var all = block.cbc(key, t);
    return all.subarray(all.length - 16);
  }
  var x = new Uint8Array(16);
  for (var o = 0; o < t.length; o += 16) {
    xor16(x, t.subarray(o, o + 16));
    x = block.ecb(key, x);
  }
  return x;
}

/**
 * RFC 4493 §2.4 steps 3-4 on `t`, a zero-filled buffer of whole blocks whose first `len` bytes
 * are the message: a complete last block is xored with K1, an incomplete one padded with 10* and
 * xored with K2 (`sub` = K1 | K2).
 */
function padLast(t: Uint8Array, len: number, sub: Uint8Array): void {
  var last = t.subarray(t.length - 16);
  if (len && len === t.length) xor16(last, sub);
  else {
    t[len] = 0x80;
    xor16(last, sub.subarray(16));
  }
}

/**
 * RFC 5297 §2.4, S2V with the associated-data components `ads` and the plaintext as the last
 * string: D = CMAC(0); D = dbl(D) ^ CMAC(Si) for each Si; the last string is xorend'ed into D
 * when it is at least 16 bytes long, else dbl(D) ^ pad(Sn); V = CMAC(T).
 * A message of at most one block has a one-block CMAC, AES(pad(M) ^ K): CMAC(0) = AES(K1) and
 * those of short components are computed together in one ECB call.
 */
export function s2v(block: AesBlock, key: Uint8Array, ads: Uint8Array[], plaintext: Uint8Array): Uint8Array {
  var m = ads.length;
  // Scratch: K1 | K2 | the single-block CMAC inputs (CMAC(0)'s, then one per short component).
  var sub = new Uint8Array(48 + 16 * m);
  var l = block.ecb(key, ZERO_BLOCK);
  // RFC 4493 §2.3: K1 = dbl(L), K2 = dbl(K1).
  sub.set(l);
  l.set(ZERO_BLOCK);
  var k1 = dbl(sub.subarray(0, 16));
  sub.set(k1, 16);
  dbl(sub.subarray(16, 32));
  sub.set(k1, 32);
  var i: number;
  var o: number;
  var a: Uint8Array;
  for (i = 0, o = 48; i < m; i++, o += 16) {
    a = ads[i];
    if (a.length <= 16) {
      sub.set(a, o);
      if (a.length === 16) xor16(sub.subarray(o, o + 16), sub);
      else {
        sub[o + a.length] = 0x80;
        xor16(sub.subarray(o, o + 16), sub.subarray(16));
      }
    }
  }
  var one = block.ecb(key, sub.subarray(32));
  // D lives in the first block of that call's output (wiped with it).
  var d = one.subarray(0, 16);
  for (i = 0, o = 16; i < m; i++, o += 16) {
    a = ads[i];
    dbl(d);
    if (a.length <= 16) xor16(d, one.subarray(o, o + 16));
    else {
      var padded = new Uint8Array((a.length + 15) & ~15);
      padded.set(a);
      padLast(padded, a.length, sub);
      xor16(d, cmacLast(block, key, padded));
    }
  }
  var len = plaintext.length;
  var t: Uint8Array;
  if (len >= 16 && !(len & 15)) {
    t = new Uint8Array(len);
    t.set(plaintext);
    // xorend of D into the last block, which is complete: xored with K1 too.
    xor16x2(t.subarray(len - 16), d, sub);
  } else if (len >= 16) {
    t = new Uint8Array((len + 15) & ~15);
    t.set(plaintext);
    // xorend: D into the last 16 bytes of the plaintext.
    xor16(t.subarray(len - 16), d);
    padLast(t, len, sub);
  } else {
    t = new Uint8Array(16);
    t.set(dbl(d));
    for (i = 0; i < len; i++) t[i] ^= plaintext[i];
    // pad(Sn): a single block, which CMAC then treats as complete (xor K1).
    t[len] ^= 0x80;
    xor16(t, sub);
  }
  wipe(one);
  var v = new Uint8Array(16);
  v.set(cmacLast(block, key, t));
  wipe(t);
  wipe(sub);
  return v;
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
  if (size > len) s.set(ZERO_BLOCK.subarray(0, size - len), len);
  return s;
}

/** SIV-ENCRYPT: returns V (16) | ciphertext. `k1` keys S2V, `k2` keys CTR. */
export function sivEncrypt(block: AesBlock, k1: Uint8Array, k2: Uint8Array, ads: Uint8Array[], plaintext: Uint8Array): Uint8Array {
  var v = s2v(block, k1, ads, plaintext);
  var c = ctr(block, k2, v, plaintext);
  var out = new Uint8Array(16 + plaintext.length);
  out.set(v);
  out.set(c.length === plaintext.length ? c : c.subarray(0, plaintext.length), 16);
  return out;
}

/** SIV-DECRYPT: the plaintext, or null when V does not verify (the candidate plaintext is wiped,
 * never returned). The comparison is constant-time. Errors of the block primitive propagate. */
export function sivDecrypt(block: AesBlock, k1: Uint8Array, k2: Uint8Array, ads: Uint8Array[], sealed: Uint8Array): Uint8Array | null {
  if (sealed.length < 16) return null;
  var v = sealed.subarray(0, 16);
  var len = sealed.length - 16;
  var p = ctr(block, k2, v, sealed.subarray(16));
  if (p.length !== len) {
    var whole = p;
    p = new Uint8Array(len);
    p.set(whole.subarray(0, len));
    wipe(whole);
  }
  var t = s2v(block, k1, ads, p);
  // Constant time: every byte is compared whatever the first difference.
  var diff =
    (t[0] ^ v[0]) | (t[1] ^ v[1]) | (t[2] ^ v[2]) | (t[3] ^ v[3]) | (t[4] ^ v[4]) | (t[5] ^ v[5]) | (t[6] ^ v[6]) | (t[7] ^ v[7]) |
    (t[8] ^ v[8]) | (t[9] ^ v[9]) | (t[10] ^ v[10]) | (t[11] ^ v[11]) | (t[12] ^ v[12]) | (t[13] ^ v[13]) | (t[14] ^ v[14]) | (t[15] ^ v[15]);
  if (!diff) return p;
  wipe(p);
  return null;
}

/**
 * A Vault from an AES-256 block primitive. E4's SIV key is `key | key`: the same 32-byte key
 * drives CMAC and CTR. `sha3` is optional (see Vault).
 */
export function sivVault(block: AesBlock, sha3?: (data: Uint8Array) => Uint8Array): Vault {
  var vault: Vault = {
    seal: function (key, ad, plaintext) {
      return sivEncrypt(block, key, key, [ad], plaintext);
    },
    open: function (key, ad, sealed) {
      return sivDecrypt(block, key, key, [ad], sealed);
    },
  };
  if (sha3) vault.sha3 = sha3;
  return vault;
}
