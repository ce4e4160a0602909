/**
 * The reference vault of the host tests: AES-SIV and SHA3-256 straight from @noble/ciphers and
 * @noble/hashes (audited, dependency-free), so that the firmware's vaults (portable, native AES,
 * generic SIV) are checked against an implementation that is not theirs.
 */
import { aessiv } from '@noble/ciphers/aes.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import type { Vault } from '../../firmware/hal';
import { concatBytes, wipe } from '../../firmware/bytes';
import { E4Error, INTERNAL } from '../../firmware/errors';

export function nobleVault(): Vault {
  return {
    sivEncrypt: function (key, ad, plaintext) {
      // SIV key = key | key (docs/protocol.md, "Protected message").
      const sivKey = concatBytes(key, key);
      try {
        return aessiv(sivKey, ad).encrypt(plaintext);
      } finally {
        wipe(sivKey);
      }
    },
    sivDecrypt: function (key, ad, sealed) {
      if (sealed.length < 16) return null;
      const sivKey = concatBytes(key, key);
      try {
        return aessiv(sivKey, ad).decrypt(sealed);
      } catch (e) {
        // noble throws on a tag mismatch (and never hands out the unauthenticated plaintext):
        // only that is "not authentic"; anything else (out of memory...) is an internal error.
        if (e && (e as Error).message === 'invalid siv tag') return null;
        throw new E4Error(INTERNAL);
      } finally {
        wipe(sivKey);
      }
    },
    sha3: function (data) {
      return sha3_256(data);
    },
  };
}
