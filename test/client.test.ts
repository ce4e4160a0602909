/**
 * firmware/client.ts beyond the reference vectors: time without a trusted clock, replay
 * defences, key transition, durable state, wiping, provisioning and bad input.
 */
import { describe, expect, it } from 'vitest';
import { create, commands, protectMessage, memoryStore, topicHash, toHex } from '../firmware/core';
import { nobleVault } from './support/noble-vault';
import type { Clock, Hal, Vault } from '../firmware/hal';
import type { Options } from '../firmware/client';
import { codeOf } from './support/errors';

const vault = nobleVault();
const ID = 'a7dcef9aef26202fce82a7c7d6672afb';
const CLIENT_KEY = new Uint8Array(32).fill(0x11);
const K1 = new Uint8Array(32).fill(0x21);
const K2 = new Uint8Array(32).fill(0x22);
const K3 = new Uint8Array(32).fill(0x23);
const TOPIC = 'health/heart-rate';
const HASH = topicHash(vault, TOPIC);
const T0 = 1_700_000_000;

/** A clock the test moves by hand. */
function clock(kind: Clock['kind'], t: number) {
  const c = { kind, t, now: () => c.t };
  return c;
}

function device(hal: Partial<Hal> = {}, options?: Options, topics = [{ topic: TOPIC, hash: toHex(HASH), key: K1 }]) {
  const store = (hal.store as ReturnType<typeof memoryStore>) || memoryStore();
  const client = create({ vault, store, ...hal }, { id: ID, key: CLIENT_KEY, topics }, options);
  return { client, store };
}

const command = (ts: number, plaintext: Uint8Array, key = CLIENT_KEY) => protectMessage(vault, key, ts, plaintext);
const data = (ts: number, text: string, key = K1) => protectMessage(vault, key, ts, new TextEncoder().encode(text));
const text = (b: Uint8Array | null) => (b ? new TextDecoder().decode(b) : b);

const code = codeOf;

describe('time without a trusted clock', () => {
  it('a device with no clock learns the time from an authenticated command', () => {
    const { client } = device();
    const ctrl = client.controlTopic;
    expect(client.time()).toEqual({ now: -1, stamp: 0, lastCommand: -1 });
    // Without any time, data of any age is accepted (the reference's "no clock").
    expect(text(client.unprotect(TOPIC, data(T0 - 100000, 'old')))).toBe('old');
    expect(client.unprotect(ctrl, command(T0, commands.setTopicKey(K1, HASH)))).toBeNull();
    expect(client.time().stamp).toBe(T0);
    expect(client.protect(TOPIC, 'x').subarray(0, 8)).toEqual(Uint8Array.of(0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0));
    // Frozen time is not checked against: data stays accepted, commands are ordered instead.
    expect(text(client.unprotect(TOPIC, data(T0 + 5000, 'later')))).toBe('later');
  });

  it('a monotonic clock advances the calibrated time and enables the window', () => {
    const mono = clock('monotonic', 5);
    const { client } = device({ clock: mono });
    expect(client.time().now).toBe(-1);
    client.unprotect(client.controlTopic, command(T0, commands.resetTopics()));
    mono.t = 65;
    expect(client.time().now).toBe(T0 + 60);
    client.setTopicKey(TOPIC, K1);
    expect(code(() => client.unprotect(TOPIC, data(T0 + 60 - 601, 'stale')))).toBe(-103);
    expect(code(() => client.unprotect(TOPIC, data(T0 + 60 + 601, 'ahead')))).toBe(-102);
    expect(text(client.unprotect(TOPIC, data(T0 + 60 + 600, 'edge')))).toBe('edge');
  });

  it('an untrusted clock that is wrong is corrected by the first command', () => {
    const rtc = clock('untrusted', 978307200); // reset to 2001
    const { client } = device({ clock: rtc });
    expect(code(() => client.unprotect(TOPIC, data(T0, 'now')))).toBe(-102);
    // Commands are not held to the window of an untrusted clock: they calibrate it.
    expect(client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K1, HASH)))).toBeNull();
    rtc.t += 30;
    expect(client.time().now).toBe(T0 + 30);
    expect(text(client.unprotect(TOPIC, data(T0 + 20, 'now')))).toBe('now');
  });

  it('a trusted clock is never moved by commands, and commands are held to its window', () => {
    const rtc = clock('trusted', T0);
    const { client } = device({ clock: rtc });
    expect(code(() => client.unprotect(client.controlTopic, command(T0 - 601, commands.resetTopics())))).toBe(-103);
    client.unprotect(client.controlTopic, command(T0 - 600, commands.setTopicKey(K1, HASH)));
    expect(client.time().now).toBe(T0);
  });

  it('with calibration off, commands do not set the time', () => {
    const { client } = device({}, { calibrate: false });
    client.unprotect(client.controlTopic, command(T0, commands.resetTopics()));
    expect(client.time().now).toBe(-1);
  });

  it('ignoreTimestamp skips the window for every message', () => {
    const { client } = device({ clock: clock('trusted', T0) }, { ignoreTimestamp: true });
    expect(text(client.unprotect(TOPIC, data(T0 - 99999, 'old')))).toBe('old');
  });

  it('maxDelay sets the window', () => {
    const { client } = device({ clock: clock('trusted', T0) }, { maxDelay: 30 });
    expect(text(client.unprotect(TOPIC, data(T0 - 30, 'a')))).toBe('a');
    expect(code(() => client.unprotect(TOPIC, data(T0 - 31, 'b')))).toBe(-103);
  });
});

