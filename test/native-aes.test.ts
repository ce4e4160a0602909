/**
 * The native vault of Espruino boards (boards/espruino/native-aes.ts) over an emulation of
 * Espruino's `require("crypto").AES` on node:crypto (host-sim/sim/espruino-crypto.ts): the
 * emulation's quirks checked against outputs recorded from Espruino 2v29, every e4-sk vector
 * case (with and without SHA-3 on the device), and the number of native calls per operation.
 */
import { describe, expect, it } from 'vitest';
import { espruinoCrypto, espruinoBytes } from '../host-sim/sim/espruino-crypto.ts';
import { nativeAesBlock, nativeVault } from '../boards/espruino/native-aes';
import { nativeSivVault, type CbcBlock } from '../boards/espruino/native-siv';
import { aessiv } from '@noble/ciphers/aes.js';
import { nodeAesCbc } from './support/node-aes';
import { nobleVault } from './support/noble-vault';
import { create, memoryStore } from '../firmware/core';
import { hex, toHexStr } from './support/vectors';
import { V, vaultSuite } from './support/vault-suite';

const sha3 = nobleVault().sha3!;
const ab = (x: ArrayBuffer | undefined) => (x === undefined ? undefined : Array.from(new Uint8Array(x)));
const k32 = Uint8Array.from({ length: 32 }, (_, i) => i);
const m20 = Uint8Array.from({ length: 20 }, (_, i) => 100 + i);

