// ES5, not TypeScript: this runs inside the device engine (duk, jerry) with the image, never in Node.
/*
 * The optional native AES functions of a JerryScript C port (boards/jerryscript/README.md), in
 * ES5, for the host shim (host-sim/sim/jerry-shim.js): a real port calls mbedTLS or its AES
 * peripheral from C, so none of this lives in its JavaScript heap.
 *   e4_aes_ecb(key, data) -> ArrayBuffer: AES-ECB encryption of data (whole 16-byte blocks)
 *   e4_aes_cbc(key, data) -> ArrayBuffer: AES-CBC encryption with a zero IV
 * key: a Uint8Array of 16, 24 or 32 bytes. Both return undefined on bad input, as a C port
 * reporting a failure would. A byte-wise FIPS-197 cipher: small, not fast.
 */
var E4AES = (function () {
  var S = [];
  // The S-box from the multiplicative inverse (walking powers of the generator 3) and the
  // affine map of FIPS-197 §5.1.1.
  (function () {
    var p = 1;
    var q = 1;
    do {
      p = p ^ ((p << 1) & 255) ^ (p & 128 ? 0x1b : 0);
      q ^= q << 1;
      q ^= q << 2;
      q ^= q << 4;
      q &= 255;
      if (q & 128) q ^= 0x09;
      S[p] = (q ^ ((q << 1) | (q >> 7)) ^ ((q << 2) | (q >> 6)) ^ ((q << 3) | (q >> 5)) ^ ((q << 4) | (q >> 4)) ^ 0x63) & 255;
    } while (p !== 1);
    S[0] = 0x63;
  })();

  function xt(b) {
    return ((b << 1) ^ (b & 128 ? 0x1b : 0)) & 255;
  }

  /** FIPS-197 §5.2: the round keys as one byte array. */
  function expand(key) {
    var nk = key.length / 4;
    var nr = nk + 6;
    var w = [];
    var i;
    for (i = 0; i < key.length; i++) w[i] = key[i];
    var rcon = 1;
    for (i = nk; i < 4 * (nr + 1); i++) {
      var t = [w[4 * i - 4], w[4 * i - 3], w[4 * i - 2], w[4 * i - 1]];
      if (i % nk === 0) {
        t = [S[t[1]] ^ rcon, S[t[2]], S[t[3]], S[t[0]]];
        rcon = xt(rcon);
      } else if (nk > 6 && i % nk === 4) t = [S[t[0]], S[t[1]], S[t[2]], S[t[3]]];
      for (var j = 0; j < 4; j++) w[4 * i + j] = w[4 * (i - nk) + j] ^ t[j];
    }
    return { w: w, nr: nr };
  }

  /** FIPS-197 §5.1: one block `s` (16 numbers) in place. */
  function cipher(k, s) {
    var r;
    var c;
    var i;
    for (i = 0; i < 16; i++) s[i] ^= k.w[i];
    for (r = 1; r <= k.nr; r++) {
      var t = [];
      // SubBytes and ShiftRows: row j of column c comes from column c + j.
      for (c = 0; c < 4; c++) for (var j = 0; j < 4; j++) t[4 * c + j] = S[s[4 * ((c + j) % 4) + j]];
      for (c = 0; c < 4 && r < k.nr; c++) {
        var a0 = t[4 * c];
        var a1 = t[4 * c + 1];
        var a2 = t[4 * c + 2];
        var a3 = t[4 * c + 3];
        t[4 * c] = xt(a0) ^ xt(a1) ^ a1 ^ a2 ^ a3;
        t[4 * c + 1] = a0 ^ xt(a1) ^ xt(a2) ^ a2 ^ a3;
        t[4 * c + 2] = a0 ^ a1 ^ xt(a2) ^ xt(a3) ^ a3;
        t[4 * c + 3] = xt(a0) ^ a0 ^ a1 ^ a2 ^ xt(a3);
      }
      for (i = 0; i < 16; i++) s[i] = t[i] ^ k.w[16 * r + i];
    }
  }

  function run(key, data, chain) {
    if (!(key instanceof Uint8Array) || (key.length !== 16 && key.length !== 24 && key.length !== 32)) return undefined;
    if (!(data instanceof Uint8Array) || data.length % 16) return undefined;
    var k = expand(key);
    var out = new Uint8Array(data.length);
    var s = [];
    for (var o = 0; o < data.length; o += 16) {
      for (var i = 0; i < 16; i++) s[i] = data[o + i] ^ (chain && o ? out[o - 16 + i] : 0);
      cipher(k, s);
      for (i = 0; i < 16; i++) out[o + i] = s[i];
    }
    for (i = 0; i < k.w.length; i++) k.w[i] = 0;
    return out.buffer;
  }

  return { run: run };
})();

function e4_aes_ecb(key, data) {
  return E4AES.run(key, data, false);
}

function e4_aes_cbc(key, data) {
  return E4AES.run(key, data, true);
}