describe('replay defences', () => {
  it('after calibration, an older command is rejected without any clock, and nothing changes', () => {
    const { client, store } = device();
    client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)));
    const before = store.load();
    const old = command(T0 - 1, commands.resetTopics());
    expect(code(() => client.unprotect(client.controlTopic, old))).toBe(-106);
    expect(store.load()).toEqual(before);
    expect(client.snapshot().topics.length).toBe(1);
  });

  it('two different commands with the same timestamp both run', () => {
    const { client } = device();
    const ctrl = client.controlTopic;
    client.unprotect(ctrl, command(T0, commands.setTopicKey(K2, topicHash(vault, 'a'))));
    client.unprotect(ctrl, command(T0, commands.setTopicKey(K3, topicHash(vault, 'b'))));
    expect(client.snapshot().topics.length).toBe(3);
  });

  it('an exact duplicate of a command is rejected (idempotent under duplicate delivery)', () => {
    const { client, store } = device();
    const msg = command(T0, commands.removeTopic(HASH));
    expect(client.unprotect(client.controlTopic, msg)).toBeNull();
    const commits = store.commits;
    expect(code(() => client.unprotect(client.controlTopic, msg))).toBe(-106);
    expect(store.commits).toBe(commits);
  });

  it('the command order and same-second tags survive a reboot', () => {
    const store = memoryStore();
    const first = device({ store });
    const a = command(T0, commands.setTopicKey(K2, topicHash(vault, 'a')));
    first.client.unprotect(first.client.controlTopic, a);
    const rebooted = create({ vault, store }); // no config: the stored state is the device
    expect(rebooted.time().stamp).toBe(T0);
    expect(code(() => rebooted.unprotect(rebooted.controlTopic, a))).toBe(-106);
    expect(code(() => rebooted.unprotect(rebooted.controlTopic, command(T0 - 5, commands.resetTopics())))).toBe(-106);
    expect(rebooted.unprotect(rebooted.controlTopic, command(T0, commands.resetTopics()))).toBeNull();
  });

  it('rejectOldCommands: false accepts older commands (reference behaviour)', () => {
    const { client } = device({}, { rejectOldCommands: false, replayCache: 0 });
    client.unprotect(client.controlTopic, command(T0, commands.resetTopics()));
    expect(client.unprotect(client.controlTopic, command(T0 - 1, commands.setTopicKey(K1, HASH)))).toBeNull();
  });

  it('an exact duplicate data message is rejected, also once the bounded window has forgotten it', () => {
    const { client } = device({}, { replayCache: 2 });
    const m1 = data(T0, 'one');
    expect(text(client.unprotect(TOPIC, m1))).toBe('one');
    expect(code(() => client.unprotect(TOPIC, m1))).toBe(-106);
    client.unprotect(TOPIC, data(T0 + 1, 'two'));
    client.unprotect(TOPIC, data(T0 + 2, 'three'));
    // m1 has left the two-entry window, whose floor rose to its timestamp: it cannot come back
    // (before issue 9 it was accepted again here).
    expect(code(() => client.unprotect(TOPIC, m1))).toBe(-103);
  });

  it('replayCache: 0 disables the duplicate check', () => {
    const { client } = device({}, { replayCache: 0 });
    const m = data(T0, 'dup');
    client.unprotect(TOPIC, m);
    expect(text(client.unprotect(TOPIC, m))).toBe('dup');
  });

  it('a rejected message is not remembered: a failed command can be retried', () => {
    const store = memoryStore();
    const { client } = device({ store });
    const msg = command(T0, commands.setTopicKey(K2, HASH));
    store.failNext = new Error('flash busy');
    expect(code(() => client.unprotect(client.controlTopic, msg))).toBe(-108);
    expect(client.unprotect(client.controlTopic, msg)).toBeNull();
  });
});

