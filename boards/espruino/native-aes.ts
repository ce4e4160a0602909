/**
 * The native vault of Espruino boards that have `require("crypto").AES` (Puck.js, nRF52832 DK,
 * ESP32): AES-256 blocks from the firmware's mbedTLS, AES-SIV from firmware/crypto/siv.ts on top.
 * Byte-identical to the portable vault (test/native-aes.test.ts runs every vector through an
 * emulation of this API).
 *
 * Native calls: ECB for single blocks and for the whole CTR key stream at once (Espruino's own
 * CTR mode ignores the IV and cannot be used), CBC with a zero IV for each CMAC. A seal or an
 * open of a non-empty message takes 5 native calls whatever its length (L, CMAC(0), CMAC(AD),
 * CMAC(T), the key stream); an empty one 4.
 */
import type { AesBlock, Vault } from '../../firmware/hal';
import { sivVault } from '../../firmware/crypto/siv';
import { E4Error, INTERNAL } from '../../firmware/errors';

/** The shape of Espruino's `require("crypto").AES` that is used here. */
export interface EspruinoAes {
  encrypt(data: Uint8Array, key: Uint8Array, options?: { mode?: string; iv?: Uint8Array }): ArrayBuffer | undefined;
}

declare var require: (name: string) => any;

/** An AesBlock over Espruino's native AES (`aes` defaults to `require("crypto").AES`). */
export function nativeAesBlock(aes?: EspruinoAes): AesBlock {
  var AES: EspruinoAes = aes || require('crypto').AES;
  var ECB = { mode: 'ECB' };
  // No iv: Espruino's default IV is zero, which is what CMAC needs.
  var CBC = { mode: 'CBC' };
  function run(options: { mode: string }, key: Uint8Array, data: Uint8Array): Uint8Array {
    var out = AES.encrypt(data, key, options);
    // Espruino reports some failures only on the console and returns undefined.
    if (!out || out.byteLength !== data.length) throw new E4Error(INTERNAL, 'native AES failed');
    return new Uint8Array(out);
  }
  return {
    ecb: function (key, data) {
      return run(ECB, key, data);
    },
    cbc: function (key, data) {
      return run(CBC, key, data);
    },
  };
}

/** A Vault over native AES; `sha3` only for images that hash topic names at run time. */
export function nativeVault(sha3?: (data: Uint8Array) => Uint8Array, aes?: EspruinoAes): Vault {
  return sivVault(nativeAesBlock(aes), sha3);
}
