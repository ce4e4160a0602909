/** firmware/state.ts and the stores built on it: order of the topic table, wiping, atomicity. */
import { describe, expect, it } from 'vitest';
import { applyChanges, cloneState } from '../firmware/state';
import { memoryStore } from '../firmware/storage/memory-store';
import { decodeE41P, encodeE41P } from '../firmware/storage/e41p';
import type { Change } from '../firmware/hal';

const b = (n: number, len: number) => new Uint8Array(len).fill(n);
const topic = (h: number, k: number) => ({ hash: b(h, 16), key: b(k, 32), prevKey: null, prevSince: -1 });

describe('applyChanges', () => {
  it('appends new topics, replaces in place, closes gaps on removal', () => {
    const s = applyChanges(null, [
      { op: 'provision', id: b(1, 16), key: b(2, 32) },
      { op: 'topic', topic: topic(1, 1) },
      { op: 'topic', topic: topic(2, 2) },
      { op: 'topic', topic: topic(3, 3) },
    ]);
    applyChanges(s, [
      { op: 'topic', topic: topic(1, 9) },
      { op: 'removeTopic', hash: b(2, 16) },
    ]);
    expect(s.topics.map((t) => [t.hash[0], t.key[0]])).toEqual([
      [1, 9],
      [3, 3],
    ]);
  });
  it('copies keys in and wipes what it drops', () => {
    const s = applyChanges(null, [{ op: 'provision', id: b(1, 16), key: b(2, 32) }]);
    const incoming = topic(1, 7);
    applyChanges(s, [{ op: 'topic', topic: incoming }]);
    const held = s.topics[0].key;
    expect(held).not.toBe(incoming.key);
    const oldClientKey = s.key;
    applyChanges(s, [{ op: 'resetTopics' }, { op: 'clientKey', key: b(5, 32) }]);
    expect(held).toEqual(new Uint8Array(32));
    expect(oldClientKey).toEqual(new Uint8Array(32));
    expect(incoming.key).toEqual(b(7, 32));
  });
  it('a record carrying the replaced key as its previous key keeps it', () => {
    const s = applyChanges(null, [
      { op: 'provision', id: b(1, 16), key: b(2, 32) },
      { op: 'topic', topic: topic(1, 1) },
    ]);
    applyChanges(s, [{ op: 'topic', topic: { hash: b(1, 16), key: b(2, 32), prevKey: s.topics[0].key, prevSince: 5 } }]);
    expect(s.topics[0].prevKey).toEqual(b(1, 32));
  });
  it('refuses changes before provisioning and unknown changes', () => {
    expect(() => applyChanges(null, [{ op: 'resetTopics' }])).toThrow(/PERSISTENCE_INCOMPATIBLE/);
    const s = applyChanges(null, [{ op: 'provision', id: b(1, 16), key: b(2, 32) }]);
    expect(() => applyChanges(s, [{ op: 'bogus' } as unknown as Change])).toThrow(/PERSISTENCE_INCOMPATIBLE/);
  });
});

describe('memoryStore', () => {
  it('is all-or-nothing: a commit with a bad change leaves the old state', () => {
    const st = memoryStore();
    st.commit([
      { op: 'provision', id: b(1, 16), key: b(2, 32) },
      { op: 'topic', topic: topic(1, 1) },
    ]);
    const before = st.load();
    expect(() => st.commit([{ op: 'resetTopics' }, { op: 'bogus' } as unknown as Change])).toThrow();
    expect(st.load()).toEqual(before);
    expect(cloneState(before!)).toEqual(before);
  });
});

describe('E41P codec', () => {
  const img = encodeE41P({ id: b(1, 16), key: b(2, 32), topics: [topic(3, 4)] });
  it('rejects foreign, truncated and padded images', () => {
    expect(() => decodeE41P(Uint8Array.of(...img.subarray(0, 50)))).toThrow(/PERSISTENCE_INCOMPATIBLE/);
    expect(() => decodeE41P(Uint8Array.of(...img, 0))).toThrow(/PERSISTENCE_INCOMPATIBLE/);
    expect(() => decodeE41P(Uint8Array.of(...img.subarray(0, img.length - 1)))).toThrow(/PERSISTENCE_INCOMPATIBLE/);
    const foreign = Uint8Array.from(img);
    foreign[3] = 0x51;
    expect(() => decodeE41P(foreign)).toThrow(/PERSISTENCE_INCOMPATIBLE/);
    expect(decodeE41P(img).topics[0].key).toEqual(b(4, 32));
  });
});
