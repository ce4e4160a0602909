/**
 * The E4 symmetric-key client: one device identity, its topic keys, and the receive rules of
 * docs/protocol.md ("Receiving", "Commands", "Time, without trusting the device's clock", "Key transition"), with durable state
 * through the HAL store.
 */
import type { Change, Hal, Log, Store, StoredState, TopicRecord, Vault } from './hal';
import { checkBytes, copyBytes, equalBytes, fromHex, readU64LE, toBytes, wipe } from './bytes';
import {
  CIPHERTEXT_TOO_SHORT,
  E4Error,
  INVALID_COMMAND,
  INVALID_TAG,
  isE4Error,
  MESSAGE_REPLAYED,
  PARAMETER_INVALID,
  PERSISTENCE_ERROR,
  TIMESTAMP_IN_FUTURE,
  TIMESTAMP_TOO_OLD,
  TOPICKEY_MISSING,
} from './errors';
import {
  clientId,
  CMD_REMOVE_TOPIC,
  CMD_RESET_TOPICS,
  CMD_SET_ID_KEY,
  CMD_SET_TOPIC_KEY,
  controlTopic,
  HASH_LEN,
  HEADER_LEN,
  ID_LEN,
  KEY_LEN,
  protectMessage,
  TAG_LEN,
  TIMESTAMP_LEN,
  topicHash,
} from './protocol';
import { applyChanges, cloneState, findTopic, wipeState } from './state';
import { encodeE41P } from './storage/e41p';
import { memoryStore } from './storage/memory-store';
import { timeKeeper } from './time';

/** Bytes, or their lowercase/uppercase hex. */
export type BytesLike = Uint8Array | string;

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

export interface Options {
  /** Accepted clock skew either way, in seconds (±600 inclusive by default). */
  maxDelay?: number;
  /** Skip the timestamp window for every message (per message: flag 1 of unprotect). */
  ignoreTimestamp?: boolean;
  /** Grace period of a previous topic key after a rotation, in seconds; 0 disables. */
  keyTransition?: number;
  /** Once a command was accepted, reject commands timestamped before it (MESSAGE_REPLAYED). */
  rejectOldCommands?: boolean;
  /** Take the timestamp of each accepted command as the time now (see time.ts). */
  calibrate?: boolean;
  /** How many recently accepted messages (topic and tag) are remembered to reject exact
   * duplicates; 0 disables. */
  replayCache?: number;
  /** Size of the topic-key table. */
  maxTopics?: number;
  /** How many run-time topic names are kept hashed (provisioned names are always kept). */
  topicNameCache?: number;
}

/** unprotect() flag: skip the timestamp window for this message (libe4's option bit 0x01). */
export var IGNORE_TIMESTAMP = 1;

export interface Client {
  /** 16-byte client id. */
  readonly id: Uint8Array;
  /** "e4/" + hex(id): commands from C2 arrive here. */
  readonly controlTopic: string;
  /** Protects `payload` (bytes, or a string sent as UTF-8) for `topic` with its key and the
   * device's time estimate. */
  protect(topic: string, payload: Uint8Array | string): Uint8Array;
  /** Authenticates and decrypts `message` received on `topic`. Returns the plaintext of a data
   * message, or null when it was a C2 command that ran (E4_RESULT_OK_CONTROL). Throws E4Error. */
  unprotect(topic: string, message: Uint8Array, flags?: number): Uint8Array | null;
  /** The 16-byte hash of a topic (cached). */
  topicHash(topic: string): Uint8Array;
  /** True when a key is held for the topic (or it is the control topic). */
  hasTopic(topic: string): boolean;
  /** Factory provisioning without C2: add or replace a topic key (no key transition). */
  setTopicKey(topic: BytesLike, key: BytesLike): void;
  /** Factory provisioning: remove a topic key; TOPICKEY_MISSING when none is held. */
  removeTopic(topic: BytesLike): void;
  resetTopics(): void;
  setClientKey(key: BytesLike): void;
  /** A copy of the whole state, keys included (provisioning and tests only). */
  snapshot(): StoredState;
  /** libe4's E41P image of id, client key and topic keys. */
  exportE41P(): Uint8Array;
  /** The time estimate: `now` (-1 when none), and the timestamp protect() would use. */
  time(): { now: number; stamp: number; lastCommand: number };
  /** Wipes every key from memory; the client is unusable afterwards. */
  close(): void;
}

