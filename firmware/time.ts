/**
 * The device's notion of time (docs/protocol.md, "Time, without trusting the device's clock").
 * The clock is an optional HAL service; authenticated C2 commands calibrate it, and the
 * estimate is advanced by whatever clock there is (a monotonic counter is enough).
 */
import type { Clock } from './hal';

/** 2000-01-01T00:00:00Z: a trusted clock reading below this means "not set" (libe4). */
export var CLOCK_VALID_FROM = 946684800;

export interface TimeKeeper {
  /** Best estimate of Unix time that can be checked against, or -1 when there is none now
   * (no clock and never calibrated, an unset clock, or a clock that cannot advance). */
  now(): number;
  /** True when the HAL clock is trusted and set: only then are commands held to the window. */
  trusted(): boolean;
  /** A C2 command authenticated at `timestamp`: take it as the time now. */
  calibrate(timestamp: number): void;
  /** Timestamp for outgoing messages: the estimate, else the last time learnt from C2, else the
   * clock's reading (as libe4 stamps it), else 0. */
  stamp(): number;
}

/** `lastKnown`: the last command timestamp kept in the store (-1 if none), from earlier boots. */
export function timeKeeper(clock: Clock | undefined, lastKnown: number): TimeKeeper {
  var base = -1; // calibrated time...
  var baseAt = 0; // ...and the clock reading when it was taken
  var keeper: TimeKeeper = {
    trusted: function () {
      return !!clock && clock.kind === 'trusted' && clock.now() >= 946684800; // CLOCK_VALID_FROM
    },
    now: function () {
      if (!clock) return -1;
      var r = clock.now();
      // CLOCK_VALID_FROM as a literal (here and above): a variable costs RAM on Espruino.
      var set = r >= 946684800;
      if (set && clock.kind === 'trusted') return r;
      // Calibrated this boot: calibration + elapsed (never backwards).
      if (base >= 0) return base + (r > baseAt ? r - baseAt : 0);
      return set && clock.kind === 'untrusted' ? r : -1;
    },
    calibrate: function (timestamp: number) {
      base = timestamp;
      baseAt = clock ? clock.now() : -1;
      if (timestamp > lastKnown) lastKnown = timestamp;
    },
    stamp: function () {
      var n = keeper.now();
      if (n >= 0) return n;
      if (base >= 0) return base;
      if (lastKnown >= 0) return lastKnown;
      var r = clock ? Math.floor(clock.now()) : 0;
      return r > 0 ? r : 0;
    },
  };
  return keeper;
}
