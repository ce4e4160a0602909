/**
 * The native vault of Espruino boards that have `require("crypto").AES` (Puck.js, nRF52832 DK,
 * ESP32): AES-256 blocks from the firmware's mbedTLS, AES-SIV from native-siv.ts on top.
 * Byte-identical to the portable vault (test/native-aes.test.ts runs every vector through an
 * emulation of this API).
 *
 * Native calls: ECB for L, for the single-block CMACs (CMAC(0) and CMAC(AD) in one call) and for
 * the whole CTR key stream at once (Espruino's own CTR mode ignores the IV and cannot be used),
 * CBC with a zero IV for CMAC(T). An sivEncrypt or sivDecrypt of a non-empty message takes 4 native calls
 * whatever its length; an empty one 3. The JavaScript around them (native-siv.ts) is written
 * for Espruino's interpreter: `npm run bench -- --native` times it against the vault of
 * commit b0e1690 (host-sim/tools/reference/native-vault-b0e1690).
 */
import type { Vault } from '../../firmware/hal';
import type { CbcBlock } from './native-siv';
import { nativeSivVault } from './native-siv';
import { E4Error, INTERNAL } from '../../firmware/errors';

/** The shape of Espruino's `require("crypto").AES` that is used here. */
export interface EspruinoAes {
  encrypt(data: Uint8Array, key: Uint8Array, options?: { mode?: string; iv?: Uint8Array }): ArrayBuffer | undefined;
}

declare var require: (name: 'crypto') => { AES: EspruinoAes };

/** An AesBlock over Espruino's native AES (`aes` defaults to `require("crypto").AES`). */
export function nativeAesBlock(aes?: EspruinoAes): CbcBlock {
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
  return nativeSivVault(nativeAesBlock(aes), sha3);
}