describe('key transition', () => {
  it('keeps the previous key for the grace period, tried only after the current key', () => {
    const rtc = clock('trusted', T0);
    const { client, store } = device({ clock: rtc });
    client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)));
    expect(text(client.unprotect(TOPIC, data(T0, 'new', K2)))).toBe('new');
    expect(text(client.unprotect(TOPIC, data(T0, 'old', K1)))).toBe('old');
    expect(client.protect(TOPIC, 'out')).toEqual(protectMessage(vault, K2, T0, new TextEncoder().encode('out')));
    rtc.t = T0 + 3600;
    expect(text(client.unprotect(TOPIC, data(T0 + 3600, 'late', K1)))).toBe('late');
    rtc.t = T0 + 3601;
    expect(code(() => client.unprotect(TOPIC, data(T0 + 3601, 'expired', K1)))).toBe(-101);
    // The expired key is dropped from memory and from the store.
    expect(client.snapshot().topics[0].prevKey).toBeNull();
    expect(store.load()!.topics[0].prevKey).toBeNull();
  });

  it('without any notion of time, the previous key lasts until the next rotation', () => {
    const { client } = device();
    const ctrl = client.controlTopic;
    client.unprotect(ctrl, command(T0, commands.setTopicKey(K2, HASH), CLIENT_KEY));
    expect(client.snapshot().topics[0].prevSince).toBe(-1);
    expect(text(client.unprotect(TOPIC, data(T0 + 999999, 'k1 still', K1)))).toBe('k1 still');
    client.unprotect(ctrl, command(T0 + 1, commands.setTopicKey(K3, HASH)));
    expect(code(() => client.unprotect(TOPIC, data(T0 + 2, 'k1 gone', K1)))).toBe(-101);
    expect(text(client.unprotect(TOPIC, data(T0 + 2, 'k2 previous', K2)))).toBe('k2 previous');
  });

  it('a monotonic clock stamps the rotation at the command time and expires it', () => {
    const mono = clock('monotonic', 0);
    const { client } = device({ clock: mono });
    client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)));
    expect(client.snapshot().topics[0].prevSince).toBe(T0);
    mono.t = 3601;
    expect(code(() => client.unprotect(TOPIC, data(T0 + 3601, 'x', K1)))).toBe(-101);
  });

  it('the same key again changes nothing; keyTransition: 0 keeps no previous key', () => {
    const a = device();
    a.client.unprotect(a.client.controlTopic, command(T0, commands.setTopicKey(K1, HASH)));
    expect(a.client.snapshot().topics[0].prevKey).toBeNull();
    const b = device({}, { keyTransition: 0 });
    b.client.unprotect(b.client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)));
    expect(b.client.snapshot().topics[0].prevKey).toBeNull();
    expect(code(() => b.client.unprotect(TOPIC, data(T0, 'old', K1)))).toBe(-101);
  });

  it('RemoveTopic and ResetTopics drop previous keys too', () => {
    for (const cmd of [commands.removeTopic(HASH), commands.resetTopics()]) {
      const { client, store } = device();
      client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)));
      client.unprotect(client.controlTopic, command(T0 + 1, cmd));
      client.unprotect(client.controlTopic, command(T0 + 2, commands.setTopicKey(K3, HASH)));
      expect(store.load()!.topics).toEqual([{ hash: HASH, key: K3, prevKey: null, prevSince: -1 }]);
      expect(code(() => client.unprotect(TOPIC, data(T0 + 3, 'x', K2)))).toBe(-101);
    }
  });
});

