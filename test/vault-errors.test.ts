/**
 * Honest errors on every vault (issue 9, point 6): only an authentication failure is "not
 * authentic" (null from open -> E4_ERROR_INVALID_TAG); anything else a vault meets (out of memory,
 * a native call failing) surfaces as E4_ERROR_INTERNAL, and the client's state and store are
 * unchanged. Vaults: the generic SIV over an AES block (firmware/crypto/siv.ts), Espruino's
 * native AES (boards/espruino/native-aes.ts, over the emulation of require("crypto").AES) and the
 * portable vault (firmware/crypto/portable-vault.ts, over the compact AES, firmware/crypto/aes.ts).
 * The built image's vaults are checked in their engines by test/edges.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { commands, create, isE4Error, memoryStore, protectMessage, toHex } from '../firmware/core';
import { nobleVault } from './support/noble-vault';
import { sivVault } from '../firmware/crypto/siv';
import { nativeVault } from '../boards/espruino/native-aes';
import { portableVault } from '../firmware/crypto/portable-vault';
import { espruinoCrypto } from '../host-sim/sim/espruino-crypto.ts';
import type { AesBlock, Vault } from '../firmware/hal';
import { nodeAesCbc } from './support/node-aes';

const reference = nobleVault();
const CK = new Uint8Array(32).fill(0x11);
const K1 = new Uint8Array(32).fill(0x21);
const TOPIC = 'health/heart-rate';
const HASH = reference.sha3!(new TextEncoder().encode(TOPIC)).subarray(0, 16);
const T = 1_700_000_000;

function code(fn: () => unknown): number | string {
  try {
    fn();
  } catch (e) {
    return isE4Error(e) ? e.code : `not an E4Error: ${e}`;
  }
  return 0;
}

/** A client on `vault` and the fault switch `fail` of that vault. */
function rig(vault: Vault) {
  const store = memoryStore();
  const client = create({ vault, store }, { id: '00'.repeat(16), key: CK, topics: [{ topic: TOPIC, hash: toHex(HASH), key: K1 }] });
  const state = () =>
    JSON.stringify({ snap: client.snapshot(), stored: store.load(), commits: store.commits }, (_, v) =>
      v instanceof Uint8Array ? toHex(v) : v,
    );
  return { client, state };
}

const msg = protectMessage(reference, K1, T, new TextEncoder().encode('reading'));
const cmd = protectMessage(reference, CK, T, commands.resetTopics());
const forged = Uint8Array.from(msg);
forged[forged.length - 1] ^= 1;

/** Every failure of a broken vault is INTERNAL and changes nothing; once it works again, the
 * same message opens (it was not remembered) and a forgery is still INVALID_TAG. */
function expectHonest(vault: Vault, setFailing: (on: boolean) => void) {
  const { client, state } = rig(vault);
  const before = state();
  setFailing(true);
  expect(code(() => client.unprotect(TOPIC, msg))).toBe(-100);
  expect(code(() => client.unprotect(client.controlTopic, cmd))).toBe(-100);
  expect(code(() => client.protect(TOPIC, 'x'))).toBe(-100);
  expect(state()).toBe(before);
  setFailing(false);
  expect(code(() => client.unprotect(TOPIC, forged))).toBe(-101);
  expect(code(() => client.unprotect(TOPIC, msg))).toBe(0);
}

const RealUint32Array = globalThis.Uint32Array;
afterEach(() => {
  globalThis.Uint32Array = RealUint32Array;
});

describe('a vault failure is INTERNAL, never INVALID_TAG, and changes nothing', () => {
  it('generic SIV: an AES block whose ECB or CBC call throws', () => {
    for (const which of ['ecb', 'cbc'] as const) {
      let failing = false;
      const block: AesBlock = {
        ecb: (k, d) => {
          if (failing && which === 'ecb') throw new Error('native call failed');
          return nodeAesCbc.ecb(k, d);
        },
        cbc: (k, d) => {
          if (failing && which === 'cbc') throw new Error('native call failed');
          return nodeAesCbc.cbc!(k, d);
        },
      };
      expectHonest(sivVault(block), (on) => (failing = on));
    }
  });

  it('native AES (Espruino): require("crypto").AES throwing, or returning undefined (its console-only failures)', () => {
    for (const mode of ['throws', 'undefined'] as const) {
      const { AES } = espruinoCrypto();
      let failing = false;
      const aes = {
        encrypt(data: Uint8Array, key: Uint8Array, options?: { mode?: string }) {
          if (failing && mode === 'throws') throw new Error('Out of Memory!');
          if (failing) return undefined;
          return AES.encrypt(data, key, options);
        },
      };
      expectHonest(nativeVault(undefined, aes), (on) => (failing = on));
    }
  });

  it('a SHA-3 that fails while hashing a run-time topic name is INTERNAL too', () => {
    const v = nobleVault();
    let failing = false;
    const vault: Vault = {
      sivEncrypt: v.sivEncrypt,
      sivDecrypt: v.sivDecrypt,
      sha3: (d) => {
        if (failing) throw new RangeError('out of memory');
        return v.sha3!(d);
      },
    };
    const { client, state } = rig(vault);
    const before = state();
    failing = true;
    expect(code(() => client.unprotect('run/time-topic', msg))).toBe(-100);
    expect(code(() => client.protect('run/time-topic', 'x'))).toBe(-100);
    expect(state()).toBe(before);
  });

  it('portable vault (compact AES): the key schedule allocation fails', () => {
    let failing = false;
    const v = portableVault();
    const wrapped: Vault = {
      sivEncrypt: (k, ad, p) => withGlobal('Uint32Array', failing ? failingArray : RealUint32Array, () => v.sivEncrypt(k, ad, p)),
      sivDecrypt: (k, ad, s) => withGlobal('Uint32Array', failing ? failingArray : RealUint32Array, () => v.sivDecrypt(k, ad, s)),
    };
    expectHonest(wrapped, (on) => (failing = on));
  });
});

const failingArray = function () {
  throw new RangeError('Array buffer allocation failed');
} as unknown as Uint32ArrayConstructor;

/** Runs `fn` with a global constructor replaced (what an allocation failure looks like). */
function withGlobal<R>(name: 'Uint8Array' | 'Uint32Array', value: unknown, fn: () => R): R {
  const g = globalThis as Record<string, unknown>;
  const saved = g[name];
  g[name] = value;
  try {
    return fn();
  } finally {
    g[name] = saved;
  }
}
