/**
 * firmware/freshness.ts alone: the freshness floor is lastCommand - maxDelay, inclusive, and there
 * is none before the first command; the time window is now ± maxDelay, inclusive, only with a
 * time estimate; the floor applies only when the estimate is not trusted.
 */
import { describe, expect, it } from 'vitest';
import { checkFreshness, checkTimestamp } from '../firmware/freshness';
import { TIMESTAMP_IN_FUTURE, TIMESTAMP_TOO_OLD } from '../firmware/errors';
import { codeOf } from './support/errors';

const code = codeOf;

const T = 1_700_000_000;

describe('freshness floor (firmware/freshness.ts)', () => {
  it('accepts anything before the first command (lastCommand -1)', () => {
    expect(code(() => checkFreshness(0, -1, 600))).toBe(0);
  });

  it('refuses a timestamp below lastCommand - maxDelay with TIMESTAMP_TOO_OLD; the floor itself is accepted', () => {
    expect(code(() => checkFreshness(T - 601, T, 600))).toBe(TIMESTAMP_TOO_OLD);
    expect(code(() => checkFreshness(T - 365 * 86400, T, 600))).toBe(TIMESTAMP_TOO_OLD);
    expect(code(() => checkFreshness(T - 600, T, 600))).toBe(0);
    expect(code(() => checkFreshness(T + 5000, T, 600))).toBe(0); // the future is not its business
  });

  it('follows maxDelay', () => {
    expect(code(() => checkFreshness(T - 31, T, 30))).toBe(TIMESTAMP_TOO_OLD);
    expect(code(() => checkFreshness(T, T, 0))).toBe(0);
    expect(code(() => checkFreshness(T - 1, T, 0))).toBe(TIMESTAMP_TOO_OLD);
  });

  it('a command at time 0 still sets a floor', () => {
    expect(code(() => checkFreshness(0, 0, 0))).toBe(0);
  });
});

describe('time window and floor together (checkTimestamp)', () => {
  it('the window is now ± maxDelay, both edges accepted', () => {
    expect(code(() => checkTimestamp(T + 600, T, true, -1, 600))).toBe(0);
    expect(code(() => checkTimestamp(T + 601, T, true, -1, 600))).toBe(TIMESTAMP_IN_FUTURE);
    expect(code(() => checkTimestamp(T - 600, T, true, -1, 600))).toBe(0);
    expect(code(() => checkTimestamp(T - 601, T, true, -1, 600))).toBe(TIMESTAMP_TOO_OLD);
  });

  it('without a time estimate (now -1) there is no window', () => {
    expect(code(() => checkTimestamp(T + 10 ** 6, -1, false, -1, 600))).toBe(0);
    expect(code(() => checkTimestamp(0, -1, false, -1, 600))).toBe(0);
  });

  it('the floor applies to an untrusted estimate, not to a trusted clock', () => {
    expect(code(() => checkTimestamp(T - 601, T - 700, false, T, 600))).toBe(TIMESTAMP_TOO_OLD);
    expect(code(() => checkTimestamp(T - 601, T - 700, true, T, 600))).toBe(0);
  });
});
