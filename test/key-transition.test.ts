/**
 * firmware/key-transition.ts alone: a previous topic key may be tried for keyTransition seconds
 * after its rotation (inclusive), always when the rotation time or the time now is unknown, never
 * with keyTransition 0; once expired, the change drops it and keeps the current key.
 */
import { describe, expect, it } from 'vitest';
import { expiredKeyChange } from '../firmware/key-transition';
import type { TopicRecord } from '../firmware/hal';

const T = 1_700_000_000;
const rec = (prevSince: number): TopicRecord => ({
  hash: new Uint8Array(16).fill(1),
  key: new Uint8Array(32).fill(2),
  prevKey: new Uint8Array(32).fill(3),
  prevSince,
});

describe('key transition (firmware/key-transition.ts)', () => {
  it('the previous key is usable for keyTransition seconds after the rotation, the last one included', () => {
    expect(expiredKeyChange(rec(T), T, 3600)).toBeNull();
    expect(expiredKeyChange(rec(T), T + 3600, 3600)).toBeNull();
    expect(expiredKeyChange(rec(T), T + 3601, 3600)).not.toBeNull();
  });

  it('without a rotation time or a time now, it stays usable (until the next rotation)', () => {
    expect(expiredKeyChange(rec(-1), T + 10 ** 6, 3600)).toBeNull();
    expect(expiredKeyChange(rec(T), -1, 3600)).toBeNull();
  });

  it('keyTransition 0 never keeps it', () => {
    expect(expiredKeyChange(rec(-1), -1, 0)).not.toBeNull();
  });

  it('the change of an expired key keeps the current key and hash and drops the previous key', () => {
    const r = rec(T);
    expect(expiredKeyChange(r, T + 3601, 3600)).toEqual({ op: 'topic', topic: { hash: r.hash, key: r.key, prevKey: null, prevSince: -1 } });
  });
});
