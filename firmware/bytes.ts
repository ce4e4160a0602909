/**
 * Byte helpers shared by the whole firmware: checks, hex, UTF-8, 64-bit timestamps, constant-time
 * comparison and key wiping. Written for ES5 engines: no text-encoding API, no typed-array
 * `slice`, `fill` or `from` (Duktape and Espruino lack or differ on them), no big integers.
 */
import { E4Error, PARAMETER_INVALID } from './errors';

/** Throws PARAMETER_INVALID unless `b` is a Uint8Array (of `len` bytes when given). */
export function checkBytes(b: unknown, len: number, what: string): Uint8Array {
  if (!(b instanceof Uint8Array) || (len >= 0 && b.length !== len)) {
    throw new E4Error(PARAMETER_INVALID, what + (len >= 0 ? ' must be ' + len + ' bytes' : ' must be bytes'));
  }
  return b;
}

/** A copy that owns its memory (unlike subarray). */
export function copyBytes(b: Uint8Array): Uint8Array {
  var out = new Uint8Array(b.length);
  out.set(b);
  return out;
}

export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  var out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Overwrites secret material in place (typed-array `fill` is missing on Duktape). */
export function wipe(b: Uint8Array | null | undefined): void {
  if (!b) return;
  for (var i = 0; i < b.length; i++) b[i] = 0;
}

/** Constant-time equality: the time depends on the length only, never on where bytes differ. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  var diff = 0;
  for (var i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function toHex(b: Uint8Array): string {
  var s = '';
  // The digits as a literal, not a module variable: a variable costs RAM on Espruino.
  for (var i = 0; i < b.length; i++) s += '0123456789abcdef'.charAt(b[i] >> 4) + '0123456789abcdef'.charAt(b[i] & 15);
  return s;
}

export function fromHex(s: string): Uint8Array {
  if (typeof s !== 'string' || s.length % 2) throw new E4Error(PARAMETER_INVALID, 'hex string of even length expected');
  var out = new Uint8Array(s.length / 2);
  for (var j = 0; j < s.length; j++) {
    var c = s.charCodeAt(j);
    // 0-9, a-f, A-F
    var v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (v < 0) throw new E4Error(PARAMETER_INVALID, 'invalid hex digit');
    out[j >> 1] = (out[j >> 1] << 4) | v;
  }
  return out;
}

/** The code point at `s[i]` (a surrogate pair read as one; a lone surrogate as U+FFFD, as in the
 * WHATWG encoder), times 2, plus 1 when it took two code units. */
function codePointAt2(s: string, i: number): number {
  var c = s.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
    var d = s.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return (0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)) * 2 + 1;
  }
  return (c >= 0xd800 && c <= 0xdfff ? 0xfffd : c) * 2;
}

/**
 * UTF-8 encoding of a JavaScript (UTF-16) string; a lone surrogate becomes U+FFFD, as in the
 * WHATWG encoder. Two passes (length, then bytes) straight into the result: on Espruino a plain
 * array of the bytes would cost a variable per byte (≈ 260 for a 256-character payload).
 */
export function utf8(s: string): Uint8Array {
  var out: Uint8Array | null = null;
  var n = 0;
  // Two passes: the first counts the bytes, the second writes them into the typed array (a
  // plain array would cost a variable per byte on Espruino).
  for (var pass = 0; pass < 2; pass++) {
    n = 0;
    for (var i = 0; i < s.length; i++) {
      var c = codePointAt2(s, i);
      i += c & 1;
      c >>= 1;
      var len = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
      if (out) {
        // RFC 3629, section 3: the lead byte carries the length (110x, 1110, 11110) and the
        // highest bits; each continuation byte (10xxxxxx) six more.
        out[n] = len === 1 ? c : ((0xf00 >> len) & 0xff) | (c >> (6 * (len - 1)));
        for (var k = 1; k < len; k++) out[n + k] = 0x80 | ((c >> (6 * (len - 1 - k))) & 63);
      }
      n += len;
    }
    if (!out) out = new Uint8Array(n);
  }
  return out as Uint8Array;
}

/** Bytes or a string (encoded as UTF-8). */
export function toBytes(data: Uint8Array | string, what: string): Uint8Array {
  if (typeof data === 'string') return utf8(data);
  return checkBytes(data, -1, what);
}

// 2^32 as a literal: Espruino's Math.pow(2, 32) is not exact.
var TWO32 = 4294967296;

/** Writes `value` (0 <= value < 2^53) as 8 bytes little-endian, as two 32-bit halves (no big integers on the targets). */
export function writeU64LE(out: Uint8Array, offset: number, value: number): void {
  var lo = value % TWO32;
  var hi = (value - lo) / TWO32;
  for (var i = 0; i < 4; i++) {
    out[offset + i] = (lo >>> (8 * i)) & 255;
    out[offset + 4 + i] = (hi >>> (8 * i)) & 255;
  }
}

/** Reads 8 bytes little-endian as a number. Above 2^53 the value is rounded, which only matters
 * for comparisons against times that far away, where the result is the same. */
export function readU64LE(b: Uint8Array, offset: number): number {
  var lo = 0;
  var hi = 0;
  for (var i = 3; i >= 0; i--) {
    lo = lo * 256 + b[offset + i];
    hi = hi * 256 + b[offset + 4 + i];
  }
  return hi * TWO32 + lo;
}

export function readU16LE(b: Uint8Array, offset: number): number {
  return b[offset] | (b[offset + 1] << 8);
}
