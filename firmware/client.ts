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
  orInternal,
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
import { checkFreshness } from './freshness';
import { replayCheck, replayFloor, replayWindow } from './replay';
import { applyChanges, cloneState, findTopic, wipeState } from './state';
import { encodeE41P } from './storage/e41p';
import { memoryStore } from './storage/memory-store';
import { timeKeeper } from './time';

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
  /** Size of the replay window (replay.ts): how many accepted messages are remembered, 16 bytes
   * each; 0 disables the window. protect()'s window (distinctStamps) has the same size (16 when
   * this is 0). */
  replayCache?: number;
  /** protect() never emits the same bytes twice: when the same topic and payload were already
   * protected at a timestamp (or its window cannot vouch that they were not), it stamps the next
   * second, at most this many seconds ahead of the device's time estimate, then refuses
   * (MESSAGE_REPLAYED); keep it within receivers' maxDelay. 0 disables (the reference). */
  distinctStamps?: number;
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
  setTopicKey(topic: TopicRef, key: BytesLike): void;
  /** Factory provisioning: remove a topic key; TOPICKEY_MISSING when none is held. */
  removeTopic(topic: TopicRef): void;
  resetTopics(): void;
  setClientKey(key: BytesLike): void;
  /** A copy of the whole state, keys included (provisioning and tests only). */
  snapshot(): StoredState;
  /** libe4's E41P image of id, client key and topic keys. */
  exportE41P(): Uint8Array;
  /** The time estimate: `now` (-1 when none), the timestamp protect() starts from, and the
   * last command's time. */
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
  if (!((v as number) >= 0 && v === Math.floor(v as number))) throw new E4Error(PARAMETER_INVALID, 'option ' + name + ' must be a whole number >= 0');
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

/**
 * Opens the device: loads the stored state, or provisions it from `device` when the store is
 * empty. Throws E4Error (PARAMETER_INVALID, PERSISTENCE_ERROR, PERSISTENCE_INCOMPATIBLE).
 */
