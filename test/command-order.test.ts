/**
 * firmware/command-order.ts alone: the command order rule (no command older than the last
 * accepted one, nor a replay of one of its second; none before the first command, none with the
 * rule off) and the change that records an accepted command (its time, the tags of its second,
 * the last 8 kept).
 */
import { describe, expect, it } from 'vitest';
import { commandOrder } from '../firmware/command-order';
import { MESSAGE_REPLAYED } from '../firmware/errors';
import { applyChanges } from '../firmware/state';
import type { StoredState } from '../firmware/hal';
import { codeOf } from './support/errors';

const T = 1_700_000_000;
const tag = (n: number) => new Uint8Array(16).fill(n);

function stateAt(lastCommand: number, ...tags: number[]): StoredState {
  const s = applyChanges(null, [{ op: 'provision', id: new Uint8Array(16), key: new Uint8Array(32) }]);
  if (lastCommand >= 0)
    applyChanges(s, [{ op: 'calibrate', time: lastCommand, tags: Uint8Array.from(tags.flatMap((n) => Array.from(tag(n)))) }]);
  return s;
}

const code = codeOf;

describe('command order rule (firmware/command-order.ts)', () => {
  it('accepts any command before the first one and records its time and tag', () => {
    expect(commandOrder(stateAt(-1), 5, tag(1), true)).toEqual({ op: 'calibrate', time: 5, tags: tag(1) });
  });

  it('refuses a command older than the last one, and a replay of one of its second, with MESSAGE_REPLAYED', () => {
    const s = stateAt(T, 1, 2);
    expect(code(() => commandOrder(s, T - 1, tag(3), true))).toBe(MESSAGE_REPLAYED);
    expect(code(() => commandOrder(s, T, tag(2), true))).toBe(MESSAGE_REPLAYED);
    expect(code(() => commandOrder(s, T, tag(1), true))).toBe(MESSAGE_REPLAYED);
  });

  it('accepts another command of the same second (its tag added) and a later one (its tag alone)', () => {
    const s = stateAt(T, 1, 2);
    expect(commandOrder(s, T, tag(3), true)).toEqual({
      op: 'calibrate',
      time: T,
      tags: Uint8Array.from([...tag(1), ...tag(2), ...tag(3)]),
    });
    expect(commandOrder(s, T + 1, tag(1), true)).toEqual({ op: 'calibrate', time: T + 1, tags: tag(1) });
  });

  it('keeps the tags of the last 8 commands of a second', () => {
    const s = stateAt(T, 1, 2, 3, 4, 5, 6, 7, 8);
    const c = commandOrder(s, T, tag(9), true);
    expect(c).toEqual({ op: 'calibrate', time: T, tags: Uint8Array.from([2, 3, 4, 5, 6, 7, 8, 9].flatMap((n) => Array.from(tag(n)))) });
  });

  it('with the rule off, accepts an older command or a replay; an older one records nothing', () => {
    const s = stateAt(T, 1);
    expect(commandOrder(s, T - 1, tag(3), false)).toBeNull();
    expect(commandOrder(s, T, tag(1), false)).toEqual({ op: 'calibrate', time: T, tags: Uint8Array.from([...tag(1), ...tag(1)]) });
  });

  it('reads the state without changing it', () => {
    const s = stateAt(T, 1);
    const held = s.lastTags;
    commandOrder(s, T, tag(2), true);
    expect(s.lastCommand).toBe(T);
    expect(s.lastTags).toBe(held);
    expect(s.lastTags).toEqual(tag(1));
  });
});
