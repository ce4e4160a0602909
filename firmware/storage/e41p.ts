/**
 * libe4's persistent file image, used here as an import/export format for provisioning:
 * `"E41P" | client id (16) | client key (32) | topic count (u16 LE) | count × (hash (16) | key (32))`.
 * Previous keys and calibration are ours and not part of it.
 */
import type { StoredState, TopicRecord } from '../hal';
import { checkBytes, copyBytes, readU16LE } from '../bytes';
import { E4Error, PERSISTENCE_INCOMPATIBLE } from '../errors';

var MAGIC = [0x45, 0x34, 0x31, 0x50]; // "E41P"
var HEAD = 4 + 16 + 32 + 2;
var ENTRY = 16 + 32;

export function encodeE41P(state: { id: Uint8Array; key: Uint8Array; topics: { hash: Uint8Array; key: Uint8Array }[] }): Uint8Array {
  var n = state.topics.length;
  if (n > 65535) throw new E4Error(PERSISTENCE_INCOMPATIBLE, 'too many topics for E41P');
  var out = new Uint8Array(HEAD + n * ENTRY);
  out.set(MAGIC, 0);
  out.set(checkBytes(state.id, 16, 'client id'), 4);
  out.set(checkBytes(state.key, 32, 'client key'), 20);
  out[52] = n & 255; // count, 2 bytes little-endian
  out[53] = n >> 8;
  for (var i = 0; i < n; i++) {
    out.set(checkBytes(state.topics[i].hash, 16, 'topic hash'), HEAD + i * ENTRY);
    out.set(checkBytes(state.topics[i].key, 32, 'topic key'), HEAD + i * ENTRY + 16);
  }
  return out;
}

/** Parses an E41P image into a fresh StoredState (no calibration, no previous keys). A wrong
 * magic, a truncated image or trailing bytes give PERSISTENCE_INCOMPATIBLE. */
export function decodeE41P(bytes: Uint8Array): StoredState {
  checkBytes(bytes, -1, 'E41P image');
  if (bytes.length < HEAD) throw new E4Error(PERSISTENCE_INCOMPATIBLE, 'E41P image truncated');
  for (var m = 0; m < 4; m++) if (bytes[m] !== MAGIC[m]) throw new E4Error(PERSISTENCE_INCOMPATIBLE, 'not an E41P image');
  var n = readU16LE(bytes, 52);
  if (bytes.length !== HEAD + n * ENTRY) throw new E4Error(PERSISTENCE_INCOMPATIBLE, 'E41P image length does not match its topic count');
  var topics: TopicRecord[] = [];
  for (var i = 0; i < n; i++) {
    var at = HEAD + i * ENTRY;
    topics.push({
      hash: copyBytes(bytes.subarray(at, at + 16)),
      key: copyBytes(bytes.subarray(at + 16, at + 48)),
      prevKey: null,
      prevSince: -1,
    });
  }
  return {
    id: copyBytes(bytes.subarray(4, 20)),
    key: copyBytes(bytes.subarray(20, 52)),
    topics: topics,
    lastCommand: -1,
    lastTags: new Uint8Array(0),
  };
}
