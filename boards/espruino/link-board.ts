/**
 * What the nRF52 images (Puck.js, MDBT42Q, Pixl.js, Bangle.js 2) share: the framed link to a
 * gateway over BLE UART or serial as their transport, and the `gateway()` hook the gateway calls.
 */
import type { Client } from '../../firmware/client';
import type { Log } from '../../firmware/hal';
import { board } from './boot';
import type { DeviceFile } from './boot';
import { linkTransport } from './link';
import type { LinkTransport } from './link';

/** The device's link transport, when its configuration asks for one. */
export function linkTransportOf(cfg: DeviceFile, c: Client, log: Log): LinkTransport | null {
  var t = cfg.transport;
  if (!t || !t.link) return null;
  return linkTransport(t.link, c.id, log);
}

/** Sent by the gateway on the BLE console: switch this connection to link frames. */
export function gateway(): void {
  var t = board.transport as LinkTransport | null;
  if (t) t.attach();
}
