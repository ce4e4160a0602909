/**
 * The E4 symmetric-key client: one device identity, its topic keys, and the receive rules of
 * docs/protocol.md ("Receiving", "Commands", "Time, without trusting the device's clock", "Key
 * transition"), with durable state through the HAL store. The client holds the state and runs the
 * steps in order; each rule is its own module: the time window and freshness floor
 * (freshness.ts), the replay window (replay.ts), the command order rule (command-order.ts), the
 * command interpreter (commands.ts), key transition (key-transition.ts), the device's time
 * (time.ts); provisioning is provisioning.ts.
 */
import type { Change, Hal, Log, Store, StoredState, TopicRecord, Vault } from './hal';
import { checkBytes, copyBytes, readU64LE, toBytes, wipe } from './bytes';
import {
  CIPHERTEXT_TOO_SHORT,
  E4Error,
  INVALID_TAG,
  isE4Error,
  MESSAGE_REPLAYED,
  orInternal,
  PARAMETER_INVALID,
  PERSISTENCE_ERROR,
  TOPICKEY_MISSING,
} from './errors';
import { controlTopic, HEADER_LEN, KEY_LEN, protectMessage, TIMESTAMP_LEN, topicHash } from './protocol';
import { commandChanges } from './commands';
import { commandOrder } from './command-order';
import { checkTimestamp } from './freshness';
import { expiredKeyChange } from './key-transition';
import { bytesOf, openState, resolveHash } from './provisioning';
import type { BytesLike, DeviceConfig, TopicRef } from './provisioning';
import { replayCheck, replayFloor, replayWindow } from './replay';
import { applyChanges, cloneState, findTopic, wipeChanges, wipeState } from './state';
import { encodeE41P } from './storage/e41p';
import { memoryStore } from './storage/memory-store';
import { timeKeeper } from './time';

export type { BytesLike, DeviceConfig, TopicRef } from './provisioning';

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

function optionNumber(o: Options | null | undefined, name: keyof Options, dflt: number): number {
  var v = o ? o[name] : undefined;
  if (v === undefined) return dflt;
  if (!((v as number) >= 0 && v === Math.floor(v as number)))
    throw new E4Error(PARAMETER_INVALID, 'option ' + name + ' must be a whole number >= 0');
  return v;
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
  // (No variable for `options || {}`: every variable of this scope costs RAM on Espruino for as
  // long as the client lives.)
  var maxDelay = optionNumber(options, 'maxDelay', 600);
  var keyTransition = optionNumber(options, 'keyTransition', 3600);
  var replaySize = optionNumber(options, 'replayCache', 16);
  var distinctLead = optionNumber(options, 'distinctStamps', 60);
  var maxTopics = optionNumber(options, 'maxTopics', 32);
  var nameCacheSize = optionNumber(options, 'topicNameCache', 16);
  var ignoreAll = !!(options && options.ignoreTimestamp);
  var rejectOld = !options || options.rejectOldCommands !== false;
  var calibrateOn = !options || options.calibrate !== false;

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

  // Unset while openState runs (declared first: Espruino does not hoist var).
  var state!: StoredState;

  /** Stores `changes` (all-or-nothing), then applies them to the state once there is one. */
  function commit(changes: Change[]): void {
    try {
      store.commit(changes);
    } catch (e) {
      log('error', 'store commit failed: ' + (isE4Error(e) ? e.result : 'I/O error'));
      throw new E4Error(PERSISTENCE_ERROR, 'state not stored; nothing changed');
    }
    if (state) applyChanges(state, changes);
  }

  // --- load or provision ---------------------------------------------------------------
  state = openState(store, vault, device, maxTopics, commit, provisionedNames, hashOf);
  // Nothing of the provisioning data stays reachable from this closure (keys included).
  device = null;
  var ctrlTopic = controlTopic(state.id);
  var time = timeKeeper(hal.clock, state.lastCommand);
  // A command calibrates a clock (see runCommand); without one, time.now() stays -1.
  var calibrateClock = calibrateOn && !!hal.clock;
  // Nor is the hal object kept: what it holds is in vault, store, log and time.
  hal = null!;

  // The replay window of received messages and the sender's window of protected ones
  // (replay.ts), each allocated when first needed (a board that only publishes never holds the
  // first).
  var received: Float64Array | null = null;
  var sent: Float64Array | null = null;

  // --- receive rules ---------------------------------------------------------------------
  // Each rule is its own module (see the top of this file); here they run in order. (Few
  // closures: on Espruino every closure of a client costs RAM for as long as it lives.)

  /** Runs one authenticated command (docs/protocol.md, "Commands"); all-or-nothing: the command
   * order rule, the interpreter's changes and the calibration (this command's time and tag),
   * committed together. */
  function runCommand(cmd: Uint8Array, ts: number, tag: Uint8Array): void {
    var cal = rejectOld || calibrateOn ? commandOrder(state, ts, tag, rejectOld) : null;
    var since = time.now();
    if (since < 0 && calibrateClock) since = ts; // this command calibrates a clock
    var changes = commandChanges(state, cmd, since, maxTopics, keyTransition);
    if (cal) changes.push(cal);
    if (changes.length) {
      try {
        commit(changes);
      } finally {
        wipeChanges(changes);
      }
    }
    if (cal && calibrateOn) time.calibrate(ts);
    log('info', 'command 0x0' + cmd[0] + ' applied');
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
      // The previous key while its grace period lasts (key-transition.ts); an expired one is dropped.
      var drop = expiredKeyChange(rec, time.now(), keyTransition);
      if (!drop) return vault.sivDecrypt(rec.prevKey, ad, ciphertext);
      try {
        commit([drop]);
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
      // Step 4 (docs/protocol.md, "Receiving"): the time window, only after authentication;
      // commands are held to it only with a trusted clock, the command order rule protecting
      // them otherwise. Without one, data also gets the freshness floor (freshness.ts): what
      // holds with no clock, or before the first calibration of a boot (once calibrated, the
      // estimate is at least the last command's time, so the window implies it). Then our replay
      // rules.
      var trusted = time.trusted();
      if (!skipTime && (trusted || !isCommand)) checkTimestamp(ts, time.now(), trusted, state.lastCommand, maxDelay);
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
      var hash = resolveHash(topic, hashOf);
      var k = bytesOf(key, KEY_LEN, 'topic key');
      if (findTopic(state, hash) < 0 && state.topics.length >= maxTopics) throw new E4Error(PARAMETER_INVALID, 'topic table full');
      if (typeof topic === 'string') provisionedNames['$' + topic] = hash;
      commit([{ op: 'topic', topic: { hash: hash, key: k, prevKey: null, prevSince: -1 } }]);
    },
    removeTopic: function (topic) {
      var hash = resolveHash(topic, hashOf);
      if (findTopic(state, hash) < 0) throw new E4Error(TOPICKEY_MISSING);
      commit([{ op: 'removeTopic', hash: hash }]);
    },
    resetTopics: function () {
      commit([{ op: 'resetTopics' }]);
    },
    setClientKey: function (key) {
      commit([{ op: 'clientKey', key: bytesOf(key, KEY_LEN, 'client key') }]);
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
