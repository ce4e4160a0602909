/**
 * Puck.js (nRF52832, native AES): the smallest image. Native AES-SIV, no SHA-3 (topic hashes
 * come with the configuration), the framed link to a gateway over BLE UART or serial, the
 * power-safe flash store with in-place key erasure. Runs from flash (Storage file "e4.js",
 * started by the boot file ".boot0"): see README.md beside this file.
 */
import type { Vault } from '../../firmware/hal';
import { install } from '../espruino/boot';
import { linkTransportOf } from '../espruino/link-board';
import { nativeVault } from '../espruino/native-aes';

export { client, device, status, stop, version } from '../espruino/api';
export { create } from '../../firmware/client';
export { gateway } from '../espruino/link-board';

/** This board's vault: no SHA-3 (topic names and hashes come with the configuration). */
export function vault(): Vault {
  return nativeVault();
}

export var start = install({
  clock: 'monotonic',
  vault: vault,
  transport: linkTransportOf,
});