describe('Espruino crypto.AES emulation', () => {
  // Outputs recorded from the Linux build of Espruino 2v29 (RELEASE_2V29) with the same inputs.
  it('ECB of the zero block under the zero key, result an ArrayBuffer', () => {
    const { AES } = espruinoCrypto();
    const out = AES.encrypt(new Uint8Array(16), new Uint8Array(32), { mode: 'ECB' });
    expect(out).toBeInstanceOf(ArrayBuffer);
    expect(ab(out)).toEqual([220, 149, 192, 120, 162, 64, 137, 137, 173, 72, 162, 20, 146, 132, 32, 135]);
  });
  it('CTR ignores the iv: the counter starts at zero', () => {
    const { AES } = espruinoCrypto();
    expect(ab(AES.encrypt(m20, k32, { mode: 'CTR', iv: [1, 2, 3] }))).toEqual([
      150, 245, 102, 209, 66, 32, 245, 187, 197, 158, 244, 5, 173, 95, 5, 243, 132, 40, 0, 217,
    ]);
  });
  it('CTR and CFB decrypt do not invert encrypt (decryption key schedule run forwards)', () => {
    const { AES } = espruinoCrypto();
    const e = AES.encrypt(m20, k32, { mode: 'CTR', iv: [1, 2, 3] })!;
    expect(ab(AES.decrypt(e, k32, { mode: 'CTR' }))).toEqual([
      238, 244, 43, 16, 114, 41, 100, 151, 59, 195, 164, 250, 168, 92, 149, 230, 181, 219, 133, 169,
    ]);
    const f = AES.encrypt(m20, k32, { mode: 'CFB', iv: [1, 2, 3] })!;
    expect(ab(f)).toEqual([29, 46, 148, 152, 39, 189, 80, 57, 2, 21, 80, 177, 36, 246, 150, 106, 222, 84, 94, 224]);
    expect(ab(AES.decrypt(f, k32, { mode: 'CFB', iv: [1, 2, 3] }))).toEqual([
      122, 216, 251, 29, 146, 63, 187, 185, 143, 155, 58, 25, 73, 211, 207, 135, 234, 113, 159, 92,
    ]);
  });
  it('ECB and CBC decrypt invert encrypt; CBC defaults to a zero iv and is the default mode', () => {
    const { AES } = espruinoCrypto();
    const data = Uint8Array.from({ length: 48 }, (_, i) => i * 5);
    expect(ab(AES.decrypt(AES.encrypt(data, k32, { mode: 'ECB' }), k32, { mode: 'ECB' }))).toEqual(Array.from(data));
    expect(ab(AES.decrypt(AES.encrypt(data, k32, { mode: 'CBC', iv: [9] }), k32, { mode: 'CBC', iv: [9] }))).toEqual(Array.from(data));
    expect(ab(AES.encrypt(new Uint8Array(16), k32))).toEqual([242, 144, 0, 182, 42, 73, 159, 208, 169, 243, 154, 106, 221, 46, 119, 128]);
    // An iv longer than 16 bytes: its first 16 are used.
    expect(ab(AES.encrypt(new Uint8Array(16), k32, { mode: 'CBC', iv: new Uint8Array(20).fill(1) }))).toEqual([
      117, 226, 8, 41, 23, 33, 18, 187, 242, 160, 77, 61, 43, 18, 67, 61,
    ]);
    expect(ab(AES.encrypt(data, k32))).toEqual(ab(AES.encrypt(data, k32, { mode: 'CBC', iv: new Uint8Array(16) })));
  });
  it('accepts strings, arrays, ArrayBuffers, views, typed arrays and numbers as Espruino does', () => {
    const { AES } = espruinoCrypto();
    expect(ab(AES.encrypt('abcdefghijklmnop', '0123456789abcdef0123456789abcdef', { mode: 'ECB' }))).toEqual([
      44, 170, 3, 255, 188, 63, 69, 159, 132, 39, 69, 90, 131, 52, 11, 127,
    ]);
    expect(ab(AES.encrypt(new Uint8Array(16), '0123456789abcdef', { mode: 'ECB' }))).toEqual([
      11, 155, 21, 218, 75, 68, 160, 245, 21, 29, 207, 196, 192, 31, 53, 213,
    ]);
    const u16 = new Uint16Array(16);
    u16[0] = 0x0201; // elements as bytes: 0x01
    expect(ab(AES.encrypt(u16, new Uint8Array(32), { mode: 'ECB' }))).toEqual([
      82, 117, 243, 216, 107, 79, 184, 104, 69, 147, 19, 62, 191, 165, 60, 211,
    ]);
    expect(ab(AES.encrypt(new Uint8Array(16).buffer, new Uint8Array(32), { mode: 'ECB' }))).toEqual([
      220, 149, 192, 120, 162, 64, 137, 137, 173, 72, 162, 20, 146, 132, 32, 135,
    ]);
    expect(ab(AES.encrypt(new Uint8Array(40).subarray(3, 19), k32, { mode: 'ECB' }))).toEqual([
      242, 144, 0, 182, 42, 73, 159, 208, 169, 243, 154, 106, 221, 46, 119, 128,
    ]);
    expect(ab(AES.encrypt([[1, 2], 'ab', 300, { data: [7], count: 2 }], new Uint8Array(32), { mode: 'CTR' }))).toEqual([
      221, 151, 161, 26, 142, 71, 142,
    ]);
    expect(ab(AES.encrypt(5, k32, { mode: 'CTR' }))).toEqual([247]);
    expect(Array.from(espruinoBytes([1, [2, [3]], 'A']))).toEqual([1, 2, 3, 65]);
  });
  it('ECB of a partial block leaves its bytes zero; empty data gives an empty ArrayBuffer', () => {
    const { AES } = espruinoCrypto();
    expect(ab(AES.encrypt(new Uint8Array(20), new Uint8Array(32), { mode: 'ECB' }))).toEqual([
      220, 149, 192, 120, 162, 64, 137, 137, 173, 72, 162, 20, 146, 132, 32, 135, 0, 0, 0, 0,
    ]);
    expect(ab(AES.encrypt([1, 2, 3], new Uint8Array(32), { mode: 'ECB' }))).toEqual([0, 0, 0]);
    expect(AES.encrypt(new Uint8Array(0), k32, { mode: 'ECB' })!.byteLength).toBe(0);
  });
  it('prints and returns undefined for CBC partial blocks, OFB, bad keys and bad options; throws for unknown modes', () => {
    const c = espruinoCrypto();
    expect(c.AES.encrypt(new Uint8Array(20), k32, { mode: 'CBC' })).toBeUndefined();
    expect(c.AES.encrypt(new Uint8Array(16), k32, { mode: 'OFB' })).toBeUndefined();
    expect(c.AES.encrypt(new Uint8Array(16), new Uint8Array(5), { mode: 'ECB' })).toBeUndefined();
    expect(c.AES.encrypt(m20, k32, 'x')).toBeUndefined();
    expect(c.AES.encrypt(undefined, k32, { mode: 'ECB' })).toBeUndefined();
    expect(c.errors).toEqual([
      'Invalid input length',
      'Feature unavailable',
      'Unknown error: -0x20',
      "'options' must be undefined, or an Object",
    ]);
    expect(() => c.AES.encrypt(m20, k32, { mode: 'XYZ' })).toThrow('Unknown Crypto mode "XYZ"');
  });
});

describe('native AES block', () => {
  it('ECB and CBC agree with node:crypto over many keys and lengths', async () => {
    const { createCipheriv } = await import('node:crypto');
    const block = nativeAesBlock(espruinoCrypto().AES);
    for (let n = 1; n <= 8; n++) {
      const key = Uint8Array.from({ length: 32 }, (_, i) => (i * n * 13 + 7) & 255);
      const data = Uint8Array.from({ length: 16 * n }, (_, i) => (i * 31 + n) & 255);
      const ref = (mode: string) => {
        const c = createCipheriv(`aes-256-${mode}`, key, mode === 'ecb' ? null : Buffer.alloc(16));
        c.setAutoPadding(false);
        return toHexStr(Buffer.concat([c.update(data), c.final()]));
      };
      expect(toHexStr(block.ecb(key, data))).toBe(ref('ecb'));
      expect(toHexStr(block.cbc!(key, data))).toBe(ref('cbc'));
    }
  });
  it('turns a native failure (undefined) into an E4Error, never a wrong result', () => {
    const block = nativeAesBlock(espruinoCrypto({ onError: () => {} }).AES);
    expect(() => block.cbc!(k32, new Uint8Array(20))).toThrow(/E4_ERROR_INTERNAL/);
    expect(() => block.ecb(new Uint8Array(5), new Uint8Array(16))).toThrow(/E4_ERROR_INTERNAL/);
  });
});

