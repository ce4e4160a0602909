/** firmware/bytes.ts: the ES5 helpers that replace TextEncoder, Buffer and BigInt on devices. */
import { describe, expect, it } from 'vitest';
import { utf8, toHex, fromHex, readU64LE, writeU64LE, equalBytes, wipe, concatBytes } from '../firmware/bytes';

describe('bytes', () => {
  it('utf8 matches TextEncoder, including astral characters and lone surrogates', () => {
    for (const s of ['', 'a', 'Zürich-Sensor-ü', '温度传感器', '🚀 rocket', '\ud800', 'x\udc00y', '\ud83d', '\u07ff\u0800\uffff']) {
      expect(toHex(utf8(s))).toBe(Buffer.from(new TextEncoder().encode(s)).toString('hex'));
    }
  });
  it('hex round-trips and rejects bad digits', () => {
    expect(toHex(fromHex('00ff10AB'))).toBe('00ff10ab');
    expect(() => fromHex('abc')).toThrow(/PARAMETER_INVALID/);
    expect(() => fromHex('zz')).toThrow(/PARAMETER_INVALID/);
  });
  it('64-bit little-endian timestamps without BigInt', () => {
    for (const v of [0, 1, 255, 4294967295, 4294967296, 1700000000, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
      const b = new Uint8Array(8);
      writeU64LE(b, 0, v);
      expect(Buffer.from(b).readBigUInt64LE()).toBe(BigInt(v));
      expect(readU64LE(b, 0)).toBe(v);
    }
    expect(readU64LE(Uint8Array.of(255, 255, 255, 255, 255, 255, 255, 255), 0)).toBe(2 ** 64);
  });
  it('equalBytes, wipe, concat', () => {
    expect(equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 2))).toBe(true);
    expect(equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBe(false);
    expect(equalBytes(Uint8Array.of(1), Uint8Array.of(1, 3))).toBe(false);
    const k = Uint8Array.of(9, 9, 9);
    wipe(k);
    expect(k).toEqual(new Uint8Array(3));
    expect(concatBytes(Uint8Array.of(1), Uint8Array.of(2, 3))).toEqual(Uint8Array.of(1, 2, 3));
  });
});
