/**
 * The command order rule (docs/protocol.md, "Commands"): once a command was accepted, no command
 * stamped before it is, nor a replay of one accepted in its second. The state keeps the last
 * command's time and the tags of up to 8 commands of that second (stored: the rule survives
 * reboots, and the time calibrates clocks, time.ts).
 */
import type { Change, StoredState } from './hal';
import { copyBytes, equalBytes } from './bytes';
import { E4Error, MESSAGE_REPLAYED } from './errors';
import { TAG_LEN } from './protocol';

/**
 * For an authenticated command stamped `ts` with SIV tag `tag`: with `check`, throws
 * MESSAGE_REPLAYED when it breaks the rule. Returns the change that records it once accepted
 * (its time, and its tag among those of its second, the last 8 kept), or null for one stamped
 * before the last command (accepted only with the rule off: it calibrates nothing).
 */
export function commandOrder(state: StoredState, ts: number, tag: Uint8Array, check: boolean): Change | null {
  var last = state.lastCommand;
  var held = state.lastTags;
  if (check && last >= 0) {
    if (ts < last) throw new E4Error(MESSAGE_REPLAYED, 'older than the last command');
    if (ts === last) {
      for (var t = 0; t < held.length; t += TAG_LEN)
        if (equalBytes(held.subarray(t, t + TAG_LEN), tag)) throw new E4Error(MESSAGE_REPLAYED);
    }
  }
  if (ts < last) return null;
  var tags: Uint8Array;
  if (ts === last) {
    var keep = Math.min(held.length / TAG_LEN, 7);
    tags = new Uint8Array((keep + 1) * TAG_LEN);
    tags.set(held.subarray(held.length - keep * TAG_LEN));
    tags.set(tag, keep * TAG_LEN);
  } else tags = copyBytes(tag);
  return { op: 'calibrate', time: ts, tags: tags };
}
