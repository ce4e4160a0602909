/**
 * A faithful emulation of Espruino's `require("crypto").AES` (libs/crypto/jswrap_crypto.c,
 * Espruino 2v29) on node:crypto, so board code that calls the native API can be tested on the
 * host. Behaviour reproduced, each checked against the Linux build of Espruino 2v29:
 *
 * - `encrypt/decrypt(data, key, options)` return an ArrayBuffer the length of `data`.
 * - data and key may be a String (one byte per character), an Array (elements as bytes, nested
 *   arrays and `{data, count}` objects flattened), an ArrayBuffer, a Uint8Array view (its bytes,
 *   offset respected), another typed array (each element & 255), or a number (one byte);
 *   `undefined` data returns undefined silently.
 * - options: undefined or an object `{mode, iv}`; mode defaults to "CBC"; an unknown mode
 *   throws `Error: Unknown Crypto mode "X"`; options of another type print
 *   "'options' must be undefined, or an Object" and return undefined.
 * - iv: up to 16 bytes taken from `iv` (zero-padded); **CTR ignores it** (the counter always
 *   starts at zero).
 * - ECB: whole blocks only; trailing bytes of a partial block are left 0 in the output.
 * - CBC: a length that is not a multiple of 16 prints "Invalid input length" and returns undefined.
 * - CFB is CFB-8.
 * - OFB prints "Feature unavailable" and returns undefined (the mode name is accepted but the
 *   C code has no case for it).
 * - A key that is not 16, 24 or 32 bytes prints "Unknown error: -0x20" and returns undefined.
 * - decrypt in CTR and CFB mode runs the forward cipher with mbedtls's *decryption* key
 *   schedule, so it does not invert encrypt (reproduced with a small AES here, since node:crypto
 *   cannot run that schedule).
 *
 * Errors that Espruino only prints (jsError) go to `onError(message)` (default: collected in
 * `errors`), like the "ERROR: ..." lines on the Espruino console.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { EspruinoAes } from '../../boards/espruino/native-aes.ts';

/** Espruino's `require("crypto").AES` as emulated: data, key and options may be any value, as on
 * the board (see above; the board code's EspruinoAes is the part it calls). */
export interface EspruinoCryptoAes extends EspruinoAes {
  encrypt(data: unknown, key: unknown, options?: unknown): ArrayBuffer | undefined;
  decrypt(data: unknown, key: unknown, options?: unknown): ArrayBuffer | undefined;
}

/** The modes Espruino's AES accepts by name. */
const MODES = ['CBC', 'CFB', 'CTR', 'OFB', 'ECB'] as const;
export type AesMode = (typeof MODES)[number];

/** encrypt/decrypt calls: all of them (`total`) and by mode. */
export type AesCalls = { total: number } & { [mode in AesMode]?: number };

export interface EspruinoCryptoOptions {
  /** Where the errors Espruino only prints go (default: collected in `errors`). */
  onError?: (message: string) => void;
}

/** The emulated module with what it observed. */
export interface EspruinoCrypto {
  AES: EspruinoCryptoAes;
  calls: AesCalls;
  /** Printed errors (when no `onError` was given). */
  errors: string[];
}

type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

function isTypedArray(x: unknown): x is TypedArray {
  return ArrayBuffer.isView(x) && !(x instanceof DataView);
}

/** Bytes of a value the way jsvIterateCallback / jsvGetDataPointer see it. */
export function espruinoBytes(v: unknown): Uint8Array {
  if (v instanceof ArrayBuffer) return new Uint8Array(v.slice(0));
  if (v instanceof Uint8Array || v instanceof Int8Array || v instanceof Uint8ClampedArray) {
    return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.length));
  }
  const out: number[] = [];
  const walk = (x: unknown): void => {
    if (x === undefined || x === null) return;
    if (typeof x === 'number' || typeof x === 'boolean') out.push(Number(x) & 255);
    else if (typeof x === 'string') for (let i = 0; i < x.length; i++) out.push(x.charCodeAt(i) & 255);
    else if (x instanceof ArrayBuffer || x instanceof Uint8Array || x instanceof Int8Array || x instanceof Uint8ClampedArray)
      for (const b of espruinoBytes(x)) out.push(b);
    else if (isTypedArray(x)) for (let i = 0; i < x.length; i++) out.push(Number(x[i]) & 255);
    else if (Array.isArray(x)) x.forEach(walk);
    else if (typeof x === 'object' && 'data' in x) {
      const count = 'count' in x ? x.count : undefined;
      const n = count === undefined ? 1 : Number(count);
      for (let i = 0; i < n; i++) walk(x.data);
    }
  };
  walk(v);
  return Uint8Array.from(out);
}

