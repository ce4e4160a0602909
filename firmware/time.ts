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
  /** Timestamp for outgoing messages: the estimate, else the last time learnt from C2, else 0. */
  stamp(): number;
}

/** `lastKnown`: the last command timestamp kept in the store (-1 if none), from earlier boots. */
export function timeKeeper(clock: Clock | undefined, lastKnown: number): TimeKeeper {
  var base = -1; // calibrated time...
  var baseAt = 0; // ...and the clock reading when it was taken
  var keeper: TimeKeeper = {
    trusted: function () {
      return !!clock && clock.kind === 'trusted' && clock.now() >= CLOCK_VALID_FROM;
    },
    now: function () {
      var r = clock ? clock.now() : -1;
      if (clock && clock.kind === 'trusted' && r >= CLOCK_VALID_FROM) return r;
      // Calibrated this boot and a clock advances: calibration + elapsed (never backwards).
      if (base >= 0 && clock) return base + (r > baseAt ? r - baseAt : 0);
      if (clock && clock.kind === 'untrusted' && r >= CLOCK_VALID_FROM) return r;
      return -1;
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
      return lastKnown >= 0 ? lastKnown : 0;
    },
  };
  return keeper;
}
