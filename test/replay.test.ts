/**
 * firmware/replay.ts alone: the replay window's rule (held: MESSAGE_REPLAYED; not held at or below
 * the floor: TIMESTAMP_TOO_OLD; else new), its floor, its memory, and the guarantee that a message
 * accepted once is never accepted again, whatever the rate, checked against an unbounded model.
 */
import { describe, expect, it } from 'vitest';
import { replayCheck, replayFloor, replayWindow } from '../firmware/replay';
import { MESSAGE_REPLAYED, TIMESTAMP_TOO_OLD } from '../firmware/errors';

/** A protected message's header, `timestamp (8, LE) | tag (16)`, with a tag whose first bytes
 * encode `n` (distinct tags for distinct n), and a byte of ciphertext. */
function msg(ts: number, n: number): Uint8Array {
  const m = new Uint8Array(25);
  new DataView(m.buffer).setBigUint64(0, BigInt(ts), true);
  for (let i = 0; i < 6; i++) m[8 + 5 - i] = Math.floor(n / 256 ** i) & 255;
  m[23] = 0xaa;
  m[24] = n & 255;
  return m;
}

/** xorshift32: deterministic, seeded. */
function prng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

describe('replay window (firmware/replay.ts)', () => {
  it('takes 16 bytes per entry plus 8 for the floor', () => {
    expect(replayWindow(16).byteLength).toBe(16 * 16 + 8);
    expect(replayWindow(1).byteLength).toBe(24);
  });

  it('an empty window knows every message as new, timestamp 0 included', () => {
    const w = replayWindow(4);
    expect(replayCheck(w, msg(0, 1))).toBe(0);
    expect(replayCheck(w, msg(1700000000, 2))).toBe(0);
  });

  it('a held message is MESSAGE_REPLAYED; the same tag at another timestamp is another message', () => {
    const w = replayWindow(4);
    replayCheck(w, msg(100, 1), true);
    expect(replayCheck(w, msg(100, 1))).toBe(MESSAGE_REPLAYED);
    expect(replayCheck(w, msg(101, 1))).toBe(0);
    expect(replayCheck(w, msg(100, 2))).toBe(0);
  });

  it('only the first 6 tag bytes are compared', () => {
    const w = replayWindow(2);
    const a = msg(5, 7);
    const b = msg(5, 7);
    b[8 + 6] ^= 1;
    b[8 + 15] ^= 0xff;
    b[24] ^= 0xff;
    replayCheck(w, a, true);
    expect(replayCheck(w, b)).toBe(MESSAGE_REPLAYED);
  });

  it('forgets the oldest entry first and raises the floor to its timestamp', () => {
    const w = replayWindow(2);
    replayCheck(w, msg(200, 1), true);
    replayCheck(w, msg(100, 2), true);
    replayCheck(w, msg(300, 3), true); // forgets (100, tag 2): floor 100
    expect(replayCheck(w, msg(100, 2))).toBe(TIMESTAMP_TOO_OLD);
    expect(replayCheck(w, msg(100, 9))).toBe(TIMESTAMP_TOO_OLD); // at the floor: cannot be vouched for
    expect(replayCheck(w, msg(99, 9))).toBe(TIMESTAMP_TOO_OLD);
    expect(replayCheck(w, msg(101, 9))).toBe(0);
    // Still held above the floor: exact duplicates.
    expect(replayCheck(w, msg(200, 1))).toBe(MESSAGE_REPLAYED);
    expect(replayCheck(w, msg(300, 3))).toBe(MESSAGE_REPLAYED);
  });

  it('reports its floor: -1 until it forgets, then the timestamp of what it forgot', () => {
    const w = replayWindow(1);
    expect(replayFloor(w)).toBe(-1);
    replayCheck(w, msg(0, 1), true);
    replayCheck(w, msg(7, 2), true);
    expect(replayFloor(w)).toBe(0);
    replayCheck(w, msg(9, 3), true);
    expect(replayFloor(w)).toBe(7);
  });

  it('the floor never goes down', () => {
    const w = replayWindow(1);
    replayCheck(w, msg(500, 1), true);
    replayCheck(w, msg(600, 2), true); // floor 500
    replayCheck(w, msg(10, 3), true); // forgets 600: floor 600
    replayCheck(w, msg(20, 4), true); // forgets 10: floor stays 600
    expect(replayCheck(w, msg(600, 8))).toBe(TIMESTAMP_TOO_OLD);
    expect(replayCheck(w, msg(601, 8))).toBe(0);
  });

  it('a burst of more than `size` messages in one second raises the floor to that second (the trade-off)', () => {
    const w = replayWindow(4);
    for (let i = 0; i < 5; i++) replayCheck(w, msg(1000, i), true);
    expect(replayCheck(w, msg(1000, 99))).toBe(TIMESTAMP_TOO_OLD); // a legitimate 6th in that second is refused
    expect(replayCheck(w, msg(1001, 99))).toBe(0);
  });

  it('a message accepted once is never accepted again, whatever the rate (against an unbounded model, seeded)', () => {
    for (const [size, seed] of [
      [1, 1],
      [4, 2],
      [16, 3],
    ]) {
      const w = replayWindow(size);
      const rnd = prng(seed);
      const accepted = new Set<string>();
      const sent: [number, number][] = [];
      let now = 1_700_000_000;
      let fresh = 0;
      for (let i = 0; i < 20000; i++) {
        if (rnd() < 0.3) now += Math.floor(rnd() * 3);
        // New messages from senders whose clocks lag by up to 20 s, or replays of earlier ones.
        let m: [number, number];
        if (sent.length && rnd() < 0.4) m = sent[Math.floor(rnd() * sent.length)];
        else m = [now - Math.floor(rnd() * 20), i];
        sent.push(m);
        const key = m.join('/');
        const r = replayCheck(w, msg(m[0], m[1]));
        if (accepted.has(key)) expect(r, `replay of ${key} (window ${size})`).not.toBe(0);
        if (r === 0) {
          replayCheck(w, msg(m[0], m[1]), true);
          accepted.add(key);
          fresh++;
        }
      }
      expect(fresh).toBeGreaterThan(1000);
    }
  });
});
