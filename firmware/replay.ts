/**
 * The replay window: a message accepted once is never accepted again, whatever the message rate,
 * in a fixed amount of memory.
 *
 * The window remembers up to `size` accepted messages, each by its timestamp and the first 6 bytes
 * of its SIV tag (16 bytes an entry), and keeps a floor. Invariant: every accepted message stamped
 * above the floor is remembered. When the window is full, the entry with the oldest timestamp
 * makes room and the floor rises to that timestamp; so a message the window does not hold is new
 * when it is stamped above the floor, and cannot be vouched for when it is stamped at or below it.
 *
 * - held in the window: MESSAGE_REPLAYED (it was accepted before);
 * - not held, at or below the floor: TIMESTAMP_TOO_OLD. It may be a replay of a forgotten message
 *   or a legitimate late one: the device cannot tell, and says only what it knows, that the
 *   message is older than what it can check (a sender that stamps afresh gets through);
 * - not held, above the floor: new.
 *
 * Forgetting the oldest first keeps the floor as low as the memory allows: with senders whose
 * timestamps increase, the floor trails the oldest sender. The cost is that a burst of more than
 * `size` messages within one second (or a sender lagging behind a burst of others) raises the floor
 * past legitimate messages, which are then refused as too old.
 *
 * Six tag bytes (48 bits) decide equality together with the timestamp: two different messages
 * with the same timestamp are taken for one another with probability 2^-48 per pair (the later
 * one refused, never a replay accepted). The window lives in RAM: a reboot empties it (see
 * README.md, "Time and replay").
 *
 * A window is one Float64Array: [floor + 1, then (tag key, timestamp + 1) per entry], so that a
 * new, zeroed array is an empty window without a floor (timestamps are >= 0). Functions, not a
 * closure object: on Espruino every closure costs RAM for good.
 */
import { readU64LE } from './bytes';
import { MESSAGE_REPLAYED, TIMESTAMP_TOO_OLD } from './errors';

/** An empty window for `size` (>= 1) messages: 16 bytes per message, plus 8. */
export function replayWindow(size: number): Float64Array {
  return new Float64Array(1 + 2 * size);
}

// A message is `timestamp (8, LE) | tag (16) | ciphertext`; an entry keeps its timestamp + 1 and
// the first 6 tag bytes as a number (exact: below 2^53). Inline rather than helper functions:
// on Espruino each function costs RAM for as long as the image runs.

/**
 * The window's verdict on a protected `message`: 0 when it is new, MESSAGE_REPLAYED when the
 * window holds it, TIMESTAMP_TOO_OLD when it is stamped at or below the floor and not held.
 * Called again with `accepted` once the caller has accepted the message: then the message is
 * remembered, in place of the entry with the oldest timestamp (an empty one first), and the
 * floor rises to that entry's timestamp. (One function for both: each costs RAM on Espruino.)
 */
export function replayCheck(w: Float64Array, message: Uint8Array, accepted?: boolean): number {
  var t = readU64LE(message, 0) + 1;
  var k = 0;
  for (var j = 8; j < 14; j++) k = k * 256 + message[j];
  var at = 1;
  for (var i = 1; i < w.length; i += 2) {
    if (w[i + 1] === t && w[i] === k && !accepted) return MESSAGE_REPLAYED;
    if (w[i + 1] < w[at + 1]) at = i;
  }
  if (!accepted) return t <= w[0] ? TIMESTAMP_TOO_OLD : 0;
  if (w[at + 1] > w[0]) w[0] = w[at + 1];
  w[at] = k;
  w[at + 1] = t;
  return 0;
}

/** The floor: a message stamped at or below it is refused unless held (-1: none yet). */
export function replayFloor(w: Float64Array): number {
  return w[0] - 1;
}