function bytesOf(b: BytesLike, len: number, what: string): Uint8Array {
  return checkBytes(typeof b === 'string' ? fromHex(b) : b, len, what);
}

function optionNumber(o: Options, name: keyof Options, dflt: number): number {
  var v = o[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || v < 0 || v !== Math.floor(v)) throw new E4Error(PARAMETER_INVALID, 'option ' + name + ' must be a whole number >= 0');
  return v;
}

/**
 * Loads the stored state, or provisions the store from `device` when it is empty. Topic names in
 * `device` are handed to `learnName` (with their hash when given) whether or not the store was
 * empty: they are configuration, not state. The provisioning copies of keys are wiped here, so
 * that no key outlives its replacement in the client's memory.
 */
function openState(
  store: Store,
  vault: Vault,
  device: DeviceConfig | null | undefined,
  maxTopics: number,
  commit: (changes: Change[]) => void,
  learnName: (topic: string, hash: Uint8Array | null) => Uint8Array,
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
  try {
    for (var i = 0; i < configTopics.length; i++) {
      var t = configTopics[i];
      var h: Uint8Array;
      if (t.hash !== undefined) h = bytesOf(t.hash, HASH_LEN, 'topic hash');
      else if (typeof t.topic !== 'string') throw new E4Error(PARAMETER_INVALID, 'topic entry needs a topic or a hash');
      if (typeof t.topic === 'string') h = learnName(t.topic, t.hash !== undefined ? h! : null);
      if (t.key === undefined || t.key === null) {
        if (typeof t.topic !== 'string') throw new E4Error(PARAMETER_INVALID, 'topic entry needs a key or a topic name');
        continue;
      }
      if (!loaded) changes.push({ op: 'topic', topic: { hash: h!, key: copyBytes(bytesOf(t.key, KEY_LEN, 'topic key')), prevKey: null, prevSince: -1 } });
    }
    if (loaded) return loaded;
    if (!device) throw new E4Error(PARAMETER_INVALID, 'the store is empty: a device configuration is needed');
    var id: Uint8Array;
    if (device.id !== undefined) id = bytesOf(device.id, ID_LEN, 'client id');
    else if (typeof device.name === 'string') id = clientId(vault, device.name);
    else throw new E4Error(PARAMETER_INVALID, 'device needs an id or a name');
    if (changes.length > maxTopics) throw new E4Error(PARAMETER_INVALID, 'more topics than maxTopics');
    changes.unshift({ op: 'provision', id: id, key: copyBytes(bytesOf(device.key, KEY_LEN, 'client key')) });
    commit(changes);
    return applyChanges(null, changes);
  } finally {
    for (var j = 0; j < changes.length; j++) {
      var c = changes[j];
      if (c.op === 'topic') wipe(c.topic.key);
      if (c.op === 'provision') wipe(c.key);
    }
  }
}

/** True when the `i`th tag of a row of tags is `tag` (tags are public: no constant time needed). */
function tagAt(tags: Uint8Array, i: number, tag: Uint8Array): boolean {
  for (var k = 0; k < TAG_LEN; k++) if (tags[i * TAG_LEN + k] !== tag[k]) return false;
  return true;
}

/** How many tags of commands sharing the last command's second are kept durably. */
var LAST_TAGS_KEPT = 8;

/**
 * Opens the device: loads the stored state, or provisions it from `device` when the store is
 * empty. Throws E4Error (PARAMETER_INVALID, PERSISTENCE_ERROR, PERSISTENCE_INCOMPATIBLE).
 */
