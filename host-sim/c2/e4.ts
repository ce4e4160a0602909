/**
 * The C2's view of the E4 image: the few stateless wire-format functions it needs, bound to a
 * vault. The C2 never re-implements the protocol; it takes these from the image (dist/e4.js, the
 * same bytes the devices run) or, in tests, from firmware/index.ts compiled on the fly.
 *
 *   adaptE4(E4) -> { protect(key, timestamp, payload), unprotect(key, message), clientId(name),
 *                    topicHash(topic), controlTopic(id), commands: { removeTopic, resetTopics,
 *                    setIdKey, setTopicKey }, encodeE41P({ id, key, topics: [{ hash, key }] }) }
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import type * as E4Module from '../../firmware/index.ts';

/** The image's public surface (module.exports of dist/e4.js, or firmware/index.ts). */
export type E4Image = typeof E4Module;

const here = path.dirname(fileURLToPath(import.meta.url));
/** Where `npm run build` puts the portable image. */
export const DEFAULT_IMAGE = path.resolve(here, '..', '..', 'dist', 'e4.js');

export interface E41PState {
  id: Uint8Array;
  key: Uint8Array;
  topics: { hash: Uint8Array; key: Uint8Array }[];
}

export interface C2E4 {
  readonly __c2adapted: true;
  readonly version: string | undefined;
  protect(key: Uint8Array, timestamp: number, payload: Uint8Array): Uint8Array;
  unprotect(key: Uint8Array, message: Uint8Array): { timestamp: number; plaintext: Uint8Array };
  clientId(name: string): Uint8Array;
  topicHash(topic: string): Uint8Array;
  controlTopic(id: Uint8Array): string;
  readonly commands: {
    removeTopic(hash: Uint8Array): Uint8Array;
    resetTopics(): Uint8Array;
    setIdKey(key: Uint8Array): Uint8Array;
    setTopicKey(key: Uint8Array, hash: Uint8Array): Uint8Array;
  };
  encodeE41P(state: E41PState): Uint8Array;
}

const NEEDED = ['protectMessage', 'unprotectMessage', 'clientId', 'topicHash', 'controlTopic', 'commands', 'vault', 'encodeE41P'] as const;

function isAdapted(v: object): v is C2E4 {
  return '__c2adapted' in v && v.__c2adapted === true;
}

/** Wraps the image's public surface (module.exports / global E4) into the C2's interface. */
export function adaptE4(E4: unknown): C2E4 {
  if (!E4 || typeof E4 !== 'object') throw new TypeError('adaptE4: the E4 module is missing');
  if (isAdapted(E4)) return E4;
  const surface: { [name: string]: unknown } = { ...E4 };
  const missing: string[] = NEEDED.filter((n) => surface[n] === undefined);
  if (missing.length) throw new TypeError('the E4 image lacks ' + missing.join(', '));
  const img = E4 as E4Image; // every member the C2 calls was found just above
  const vault = img.vault();
  // Images evaluated in another realm hand back their own Uint8Array: give them ours.
  const u8 = (b: Uint8Array): Uint8Array => (b instanceof Uint8Array && b.constructor === Uint8Array ? b : new Uint8Array(b));
  return {
    __c2adapted: true,
    version: typeof surface.version === 'string' ? surface.version : undefined,
    protect: (key, timestamp, payload) => img.protectMessage(vault, u8(key), timestamp, u8(payload)),
    unprotect: (key, message) => img.unprotectMessage(vault, u8(key), u8(message)),
    clientId: (name) => img.clientId(vault, name),
    topicHash: (topic) => img.topicHash(vault, topic),
    controlTopic: (id) => img.controlTopic(u8(id)),
    commands: {
      removeTopic: (hash) => img.commands.removeTopic(u8(hash)),
      resetTopics: () => img.commands.resetTopics(),
      setIdKey: (key) => img.commands.setIdKey(u8(key)),
      setTopicKey: (key, hash) => img.commands.setTopicKey(u8(key), u8(hash)),
    },
    encodeE41P: (state) =>
      img.encodeE41P({ id: u8(state.id), key: u8(state.key), topics: state.topics.map((t) => ({ hash: u8(t.hash), key: u8(t.key) })) }),
  };
}

export class ImageMissingError extends Error {
  readonly code = 'IMAGE_MISSING';
}

/** Loads the built image (CommonJS: module.exports is the E4 namespace) and adapts it. */
export function loadE4Image(file: string = process.env.E4_IMAGE || DEFAULT_IMAGE): C2E4 {
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw new ImageMissingError(`E4 image not found at ${abs}: run \`npm run build\` first (or pass --image FILE)`);
  let mod: unknown;
  try {
    mod = createRequire(import.meta.url)(abs);
  } catch (e) {
    // Inside a "type": "module" package a .js file counts as ESM for require(); the image is a
    // script that fills module.exports, so evaluate it as CommonJS explicitly.
    const code = e && typeof e === 'object' && 'code' in e ? e.code : undefined;
    if (code === 'ERR_REQUIRE_ESM' || e instanceof ReferenceError) {
      const module: { exports: unknown } = { exports: {} };
      const wrapper: unknown = vm.runInThisContext('(function (module, exports) {' + fs.readFileSync(abs, 'utf8') + '\n})', {
        filename: abs,
      });
      if (typeof wrapper !== 'function') throw e;
      wrapper(module, module.exports);
      mod = module.exports;
    } else throw e;
  }
  const inner = mod && typeof mod === 'object' && 'E4' in mod && !('protectMessage' in mod) ? mod.E4 : mod;
  return adaptE4(inner);
}
