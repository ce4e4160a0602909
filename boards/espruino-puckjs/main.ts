/**
 * Puck.js (nRF52832, native AES): the smallest image. Native AES-SIV, no SHA-3 (topic hashes
 * come with the configuration), the framed link to a gateway over BLE UART or serial, the
 * power-safe flash store with in-place key erasure. Runs from flash (Storage file "e4.js",
 * started by the boot file ".boot0"): see README.md beside this file.
 */
import type { Client } from '../../firmware/client';
import type { Log, Vault } from '../../firmware/hal';
import { board, install } from '../espruino/boot';
import type { DeviceFile } from '../espruino/boot';
import { nativeVault } from '../espruino/native-aes';
import { linkTransport } from '../espruino/link';
import type { LinkTransport } from '../espruino/link';

export { client, device, status, stop, version } from '../espruino/api';
export { create } from '../../firmware/client';

/** This board's vault: no SHA-3 (topic names and hashes come with the configuration). */
export function vault(): Vault {
  return nativeVault();
}

export var start = install({
  clock: 'monotonic',
  zeroInPlace: true,
  vault: vault,
  transport: function (cfg: DeviceFile, c: Client, log: Log) {
    var t = cfg.transport;
    if (!t || !t.link) return null;
    return linkTransport(t.link, c.id, log);
  },
});

/** Sent by the gateway on the BLE console: switch this connection to link frames. */
export function gateway(): void {
  var t = board.transport as LinkTransport | null;
  if (t) t.attach();
}
