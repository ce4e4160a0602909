/**
 * The global `E4` of the Espruino board images (boards/espruino/README.md): start-up, the
 * client, the device runtime and their status. Each board entry re-exports these and adds what
 * its hardware needs.
 */
import type { Client } from '../../firmware/client';
import type { Device, DeviceStatus } from '../shared/runtime';
import { wipeState } from '../../firmware/state';
import { board } from './boot';

/** The E4 client (null before start-up or when it failed: see status()). */
export function client(): Client | null {
  return board.client;
}

/** The device runtime: publish(), subscribe(), on('message' | 'command' | 'error' | 'up' | 'down'). */
export function device(): Device | null {
  return board.device;
}

/** { ok, error, id, topics, connected, stats, time } without any key. */
export function status(): DeviceStatus {
  var c = board.client;
  var d = board.device;
  // The topic count comes from a snapshot: its key copies are wiped at once, not left to the GC.
  var topics = 0;
  if (c) {
    var snap = c.snapshot();
    topics = snap.topics.length;
    wipeState(snap);
  }
  return {
    ok: !!c,
    error: board.error,
    controlTopic: c ? c.controlTopic : null,
    topics: topics,
    connected: d ? d.connected : false,
    stats: d ? d.stats : null,
    time: c ? c.time() : null,
  };
}

/** Stops the transport, wipes the client's keys from RAM and drops the runtime (its memory is
 * freed); E4.start() opens it again from the store. */
export function stop(): void {
  if (board.device) board.device.stop();
  if (board.client) board.client.close();
  board.device = board.client = board.transport = null;
}

export var version = '0.1.0';
