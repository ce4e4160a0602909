/**
 * The device state and the one function that changes it. The client applies a commit to its
 * memory with applyChanges once the store has made it durable; every store replays what it has
 * recorded through the same function, so memory and medium cannot disagree on what a change means.
 */
import type { Change, StoredState, TopicRecord } from './hal';
import { copyBytes, equalBytes, wipe } from './bytes';
import { E4Error, PERSISTENCE_INCOMPATIBLE } from './errors';

/** Index of the topic with this 16-byte hash, or -1. */
export function findTopic(state: StoredState, hash: Uint8Array): number {
  for (var i = 0; i < state.topics.length; i++) if (equalBytes(state.topics[i].hash, hash)) return i;
  return -1;
}

export function copyTopic(t: TopicRecord): TopicRecord {
  return { hash: copyBytes(t.hash), key: copyBytes(t.key), prevKey: t.prevKey ? copyBytes(t.prevKey) : null, prevSince: t.prevSince };
}

export function cloneState(s: StoredState): StoredState {
  var topics: TopicRecord[] = [];
  for (var i = 0; i < s.topics.length; i++) topics.push(copyTopic(s.topics[i]));
  return { id: copyBytes(s.id), key: copyBytes(s.key), topics: topics, lastCommand: s.lastCommand, lastTags: copyBytes(s.lastTags) };
}

function wipeTopic(t: TopicRecord): void {
  wipe(t.key);
  wipe(t.prevKey);
}

/** Wipes every key a state holds (when it is dropped). */
export function wipeState(s: StoredState | null): void {
  if (!s) return;
  wipe(s.key);
  for (var i = 0; i < s.topics.length; i++) wipeTopic(s.topics[i]);
}

/** Wipes the keys that `changes` carry (once committed and applied: the state holds copies). */
export function wipeChanges(changes: Change[]): void {
  for (var i = 0; i < changes.length; i++) {
    var c = changes[i];
    if (c.op === 'topic') wipeTopic(c.topic);
    if (c.op === 'clientKey' || c.op === 'provision') wipe(c.key);
  }
}

/**
 * Applies `changes` to `state` in place and returns it (a `provision` change may start from null).
 * Keys are copied in; keys removed or replaced are wiped. Throws PERSISTENCE_INCOMPATIBLE for a
 * change that cannot apply (a store replaying a record of an unknown kind).
 */
export function applyChanges(state: StoredState | null, changes: Change[]): StoredState {
  for (var i = 0; i < changes.length; i++) {
    var c = changes[i];
    if (c.op === 'provision') {
      wipeState(state);
      state = { id: copyBytes(c.id), key: copyBytes(c.key), topics: [], lastCommand: -1, lastTags: new Uint8Array(0) };
      continue;
    }
    if (!state) throw new E4Error(PERSISTENCE_INCOMPATIBLE, 'change before provisioning');
    if (c.op === 'clientKey') {
      wipe(state.key);
      state.key = copyBytes(c.key);
    } else if (c.op === 'topic') {
      var at = findTopic(state, c.topic.hash);
      // Replacing keeps the entry's position; a new topic is appended (the reference's order).
      // Copy before wiping: the new record may carry the old key as its previous key.
      var rec = copyTopic(c.topic);
      if (at >= 0) {
        wipeTopic(state.topics[at]);
        state.topics[at] = rec;
      } else state.topics.push(rec);
    } else if (c.op === 'removeTopic') {
      var gone = findTopic(state, c.hash);
      if (gone >= 0) {
        wipeTopic(state.topics[gone]);
        state.topics.splice(gone, 1);
      }
    } else if (c.op === 'resetTopics') {
      for (var j = 0; j < state.topics.length; j++) wipeTopic(state.topics[j]);
      state.topics = [];
    } else if (c.op === 'calibrate') {
      state.lastCommand = c.time;
      state.lastTags = copyBytes(c.tags);
    } else {
      throw new E4Error(PERSISTENCE_INCOMPATIBLE, 'unknown change');
    }
  }
  if (!state) throw new E4Error(PERSISTENCE_INCOMPATIBLE, 'empty commit');
  return state;
}
