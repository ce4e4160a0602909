/**
 * The vault of boards without native AES (MDBT42Q, Pixl.js, Bangle.js 2, JerryScript ports):
 * AES-SIV from firmware/crypto/siv.ts over the image's compact pure-JS AES (build/image/aes.ts:
 * S-box and one 256-entry round table, derived at load). The key schedule is expanded once per
 * seal/open (E4's SIV key is `key | key`: both halves share it) and wiped when the operation ends.
 */
import type { AesBlock, Vault } from '../../firmware/hal';
import { sivDecrypt, sivEncrypt } from '../../firmware/crypto/siv';
import { encryptBlocks, expandKey, wipeSchedule } from '../../build/image/aes';

function withKey<R>(key: Uint8Array, fn: (block: AesBlock) => R): R {
  var w = expandKey(key);
  var block: AesBlock = {
    ecb: function (_k, data) {
      return encryptBlocks(w, data, false);
    },
    cbc: function (_k, data) {
      return encryptBlocks(w, data, true);
    },
  };
  try {
    return fn(block);
  } finally {
    wipeSchedule(w);
  }
}

export function portableVault(sha3?: (data: Uint8Array) => Uint8Array): Vault {
  var vault: Vault = {
    seal: function (key, ad, plaintext) {
      return withKey(key, function (block) {
        return sivEncrypt(block, key, key, [ad], plaintext);
      });
    },
    open: function (key, ad, sealed) {
      return withKey(key, function (block) {
        return sivDecrypt(block, key, key, [ad], sealed);
      });
    },
  };
  if (sha3) vault.sha3 = sha3;
  return vault;
}
