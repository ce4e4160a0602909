/**
 * E4 symmetric-key wire formats (docs/protocol.md): identifiers, the protected message, and the
 * four C2 commands. Stateless: the client (client.ts) adds keys, time and replay rules on top;
 * host tools (C2, proxy) use these directly.
 */
import type { Vault } from './hal';
import { checkBytes, concatBytes, readU64LE, toHex, utf8, writeU64LE } from './bytes';
import { CIPHERTEXT_TOO_SHORT, E4Error, INVALID_TAG, PARAMETER_INVALID } from './errors';

export var ID_LEN = 16;
export var KEY_LEN = 32;
export var HASH_LEN = 16;
export var TIMESTAMP_LEN = 8;
export var TAG_LEN = 16;
/** timestamp (8) | tag (16) */
export var HEADER_LEN = 24;

/** Topic hash = first 16 bytes of SHA3-256(UTF-8 topic). */
export function topicHash(vault: Vault, topic: string): Uint8Array {
  if (!vault.sha3) throw new E4Error(PARAMETER_INVALID, 'this vault has no SHA3-256: provision topic hashes');
  return vault.sha3(utf8(topic)).subarray(0, HASH_LEN);
}

/** Client id = first 16 bytes of SHA3-256(UTF-8 name): the topic hash derivation (ID_LEN is HASH_LEN). */
export function clientId(vault: Vault, name: string): Uint8Array {
  return topicHash(vault, name);
}

/** "e4/" + lowercase hex of the id (35 characters). The prefix is a literal, not a module
 * variable: a variable costs RAM on Espruino. */
export function controlTopic(id: Uint8Array): string {
  return 'e4/' + toHex(checkBytes(id, ID_LEN, 'client id'));
}

/** timestamp (8, LE) | AES-SIV(key|key, AD = timestamp bytes, payload). */
export function protectMessage(vault: Vault, key: Uint8Array, timestamp: number, payload: Uint8Array): Uint8Array {
  checkBytes(key, KEY_LEN, 'key');
  checkBytes(payload, -1, 'payload');
  if (typeof timestamp !== 'number' || timestamp < 0 || timestamp !== Math.floor(timestamp) || timestamp > 9007199254740991) {
    throw new E4Error(PARAMETER_INVALID, 'timestamp must be a whole number of seconds');
  }
  var ts = new Uint8Array(TIMESTAMP_LEN);
  writeU64LE(ts, 0, timestamp);
  return concatBytes(ts, vault.sivEncrypt(key, ts, payload));
}

/** Authenticates and decrypts one message under one key, without any time or replay rule: the
 * stateless unprotect (the client's unprotect adds the receive rules). */
export function unprotectMessage(vault: Vault, key: Uint8Array, message: Uint8Array): { timestamp: number; plaintext: Uint8Array } {
  checkBytes(key, KEY_LEN, 'key');
  checkBytes(message, -1, 'message');
  if (message.length < HEADER_LEN) throw new E4Error(CIPHERTEXT_TOO_SHORT);
  var plaintext = vault.sivDecrypt(key, message.subarray(0, TIMESTAMP_LEN), message.subarray(TIMESTAMP_LEN));
  if (!plaintext) throw new E4Error(INVALID_TAG);
  return { timestamp: readU64LE(message, 0), plaintext: plaintext };
}

/** Command codes (byte 0 of a control message's plaintext). 0x04-0x07 are public-key mode. */
export var CMD_REMOVE_TOPIC = 0x00;
export var CMD_RESET_TOPICS = 0x01;
export var CMD_SET_ID_KEY = 0x02;
export var CMD_SET_TOPIC_KEY = 0x03;

/** Encoders of the four SK commands, for C2s and tests. */
export var commands = {
  /** `00 | topicHash (16)` */
  removeTopic: function (hash: Uint8Array): Uint8Array {
    return concatBytes(new Uint8Array([CMD_REMOVE_TOPIC]), checkBytes(hash, HASH_LEN, 'topic hash'));
  },
  /** `01` */
  resetTopics: function (): Uint8Array {
    return new Uint8Array([CMD_RESET_TOPICS]);
  },
  /** `02 | key (32)` */
  setIdKey: function (key: Uint8Array): Uint8Array {
    return concatBytes(new Uint8Array([CMD_SET_ID_KEY]), checkBytes(key, KEY_LEN, 'key'));
  },
  /** `03 | key (32) | topicHash (16)`: key first. */
  setTopicKey: function (key: Uint8Array, hash: Uint8Array): Uint8Array {
    var out = new Uint8Array(1 + KEY_LEN + HASH_LEN);
    out[0] = CMD_SET_TOPIC_KEY;
    out.set(checkBytes(key, KEY_LEN, 'key'), 1);
    out.set(checkBytes(hash, HASH_LEN, 'topic hash'), 1 + KEY_LEN);
    return out;
  },
};