describe('native calls per operation', () => {
  for (const n of [0, 1, 16, 64, 256, 1000]) {
    it(`seal and open of ${n} bytes`, () => {
      const emu = espruinoCrypto();
      const vault = nativeVault(undefined, emu.AES);
      const key = hex('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff');
      const ad = hex('0102030405060708');
      const pt = Uint8Array.from({ length: n }, (_, i) => i & 255);
      const sealed = vault.sivEncrypt(key, ad, pt);
      const sealCalls = { ...emu.calls };
      expect(toHexStr(sealed)).toBe(toHexStr(nobleVault().sivEncrypt(key, ad, pt)));
      // L; CMAC(0) and CMAC(AD) in one ECB call; CMAC(T) by CBC; the key stream (none when empty).
      expect(sealCalls).toEqual(n ? { total: 4, ECB: 3, CBC: 1 } : { total: 3, ECB: 2, CBC: 1 });
      emu.calls.total = 0;
      delete emu.calls.ECB;
      delete emu.calls.CBC;
      expect(toHexStr(vault.sivDecrypt(key, ad, sealed)!)).toBe(toHexStr(pt));
      expect({ ...emu.calls }).toEqual(sealCalls);
    });
  }
  it('a protect/unprotect through the client: 4 + 4 calls, no other native use', () => {
    const emu = espruinoCrypto();
    const client = create(
      { vault: nativeVault(undefined, emu.AES), store: memoryStore() },
      {
        id: '00'.repeat(16),
        key: '11'.repeat(32),
        topics: [{ topic: 't', hash: toHexStr(sha3(new TextEncoder().encode('t')).subarray(0, 16)), key: '22'.repeat(32) }],
      },
      { ignoreTimestamp: true },
    );
    const m = client.protect('t', 'hello');
    expect(emu.calls.total).toBe(4);
    expect(new TextDecoder().decode(client.unprotect('t', m)!)).toBe('hello');
    expect(emu.calls.total).toBe(8);
  });
});

describe('native SIV (boards/espruino/native-siv.ts) against noble aessiv', () => {
  const key = hex('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff');
  const vault = nativeSivVault(nodeAesCbc);
  for (const adLen of [0, 8, 15, 16, 17, 40]) {
    it(`AD of ${adLen} bytes, plaintexts of 0 to 1000 bytes: same bytes, round trip, any flipped bit rejected`, () => {
      const ad = Uint8Array.from({ length: adLen }, (_, i) => (i * 5 + 1) & 255);
      for (const n of [0, 1, 15, 16, 17, 31, 32, 33, 255, 256, 1000]) {
        const pt = Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 255);
        const sealed = vault.sivEncrypt(key, ad, pt);
        expect(toHexStr(sealed)).toBe(toHexStr(aessiv(Uint8Array.from([...key, ...key]), ad).encrypt(pt)));
        expect(toHexStr(vault.sivDecrypt(key, ad, sealed)!)).toBe(toHexStr(pt));
        for (const i of [0, 15, 16, sealed.length - 1].filter((x) => x < sealed.length)) {
          const bad = Uint8Array.from(sealed);
          bad[i] ^= 1;
          expect(vault.sivDecrypt(key, ad, bad)).toBeNull();
        }
      }
    });
  }
  it('works on input at any byte offset (views that are not 4-aligned)', () => {
    const ad = hex('0102030405060708');
    const pt = Uint8Array.from({ length: 70 }, (_, i) => i);
    const buf = new Uint8Array(200);
    buf.set(pt, 3);
    const sealed = vault.sivEncrypt(key, ad, buf.subarray(3, 73));
    expect(toHexStr(sealed)).toBe(toHexStr(aessiv(Uint8Array.from([...key, ...key]), ad).encrypt(pt)));
    const shifted = new Uint8Array(sealed.length + 5);
    shifted.set(sealed, 5);
    expect(toHexStr(vault.sivDecrypt(key, ad, shifted.subarray(5))!)).toBe(toHexStr(pt));
  });
  it('lets a failure of the AES block propagate instead of reporting a tag mismatch', () => {
    const failing: CbcBlock = {
      ecb: () => {
        throw new Error('AES unit busy');
      },
      cbc: () => {
        throw new Error('AES unit busy');
      },
    };
    expect(() => nativeSivVault(failing).sivDecrypt(key, new Uint8Array(8), new Uint8Array(40))).toThrow('AES unit busy');
  });
});

it('vector file sections are present', () => {
  for (const k of ['aes_siv', 'protect', 'unprotect', 'commands', 'scenarios'] as const) expect(V[k].length, k).toBeGreaterThan(0);
});

describe('native vault, SHA-3 on the device (ESP32 image)', () => {
  vaultSuite(() => nativeVault(sha3, espruinoCrypto().AES), true);
});

describe('native vault, topic hashes from the configuration (Puck.js image)', () => {
  vaultSuite(() => nativeVault(undefined, espruinoCrypto().AES), false);
});
