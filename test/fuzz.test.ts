/**
 * Fuzzing the built image (dist/e4.js in the node:vm device sandbox, loaded as the other image
 * tests load it): on every clock kind (none, trusted, untrusted, monotonic), a seeded stream of
 * inputs: valid messages, replays, mutated, truncated and extended messages, messages on the wrong
 * topic, random bytes, authenticated commands of every code (0-255) and length (0-66) with random
 * and well-formed contents, protect calls, reboots from the store.
 *
 * Every failure must be a typed E4Error (name E4Error, one of the result codes) and leave both
 * `snapshot()` and the store's bytes as they were, except for the documented drop of an expired
 * previous topic key (README.md, "Key transition"), which is checked to be exactly that. The
 * store is a byte medium holding the state's encoding after each commit.
 *
 * Reproducible: E4_FUZZ_SEED=<n> replays a run (the seed is printed); E4_FUZZ_INPUTS=<n> sets
 * the number of inputs per clock kind (default 25,000: 100,000 a run).
 */
import { describe, expect, it } from 'vitest';
import { aessiv } from '@noble/ciphers/aes.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import type { Change, Clock, ClockKind, Store, StoredState } from '../firmware/hal.ts';
import { createSandbox, loadImage } from '../host-sim/shared/image.ts';
import type { Sandbox } from '../host-sim/shared/image.ts';
import { encodeState } from '../host-sim/shared/hal.ts';
import type { EncodedState } from '../host-sim/shared/hal.ts';

const SEED = (process.env.E4_FUZZ_SEED !== undefined ? Number(process.env.E4_FUZZ_SEED) : 0x9e3779b9) >>> 0;
const PER_CLOCK = process.env.E4_FUZZ_INPUTS !== undefined ? Number(process.env.E4_FUZZ_INPUTS) : 25000;
const CLOCKS = ['none', 'trusted', 'untrusted', 'monotonic'] as const;
const CODES = new Set([0, -1, -100, -101, -102, -103, -104, -105, -106, -107, -108, -112, -113]);
const T0 = 1_700_000_000;
const NAMES = ['fuzz/a', 'fuzz/b', 'fuzz/c'];

/** A protected message and the topic it is for. */
interface Sent {
  topic: string;
  msg: Uint8Array;
}

/** One input of the stream: a message to unprotect, or a payload to protect. */
type Input =
  | (Sent & { protect?: false; flags?: number; payload?: undefined })
  | { protect: true; topic: string; payload: Uint8Array | string; msg?: undefined; flags?: undefined };

/** xorshift32. */
function prng(seed: number) {
  let x = seed || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  return {
    u32: next,
    int: (n: number) => next() % n,
    chance: (p: number) => next() / 4294967296 < p,
    bytes: (n: number) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = next() & 255;
      return b;
    },
    pick: <T>(list: readonly T[]): T => list[next() % list.length],
  };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const hash16 = (topic: string) => sha3_256(new TextEncoder().encode(topic)).subarray(0, 16);

function protect(key: Uint8Array, ts: number, payload: Uint8Array): Uint8Array {
  const t = new Uint8Array(8);
  new DataView(t.buffer).setBigUint64(0, BigInt(ts), true);
  const sealed = aessiv(Uint8Array.from([...key, ...key]), t).encrypt(payload);
  const m = new Uint8Array(8 + sealed.length);
  m.set(t);
  m.set(sealed, 8);
  return m;
}

/** A Store on a byte medium: after each commit the medium holds the encoding of the whole state
 * (so "the store is unchanged" is a comparison of bytes). */
function byteStore(box: Sandbox): Store & { medium: Buffer | null } {
  const store = {
    medium: null as Buffer | null,
    load(): StoredState | null {
      if (!store.medium) return null;
      const s: EncodedState = JSON.parse(store.medium.toString('utf8'));
      const b = (h: string) => box.bytesIn(Buffer.from(h, 'hex'));
      return {
        id: b(s.id),
        key: b(s.key),
        topics: s.topics.map((t) => ({
          hash: b(t.hash),
          key: b(t.key),
          prevKey: t.prevKey === null ? null : b(t.prevKey),
          prevSince: t.prevSince,
        })),
        lastCommand: s.lastCommand,
        lastTags: b(s.lastTags),
      };
    },
    commit(changes: Change[]) {
      const next = box.E4.applyChanges(store.load(), changes);
      store.medium = Buffer.from(JSON.stringify(encodeState(next)));
    },
  };
  return store;
}

/** The expired-previous-key drop: `before` with the previous key of every topic that lost it. */
function withDrops(before: EncodedState, after: EncodedState): EncodedState {
  const b: EncodedState = JSON.parse(JSON.stringify(before));
  for (const t of b.topics) {
    const a = after.topics.find((x) => x.hash === t.hash);
    if (a && t.prevKey !== null && a.prevKey === null) {
      t.prevKey = null;
      t.prevSince = -1;
    }
  }
  return b;
}