export function create(hal: Hal, device?: DeviceConfig | null, options?: Options | null): Client {
  if (!hal || !hal.vault || typeof hal.vault.seal !== 'function' || typeof hal.vault.open !== 'function') {
    throw new E4Error(PARAMETER_INVALID, 'hal.vault with seal/open is required');
  }
  var vault: Vault = hal.vault;
  var store: Store = hal.store || memoryStore();
  var log: Log = hal.log || function () {};
  var o: Options = options || {};
  var maxDelay = optionNumber(o, 'maxDelay', 600);
  var keyTransition = optionNumber(o, 'keyTransition', 3600);
  var replaySize = optionNumber(o, 'replayCache', 16);
  var maxTopics = optionNumber(o, 'maxTopics', 32);
  var nameCacheSize = optionNumber(o, 'topicNameCache', 16);
  var ignoreAll = !!o.ignoreTimestamp;
  var rejectOld = o.rejectOldCommands !== false;
  var calibrateOn = o.calibrate !== false;

  // Topic name -> hash. Keys are prefixed so that no topic name can collide with Object.prototype.
  var provisionedNames: { [k: string]: Uint8Array } = {};
  var learnedNames: { [k: string]: Uint8Array } = {};
  var learnedCount = 0;

  function hashOf(topic: string, required: boolean): Uint8Array | null {
    var k = '$' + topic;
    var h = provisionedNames[k] || learnedNames[k];
    if (h) return h;
    if (!vault.sha3) {
      if (required) throw new E4Error(PARAMETER_INVALID, 'no SHA3-256 on this device: provision the topic hash');
      return null;
    }
    h = topicHash(vault, topic);
    // Bounded: a wildcard subscription must not let the network grow the cache without limit.
    if (learnedCount >= nameCacheSize) {
      learnedNames = {};
      learnedCount = 0;
    }
    if (nameCacheSize > 0) {
      learnedNames[k] = h;
      learnedCount++;
    }
    return h;
  }

  function storeCommit(changes: Change[]): void {
    try {
      store.commit(changes);
    } catch (e) {
      log('error', 'store commit failed: ' + (isE4Error(e) ? e.result : 'I/O error'));
      throw new E4Error(PERSISTENCE_ERROR, 'state not stored; nothing changed');
    }
  }

  // --- load or provision ---------------------------------------------------------------
  var state = openState(store, vault, device, maxTopics, storeCommit, function (topic, hash) {
    provisionedNames['$' + topic] = hash || (hashOf(topic, true) as Uint8Array);
    return provisionedNames['$' + topic];
  });
  // Nothing of the provisioning data stays reachable from this closure (keys included).
  device = null;
  // A name of a topic held points at the state's copy of its hash: one array per hash in RAM.
  // (Hashes are never changed in place: a record that changes is replaced.)
  for (var n in provisionedNames) {
    var held = findTopic(state, provisionedNames[n]);
    if (held >= 0) provisionedNames[n] = state.topics[held].hash;
  }
  var ctrlTopic = controlTopic(state.id);
  var time = timeKeeper(hal.clock, state.lastCommand);

  // --- duplicate cache: ring of (topic, tag) of recently accepted messages ---------------
  // The tag ring is allocated by the first message accepted (a board that only publishes never
  // holds it).
  var recentTags: Uint8Array | null = null;
  var recentTopics: string[] = [];
  var recentNext = 0;

  function remember(topic: string, tag: Uint8Array): void {
    if (!replaySize) return;
    if (!recentTags) recentTags = new Uint8Array(replaySize * TAG_LEN);
    recentTags.set(tag, recentNext * TAG_LEN);
    recentTopics[recentNext] = topic;
    recentNext = (recentNext + 1) % replaySize;
  }

  // --- receive rules ---------------------------------------------------------------------
  function previousKeyUsable(rec: TopicRecord): boolean {
    if (!rec.prevKey || !keyTransition) return false;
    if (rec.prevSince < 0) return true; // no notion of time at the rotation: until the next one
    var now = time.now();
    return now < 0 || now - rec.prevSince <= keyTransition;
  }

  /** docs/protocol.md, "Receiving" step 4; commands are held to it only with a trusted clock, the
   * command order rule protecting them otherwise. */
  function checkWindow(ts: number, isCommand: boolean, flags: number): void {
    if (ignoreAll || flags & IGNORE_TIMESTAMP) return;
    if (isCommand && !time.trusted()) return;
    var now = time.now();
    if (now < 0) return;
    if (ts > now + maxDelay) throw new E4Error(TIMESTAMP_IN_FUTURE);
    if (ts < now - maxDelay) throw new E4Error(TIMESTAMP_TOO_OLD);
  }

  function calibration(ts: number, tag: Uint8Array): Change | null {
    if (!rejectOld && !calibrateOn) return null;
    if (ts < state.lastCommand) return null;
    var tags: Uint8Array;
    if (ts === state.lastCommand) {
      var keep = Math.min(state.lastTags.length / TAG_LEN, LAST_TAGS_KEPT - 1);
      tags = new Uint8Array((keep + 1) * TAG_LEN);
      tags.set(state.lastTags.subarray(state.lastTags.length - keep * TAG_LEN));
      tags.set(tag, keep * TAG_LEN);
    } else tags = copyBytes(tag);
    return { op: 'calibrate', time: ts, tags: tags };
  }

  /** Parses and runs one command (docs/protocol.md, "Commands"); all-or-nothing. First the command
   * order rule: no command older than the last accepted one, nor a replay of one of its second. */
  function runCommand(cmd: Uint8Array, ts: number, tag: Uint8Array): void {
    if (rejectOld && state.lastCommand >= 0) {
      if (ts < state.lastCommand) throw new E4Error(MESSAGE_REPLAYED, 'command older than the last accepted one');
      if (ts === state.lastCommand) {
        for (var t = 0; t < state.lastTags.length / TAG_LEN; t++) if (tagAt(state.lastTags, t, tag)) throw new E4Error(MESSAGE_REPLAYED);
      }
    }
    var changes: Change[] = [];
    var code = cmd.length ? cmd[0] : -1;
    var len = cmd.length;
    var rotated: Uint8Array | null = null;
    if (code === CMD_REMOVE_TOPIC && len === 1 + HASH_LEN) {
      var rmHash = cmd.subarray(1);
      if (findTopic(state, rmHash) < 0) throw new E4Error(TOPICKEY_MISSING, 'RemoveTopic: no such topic');
      changes.push({ op: 'removeTopic', hash: copyBytes(rmHash) });
    } else if (code === CMD_RESET_TOPICS && len === 1) {
      changes.push({ op: 'resetTopics' });
    } else if (code === CMD_SET_ID_KEY && len === 1 + KEY_LEN) {
      changes.push({ op: 'clientKey', key: copyBytes(cmd.subarray(1)) });
    } else if (code === CMD_SET_TOPIC_KEY && len === 1 + KEY_LEN + HASH_LEN) {
      var key = cmd.subarray(1, 1 + KEY_LEN); // key first, then the hash
      var hash = cmd.subarray(1 + KEY_LEN);
      var at = findTopic(state, hash);
      if (at < 0) {
        if (state.topics.length >= maxTopics) throw new E4Error(TOPICKEY_MISSING, 'topic table full');
        changes.push({ op: 'topic', topic: { hash: copyBytes(hash), key: copyBytes(key), prevKey: null, prevSince: -1 } });
      } else if (!equalBytes(state.topics[at].key, key)) {
        var since = time.now();
        if (since < 0 && calibrateOn && hal.clock) since = ts; // this command calibrates a clock
        rotated = keyTransition ? copyBytes(state.topics[at].key) : null;
        changes.push({ op: 'topic', topic: { hash: copyBytes(hash), key: copyBytes(key), prevKey: rotated, prevSince: rotated ? since : -1 } });
      } // the same key again: no change (idempotent)
    } else {
      throw new E4Error(INVALID_COMMAND);
    }
    var cal = calibration(ts, tag);
    if (cal) changes.push(cal);
    if (changes.length) {
      try {
        storeCommit(changes);
        applyChanges(state, changes);
      } finally {
        for (var i = 0; i < changes.length; i++) {
          var c = changes[i];
          if (c.op === 'topic') wipe(c.topic.key);
          if (c.op === 'clientKey') wipe(c.key);
        }
        wipe(rotated);
      }
    }
    if (cal && calibrateOn) time.calibrate(ts);
    log('info', 'command 0x0' + code + ' applied');
  }

  function dropExpiredPreviousKey(rec: TopicRecord): void {
    var next: TopicRecord = { hash: rec.hash, key: rec.key, prevKey: null, prevSince: -1 };
    try {
      storeCommit([{ op: 'topic', topic: next }]);
      applyChanges(state, [{ op: 'topic', topic: next }]);
    } catch (e) {
      // Not fatal: an expired key is never used; the drop is retried on the next message.
    }
  }

  // Set by close(); checked by protect and unprotect.
  var closed = false;

  function unprotect(topic: string, message: Uint8Array, flags?: number): Uint8Array | null {
    if (closed) throw new E4Error(PARAMETER_INVALID, 'client closed');
    if (typeof topic !== 'string') throw new E4Error(PARAMETER_INVALID, 'topic must be a string');
    checkBytes(message, -1, 'message');
    // Step 1: length.
    if (message.length < HEADER_LEN) throw new E4Error(CIPHERTEXT_TOO_SHORT);
    // Step 2: key. The control topic first (as e4go), so no topic key can shadow it.
    var isCommand = topic === ctrlTopic;
    var rec: TopicRecord | null = null;
    if (!isCommand) {
      var h = hashOf(topic, false);
      var at = h ? findTopic(state, h) : -1;
      if (at < 0) throw new E4Error(TOPICKEY_MISSING);
      rec = state.topics[at];
    }
    // Step 3: authenticate and decrypt; the previous key only after the current one failed.
    var ad = message.subarray(0, TIMESTAMP_LEN);
    var sealed = message.subarray(TIMESTAMP_LEN);
    var plaintext = vault.open(rec ? rec.key : state.key, ad, sealed);
    if (!plaintext && rec && rec.prevKey) {
      if (previousKeyUsable(rec)) plaintext = vault.open(rec.prevKey, ad, sealed);
      else dropExpiredPreviousKey(rec);
    }
    if (!plaintext) throw new E4Error(INVALID_TAG);
    var tag = message.subarray(TIMESTAMP_LEN, HEADER_LEN);
    var ts = readU64LE(message, 0);
    try {
      // Step 4: the time window, only after authentication; then our replay rules.
      checkWindow(ts, isCommand, flags || 0);
      // An exact duplicate (same topic and tag) of a recently accepted message.
      for (var r = 0; replaySize && r < recentTopics.length; r++) {
        if (recentTopics[r] === topic && tagAt(recentTags as Uint8Array, r, tag)) throw new E4Error(MESSAGE_REPLAYED);
      }
      if (!isCommand) {
        remember(topic, tag);
        return plaintext;
      }
      runCommand(plaintext, ts, tag);
      remember(topic, tag);
    } catch (e) {
      wipe(plaintext); // nothing of a rejected message is kept
      throw e;
    }
    wipe(plaintext); // a command's plaintext holds keys
    return null;
  }

  function resolveHash(topic: BytesLike): Uint8Array {
    if (typeof topic === 'string' && topic.length !== 2 * HASH_LEN) return hashOf(topic, true) as Uint8Array;
    if (typeof topic === 'string') {
      // 32 characters: a hex hash if it parses, else a topic name.
      try {
        return fromHex(topic);
      } catch (e) {
        return hashOf(topic, true) as Uint8Array;
      }
    }
    return checkBytes(topic, HASH_LEN, 'topic hash');
  }

  function provisionCommit(changes: Change[]): void {
    storeCommit(changes);
    applyChanges(state, changes);
  }

  var client: Client = {
    id: copyBytes(state.id),
    controlTopic: ctrlTopic,
    protect: function (topic, payload) {
      if (closed) throw new E4Error(PARAMETER_INVALID, 'client closed');
      if (typeof topic !== 'string') throw new E4Error(PARAMETER_INVALID, 'topic must be a string');
      var data = toBytes(payload, 'payload');
      var h = hashOf(topic, false);
      var at = h ? findTopic(state, h) : -1;
      if (at < 0) throw new E4Error(TOPICKEY_MISSING);
      return protectMessage(vault, state.topics[at].key, time.stamp(), data);
    },
    unprotect: unprotect,
    topicHash: function (topic) {
      return copyBytes(hashOf(topic, true) as Uint8Array);
    },
    hasTopic: function (topic) {
      if (topic === ctrlTopic) return true;
      var h = hashOf(topic, false);
      return !!h && findTopic(state, h) >= 0;
    },
    setTopicKey: function (topic, key) {
      var hash = resolveHash(topic);
      var k = bytesOf(key, KEY_LEN, 'topic key');
      if (findTopic(state, hash) < 0 && state.topics.length >= maxTopics) throw new E4Error(PARAMETER_INVALID, 'topic table full');
      if (typeof topic === 'string' && topic.length !== 2 * HASH_LEN) provisionedNames['$' + topic] = hash;
      provisionCommit([{ op: 'topic', topic: { hash: hash, key: k, prevKey: null, prevSince: -1 } }]);
    },
    removeTopic: function (topic) {
      var hash = resolveHash(topic);
      if (findTopic(state, hash) < 0) throw new E4Error(TOPICKEY_MISSING);
      provisionCommit([{ op: 'removeTopic', hash: hash }]);
    },
    resetTopics: function () {
      provisionCommit([{ op: 'resetTopics' }]);
    },
    setClientKey: function (key) {
      provisionCommit([{ op: 'clientKey', key: bytesOf(key, KEY_LEN, 'client key') }]);
    },
    snapshot: function () {
      return cloneState(state);
    },
    exportE41P: function () {
      return encodeE41P(state);
    },
    time: function () {
      return { now: time.now(), stamp: time.stamp(), lastCommand: state.lastCommand };
    },
    close: function () {
      wipeState(state);
      closed = true;
    },
  };
  return client;
}