// --- a small byte-wise AES, only for the decrypt-schedule quirk of CTR/CFB decrypt ---------------
const SBOX = new Uint8Array(256);
(() => {
  let p = 1;
  let q = 1;
  do {
    p = p ^ ((p << 1) & 0xff) ^ (p & 0x80 ? 0x1b : 0);
    q ^= q << 1;
    q ^= q << 2;
    q ^= q << 4;
    q &= 0xff;
    if (q & 0x80) q ^= 0x09;
    const r = (x: number, s: number) => ((x << s) | (x >> (8 - s))) & 0xff;
    SBOX[p] = q ^ r(q, 1) ^ r(q, 2) ^ r(q, 3) ^ r(q, 4) ^ 0x63;
  } while (p !== 1);
  SBOX[0] = 0x63;
})();
const xt = (x: number) => ((x << 1) ^ (x & 0x80 ? 0x1b : 0)) & 0xff;
const mul = (x: number, y: number) => {
  let r = 0;
  for (; y; y >>= 1, x = xt(x)) if (y & 1) r ^= x;
  return r;
};

/** Round keys (16 bytes each, `nr` + 1 of them) and the number of rounds. */
interface KeySchedule {
  w: Uint8Array;
  nr: number;
}

/** FIPS-197 key expansion: (Nr+1) round keys of 16 bytes. */
function expandKey(key: Uint8Array): KeySchedule {
  const nk = key.length / 4;
  const nr = nk + 6;
  const w = new Uint8Array(16 * (nr + 1));
  w.set(key);
  let rcon = 1;
  for (let i = nk; i < 4 * (nr + 1); i++) {
    let t = w.slice(4 * (i - 1), 4 * i);
    if (i % nk === 0) {
      t = Uint8Array.of(SBOX[t[1]] ^ rcon, SBOX[t[2]], SBOX[t[3]], SBOX[t[0]]);
      rcon = xt(rcon);
    } else if (nk > 6 && i % nk === 4) t = t.map((b) => SBOX[b]);
    for (let j = 0; j < 4; j++) w[4 * i + j] = w[4 * (i - nk) + j] ^ t[j];
  }
  return { w, nr };
}

/** mbedtls_aes_setkey_dec: round keys reversed, InvMixColumns applied to the inner ones. */
function decryptionSchedule(key: Uint8Array): KeySchedule {
  const { w, nr } = expandKey(key);
  const d = new Uint8Array(w.length);
  for (let r = 0; r <= nr; r++) {
    const src = w.subarray(16 * (nr - r), 16 * (nr - r) + 16);
    for (let c = 0; c < 4; c++) {
      const [a, b, e, f] = src.subarray(4 * c, 4 * c + 4);
      if (r === 0 || r === nr) d.set([a, b, e, f], 16 * r + 4 * c);
      else {
        d[16 * r + 4 * c] = mul(a, 14) ^ mul(b, 11) ^ mul(e, 13) ^ mul(f, 9);
        d[16 * r + 4 * c + 1] = mul(a, 9) ^ mul(b, 14) ^ mul(e, 11) ^ mul(f, 13);
        d[16 * r + 4 * c + 2] = mul(a, 13) ^ mul(b, 9) ^ mul(e, 14) ^ mul(f, 11);
        d[16 * r + 4 * c + 3] = mul(a, 11) ^ mul(b, 13) ^ mul(e, 9) ^ mul(f, 14);
      }
    }
  }
  return { w: d, nr };
}

/** The AES forward cipher (mbedtls_internal_aes_encrypt) under arbitrary round keys. */
function forward({ w, nr }: KeySchedule, block: Uint8Array): Uint8Array {
  const s = block.map((b, i) => b ^ w[i]);
  for (let r = 1; r <= nr; r++) {
    const t = new Uint8Array(16);
    for (let c = 0; c < 4; c++) for (let row = 0; row < 4; row++) t[4 * c + row] = SBOX[s[4 * ((c + row) % 4) + row]];
    for (let c = 0; c < 4; c++) {
      const [a, b, e, f] = t.subarray(4 * c, 4 * c + 4);
      if (r < nr) {
        t[4 * c] = xt(a) ^ (xt(b) ^ b) ^ e ^ f;
        t[4 * c + 1] = a ^ xt(b) ^ (xt(e) ^ e) ^ f;
        t[4 * c + 2] = a ^ b ^ xt(e) ^ (xt(f) ^ f);
        t[4 * c + 3] = xt(a) ^ a ^ b ^ e ^ xt(f);
      }
    }
    for (let i = 0; i < 16; i++) s[i] = t[i] ^ w[16 * r + i];
  }
  return s;
}