function runClock(clockKind: 'none' | ClockKind, seed: number, inputs: number) {
  const rnd = prng(seed);
  const box = createSandbox(loadImage());
  const E4 = box.E4;
  const store = byteStore(box);
  let truth = T0; // wall time of the world
  let reading = 0; // what the device's clock says
  const clock: Clock | undefined =
    clockKind === 'none'
      ? undefined
      : {
          kind: clockKind,
          now: () => reading,
        };
  const setReading = () => {
    if (clockKind === 'trusted') reading = truth;
    else if (clockKind === 'untrusted')
      reading = truth - 3 * 365 * 86400; // set wrong: three years behind
    else if (clockKind === 'monotonic') reading = truth - T0 + 5; // seconds since power-on
  };
  setReading();
  const clientKey0 = rnd.bytes(32);
  const device = {
    id: hex(rnd.bytes(16)),
    key: hex(clientKey0),
    topics: NAMES.map((n) => ({ topic: n, hash: hex(hash16(n)), key: hex(rnd.bytes(32)) })),
  };
  const open = () => E4.create({ vault: E4.vault(), store, clock }, device, null);
  let client = open();
  const names = new Map(NAMES.map((n) => [hex(hash16(n)), n]));

  // The model: the device's keys as its snapshot says.
  const current = () => ({ snap: encodeState(client.snapshot()), medium: store.medium ? Buffer.from(store.medium) : null });
  let model = current();
  const refresh = () => {
    model = current();
  };
  const recent: Sent[] = [];
  const remember = (topic: string, msg: Uint8Array) => {
    recent.push({ topic, msg });
    if (recent.length > 500) recent.shift();
  };
  const failures: string[] = [];
  const stats = { ok: 0, failed: 0, drops: 0, byCode: {} as Record<string, number>, reboots: 0 };
  let cmdIndex = 0;

  // Mostly around the true time (the window's edges included), sometimes far off; an accepted
  // command from far in the future moves a device without a trusted clock there for good, so
  // commands get such stamps rarely.
  const stamp = (wild = 0.05) =>
    Math.max(
      0,
      truth + (rnd.chance(wild) ? rnd.pick([-truth, -86400 * 365, 86400 * 365, 2 ** 40, 2 ** 53 - 1 - truth]) : rnd.int(1401) - 700),
    );
  const held = () => model.snap.topics.filter((t) => names.has(t.hash));
  const keyOf = (t: EncodedState['topics'][number]) => Buffer.from(rnd.chance(0.15) && t.prevKey ? t.prevKey : t.key, 'hex');

  function validData(): Sent | null {
    const ts = held();
    if (!ts.length) return null;
    const t = rnd.pick(ts);
    const topic = names.get(t.hash)!; // held() keeps only the topics named in `names`
    const msg = protect(keyOf(t), stamp(), rnd.bytes(rnd.int(80)));
    remember(topic, msg);
    return { topic, msg };
  }

  function command(): Sent {
    // Every (code, length) pair in turn, contents random; now and then a well-formed command on
    // the device's own topics, so that keys really change.
    const i = cmdIndex++;
    let code = i % 256;
    let len = Math.floor(i / 256) % 67;
    let body = rnd.bytes(len);
    if (rnd.chance(0.3)) {
      code = rnd.int(4);
      const hash = rnd.chance(0.8) ? Buffer.from(hash16(rnd.pick(NAMES))) : rnd.bytes(16);
      const key = rnd.chance(0.3) && held().length ? Buffer.from(held()[0].key, 'hex') : rnd.bytes(32);
      body = code === 0 ? hash : code === 1 ? new Uint8Array(0) : code === 2 ? rnd.bytes(32) : Buffer.concat([key, hash]);
      len = body.length;
    }
    const plain = new Uint8Array(1 + len);
    plain[0] = code;
    plain.set(body.subarray(0, len), 1);
    // A command without the current client key now and then: INVALID_TAG.
    const key = rnd.chance(0.95) ? Buffer.from(model.snap.key, 'hex') : rnd.bytes(32);
    const msg = protect(key, stamp(0.001), len === 0 && rnd.chance(0.5) ? new Uint8Array(0) : plain);
    remember(client.controlTopic, msg);
    return { topic: client.controlTopic, msg };
  }

  function input(): Input | null {
    const r = rnd.int(100);
    if (r < 20) return validData();
    if (r < 35) return recent.length ? { ...rnd.pick(recent), flags: rnd.chance(0.1) ? 1 : undefined } : null;
    if (r < 50) {
      const v = recent.length ? rnd.pick(recent) : validData();
      if (!v) return null;
      const m = Uint8Array.from(v.msg);
      for (let k = 1 + rnd.int(3); k > 0; k--) {
        if (rnd.chance(0.5)) m[rnd.int(m.length)] ^= 1 << rnd.int(8);
        else m[rnd.int(m.length)] = rnd.u32() & 255;
      }
      return { topic: v.topic, msg: m };
    }
    if (r < 60) {
      const v = recent.length ? rnd.pick(recent) : validData();
      if (!v) return null;
      if (rnd.chance(0.5)) return { topic: v.topic, msg: v.msg.subarray(0, rnd.int(v.msg.length)) };
      return { topic: v.topic, msg: Buffer.concat([v.msg, rnd.bytes(1 + rnd.int(20))]) };
    }
    if (r < 68) {
      const v = recent.length ? rnd.pick(recent) : validData();
      if (!v) return null;
      return { topic: rnd.pick([...NAMES, 'fuzz/unknown', client.controlTopic, '', 'e4/' + '0'.repeat(32)]), msg: v.msg };
    }
    if (r < 88) return command();
    if (r < 93) return { topic: rnd.pick([...NAMES, client.controlTopic, 'x']), msg: rnd.bytes(rnd.int(90)) };
    if (r < 98)
      return {
        protect: true,
        topic: rnd.pick([...NAMES, 'fuzz/unknown', client.controlTopic]),
        payload: rnd.chance(0.5) ? rnd.bytes(rnd.int(40)) : 'text ' + rnd.int(5),
      };
    return { topic: rnd.pick(NAMES), msg: rnd.bytes(24 + rnd.int(10)), flags: rnd.int(4) };
  }

  // `inputs` inputs are delivered (a generator with nothing to work on yields none).
  for (let n = 0; stats.ok + stats.failed < inputs; n++) {
    if (rnd.chance(0.3)) truth += rnd.int(4);
    setReading();
    if (rnd.chance(0.0005)) {
      // A reboot: the device comes back from its store (RAM, the replay windows included, is gone).
      client.close();
      client = E4.create({ vault: E4.vault(), store, clock }, null, null);
      stats.reboots++;
      refresh();
    }
    const x = input();
    if (!x) continue;
    let threw: unknown = null;
    try {
      if (x.protect) client.protect(x.topic, typeof x.payload === 'string' ? x.payload : box.bytesIn(x.payload));
      else client.unprotect(x.topic, box.bytesIn(x.msg), x.flags);
    } catch (e) {
      threw = e;
    }
    if (!threw) {
      stats.ok++;
      refresh();
      continue;
    }
    stats.failed++;
    const label = () =>
      `input ${n} (${clockKind}, seed ${seed}): ${x.protect ? 'protect' : 'unprotect'} on ${JSON.stringify(x.topic)} of ${x.msg ? x.msg.length + ' bytes ' + hex(x.msg).slice(0, 80) : JSON.stringify(x.payload)}`;
    if (!E4.isE4Error(threw) || threw.name !== 'E4Error' || !CODES.has(threw.code)) {
      failures.push(`${label()}: threw ${threw && typeof threw === 'object' && 'stack' in threw && threw.stack ? threw.stack : threw}`);
      refresh();
      continue;
    }
    stats.byCode[threw.result] = (stats.byCode[threw.result] || 0) + 1;
    const after = encodeState(client.snapshot());
    const medium = store.medium;
    const same =
      JSON.stringify(after) === JSON.stringify(model.snap) &&
      ((!medium && !model.medium) || (medium && model.medium && medium.equals(model.medium)));
    if (!same) {
      // Only the drop of an expired previous key may have happened, on both sides alike.
      const dropped = withDrops(model.snap, after);
      const storedNow: EncodedState | null = medium ? JSON.parse(medium.toString('utf8')) : null;
      const storedBefore: EncodedState | null = model.medium ? JSON.parse(model.medium.toString('utf8')) : null;
      const storeOk = storedBefore && storedNow && JSON.stringify(withDrops(storedBefore, storedNow)) === JSON.stringify(storedNow);
      if (JSON.stringify(dropped) === JSON.stringify(after) && storeOk && JSON.stringify(after) !== JSON.stringify(model.snap))
        stats.drops++;
      else failures.push(`${label()}: ${threw.result} changed the state`);
      refresh();
    }
  }
  client.close();
  return { failures, stats };
}

