/**
 * Key transition (docs/protocol.md, "Key transition"): after a rotation, the previous topic key
 * still opens messages for `keyTransition` seconds (until the next rotation when the device had
 * no notion of time at the rotation, or has none now). Tried only after the current key failed.
 */
import type { Change, TopicRecord } from './hal';

/** Null while `rec`'s previous key may still be tried at time `now` (-1: unknown); once its
 * grace period is over (or with `keyTransition` 0), the change that drops it. */
export function expiredKeyChange(rec: TopicRecord, now: number, keyTransition: number): Change | null {
  if (keyTransition && (rec.prevSince < 0 || now < 0 || now - rec.prevSince <= keyTransition)) return null;
  return { op: 'topic', topic: { hash: rec.hash, key: rec.key, prevKey: null, prevSince: -1 } };
}