export function create(hal: Hal, device?: DeviceConfig | null, options?: Options | null): Client {
  if (!hal || !hal.vault || typeof hal.vault.sivEncrypt !== 'function' || typeof hal.vault.sivDecrypt !== 'function') {
    throw new E4Error(PARAMETER_INVALID, 'hal.vault with sivEncrypt/sivDecrypt is required');
  }
  var vault: Vault = hal.vault;
  var store: Store = hal.store || memoryStore();
  var log: Log = hal.log || function () {};
  var o: Options = options || {};
  var maxDelay = optionNumber(o, 'maxDelay', 600);
  var keyTransition = optionNumber(o, 'keyTransition', 3600);
  var replaySize = optionNumber(o, 'replayCache', 16);
  var distinctLead = optionNumber(o, 'distinctStamps', 60);
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
    h = orInternal(function () {
      return topicHash(vault, topic); // a SHA-3 that fails is INTERNAL, as the vault's AES
    });
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

  // The replay window of received messages and the sender's window of protected ones
  // (replay.ts), each allocated when first needed (a board that only publishes never holds the
  // first).
  var received: Float64Array | null = null;
  var sent: Float64Array | null = null;

  // --- receive rules ---------------------------------------------------------------------
  // (Rules used once are inline in runCommand and unprotect: on Espruino every closure of a
  // client costs RAM for as long as it lives.)

  /** Parses and runs one command (docs/protocol.md, "Commands"); all-or-nothing. First the command
   * order rule: no command older than the last accepted one, nor a replay of one of its second. */
  function runCommand(cmd: Uint8Array, ts: number, tag: Uint8Array): void {
    if (rejectOld && state.lastCommand >= 0) {
      if (ts < state.lastCommand) throw new E4Error(MESSAGE_REPLAYED, 'older than the last command');
      if (ts === state.lastCommand) {
        for (var t = 0; t < state.lastTags.length; t += TAG_LEN) if (equalBytes(state.lastTags.subarray(t, t + TAG_LEN), tag)) throw new E4Error(MESSAGE_REPLAYED);
      }
    }
    var changes: Change[] = [];
    var code = cmd[0]; // undefined when empty: no command
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
      if (at < 0 && state.topics.length >= maxTopics) throw new E4Error(TOPICKEY_MISSING, 'topic table full');
      // A new topic, or a new key (the same key again is no change: idempotent).
      if (at < 0 || !equalBytes(state.topics[at].key, key)) {
        var since = time.now();
        if (since < 0 && calibrateOn && hal.clock) since = ts; // this command calibrates a clock
        if (at >= 0 && keyTransition) rotated = copyBytes(state.topics[at].key);
        changes.push({ op: 'topic', topic: { hash: copyBytes(hash), key: copyBytes(key), prevKey: rotated, prevSince: rotated ? since : -1 } });
      }
    } else {
      throw new E4Error(INVALID_COMMAND);
    }
    // The calibration: this command's time and the tags of the commands of its second, stored.
    var cal: Change | null = null;
    if ((rejectOld || calibrateOn) && ts >= state.lastCommand) {
      var tags: Uint8Array;
      if (ts === state.lastCommand) {
        // Up to 8 tags of commands sharing the last command's second are kept durably.
        var keep = Math.min(state.lastTags.length / TAG_LEN, 7);
        tags = new Uint8Array((keep + 1) * TAG_LEN);
        tags.set(state.lastTags.subarray(state.lastTags.length - keep * TAG_LEN));
        tags.set(tag, keep * TAG_LEN);
      } else tags = copyBytes(tag);
      changes.push((cal = { op: 'calibrate', time: ts, tags: tags }));
    }
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

  function provisionCommit(changes: Change[]): void {
    storeCommit(changes);
    applyChanges(state, changes);
  }

  // Set by close(); checked by protect and unprotect.
  var closed = false;

  /** The record of the key for `topic` (null for the control topic when `control`), after the
   * checks protect and unprotect share; TOPICKEY_MISSING when no key is held. */
  function recordOf(topic: string, control?: boolean): TopicRecord | null {
    if (closed) throw new E4Error(PARAMETER_INVALID, 'client closed');
    if (typeof topic !== 'string') throw new E4Error(PARAMETER_INVALID, 'topic must be a string');
    if (control && topic === ctrlTopic) return null;
    var h = hashOf(topic, false);
    var at = h ? findTopic(state, h) : -1;
    if (at < 0) throw new E4Error(TOPICKEY_MISSING);
    return state.topics[at];
  }

  function unprotect(topic: string, message: Uint8Array, flags?: number): Uint8Array | null {
    checkBytes(message, -1, 'message');
    // Step 1: length.
    if (message.length < HEADER_LEN) throw new E4Error(CIPHERTEXT_TOO_SHORT);
    // Step 2: key. The control topic first (as e4go), so no topic key can shadow it.
    var rec = recordOf(topic, true);
    var isCommand = !rec;
    // Step 3: authenticate and decrypt; the previous key only after the current one failed.
    var ad = message.subarray(0, TIMESTAMP_LEN);
    var ciphertext = message.subarray(TIMESTAMP_LEN);
    // Null from the vault means "not authentic"; anything it throws is INTERNAL (orInternal).
    var plaintext = orInternal(function () {
      var p = vault.sivDecrypt(rec ? rec.key : state.key, ad, ciphertext);
      if (p || !rec || !rec.prevKey) return p;
      // The previous key, for keyTransition seconds after the rotation (until the next rotation
      // when the device had no notion of time then); an expired one is dropped.
      var now = time.now();
      if (keyTransition && (rec.prevSince < 0 || now < 0 || now - rec.prevSince <= keyTransition)) return vault.sivDecrypt(rec.prevKey, ad, ciphertext);
      try {
        provisionCommit([{ op: 'topic', topic: { hash: rec.hash, key: rec.key, prevKey: null, prevSince: -1 } }]);
      } catch (e) {
        // Not fatal: an expired key is never used; the drop is retried on the next message.
      }
      return null;
    });
    if (!plaintext) throw new E4Error(INVALID_TAG);
    var tag = message.subarray(TIMESTAMP_LEN, HEADER_LEN);
    var ts = readU64LE(message, 0);
    var skipTime = ignoreAll || (flags as number) & 1; // IGNORE_TIMESTAMP (undefined & 1 is 0)
    // Commands are held to the command order rule (stored, so it survives reboots) instead of
    // the replay window, unless that rule is off.
    var windowed = replaySize && (!isCommand || !rejectOld);
    try {
      // Step 4 (docs/protocol.md, "Receiving"): the time window, only after authentication; commands are held to it only with a
      // trusted clock, the command order rule protecting them otherwise. Without one, data also
      // gets the freshness floor (freshness.ts): what holds with no clock, or before the first
      // calibration of a boot (once calibrated, the estimate is at least the last command's
      // time, so the window implies it). Then our replay rules.
      var trusted = time.trusted();
      if (!skipTime && (trusted || !isCommand)) {
        if (!trusted) checkFreshness(ts, state.lastCommand, maxDelay);
        var now = time.now();
        if (now >= 0) {
          if (ts > now + maxDelay) throw new E4Error(TIMESTAMP_IN_FUTURE);
          if (ts < now - maxDelay) throw new E4Error(TIMESTAMP_TOO_OLD);
        }
      }
      if (windowed) {
        if (!received) received = replayWindow(replaySize);
        var seen = replayCheck(received, message);
        // Its floor is a timestamp rule: skipped with the window (exact duplicates are not).
        if (seen === MESSAGE_REPLAYED || (seen && !skipTime)) throw new E4Error(seen);
      }
      if (isCommand) runCommand(plaintext, ts, tag);
      if (windowed) replayCheck(received as Float64Array, message, true);
      if (!isCommand) return plaintext;
    } catch (e) {
      wipe(plaintext); // nothing of a rejected message is kept
      throw e;
    }
    wipe(plaintext); // a command's plaintext holds keys
    return null;
  }

  function resolveHash(topic: TopicRef): Uint8Array {
    if (typeof topic === 'string') return hashOf(topic, true) as Uint8Array;
    var h = topic && (topic as { hash: BytesLike }).hash;
    return h !== undefined ? bytesOf(h, HASH_LEN, 'topic hash') : checkBytes(topic as Uint8Array, HASH_LEN, 'topic hash');
  }

  var client: Client = {
    id: copyBytes(state.id),
    controlTopic: ctrlTopic,
    protect: function (topic, payload) {
      var key = (recordOf(topic) as TopicRecord).key;
      var data = toBytes(payload, 'payload');
      var ts = time.stamp();
      var last = ts + distinctLead;
      if (distinctLead && !sent) sent = replayWindow(replaySize || 16); // 16 when replayCache is 0
      // Distinct output: the first timestamp, within distinctStamps, at which the sender's window
      // vouches that this payload was not protected before (replay.ts): above its floor, and not
      // one it holds.
      if (sent && ts <= replayFloor(sent)) ts = replayFloor(sent) + 1;
      for (;;) {
        if (ts > last) throw new E4Error(MESSAGE_REPLAYED, 'no distinct timestamp');
        var out = orInternal(function () {
          return protectMessage(vault, key, ts, data);
        });
        if (!sent || !replayCheck(sent, out)) break;
        ts++;
      }
      if (sent) replayCheck(sent, out, true);
      return out;
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
      if (typeof topic === 'string') provisionedNames['$' + topic] = hash;
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
