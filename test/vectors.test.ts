/**
 * Every case of ../shared/vectors/e4-sk-vectors.json, each its own test, for three vaults: the
 * portable noble vault, and the generic SIV (firmware/crypto/siv.ts) over an AES block primitive
 * with CBC and with ECB only (the shapes the native board vaults take).
 */
import { describe, expect, it } from 'vitest';
import { create, sivVault, encodeE41P, decodeE41P, clientId, topicHash, controlTopic, utf8, resultName, memoryStore } from '../firmware/core';
import { nobleVault } from '../firmware/crypto/noble-vault';
import type { Clock, Vault, StoredState } from '../firmware/hal';
import type { Options } from '../firmware/client';
import { loadVectors, hex, toHexStr } from './support/vectors';
import { nodeAesCbc, nodeAesEcb } from './support/node-aes';

const V = loadVectors('e4-sk-vectors.json');
const sha3 = nobleVault().sha3!;
const vaults: [string, Vault][] = [
  ['noble vault', nobleVault()],
  ['siv vault (ecb+cbc)', sivVault(nodeAesCbc, sha3)],
  ['siv vault (ecb only)', sivVault(nodeAesEcb, sha3)],
];

/** A trusted clock the test sets, like the vectors' receiver clock. */
function fixedClock(now: number): Clock & { set(t: number): void } {
  let t = now;
  return { kind: 'trusted', now: () => t, set: (v: number) => (t = v) };
}

/** Runs unprotect and reports the libe4 result name and the plaintext. */
function outcome(fn: () => Uint8Array | null): { result: string; plaintext: string | null } {
  try {
    const p = fn();
    return p === null ? { result: 'E4_RESULT_OK_CONTROL', plaintext: null } : { result: 'E4_RESULT_OK', plaintext: toHexStr(p) };
  } catch (e: any) {
    if (e?.name !== 'E4Error') throw e;
    expect(resultName(e.code)).toBe(e.result);
    return { result: e.result, plaintext: null };
  }
}

const topicsOf = (s: StoredState) => s.topics.map((t) => ({ topic_hash: toHexStr(t.hash), key: toHexStr(t.key) }));

function receiver(vault: Vault, r: { client_id: string; client_key: string; topics: any[] }, now: number, options?: Options) {
  const clock = fixedClock(now);
  const store = memoryStore();
  const client = create(
    { vault, clock, store },
    { id: r.client_id, key: r.client_key, topics: r.topics.map((t: any) => ({ topic: t.topic, hash: t.topic_hash, key: t.key })) },
    options,
  );
  return { client, clock, store };
}

it('vector file has every section', () => {
  for (const k of ['client_ids', 'topic_hashes', 'aes_siv', 'protect', 'unprotect', 'commands', 'scenarios', 'storage_file']) {
    expect(V[k].length, k).toBeGreaterThan(0);
  }
});

describe('client_ids', () => {
  for (const c of V.client_ids) {
    it(`${c.name.slice(0, 40)} (${c.name_utf8_len} bytes)`, () => {
      expect(toHexStr(utf8(c.name))).toBe(c.name_utf8_hex);
      expect(toHexStr(clientId(nobleVault(), c.name))).toBe(c.id);
      expect(controlTopic(hex(c.id))).toBe(c.control_topic);
      expect(toHexStr(sha3(hex(c.name_utf8_hex)).subarray(0, 16))).toBe(c.id);
    });
  }
});

describe('topic_hashes', () => {
  for (const c of V.topic_hashes) {
    it(`${c.topic.slice(0, 40)} (${c.topic_utf8_len} bytes)`, () => {
      expect(toHexStr(utf8(c.topic))).toBe(c.topic_utf8_hex);
      expect(toHexStr(topicHash(nobleVault(), c.topic))).toBe(c.topic_hash);
    });
  }
});

