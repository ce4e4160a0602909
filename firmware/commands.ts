/**
 * The command interpreter (docs/protocol.md, "Commands"): what a C2 command asks of the state,
 * as changes, without applying anything. Pure: the state is only read, the changes hold copies of
 * the command's bytes (the caller commits, applies and wipes them). The command order rule and
 * the calibration are command-order.ts; authentication is the caller's.
 */
import type { Change, StoredState } from './hal';
import { copyBytes, equalBytes } from './bytes';
import { E4Error, INVALID_COMMAND, TOPICKEY_MISSING } from './errors';
import { CMD_REMOVE_TOPIC, CMD_RESET_TOPICS, CMD_SET_ID_KEY, CMD_SET_TOPIC_KEY, HASH_LEN, KEY_LEN } from './protocol';
import { findTopic } from './state';

/**
 * The changes the command `cmd` (its plaintext: code byte, then arguments) makes to `state`.
 * `since`: the time a rotated key's grace period starts from (-1: unknown); `keyTransition`: 0
 * when a rotation keeps no previous key. Throws INVALID_COMMAND (unknown code or wrong length),
 * TOPICKEY_MISSING (RemoveTopic of a topic not held; SetTopicKey of a new topic when the table
 * holds `maxTopics`). A SetTopicKey with the key already held changes nothing: an empty list.
 */
export function commandChanges(state: StoredState, cmd: Uint8Array, since: number, maxTopics: number, keyTransition: number): Change[] {
  var code = cmd[0]; // undefined when empty: no command
  var len = cmd.length;
  if (code === CMD_REMOVE_TOPIC && len === 1 + HASH_LEN) {
    if (findTopic(state, cmd.subarray(1)) < 0) throw new E4Error(TOPICKEY_MISSING, 'RemoveTopic: no such topic');
    return [{ op: 'removeTopic', hash: copyBytes(cmd.subarray(1)) }];
  }
  if (code === CMD_RESET_TOPICS && len === 1) return [{ op: 'resetTopics' }];
  if (code === CMD_SET_ID_KEY && len === 1 + KEY_LEN) return [{ op: 'clientKey', key: copyBytes(cmd.subarray(1)) }];
  if (code !== CMD_SET_TOPIC_KEY || len !== 1 + KEY_LEN + HASH_LEN) throw new E4Error(INVALID_COMMAND);
  var key = cmd.subarray(1, 1 + KEY_LEN); // key first, then the hash
  var hash = cmd.subarray(1 + KEY_LEN);
  var at = findTopic(state, hash);
  if (at < 0 && state.topics.length >= maxTopics) throw new E4Error(TOPICKEY_MISSING, 'topic table full');
  // The same key again is no change (idempotent).
  if (at >= 0 && equalBytes(state.topics[at].key, key)) return [];
  var prev = at >= 0 && keyTransition ? copyBytes(state.topics[at].key) : null;
  return [{ op: 'topic', topic: { hash: copyBytes(hash), key: copyBytes(key), prevKey: prev, prevSince: prev ? since : -1 } }];
}
