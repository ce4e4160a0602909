/**
 * The freshness floor: time never goes backwards from an authenticated C2 command. A command
 * stamped `lastCommand` was accepted, so "now" is at least `lastCommand`, and a data message
 * stamped more than `maxDelay` seconds before it is outside any receiver's window, whatever (or
 * whether) the device's clock reads. The client applies it when it has no better time: no clock,
 * an unset trusted clock, or a monotonic or untrusted clock not yet calibrated in this boot.
 * `lastCommand` is part of the stored state, so the floor survives reboots.
 */
import { E4Error, TIMESTAMP_TOO_OLD } from './errors';

/** Throws TIMESTAMP_TOO_OLD when `timestamp` is below `lastCommand - maxDelay`. No floor before
 * the first command (`lastCommand` -1). */
export function checkFreshness(timestamp: number, lastCommand: number, maxDelay: number): void {
  if (lastCommand >= 0 && timestamp < lastCommand - maxDelay) throw new E4Error(TIMESTAMP_TOO_OLD);
}