describe('durable state', () => {
  it('a failing store leaves memory exactly as it was and reports PERSISTENCE_ERROR', () => {
    const store = memoryStore();
    const { client } = device({ store });
    const before = client.snapshot();
    const ctrl = client.controlTopic;
    for (const cmd of [
      commands.setTopicKey(K2, HASH),
      commands.removeTopic(HASH),
      commands.resetTopics(),
      commands.setIdKey(K3),
      commands.setTopicKey(K3, topicHash(vault, 'new')),
    ]) {
      store.failNext = new Error('write failed');
      expect(code(() => client.unprotect(ctrl, command(T0, cmd)))).toBe(-108);
      expect(client.snapshot()).toEqual(before);
      expect(client.time().lastCommand).toBe(-1);
    }
    store.failNext = new Error('write failed');
    expect(code(() => client.setTopicKey('other', K2))).toBe(-108);
    expect(client.snapshot()).toEqual(before);
  });

  it('a restarted device keeps its keys and ignores the factory config', () => {
    const store = memoryStore();
    const { client } = device({ store });
    client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)));
    client.unprotect(client.controlTopic, command(T0 + 1, commands.setIdKey(K3)));
    const again = create({ vault, store }, { id: ID, key: CLIENT_KEY, topics: [{ topic: TOPIC, key: K1 }] });
    expect(again.snapshot()).toEqual(client.snapshot());
    expect(text(again.unprotect(TOPIC, data(T0 + 1, 'k2', K2)))).toBe('k2');
    expect(again.unprotect(again.controlTopic, command(T0 + 2, commands.resetTopics(), K3))).toBeNull();
  });

  it('a command commits once, before it reports success', () => {
    const store = memoryStore();
    const { client } = device({ store });
    const n = store.commits;
    client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)));
    expect(store.commits).toBe(n + 1);
    expect(store.load()!.topics[0].key).toEqual(K2);
  });

  it('a full topic table refuses a new topic and changes nothing', () => {
    const { client, store } = device({}, { maxTopics: 1 });
    const before = store.load();
    expect(code(() => client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, topicHash(vault, 'b')))))).toBe(-105);
    expect(store.load()).toEqual(before);
    // Replacing the existing topic's key still works.
    expect(client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)))).toBeNull();
  });
});

