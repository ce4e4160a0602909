/**
 * ESP32 (Espruino): native AES-SIV, SHA-3 for topic names met at run time (hashed once, cached
 * by the client), Wi-Fi and MQTT (Espruino's MQTT module), the power-safe flash store (key
 * erasure by Storage compaction: ESP32 flash is not memory-mapped the nRF52 way).
 * See README.md beside this file.
 */
import { sha3_256 } from '../../firmware/crypto/sha3';
import type { Client } from '../../firmware/client';
import type { Log, Vault } from '../../firmware/hal';
import { toHex } from '../../firmware/bytes';
import { install } from '../espruino/boot';
import type { DeviceFile } from '../espruino/boot';
import { nativeVault } from '../espruino/native-aes';
import { mqttTransport } from '../espruino/mqtt';
import type { MqttConfig } from '../espruino/mqtt';

export { client, device, status, stop, version } from '../espruino/api';
export { create } from '../../firmware/client';

/** This board's vault (native AES, SHA-3 for topic names). */
export function vault(): Vault {
  return nativeVault(sha3_256);
}

export var start = install({
  clock: 'untrusted',
  vault: vault,
  transport: function (cfg: DeviceFile, c: Client, log: Log) {
    var t = cfg.transport;
    if (!t || !t.mqtt) return null;
    return mqttTransport(t as MqttConfig, 'e4-' + toHex(c.id).substr(0, 12), log);
  },
});
