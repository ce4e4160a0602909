/**
 * Every case of test/vectors/e4-sk-vectors.json (aes_siv, protect, unprotect, commands,
 * scenarios), each a named test, run through the client over a given vault: used for the board
 * vaults (native AES, portable AES), with and without SHA-3 on the device.
 */
import { describe, expect, it } from 'vitest';
import { create, isE4Error, memoryStore, resultName, topicHash } from '../../firmware/core';
import { nobleVault } from './noble-vault';
import type { Clock, StoredState, Vault } from '../../firmware/hal';
import type { Options } from '../../firmware/client';
import { hex, loadVectors, toHexStr } from './vectors';

/** A topic as the vector file lists a device's topics (hex text). */
export interface VectorTopic {
  topic?: string;
  topic_hash: string;
  key: string;
}

/** A topic a receiver holds, with its name. */
export interface NamedVectorTopic extends VectorTopic {
  topic: string;
}

/** A client and its topics (hex text). */
export interface VectorReceiver {
  client_name?: string;
  client_id: string;
  control_topic?: string;
  client_key: string;
  topics: NamedVectorTopic[];
}

/** Topic table and client key after a step. */
export interface VectorState {
  client_key: string;
  topics: VectorTopic[];
}

export interface AesSivCase {
  case: string;
  key: string;
  ad: string;
  plaintext: string;
  output: string;
}

export interface ProtectCase {
  case: string;
  topic: string;
  topic_key: string;
  timestamp: number;
  timestamp_le_hex: string;
  plaintext: string;
  expected_result: string;
  expected_code: number;
  protected: string;
}

export interface UnprotectCase {
  case: string;
  description: string;
  receiver: VectorReceiver;
  topic: string;
  now: number;
  options: number;
  protected: string;
  expected_result: string;
  expected_code: number;
  expected_plaintext: string | null;
}

export interface CommandCase {
  case: string;
  description: string;
  command: { name: string; topic?: string; topic_hash?: string; key?: string } | null;
  client_id: string;
  control_topic: string;
  protected: string;
  delivered_on_topic: string;
  now: number;
  options: number;
  state_before: VectorState;
  expected_result: string;
  expected_code: number;
  state_after: VectorState;
}

/** The outcome a step expects (a step's own, or the one under key transition). */
export interface StepOutcome {
  expected_result: string;
  expected_code: number;
  expected_plaintext?: string | null;
}

interface StepBase extends StepOutcome {
  description: string;
  topic: string;
  now: number;
}

export interface ProtectStep extends StepBase {
  op: 'protect';
  plaintext: string;
  /** The bytes protect() must give, when the step fixes them. */
  expected_protected: string | null;
}

export interface UnprotectStep extends StepBase {
  op: 'unprotect';
  protected: string;
  command_plaintext?: string;
  state_after: VectorState;
  /** The outcome when key transition is on, where it differs. */
  if_key_transition?: StepOutcome;
}

export type ScenarioStep = ProtectStep | UnprotectStep;

export interface ScenarioCase {
  case: string;
  description: string;
  initial_state: VectorReceiver;
  steps: ScenarioStep[];
}

/** test/vectors/e4-sk-vectors.json (the sections used here; provenance and hash in test/vectors/README.md). */
export interface SkVectors {
  topic_hashes: { topic: string; topic_hash: string }[];
  aes_siv: AesSivCase[];
  protect: ProtectCase[];
  unprotect: UnprotectCase[];
  commands: CommandCase[];
  scenarios: ScenarioCase[];
}

export const V = loadVectors<SkVectors>('e4-sk-vectors.json');

/** Every topic name in the vector file with its hash, as the host (flash, C2) would ship them. */
export function allTopicNames(): { topic: string; hash: string }[] {
  const names = new Set<string>();
  for (const c of V.topic_hashes) names.add(c.topic);
  for (const c of V.protect) names.add(c.topic);
  for (const c of V.unprotect) {
    names.add(c.topic);
    for (const t of c.receiver.topics) names.add(t.topic);
  }
  for (const c of V.commands) {
    names.add(c.delivered_on_topic);
    if (c.command?.topic) names.add(c.command.topic);
    for (const t of c.state_before.topics) if (t.topic) names.add(t.topic);
  }
  for (const s of V.scenarios) for (const st of s.steps) names.add(st.topic);
  return [...names].map((topic) => ({ topic, hash: toHexStr(topicHash(nobleVault(), topic)) }));
}

function fixedClock(now: number): Clock & { set(t: number): void } {
  let t = now;
  return { kind: 'trusted', now: () => t, set: (v: number) => (t = v) };
}

function outcome(fn: () => Uint8Array | null): { result: string; plaintext: string | null } {
  try {
    const p = fn();
    return p === null ? { result: 'E4_RESULT_OK_CONTROL', plaintext: null } : { result: 'E4_RESULT_OK', plaintext: toHexStr(p) };
  } catch (e) {
    if (!isE4Error(e)) throw e;
    expect(resultName(e.code)).toBe(e.result);
    return { result: e.result, plaintext: null };
  }
}

