/**
 * What `@noble/ciphers/aes.js` becomes inside an ES5 image (rollup.config.mjs substitutes it):
 * `aessiv` with noble's contract as the image uses it (SIV key K1|K2 of 32/48/64 bytes, any
 * number of associated-data components, encrypt -> V|C, decrypt throws on a bad tag or a short
 * input and never returns the candidate plaintext), computed by the firmware's generic AES-SIV (firmware/crypto/siv.ts) over the
 * compact AES block of aes.ts. noble's module builds ~640 KB of tables at load and needs ES2015+
 * runtime APIs; results are identical (checked against noble in test/image.test.ts and by the
 * vectors in every engine).
 */
import type { AesBlock } from '../../firmware/hal';
import { sivDecrypt, sivEncrypt } from '../../firmware/crypto/siv';
import { equalBytes } from '../../firmware/bytes';
import { encryptBlocks, expandKey, wipeSchedule } from './aes';

export interface SivCipher {
  encrypt(plaintext: Uint8Array): Uint8Array;
  decrypt(ciphertext: Uint8Array): Uint8Array;
}

/**
 * Runs `fn` with a block whose key schedules for K1 and K2 are expanded once (once in all when
 * the halves are equal, as with E4's `key | key`) and wiped afterwards.
 */
function withBlock<R>(k1: Uint8Array, k2: Uint8Array, fn: (block: AesBlock) => R): R {
  var w1 = expandKey(k1);
  var w2 = equalBytes(k1, k2) ? w1 : expandKey(k2);
  var block: AesBlock = {
    ecb: function (key, data) {
      return encryptBlocks(key === k1 ? w1 : w2, data, false);
    },
    cbc: function (key, data) {
      return encryptBlocks(key === k1 ? w1 : w2, data, true);
    },
  };
  try {
    return fn(block);
  } finally {
    wipeSchedule(w1);
    wipeSchedule(w2);
  }
}

export function aessiv(key: Uint8Array, ...ad: Uint8Array[]): SivCipher {
  if (!(key instanceof Uint8Array) || (key.length !== 32 && key.length !== 48 && key.length !== 64)) {
    throw new Error('"aes key" expected Uint8Array of length 32/48/64');
  }
  var half = key.length / 2;
  var k1 = key.subarray(0, half);
  var k2 = key.subarray(half);
  return {
    encrypt: function (plaintext) {
      return withBlock(k1, k2, function (block) {
        return sivEncrypt(block, k1, k2, ad, plaintext);
      });
    },
    decrypt: function (ciphertext) {
      // sivDecrypt returns null for a short input or a bad tag; noble throws in both cases.
      var p = withBlock(k1, k2, function (block) {
        return sivDecrypt(block, k1, k2, ad, ciphertext);
      });
      if (!p) throw new Error('invalid siv tag');
      return p;
    },
  };
}
