/**
 * SHA3-256 (FIPS 202) for topic names and client ids: a sponge around noble's Keccak-f[1600]
 * permutation `keccakP` (@noble/hashes, audited). In an image that module's BigInt round
 * constants are literals computed at build time, and two ES2015 calls of its utils are replaced
 * (the pinned rewrites of build/deps.ts). noble's hasher wrapper (`createHasher`) is left out:
 * it needs Object.assign on a function and Object.freeze, which Espruino lacks.
 */
import { keccakP } from '@noble/hashes/sha3.js';

/** SHA3-256 (FIPS 202 §6.1: rate 136 bytes, domain suffix 0x06, pad10*1). Little-endian hosts only, as noble's
 * state layout assumes (every target engine is little-endian). */
export function sha3_256(msg: Uint8Array): Uint8Array {
  if (!(msg instanceof Uint8Array)) throw new TypeError('"msg" expected Uint8Array');
  var state = new Uint8Array(200);
  var s32 = new Uint32Array(state.buffer);
  var pos = 0;
  for (var i = 0; i < msg.length; i++) {
    state[pos++] ^= msg[i];
    if (pos === 136) {
      keccakP(s32, 24);
      pos = 0;
    }
  }
  state[pos] ^= 0x06;
  state[135] ^= 0x80;
  keccakP(s32, 24);
  var out = new Uint8Array(32);
  for (var j = 0; j < 32; j++) out[j] = state[j];
  for (var k = 0; k < 200; k++) state[k] = 0;
  return out;
}
