/**
 * firmware/commands.ts alone: the command interpreter is a pure function from (state, command) to
 * changes. Each SK command gives its change with copies of its bytes; unknown codes and wrong
 * lengths are INVALID_COMMAND; RemoveTopic of a topic not held and SetTopicKey into a full table
 * are TOPICKEY_MISSING; the state is never touched.
 */
import { describe, expect, it } from 'vitest';
import { commandChanges } from '../firmware/commands';
import { commands, INVALID_COMMAND, TOPICKEY_MISSING } from '../firmware/core';
import { applyChanges, cloneState } from '../firmware/state';
import type { StoredState } from '../firmware/hal';
import { codeOf } from './support/errors';

const b = (n: number, len: number) => new Uint8Array(len).fill(n);
const T = 1_700_000_000;

function stateWith(...topics: [number, number][]): StoredState {
  return applyChanges(null, [
    { op: 'provision', id: b(1, 16), key: b(2, 32) },
    ...topics.map(([h, k]) => ({ op: 'topic' as const, topic: { hash: b(h, 16), key: b(k, 32), prevKey: null, prevSince: -1 } })),
  ]);
}

const code = codeOf;

/** The interpreter's changes, with the state checked unchanged (it is pure). */
function run(state: StoredState, cmd: Uint8Array, since = T, maxTopics = 32, keyTransition = 3600) {
  const before = JSON.stringify(cloneState(state), (_, v) => (v instanceof Uint8Array ? Array.from(v) : v));
  try {
    return commandChanges(state, cmd, since, maxTopics, keyTransition);
  } finally {
    expect(JSON.stringify(cloneState(state), (_, v) => (v instanceof Uint8Array ? Array.from(v) : v))).toBe(before);
  }
}

describe('command interpreter (firmware/commands.ts)', () => {
  it('RemoveTopic of a held topic is a removeTopic change with a copy of the hash', () => {
    const cmd = commands.removeTopic(b(5, 16));
    const [c] = run(stateWith([5, 6]), cmd);
    expect(c).toEqual({ op: 'removeTopic', hash: b(5, 16) });
    cmd[1] = 0;
    expect(c).toEqual({ op: 'removeTopic', hash: b(5, 16) });
  });

  it('RemoveTopic of a topic not held is TOPICKEY_MISSING', () => {
    expect(code(() => run(stateWith([5, 6]), commands.removeTopic(b(7, 16))))).toBe(TOPICKEY_MISSING);
  });

  it('ResetTopics and SetIdKey give their one change', () => {
    expect(run(stateWith([5, 6]), commands.resetTopics())).toEqual([{ op: 'resetTopics' }]);
    expect(run(stateWith(), commands.setIdKey(b(9, 32)))).toEqual([{ op: 'clientKey', key: b(9, 32) }]);
  });

  it('SetTopicKey of a new topic adds it without a previous key', () => {
    expect(run(stateWith(), commands.setTopicKey(b(8, 32), b(5, 16)))).toEqual([
      { op: 'topic', topic: { hash: b(5, 16), key: b(8, 32), prevKey: null, prevSince: -1 } },
    ]);
  });

  it('SetTopicKey of a held topic keeps its key as the previous one from `since`, unless keyTransition is 0', () => {
    const s = stateWith([5, 6]);
    const [c] = run(s, commands.setTopicKey(b(8, 32), b(5, 16)), T + 7);
    expect(c).toEqual({ op: 'topic', topic: { hash: b(5, 16), key: b(8, 32), prevKey: b(6, 32), prevSince: T + 7 } });
    expect(c.op === 'topic' && c.topic.prevKey).not.toBe(s.topics[0].key); // a copy
    expect(run(s, commands.setTopicKey(b(8, 32), b(5, 16)), T, 32, 0)).toEqual([
      { op: 'topic', topic: { hash: b(5, 16), key: b(8, 32), prevKey: null, prevSince: -1 } },
    ]);
  });

  it('SetTopicKey with the key already held changes nothing', () => {
    expect(run(stateWith([5, 6]), commands.setTopicKey(b(6, 32), b(5, 16)))).toEqual([]);
  });

  it('SetTopicKey of a new topic into a full table is TOPICKEY_MISSING; a held one is still replaced', () => {
    const s = stateWith([1, 1], [2, 2]);
    expect(code(() => run(s, commands.setTopicKey(b(8, 32), b(3, 16)), T, 2))).toBe(TOPICKEY_MISSING);
    expect(run(s, commands.setTopicKey(b(8, 32), b(2, 16)), T, 2)).toHaveLength(1);
  });

  it('an empty command, an unknown code and every wrong length are INVALID_COMMAND', () => {
    const s = stateWith([5, 6]);
    const bad = [
      new Uint8Array(0),
      Uint8Array.of(4),
      Uint8Array.of(0xff, 1),
      ...[
        commands.removeTopic(b(5, 16)),
        commands.resetTopics(),
        commands.setIdKey(b(9, 32)),
        commands.setTopicKey(b(8, 32), b(5, 16)),
      ].flatMap((c) => [c.subarray(0, c.length - 1), Uint8Array.of(...c, 0)]),
    ];
    for (const cmd of bad)
      if (cmd.length)
        expect(
          code(() => run(s, cmd)),
          Array.from(cmd.subarray(0, 2)).join(),
        ).toBe(INVALID_COMMAND);
    expect(code(() => run(s, new Uint8Array(0)))).toBe(INVALID_COMMAND);
  });
});