describe('fuzzing the built image on every clock kind', () => {
  for (const [i, kind] of CLOCKS.entries()) {
    it(`clock ${kind}: ${PER_CLOCK} inputs; every failure a typed E4Error that changes nothing`, () => {
      const seed = (SEED + i * 0x1000193) >>> 0;
      const { failures, stats } = runClock(kind, seed, PER_CLOCK);
      console.log(
        `fuzz: clock ${kind}, seed ${seed} (E4_FUZZ_SEED=${SEED}): ${stats.ok} accepted, ${stats.failed} refused ${JSON.stringify(stats.byCode)}, ${stats.drops} expired-key drops, ${stats.reboots} reboots`,
      );
      expect(failures.slice(0, 5)).toEqual([]);
      expect(stats.ok + stats.failed).toBe(PER_CLOCK);
      // The stream reaches the paths it is meant to: successes and each kind of refusal.
      expect(stats.ok).toBeGreaterThan(PER_CLOCK / 50);
      for (const r of [
        'E4_ERROR_INVALID_TAG',
        'E4_ERROR_CIPHERTEXT_TOO_SHORT',
        'E4_ERROR_TOPICKEY_MISSING',
        'E4_ERROR_MESSAGE_REPLAYED',
        'E4_ERROR_INVALID_COMMAND',
        'E4_ERROR_TIMESTAMP_TOO_OLD',
      ]) {
        expect(stats.byCode[r] || 0, r).toBeGreaterThan(0);
      }
    }, 120000);
  }
});
