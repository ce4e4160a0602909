/**
 * The timestamp rules of "Receiving" (docs/protocol.md, step 4, after authentication): the time
 * window around the device's time estimate, and the freshness floor.
 *
 * The freshness floor: time never goes backwards from an authenticated C2 command. A command
 * stamped `lastCommand` was accepted, so "now" is at least `lastCommand`, and a data message
 * stamped more than `maxDelay` seconds before it is outside any receiver's window, whatever (or
 * whether) the device's clock reads. The client applies it when it has no better time: no clock,
 * an unset trusted clock, or a monotonic or untrusted clock not yet calibrated in this boot.
 * `lastCommand` is part of the stored state, so the floor survives reboots.
 */
import { E4Error, TIMESTAMP_IN_FUTURE, TIMESTAMP_TOO_OLD } from './errors';

/**
 * The rules for a message stamped `timestamp`, with the time estimate `now` (-1: none) and
 * whether it comes from a trusted clock: the freshness floor when the estimate is not trusted
 * (below `lastCommand - maxDelay`: TIMESTAMP_TOO_OLD; no floor before the first command,
 * `lastCommand` -1), then the window of `maxDelay` seconds either way (inclusive) around `now`
 * when there is one (TIMESTAMP_IN_FUTURE, TIMESTAMP_TOO_OLD).
 */
export function checkTimestamp(timestamp: number, now: number, trusted: boolean, lastCommand: number, maxDelay: number): void {
  if (!trusted && lastCommand >= 0 && timestamp < lastCommand - maxDelay) throw new E4Error(TIMESTAMP_TOO_OLD);
  if (now < 0) return;
  if (timestamp > now + maxDelay) throw new E4Error(TIMESTAMP_IN_FUTURE);
  if (timestamp < now - maxDelay) throw new E4Error(TIMESTAMP_TOO_OLD);
}

/** The freshness floor alone: checkTimestamp without a time estimate. */
export function checkFreshness(timestamp: number, lastCommand: number, maxDelay: number): void {
  checkTimestamp(timestamp, -1, false, lastCommand, maxDelay);
}