describe('wiping', () => {
  /** A vault that records the key buffers and plaintexts it sees (by reference). */
  function spyVault() {
    const keys: Uint8Array[] = [];
    const plaintexts: Uint8Array[] = [];
    const v: Vault = {
      sivEncrypt: vault.sivEncrypt,
      sha3: vault.sha3,
      sivDecrypt(key, ad, sealed) {
        keys.push(key);
        const p = vault.sivDecrypt(key, ad, sealed);
        if (p) plaintexts.push(p);
        return p;
      },
    };
    return { v, keys, plaintexts };
  }

  it('removed and replaced keys, and command plaintexts, are wiped from memory', () => {
    const spy = spyVault();
    const client = create({ vault: spy.v }, { id: ID, key: CLIENT_KEY, topics: [{ topic: TOPIC, key: K1 }] }, { keyTransition: 0 });
    client.unprotect(TOPIC, data(T0, 'a'));
    const liveK1 = spy.keys[0];
    expect(liveK1).toEqual(K1);
    client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K2, HASH)));
    expect(liveK1).toEqual(new Uint8Array(32)); // the replaced key
    const cmdPlain = spy.plaintexts[spy.plaintexts.length - 1];
    expect(cmdPlain).toEqual(new Uint8Array(49)); // the command (it carried K2)
    const liveClientKey = spy.keys[spy.keys.length - 1];
    client.unprotect(TOPIC, data(T0, 'b', K2));
    const liveK2 = spy.keys[spy.keys.length - 1];
    client.unprotect(client.controlTopic, command(T0 + 1, commands.resetTopics()));
    expect(liveK2).toEqual(new Uint8Array(32));
    client.unprotect(client.controlTopic, command(T0 + 2, commands.setIdKey(K3)));
    expect(liveClientKey).toEqual(new Uint8Array(32));
    client.close();
    expect(code(() => client.protect(TOPIC, 'x'))).toBe(-112);
  });

  it('a rejected message leaves no plaintext behind', () => {
    const spy = spyVault();
    const client = create({ vault: spy.v, clock: clock('trusted', T0) }, { id: ID, key: CLIENT_KEY, topics: [{ topic: TOPIC, key: K1 }] });
    expect(code(() => client.unprotect(TOPIC, data(T0 - 700, 'secret')))).toBe(-103);
    expect(spy.plaintexts[0]).toEqual(new Uint8Array(6));
  });

  it('error messages never contain key material', () => {
    const { client } = device();
    const hexKeys = [CLIENT_KEY, K1, K2].map(toHex);
    const errors: string[] = [];
    for (const fn of [
      () => client.unprotect(TOPIC, data(T0, 'x', K2)),
      () => client.unprotect(client.controlTopic, command(T0, Uint8Array.of(9, ...K2))),
      () => client.setTopicKey(TOPIC, toHex(K2).slice(2)),
      () => client.unprotect('nope', data(T0, 'x')),
    ]) {
      try {
        fn();
      } catch (e) {
        errors.push(String(e) + (e as Error).message);
      }
    }
    expect(errors.length).toBe(4);
    for (const m of errors) for (const k of hexKeys) expect(m).not.toContain(k);
  });
});