function nodeCipher(encrypt: boolean, name: string, key: Uint8Array, iv: Uint8Array | null, data: Uint8Array): Uint8Array {
  const c = encrypt ? createCipheriv(name, key, iv) : createDecipheriv(name, key, iv);
  c.setAutoPadding(false);
  return new Uint8Array(Buffer.concat([c.update(data), c.final()]));
}

function isMode(name: string): name is AesMode {
  return (MODES as readonly string[]).includes(name);
}

/**
 * `{ AES: { encrypt, decrypt }, calls, errors }`: `calls` counts every encrypt/decrypt call by
 * mode (`calls.total`, `calls.ECB`, ...), for measuring how many native calls an operation takes.
 */
export function espruinoCrypto({ onError }: EspruinoCryptoOptions = {}): EspruinoCrypto {
  const calls: AesCalls = { total: 0 };
  const errors: string[] = [];
  const report = onError || ((m: string) => errors.push(m));

  function crypt(message: unknown, key: unknown, options: unknown, encrypt: boolean): ArrayBuffer | undefined {
    const iv = new Uint8Array(16);
    let mode: AesMode = 'CBC';
    if (options !== null && typeof options === 'object' && !Array.isArray(options)) {
      const o: { iv?: unknown; mode?: unknown } = options;
      if (o.iv !== undefined) iv.set(espruinoBytes(o.iv).subarray(0, 16));
      if (o.mode !== undefined) {
        const name = String(o.mode);
        if (!isMode(name)) throw new Error(`Unknown Crypto mode ${JSON.stringify(name)}`);
        mode = name;
      }
    } else if (options !== undefined) {
      report("'options' must be undefined, or an Object");
      return undefined;
    }
    calls.total++;
    calls[mode] = (calls[mode] || 0) + 1;
    if (message === undefined || message === null) return undefined;
    const data = espruinoBytes(message);
    const k = espruinoBytes(key);
    if (![16, 24, 32].includes(k.length)) {
      report('Unknown error: -0x20');
      return undefined;
    }
    const bits = k.length * 8;
    const out = new Uint8Array(data.length);
    switch (mode) {
      case 'CBC':
        if (data.length % 16) {
          report('Invalid input length');
          return undefined;
        }
        out.set(nodeCipher(encrypt, `aes-${bits}-cbc`, k, iv, data));
        break;
      case 'ECB': {
        const whole = data.length - (data.length % 16);
        out.set(nodeCipher(encrypt, `aes-${bits}-ecb`, k, null, data.subarray(0, whole)));
        break;
      }
      case 'CTR':
        if (encrypt) out.set(nodeCipher(true, `aes-${bits}-ctr`, k, new Uint8Array(16), data));
        else {
          const sched = decryptionSchedule(k);
          const ctr = new Uint8Array(16);
          for (let i = 0; i < data.length; i += 16) {
            const ks = forward(sched, ctr);
            for (let j = 0; j < 16 && i + j < data.length; j++) out[i + j] = data[i + j] ^ ks[j];
            for (let j = 15; j >= 0 && ++ctr[j] === 256; j--) ctr[j] = 0;
          }
        }
        break;
      case 'CFB':
        if (encrypt) out.set(nodeCipher(true, `aes-${bits}-cfb8`, k, iv, data));
        else {
          const sched = decryptionSchedule(k);
          const reg = Uint8Array.from(iv);
          for (let i = 0; i < data.length; i++) {
            const ks = forward(sched, reg);
            out[i] = data[i] ^ ks[0];
            reg.copyWithin(0, 1);
            reg[15] = data[i];
          }
        }
        break;
      default:
        report('Feature unavailable');
        return undefined;
    }
    return out.buffer;
  }

  return {
    calls,
    errors,
    AES: {
      encrypt: (message: unknown, key: unknown, options?: unknown) => crypt(message, key, options, true),
      decrypt: (message: unknown, key: unknown, options?: unknown) => crypt(message, key, options, false),
    },
  };
}

/** The forward cipher and key schedules, exported for the emulation's own tests. */
export const __aes = { expandKey, decryptionSchedule, forward, SBOX };
