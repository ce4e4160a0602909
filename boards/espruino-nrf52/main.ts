/**
 * nRF52 boards without native AES (MDBT42Q, Pixl.js, Bangle.js 2): like the Puck.js image but
 * with the portable AES (build/image/aes.ts) under AES-SIV. No SHA-3: topic hashes come with
 * the configuration. See README.md beside this file.
 */
import type { Client } from '../../firmware/client';
import type { Log, Vault } from '../../firmware/hal';
import { board, install } from '../espruino/boot';
import type { DeviceFile } from '../espruino/boot';
import { portableVault } from '../shared/portable-vault';
import { linkTransport } from '../espruino/link';
import type { LinkTransport } from '../espruino/link';

export { client, device, status, stop, version } from '../espruino/api';
export { create } from '../../firmware/client';

/** This board's vault: no SHA-3 (topic names and hashes come with the configuration). */
export function vault(): Vault {
  return portableVault();
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
