/**
 * AES-SIV (RFC 5297) over any AES block primitive, so that a board with only native AES-ECB/CBC
 * (Espruino's `require("crypto").AES`) gets a Vault byte-identical to the portable one.
 * Blocks are batched: with a CBC primitive, encrypting a message costs five native calls whatever
 * its length; with ECB only, CMAC takes one call per block.
 */
import type { AesBlock, Vault } from '../hal';
import { equalBytes, wipe } from '../bytes';

var ZERO_BLOCK = new Uint8Array(16);

/** RFC 5297 §2.3: dbl(S) = S << 1, xor 0x87 into the last byte when the bit shifted out was 1. */
function dbl(s: Uint8Array): Uint8Array {
  var out = new Uint8Array(16);
  var carry = 0;
  for (var i = 15; i >= 0; i--) {
    out[i] = ((s[i] << 1) | carry) & 255;
    carry = s[i] >> 7;
  }
  if (carry) out[15] ^= 0x87;
  return out;
}

function xorInto(dst: Uint8Array, dstOff: number, src: Uint8Array): void {
  for (var i = 0; i < src.length; i++) dst[dstOff + i] ^= src[i];
}

/** AES-CMAC (RFC 4493) of `msg` under `key`; `l` = AES(key, 0^128), computed once per message. */
function cmac(block: AesBlock, key: Uint8Array, l: Uint8Array, msg: Uint8Array): Uint8Array {
  var n = msg.length ? Math.ceil(msg.length / 16) : 1;
  var padded = new Uint8Array(n * 16);
  padded.set(msg);
  var k1 = dbl(l);
  // RFC 4493 §2.4 step 4: a complete last block is xored with K1, an incomplete one padded
  // with 10* and xored with K2.
  if (msg.length && msg.length % 16 === 0) xorInto(padded, (n - 1) * 16, k1);
  else {
    padded[msg.length] = 0x80;
    xorInto(padded, (n - 1) * 16, dbl(k1));
  }
  if (block.cbc) {
    var all = block.cbc(key, padded);
    return all.subarray(all.length - 16);
  }
  var x: Uint8Array = new Uint8Array(16);
  for (var i = 0; i < n; i++) {
    xorInto(x, 0, padded.subarray(i * 16, i * 16 + 16));
    x = block.ecb(key, x);
  }
  return x;
}

/**
 * RFC 5297 §2.4, S2V with the associated-data components `ads` and the plaintext as the last
 * string: D = CMAC(0); D = dbl(D) ^ CMAC(Si) for each Si; the last string is xorend'ed into D
 * when it is at least 16 bytes long, else dbl(D) ^ pad(Sn); V = CMAC(T).
 */
export function s2v(block: AesBlock, key: Uint8Array, ads: Uint8Array[], plaintext: Uint8Array): Uint8Array {
  var l = block.ecb(key, ZERO_BLOCK);
  var d = cmac(block, key, l, ZERO_BLOCK);
  for (var i = 0; i < ads.length; i++) {
    d = dbl(d);
    xorInto(d, 0, cmac(block, key, l, ads[i]));
  }
  var t: Uint8Array;
  if (plaintext.length >= 16) {
    t = new Uint8Array(plaintext.length);
    t.set(plaintext);
    xorInto(t, plaintext.length - 16, d);
  } else {
    t = dbl(d);
    xorInto(t, 0, plaintext);
    t[plaintext.length] ^= 0x80;
  }
  var v = cmac(block, key, l, t);
  wipe(t);
  wipe(l);
  return v;
}

/** RFC 5297 §2.5/2.6: CTR keyed with K2 from Q = V with bits 63 and 31 cleared; one ECB call
 * encrypts every counter block (Espruino's native CTR ignores the IV, so it cannot be used). */
function ctr(block: AesBlock, key: Uint8Array, v: Uint8Array, data: Uint8Array): Uint8Array {
  var out = new Uint8Array(data.length);
  if (!data.length) return out;
  var n = Math.ceil(data.length / 16);
  var counters = new Uint8Array(n * 16);
  var q = new Uint8Array(16);
  q.set(v);
  q[8] &= 0x7f;
  q[12] &= 0x7f;
  for (var i = 0; i < n; i++) {
    counters.set(q, i * 16);
    // Increment Q as a 128-bit big-endian integer.
    for (var j = 15; j >= 0; j--) {
      q[j] = (q[j] + 1) & 255;
      if (q[j]) break;
    }
  }
  var stream = block.ecb(key, counters);
  for (var k = 0; k < data.length; k++) out[k] = data[k] ^ stream[k];
  wipe(stream);
  return out;
}

/** SIV-ENCRYPT: returns V (16) | ciphertext. `k1` keys S2V, `k2` keys CTR. */
export function sivEncrypt(block: AesBlock, k1: Uint8Array, k2: Uint8Array, ads: Uint8Array[], plaintext: Uint8Array): Uint8Array {
  var v = s2v(block, k1, ads, plaintext);
  var c = ctr(block, k2, v, plaintext);
  var out = new Uint8Array(16 + c.length);
  out.set(v);
  out.set(c, 16);
  return out;
}

/** SIV-DECRYPT: the plaintext, or null when V does not verify (the candidate plaintext is wiped,
 * never returned). The comparison is constant-time. */
export function sivDecrypt(block: AesBlock, k1: Uint8Array, k2: Uint8Array, ads: Uint8Array[], ciphertext: Uint8Array): Uint8Array | null {
  if (ciphertext.length < 16) return null;
  var v = ciphertext.subarray(0, 16);
  var p = ctr(block, k2, v, ciphertext.subarray(16));
  if (equalBytes(s2v(block, k1, ads, p), v)) return p;
  wipe(p);
  return null;
}

/**
 * A Vault from an AES-256 block primitive. E4's SIV key is `key | key`: the same 32-byte key
 * drives CMAC and CTR. `sha3` is optional (see Vault).
 */
export function sivVault(block: AesBlock, sha3?: (data: Uint8Array) => Uint8Array): Vault {
  var vault: Vault = {
    sivEncrypt: function (key, ad, plaintext) {
      return sivEncrypt(block, key, key, [ad], plaintext);
    },
    sivDecrypt: function (key, ad, ciphertext) {
      return sivDecrypt(block, key, key, [ad], ciphertext);
    },
  };
  if (sha3) vault.sha3 = sha3;
  return vault;
}