const topicsOf = (s: StoredState) => s.topics.map((t) => ({ topic_hash: toHexStr(t.hash), key: toHexStr(t.key) }));

/**
 * `makeVault()` gives a fresh vault; `deviceSha3`: whether the device hashes topic names itself.
 * Without it (a Puck.js image) the device configuration carries every topic name the device
 * uses with its host-computed hash: with a key for the topics it holds, without one for topics
 * C2 may grant later.
 */
export function vaultSuite(makeVault: () => Vault, deviceSha3: boolean): void {
  const names = allTopicNames();

  function receiver(r: { client_id: string; client_key: string; topics: VectorTopic[] }, now: number, options?: Options) {
    const vault = makeVault();
    expect(!!vault.sha3, 'SHA-3 on the device').toBe(deviceSha3);
    const clock = fixedClock(now);
    const store = memoryStore();
    const held = r.topics.map((t) => ({ topic: t.topic, hash: t.topic_hash, key: t.key }));
    const known = deviceSha3 ? [] : names.filter((n) => !held.some((h) => h.topic === n.topic));
    const client = create({ vault, clock, store }, { id: r.client_id, key: r.client_key, topics: [...held, ...known] }, options);
    return { client, clock, store };
  }

  describe('aes_siv', () => {
    V.aes_siv.forEach((c, i) => {
      it(`aes_siv #${i} (${c.plaintext.length / 2} bytes)`, () => {
        const vault = makeVault();
        expect(toHexStr(vault.sivEncrypt(hex(c.key), hex(c.ad), hex(c.plaintext)))).toBe(c.output);
        expect(toHexStr(vault.sivDecrypt(hex(c.key), hex(c.ad), hex(c.output))!)).toBe(c.plaintext);
        for (const at of [0, 15, c.output.length / 2 - 1]) {
          const bad = hex(c.output);
          bad[at] ^= 1;
          expect(vault.sivDecrypt(hex(c.key), hex(c.ad), bad)).toBeNull();
        }
        const badAd = hex(c.ad);
        badAd[0] ^= 1;
        expect(vault.sivDecrypt(hex(c.key), badAd, hex(c.output))).toBeNull();
      });
    });
  });

  describe('protect', () => {
    V.protect.forEach((c, i) => {
      it(`protect #${i}: ${c.plaintext.length / 2} bytes at ${c.timestamp}`, () => {
        const hash = toHexStr(topicHash(nobleVault(), c.topic));
        const { client } = receiver(
          { client_id: '00'.repeat(16), client_key: '11'.repeat(32), topics: [{ topic: c.topic, topic_hash: hash, key: c.topic_key }] },
          c.timestamp,
        );
        const out = client.protect(c.topic, hex(c.plaintext));
        expect(toHexStr(out)).toBe(c.protected);
        expect(toHexStr(out.subarray(0, 8))).toBe(c.timestamp_le_hex);
        expect(c.expected_result).toBe('E4_RESULT_OK');
        expect(outcome(() => client.unprotect(c.topic, hex(c.protected)))).toEqual({ result: 'E4_RESULT_OK', plaintext: c.plaintext });
      });
    });
  });

  describe('unprotect', () => {
    for (const c of V.unprotect) {
      it(`${c.case}`, () => {
        const { client, store } = receiver(c.receiver, c.now);
        const before = store.load();
        const got = outcome(() => client.unprotect(c.topic, hex(c.protected), c.options));
        expect(got.result).toBe(c.expected_result);
        expect(got.plaintext).toBe(c.expected_plaintext);
        expect(store.load()).toEqual(before);
      });
    }
  });

  describe('commands', () => {
    for (const c of V.commands) {
      it(`${c.case}`, () => {
        const { client, store } = receiver(
          { client_id: c.client_id, client_key: c.state_before.client_key, topics: c.state_before.topics },
          c.now,
        );
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
        it(`${s.case} (key transition ${transition ? 'on' : 'off'})`, () => {
          const init = s.initial_state;
          // distinctStamps off (the reference's behaviour): each protect step is run twice and must
          // give the same bytes both times.
          const { client, clock } = receiver(init, s.steps[0].now, { keyTransition: transition ? 3600 : 0, distinctStamps: 0 });
          s.steps.forEach((step, i) => {
            clock.set(step.now);
            const label = `step ${i}: ${step.description}`;
            if (step.op === 'protect') {
              const got = outcome(() => client.protect(step.topic, hex(step.plaintext)));
              expect(got.result, label).toBe(step.expected_result);
              if (step.expected_protected)
                expect(toHexStr(client.protect(step.topic, hex(step.plaintext))), label).toBe(step.expected_protected);
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
}
