/**
 * The C2's view of the E4 image: the few stateless wire-format functions it needs, bound to a
 * vault. The C2 never re-implements the protocol; it takes these from the image (dist/e4.js, the
 * same bytes the devices run) or, in tests, from firmware/index.ts compiled on the fly.
 *
 *   adaptE4(E4) -> { protect(key, timestamp, payload), open(key, message), clientId(name),
 *                    topicHash(topic), controlTopic(id), commands: { removeTopic, resetTopics,
 *                    setIdKey, setTopicKey }, encodeE41P({ id, key, topics: [{ hash, key }] }) }
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Where `npm run build` puts the portable image. */
export const DEFAULT_IMAGE = path.resolve(here, '..', '..', 'dist', 'e4.js');

const NEEDED = ['protectMessage', 'unprotectMessage', 'clientId', 'topicHash', 'controlTopic', 'commands', 'vault', 'encodeE41P'];

/** Wraps the image's public surface (module.exports / global E4) into the C2's interface. */
export function adaptE4(E4) {
  if (!E4 || typeof E4 !== 'object') throw new TypeError('adaptE4: the E4 module is missing');
  if (E4.__c2adapted) return E4;
  const missing = NEEDED.filter((n) => E4[n] === undefined);
  if (missing.length) throw new TypeError('the E4 image lacks ' + missing.join(', '));
  const vault = E4.vault();
  const u8 = (b) => (b instanceof Uint8Array && b.constructor === Uint8Array ? b : new Uint8Array(b));
  return {
    __c2adapted: true,
    version: E4.version,
    protect: (key, timestamp, payload) => E4.protectMessage(vault, u8(key), timestamp, u8(payload)),
    unprotect: (key, message) => E4.unprotectMessage(vault, u8(key), u8(message)),
    clientId: (name) => E4.clientId(vault, name),
    topicHash: (topic) => E4.topicHash(vault, topic),
    controlTopic: (id) => E4.controlTopic(u8(id)),
    commands: {
      removeTopic: (hash) => E4.commands.removeTopic(u8(hash)),
      resetTopics: () => E4.commands.resetTopics(),
      setIdKey: (key) => E4.commands.setIdKey(u8(key)),
      setTopicKey: (key, hash) => E4.commands.setTopicKey(u8(key), u8(hash)),
    },
    encodeE41P: (state) =>
      E4.encodeE41P({ id: u8(state.id), key: u8(state.key), topics: state.topics.map((t) => ({ hash: u8(t.hash), key: u8(t.key) })) }),
  };
}

/** Loads the built image (CommonJS: module.exports is the E4 namespace) and adapts it. */
export function loadE4Image(file = process.env.E4_IMAGE || DEFAULT_IMAGE) {
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) {
    const err = new Error(`E4 image not found at ${abs}: run \`npm run build\` first (or pass --image FILE)`);
    err.code = 'IMAGE_MISSING';
    throw err;
  }
  let mod;
  try {
    mod = createRequire(import.meta.url)(abs);
  } catch (e) {
    // Inside a "type": "module" package a .js file counts as ESM for require(); the image is a
    // script that fills module.exports, so evaluate it as CommonJS explicitly.
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e instanceof ReferenceError)) {
      const module = { exports: {} };
      vm.runInThisContext('(function (module, exports) {' + fs.readFileSync(abs, 'utf8') + '\n})', { filename: abs })(module, module.exports);
      mod = module.exports;
    } else throw e;
  }
  return adaptE4(mod && mod.E4 && !mod.protectMessage ? mod.E4 : mod);
}
