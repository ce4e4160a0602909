/**
 * firmware/provisioning.ts alone: topic arguments of the factory calls (a string is a topic name,
 * whatever its shape; a hash is bytes or { hash }), and openState: the stored state wins over the
 * configuration, an empty store is provisioned in one commit, topic names always go into the
 * name table (pointing at the state's hashes), bad configuration is PARAMETER_INVALID with
 * nothing stored, and the provisioning copies of keys are wiped.
 */
import { describe, expect, it } from 'vitest';
import { openState, resolveHash } from '../firmware/provisioning';
import type { DeviceConfig } from '../firmware/provisioning';
import { memoryStore, PARAMETER_INVALID, toHex } from '../firmware/core';
import type { Change } from '../firmware/hal';
import { nobleVault } from './support/noble-vault';
import { codeOf } from './support/errors';

const vault = nobleVault();
const b = (n: number, len: number) => new Uint8Array(len).fill(n);
const hashOfName = (t: string) => vault.sha3!(new TextEncoder().encode(t)).subarray(0, 16);

const code = codeOf;

describe('resolveHash', () => {
  const named: string[] = [];
  const hashOf = (t: string) => (named.push(t), hashOfName(t));

  it('a string is a topic name, also one of 32 hex characters', () => {
    const hexName = 'ab'.repeat(16);
    expect(toHex(resolveHash(hexName, hashOf))).toBe(toHex(hashOfName(hexName)));
    expect(named).toContain(hexName);
  });

  it('a hash is its 16 bytes, or { hash } as bytes or hex', () => {
    expect(resolveHash(b(7, 16), hashOf)).toEqual(b(7, 16));
    expect(resolveHash({ hash: b(7, 16) }, hashOf)).toEqual(b(7, 16));
    expect(resolveHash({ hash: '07'.repeat(16) }, hashOf)).toEqual(b(7, 16));
  });

  it('anything else is PARAMETER_INVALID', () => {
    for (const bad of [b(7, 15), { hash: '07'.repeat(15) }, { hash: 'zz'.repeat(16) }, null, 5, {}])
      expect(
        code(() => resolveHash(bad as never, hashOf)),
        JSON.stringify(bad),
      ).toBe(PARAMETER_INVALID);
  });
});

describe('openState', () => {
  const device: DeviceConfig = {
    id: '01'.repeat(16),
    key: b(2, 32),
    topics: [
      { topic: 'a', key: b(3, 32) },
      { topic: 'b', hash: toHex(hashOfName('b')) },
      { hash: b(9, 16), key: b(4, 32) },
    ],
  };

  function open(store = memoryStore(), config: DeviceConfig | null = device) {
    const names: { [k: string]: Uint8Array } = {};
    const commits: Change[][] = [];
    const hashOf = (t: string) => hashOfName(t);
    const state = openState(store, vault, config, 32, (c) => (commits.push(c), store.commit(c)), names, hashOf);
    return { state, names, commits, store };
  }

  it('provisions an empty store in one commit and learns every topic name', () => {
    const { state, names, commits } = open();
    expect(commits).toHaveLength(1);
    expect(commits[0].map((c) => c.op)).toEqual(['provision', 'topic', 'topic']);
    expect(state.topics.map((t) => toHex(t.hash))).toEqual([toHex(hashOfName('a')), toHex(b(9, 16))]);
    expect(Object.keys(names).sort()).toEqual(['$a', '$b']);
    expect(names.$a).toBe(state.topics[0].hash); // the state's own copy
  });

  it('the stored state wins over the configuration; names are learnt all the same', () => {
    const first = open();
    const { state, names, commits } = open(first.store, { key: b(8, 32), topics: [{ topic: 'c', key: b(5, 32) }] });
    expect(commits).toHaveLength(0);
    expect(state.key).toEqual(b(2, 32));
    expect(Object.keys(names)).toEqual(['$c']);
  });

  it('wipes the provisioning copies of keys it made', () => {
    const commits: Change[][] = [];
    const store = memoryStore();
    openState(store, vault, device, 32, (c) => commits.push(c), {}, hashOfName);
    for (const c of commits[0]) {
      if (c.op === 'provision') expect(c.key).toEqual(new Uint8Array(32));
      if (c.op === 'topic') expect(c.topic.key).toEqual(new Uint8Array(32));
    }
    expect(device.key).toEqual(b(2, 32)); // the caller's own bytes are untouched
  });

  it('bad configuration is PARAMETER_INVALID and stores nothing', () => {
    for (const bad of [
      null,
      { key: b(2, 32) },
      { id: '01'.repeat(16), key: b(2, 31) },
      { id: '01'.repeat(16), key: b(2, 32), topics: [{ key: b(3, 32) }] },
      { id: '01'.repeat(16), key: b(2, 32), topics: [{ hash: b(9, 16) }] },
    ] as DeviceConfig[]) {
      const store = memoryStore();
      expect(
        code(() => open(store, bad)),
        JSON.stringify(bad),
      ).toBe(PARAMETER_INVALID);
      expect(store.load()).toBeNull();
    }
  });
});
