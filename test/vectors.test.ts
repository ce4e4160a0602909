/**
 * Every case of test/vectors/e4-sk-vectors.json, each its own test, for four vaults: noble's
 * (the reference), the portable image's (firmware/index.ts: compact AES, firmware SHA-3), and the
 * generic SIV (firmware/crypto/siv.ts) over an AES block primitive with CBC and with ECB only
 * (the shapes the native board vaults take).
 */
import { describe, expect, it } from 'vitest';
import { create, sivVault, encodeE41P, decodeE41P, clientId, topicHash, controlTopic, utf8, memoryStore } from '../firmware/core';
import { nobleVault } from './support/noble-vault';
import { vault as portableImageVault } from '../firmware/index';
import type { StoredState, Vault } from '../firmware/hal';
import { loadVectors, hex, toHexStr, VECTORS_DIR } from './support/vectors';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { vaultSuite } from './support/vault-suite';
import type { SkVectors } from './support/vault-suite';
import { nodeAesCbc, nodeAesEcb } from './support/node-aes';

interface ClientIdCase {
  name: string;
  name_utf8_hex: string;
  name_utf8_len: number;
  id: string;
  control_topic: string;
}
interface TopicHashCase {
  topic: string;
  topic_utf8_hex: string;
  topic_utf8_len: number;
  topic_hash: string;
}
interface StorageFileCase {
  case: string;
  description: string;
  client_id: string;
  client_key: string;
  topics: { topic_hash: string; key: string }[];
  file: string;
  file_len: number;
}

/** test/vectors/e4-sk-vectors.json: the sections vault-suite.ts runs, and those read here. */
interface VectorFile extends Omit<SkVectors, 'topic_hashes'> {
  client_ids: ClientIdCase[];
  topic_hashes: TopicHashCase[];
  storage_file: StorageFileCase[];
}

const V = loadVectors<VectorFile>('e4-sk-vectors.json');
const topicsOf = (s: StoredState) => s.topics.map((t) => ({ topic_hash: toHexStr(t.hash), key: toHexStr(t.key) }));
const sha3 = nobleVault().sha3!;
const vaults: [string, Vault][] = [
  ['noble vault', nobleVault()],
  ['portable image vault', portableImageVault()],
  ['siv vault (ecb+cbc)', sivVault(nodeAesCbc, sha3)],
  ['siv vault (ecb only)', sivVault(nodeAesEcb, sha3)],
];

it('each vector file matches the SHA-256 pinned in test/vectors/README.md', () => {
  const readme = readFileSync(join(VECTORS_DIR, 'README.md'), 'utf8');
  const pins = [...readme.matchAll(/^\| `([\w.-]+\.json)` \| `([0-9a-f]{64})` \|/gm)].map((m) => [m[1], m[2]]);
  expect(pins.map((p) => p[0]).sort()).toEqual(
    readdirSync(VECTORS_DIR)
      .filter((f) => f.endsWith('.json'))
      .sort(),
  );
  for (const [file, sha] of pins)
    expect(
      createHash('sha256')
        .update(readFileSync(join(VECTORS_DIR, file)))
        .digest('hex'),
      file,
    ).toBe(sha);
});

it('vector file has every section', () => {
  for (const k of ['client_ids', 'topic_hashes', 'aes_siv', 'protect', 'unprotect', 'commands', 'scenarios', 'storage_file'] as const) {
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

// aes_siv, protect, unprotect, commands and scenarios, each case a named test, for each vault.
describe.each(vaults)('%s', (_name, vault) => {
  vaultSuite(() => vault, true);
});

describe('storage_file', () => {
  for (const c of V.storage_file) {
    it(`${c.case}`, () => {
      const state = {
        id: hex(c.client_id),
        key: hex(c.client_key),
        topics: c.topics.map((t) => ({ hash: hex(t.topic_hash), key: hex(t.key) })),
      };
      const file = encodeE41P(state);
      expect(toHexStr(file)).toBe(c.file);
      expect(file.length).toBe(c.file_len);
      const back = decodeE41P(hex(c.file));
      expect(toHexStr(back.id)).toBe(c.client_id);
      expect(toHexStr(back.key)).toBe(c.client_key);
      expect(topicsOf(back)).toEqual(c.topics.map((t) => ({ topic_hash: t.topic_hash, key: t.key })));
      // A device provisioned from the image exports the same bytes.
      const client = create({ vault: nobleVault(), store: memoryStore(back) });
      expect(toHexStr(client.exportE41P())).toBe(c.file);
    });
  }
});