describe.each(vaults)('%s', (_name, vault) => {
  describe('aes_siv', () => {
    V.aes_siv.forEach((c: any, i: number) => {
      it(`aes_siv #${i} (${c.plaintext.length / 2} bytes)`, () => {
        expect(toHexStr(vault.seal(hex(c.key), hex(c.ad), hex(c.plaintext)))).toBe(c.output);
        expect(toHexStr(vault.open(hex(c.key), hex(c.ad), hex(c.output))!)).toBe(c.plaintext);
        const bad = hex(c.output);
        bad[bad.length - 1] ^= 1;
        expect(vault.open(hex(c.key), hex(c.ad), bad)).toBeNull();
      });
    });
  });

  describe('protect', () => {
    V.protect.forEach((c: any, i: number) => {
      it(`protect #${i}: ${c.plaintext.length / 2} bytes at ${c.timestamp}`, () => {
        const { client } = receiver(vault, { client_id: '00'.repeat(16), client_key: '11'.repeat(32), topics: [{ topic: c.topic, topic_hash: toHexStr(topicHash(nobleVault(), c.topic)), key: c.topic_key }] }, c.timestamp);
        const out = client.protect(c.topic, hex(c.plaintext));
        expect(toHexStr(out)).toBe(c.protected);
        expect(toHexStr(out.subarray(0, 8))).toBe(c.timestamp_le_hex);
        expect(c.expected_result).toBe('E4_RESULT_OK');
        // Every protect case is also a positive unprotect case.
        expect(outcome(() => client.unprotect(c.topic, hex(c.protected)))).toEqual({ result: 'E4_RESULT_OK', plaintext: c.plaintext });
      });
    });
  });

  describe('unprotect', () => {
    for (const c of V.unprotect) {
      it(`${c.case}`, () => {
        const { client, store } = receiver(vault, c.receiver, c.now);
        const before = store.load();
        const got = outcome(() => client.unprotect(c.topic, hex(c.protected), c.options));
        expect(got.result).toBe(c.expected_result);
        expect(got.plaintext).toBe(c.expected_plaintext);
        expect(store.load()).toEqual(before); // data never changes durable state
      });
    }
  });

  describe('commands', () => {
    for (const c of V.commands) {
      it(`${c.case}`, () => {
        const { client, store } = receiver(vault, { client_id: c.client_id, client_key: c.state_before.client_key, topics: c.state_before.topics }, c.now);
        expect(client.controlTopic).toBe(c.control_topic);
        const commitsBefore = store.commits;
        const got = outcome(() => client.unprotect(c.delivered_on_topic, hex(c.protected), c.options));
        expect(got.result).toBe(c.expected_result);
        const after = client.snapshot();
        expect(toHexStr(after.key)).toBe(c.state_after.client_key);
        expect(topicsOf(after)).toEqual(c.state_after.topics);
        // Memory and the store agree; a failed command commits nothing.
        expect(topicsOf(store.load()!)).toEqual(c.state_after.topics);
        if (c.expected_code !== -1) expect(store.commits).toBe(commitsBefore);
      });
    }
  });

  describe('scenarios', () => {
    for (const s of V.scenarios) {
      for (const transition of [false, true]) {
        it(`${s.case} (key transition ${transition ? 'on: if_key_transition outcomes' : 'off: reference outcomes'})`, () => {
          const init = s.initial_state;
          const { client, clock } = receiver(vault, init, s.steps[0].now, { keyTransition: transition ? 3600 : 0 });
          expect(client.controlTopic).toBe(init.control_topic);
          s.steps.forEach((step: any, i: number) => {
            clock.set(step.now);
            const label = `step ${i}: ${step.description}`;
            if (step.op === 'protect') {
              const got = outcome(() => client.protect(step.topic, hex(step.plaintext)));
              expect(got.result === 'E4_RESULT_OK' ? 'E4_RESULT_OK' : got.result, label).toBe(step.expected_result);
              if (step.expected_protected) expect(toHexStr(client.protect(step.topic, hex(step.plaintext))), label).toBe(step.expected_protected);
              return;
            }
            const expected = transition && step.if_key_transition ? step.if_key_transition : step;
            const got = outcome(() => client.unprotect(step.topic, hex(step.protected)));
            expect(got.result, label).toBe(expected.expected_result);
            expect(got.plaintext, label).toBe(expected.expected_plaintext);
            const snap = client.snapshot();
            expect(toHexStr(snap.key), label).toBe(step.state_after.client_key);
            expect(topicsOf(snap), label).toEqual(step.state_after.topics);
          });
        });
      }
    }
  });
});

describe('storage_file', () => {
  for (const c of V.storage_file) {
    it(`${c.case}`, () => {
      const state = { id: hex(c.client_id), key: hex(c.client_key), topics: c.topics.map((t: any) => ({ hash: hex(t.topic_hash), key: hex(t.key) })) };
      const file = encodeE41P(state);
      expect(toHexStr(file)).toBe(c.file);
      expect(file.length).toBe(c.file_len);
      const back = decodeE41P(hex(c.file));
      expect(toHexStr(back.id)).toBe(c.client_id);
      expect(toHexStr(back.key)).toBe(c.client_key);
      expect(topicsOf(back)).toEqual(c.topics.map((t: any) => ({ topic_hash: t.topic_hash, key: t.key })));
      // A device provisioned from the image exports the same bytes.
      const client = create({ vault: nobleVault(), store: memoryStore(back) });
      expect(toHexStr(client.exportE41P())).toBe(c.file);
    });
  }
});
