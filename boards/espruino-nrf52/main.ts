/**
 * nRF52 boards without native AES (MDBT42Q, Pixl.js, Bangle.js 2): like the Puck.js image but
 * with the portable vault (firmware/crypto/portable-vault.ts: the compact AES under AES-SIV). No SHA-3: topic hashes come with
 * the configuration. See README.md beside this file.
 */
import type { Vault } from '../../firmware/hal';
import { install } from '../espruino/boot';
import { linkTransportOf } from '../espruino/link-board';
import { portableVault } from '../../firmware/crypto/portable-vault';

export { client, device, status, stop, version } from '../espruino/api';
export { create } from '../../firmware/client';
export { gateway } from '../espruino/link-board';

/** This board's vault: no SHA-3 (topic names and hashes come with the configuration). */
export function vault(): Vault {
  return portableVault();
}

export var start = install({
  clock: 'monotonic',
  vault: vault,
  transport: linkTransportOf,
});
