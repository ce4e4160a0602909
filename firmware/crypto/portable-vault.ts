/**
 * The portable vault: AES-SIV (RFC 5297, siv.ts) over the compact pure-JS AES (aes.ts: S-box and
 * one 256-entry round table, derived at load), with SHA3-256 (sha3.ts) when given. The vault of
 * the portable image and of boards without native AES (MDBT42Q, Pixl.js, Bangle.js 2, JerryScript
 * ports). The key schedule is expanded once per operation (E4's SIV key is `key | key`: both
 * halves share it) and wiped when the operation ends.
 */
import type { AesBlock, Vault } from '../hal';
import { sivDecrypt, sivEncrypt } from './siv';
import { encryptBlocks, expandKey, wipeSchedule } from './aes';

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
    sivEncrypt: function (key, ad, plaintext) {
      return withKey(key, function (block) {
        return sivEncrypt(block, key, key, [ad], plaintext);
      });
    },
    sivDecrypt: function (key, ad, ciphertext) {
      return withKey(key, function (block) {
        return sivDecrypt(block, key, key, [ad], ciphertext);
      });
    },
  };
  if (sha3) vault.sha3 = sha3;
  return vault;
}
