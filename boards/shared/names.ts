/**
 * Topic names without SHA-3 on the device. The device configuration carries, for every topic
 * name the device will use, the 16-byte topic hash computed on the host (flash, C2). A vault
 * without SHA-3 is given a name table in the `sha3` slot: it answers for those names only, with
 * the topic hash (the first 16 bytes of SHA3-256, which is all the core reads for a topic)
 * followed by 16 zero bytes, and fails with TOPICKEY_MISSING for any other name, which is what
 * receiving on an unknown topic gives anyway. The device's id always comes from the
 * configuration, never from hashing its name, so nothing else reads `sha3`.
 *
 * A board whose vault has real SHA-3 (ESP32, JerryScript) does not use this.
 */
import type { Vault } from '../../firmware/hal';
import { fromHex, toHex, utf8 } from '../../firmware/bytes';
import { E4Error, PARAMETER_INVALID, TOPICKEY_MISSING } from '../../firmware/errors';

export interface TopicName {
  topic?: string;
  hash?: string | Uint8Array;
}

/** The vault with `sha3` answering from the table of `names` (entries without both fields are skipped). */
export function withTopicNames(vault: Vault, names: TopicName[]): Vault {
  // Keyed by the hex of the name's UTF-8 bytes: what sha3 is handed.
  var table: { [k: string]: Uint8Array } = {};
  for (var i = 0; i < names.length; i++) {
    var n = names[i];
    if (typeof n.topic !== 'string' || n.hash === undefined) continue;
    var h = typeof n.hash === 'string' ? fromHex(n.hash) : n.hash;
    if (h.length !== 16) throw new E4Error(PARAMETER_INVALID, 'topic hash must be 16 bytes');
    var full = new Uint8Array(32);
    full.set(h);
    table['$' + toHex(utf8(n.topic))] = full;
  }
  return {
    seal: vault.seal,
    open: vault.open,
    sha3: function (data) {
      var h = table['$' + toHex(data)];
      if (!h) throw new E4Error(TOPICKEY_MISSING, 'topic not provisioned on this device (no SHA-3 here)');
      var out = new Uint8Array(32);
      out.set(h);
      return out;
    },
  };
}