describe('provisioning and bad input', () => {
  it('factory calls set, replace and remove topic keys without C2', () => {
    const { client, store } = device({}, undefined, []);
    client.setTopicKey(TOPIC, K1);
    client.setTopicKey({ hash: toHex(topicHash(vault, 'b')) }, K2);
    client.setTopicKey(TOPIC, toHex(K3));
    expect(store.load()!.topics.map((t) => toHex(t.key))).toEqual([toHex(K3), toHex(K2)]);
    client.removeTopic(TOPIC);
    expect(code(() => client.removeTopic(TOPIC))).toBe(-105);
    client.resetTopics();
    expect(client.snapshot().topics).toEqual([]);
    client.setClientKey(K2);
    expect(client.unprotect(client.controlTopic, command(T0, commands.resetTopics(), K2))).toBeNull();
  });

  it('a topic hash is given as bytes or { hash }; a string is always a topic name, even one of 32 hex characters', () => {
    const { client, store } = device({}, undefined, []);
    const hexName = 'ab'.repeat(16); // looks like a hash: still a name
    client.setTopicKey(hexName, K1);
    client.setTopicKey(topicHash(vault, 'b'), K2);
    client.setTopicKey({ hash: topicHash(vault, 'c') }, K3);
    expect(store.load()!.topics.map((t) => toHex(t.hash))).toEqual(
      [topicHash(vault, hexName), topicHash(vault, 'b'), topicHash(vault, 'c')].map(toHex),
    );
    expect(client.hasTopic(hexName)).toBe(true);
    client.removeTopic({ hash: toHex(topicHash(vault, hexName)) });
    client.removeTopic(topicHash(vault, 'b'));
    client.removeTopic('c');
    expect(client.snapshot().topics).toEqual([]);
    expect(code(() => client.setTopicKey({ hash: 'ab'.repeat(15) }, K1))).toBe(-112);
    expect(code(() => client.removeTopic(new Uint8Array(15)))).toBe(-112);
    expect(code(() => client.removeTopic(null as never))).toBe(-112);
  });

  it('a device can be created from its name', () => {
    const client = create({ vault }, { name: 'alice', key: CLIENT_KEY });
    expect(client.controlTopic).toBe('e4/' + ID);
  });

  it('rejects bad configuration and arguments with PARAMETER_INVALID', () => {
    expect(code(() => create({ vault }))).toBe(-112);
    expect(code(() => create({ vault }, { id: ID, key: new Uint8Array(31) }))).toBe(-112);
    expect(code(() => create({ vault }, { id: 'zz', key: CLIENT_KEY }))).toBe(-112);
    expect(code(() => create({ vault }, { key: CLIENT_KEY }))).toBe(-112);
    expect(code(() => create({ vault }, { id: ID, key: CLIENT_KEY }, { maxDelay: -1 }))).toBe(-112);
    expect(code(() => create({ vault } as never, { id: ID, key: CLIENT_KEY, topics: [{ key: K1 }] }))).toBe(-112);
    expect(code(() => create({} as never, { id: ID, key: CLIENT_KEY }))).toBe(-112);
    const { client } = device();
    expect(code(() => client.unprotect(TOPIC, 'not bytes' as never))).toBe(-112);
    expect(code(() => client.unprotect(42 as never, new Uint8Array(30)))).toBe(-112);
    expect(code(() => client.protect(TOPIC, 42 as never))).toBe(-112);
    expect(code(() => client.protect('unknown/topic', 'x'))).toBe(-105);
  });

  it('a vault without SHA-3 works with provisioned hashes only', () => {
    const noSha: Vault = { sivEncrypt: vault.sivEncrypt, sivDecrypt: vault.sivDecrypt };
    const client = create({ vault: noSha }, { id: ID, key: CLIENT_KEY, topics: [{ topic: TOPIC, hash: HASH, key: K1 }] });
    expect(text(client.unprotect(TOPIC, data(T0, 'ok')))).toBe('ok');
    expect(code(() => client.unprotect('other', data(T0, 'x')))).toBe(-105);
    expect(code(() => create({ vault: noSha }, { name: 'alice', key: CLIENT_KEY }))).toBe(-112);
  });

  it('topic names without keys let a device without SHA-3 use topics C2 grants later', () => {
    const noSha: Vault = { sivEncrypt: vault.sivEncrypt, sivDecrypt: vault.sivDecrypt };
    const client = create({ vault: noSha }, { id: ID, key: CLIENT_KEY, topics: [{ topic: TOPIC, hash: toHex(HASH) }] });
    expect(client.snapshot().topics).toEqual([]);
    expect(code(() => client.protect(TOPIC, 'x'))).toBe(-105);
    client.unprotect(client.controlTopic, command(T0, commands.setTopicKey(K1, HASH)));
    expect(text(client.unprotect(TOPIC, client.protect(TOPIC, 'granted later')))).toBe('granted later');
    expect(code(() => create({ vault: noSha }, { id: ID, key: CLIENT_KEY, topics: [{ hash: toHex(HASH) }] }))).toBe(-112);
  });

  it('a corrupted message never changes state', () => {
    const { client, store } = device();
    const before = store.load();
    const msg = command(T0, commands.setTopicKey(K2, HASH));
    for (let i = 0; i < msg.length; i += 7) {
      const bad = Uint8Array.from(msg);
      bad[i] ^= 0x40;
      expect(code(() => client.unprotect(client.controlTopic, bad))).toBe(-101);
    }
    expect(code(() => client.unprotect(client.controlTopic, msg.subarray(0, 23)))).toBe(-104);
    expect(store.load()).toEqual(before);
  });
});
