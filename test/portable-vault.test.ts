/**
 * The portable vault (firmware/crypto/portable-vault.ts, the portable image's and that of boards without native AES): every
 * e4-sk vector case, with SHA-3 on the device (JerryScript image) and with topic hashes from the
 * configuration (espruino-nrf52 image); cross-checked against noble on random-length inputs.
 */
import { describe, expect, it } from 'vitest';
import { portableVault } from '../firmware/crypto/portable-vault';
import { nobleVault } from './support/noble-vault';
import { toHexStr } from './support/vectors';
import { vaultSuite } from './support/vault-suite';

const sha3 = nobleVault().sha3!;

it('agrees with noble for every length 0..70 and several keys', () => {
  const pv = portableVault();
  const nv = nobleVault();
  for (let k = 0; k < 4; k++) {
    const key = Uint8Array.from({ length: 32 }, (_, i) => (i * 17 + k * 101 + 1) & 255);
    const ad = Uint8Array.from({ length: 8 }, (_, i) => i + k);
    for (let n = 0; n <= 70; n++) {
      const pt = Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 255);
      const sealed = pv.sivEncrypt(key, ad, pt);
      expect(toHexStr(sealed)).toBe(toHexStr(nv.sivEncrypt(key, ad, pt)));
      expect(toHexStr(pv.sivDecrypt(key, ad, sealed)!)).toBe(toHexStr(pt));
    }
  }
});

it('has SHA-3 only when given', () => {
  expect(portableVault().sha3).toBeUndefined();
  expect(portableVault(sha3).sha3).toBe(sha3);
});

describe('portable vault, SHA-3 on the device (jerryscript image)', () => {
  vaultSuite(() => portableVault(sha3), true);
});

describe('portable vault, topic hashes from the configuration (espruino-nrf52 image)', () => {
  vaultSuite(() => portableVault(), false);
});
