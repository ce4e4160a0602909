/**
 * Provisioning (README.md, "The client"): the device configuration that fills an empty store at
 * start-up (openState), and the topic arguments of the factory calls setTopicKey/removeTopic
 * (resolveHash). The calls themselves are the client's (client.ts): they commit like commands.
 */
import type { Change, StoredState, Store, Vault } from './hal';
import { checkBytes, copyBytes, fromHex } from './bytes';
import { E4Error, isE4Error, PARAMETER_INVALID, PERSISTENCE_ERROR } from './errors';
import { clientId, HASH_LEN, ID_LEN, KEY_LEN } from './protocol';
import { applyChanges, findTopic, wipeChanges } from './state';

/** Bytes, or their lowercase/uppercase hex. */
export type BytesLike = Uint8Array | string;

/** A topic for the provisioning calls: a string is always a topic name; a topic hash is given
 * as its 16 bytes or explicitly as `{ hash }` (bytes or hex), never guessed from a string. */
export type TopicRef = string | Uint8Array | { hash: BytesLike };

/** Provisioning data, used only when the store is empty (otherwise the stored state wins). */
export interface DeviceConfig {
  /** 16-byte client id; or give `name` and the id is derived from it. */
  id?: BytesLike;
  name?: string;
  /** 32-byte client key. */
  key: BytesLike;
  /** Topic keys. Give `hash` (precomputed) so the device never needs SHA-3 for these topics;
   * `topic` alone is hashed at start-up. An entry without `key` only teaches the device the
   * topic's name and hash, for a key C2 grants later (a device without SHA-3 needs this). */
  topics?: { topic?: string; hash?: BytesLike; key?: BytesLike }[];
}

/** The bytes of `b` (bytes, or hex), checked to be `len` long (-1: any); PARAMETER_INVALID
 * names `what`. */
export function bytesOf(b: BytesLike, len: number, what: string): Uint8Array {
  return checkBytes(typeof b === 'string' ? fromHex(b) : b, len, what);
}

/**
 * The topic hash a provisioning call means: a string is a topic name, hashed by `hashOf` (which
 * throws when the device has no SHA-3 and does not know the name); bytes or `{ hash }` are the
 * hash itself. Never guessed from a string's shape: a name of 32 hex characters is a name.
 */
export function resolveHash(topic: TopicRef, hashOf: (topic: string, required: boolean) => Uint8Array | null): Uint8Array {
  if (typeof topic === 'string') return hashOf(topic, true) as Uint8Array;
  var h = topic && (topic as { hash: BytesLike }).hash;
  return h !== undefined ? bytesOf(h, HASH_LEN, 'topic hash') : checkBytes(topic as Uint8Array, HASH_LEN, 'topic hash');
}

/**
 * Loads the stored state, or provisions the store from `device` when it is empty (through
 * `commit`). Topic names in `device` go into `names` ("$" + name -> hash; the hash given, else
 * `hashOf`'s) whether or not the store was empty: they are configuration, not state; a name of a
 * topic held then points at the state's copy of its hash. The provisioning copies of keys are
 * wiped here, so that no key outlives its replacement in the client's memory.
 */
export function openState(
  store: Store,
  vault: Vault,
  device: DeviceConfig | null | undefined,
  maxTopics: number,
  commit: (changes: Change[]) => void,
  names: { [k: string]: Uint8Array },
  hashOf: (topic: string, required: boolean) => Uint8Array | null
): StoredState {
  var loaded: StoredState | null;
  try {
    loaded = store.load();
  } catch (e) {
    if (isE4Error(e)) throw e;
    throw new E4Error(PERSISTENCE_ERROR, 'store could not be read');
  }
  var configTopics = (device && device.topics) || [];
  var changes: Change[] = [];
  var state: StoredState;
  try {
    for (var i = 0; i < configTopics.length; i++) {
      var t = configTopics[i];
      var h: Uint8Array;
      if (t.hash !== undefined) h = bytesOf(t.hash, HASH_LEN, 'topic hash');
      else if (typeof t.topic !== 'string') throw new E4Error(PARAMETER_INVALID, 'topic entry needs a topic or a hash');
      if (typeof t.topic === 'string') h = names['$' + t.topic] = t.hash !== undefined ? h! : (hashOf(t.topic, true) as Uint8Array);
      if (t.key === undefined || t.key === null) {
        if (typeof t.topic !== 'string') throw new E4Error(PARAMETER_INVALID, 'topic entry needs a key or a topic name');
        continue;
      }
      if (!loaded)
        changes.push({
          op: 'topic',
          topic: { hash: h!, key: copyBytes(bytesOf(t.key, KEY_LEN, 'topic key')), prevKey: null, prevSince: -1 },
        });
    }
    if (loaded) state = loaded;
    else {
      if (!device) throw new E4Error(PARAMETER_INVALID, 'the store is empty: a device configuration is needed');
      var id: Uint8Array;
      if (device.id !== undefined) id = bytesOf(device.id, ID_LEN, 'client id');
      else if (typeof device.name === 'string') id = clientId(vault, device.name);
      else throw new E4Error(PARAMETER_INVALID, 'device needs an id or a name');
      if (changes.length > maxTopics) throw new E4Error(PARAMETER_INVALID, 'more topics than maxTopics');
      changes.unshift({ op: 'provision', id: id, key: copyBytes(bytesOf(device.key, KEY_LEN, 'client key')) });
      commit(changes);
      state = applyChanges(null, changes);
    }
  } finally {
    wipeChanges(changes);
  }
  // One array per hash in RAM (hashes are never changed in place: a record that changes is replaced).
  for (var n in names) {
    var at = findTopic(state, names[n]);
    if (at >= 0) names[n] = state.topics[at].hash;
  }
  return state;
}
