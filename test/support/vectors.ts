/** Loads the reference vector files kept in test/vectors (provenance and hashes: test/vectors/README.md). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const VECTORS_DIR = join(fileURLToPath(new URL('.', import.meta.url)), '../vectors');

/** `T` is the file's shape as the caller reads it (the files are pinned by hash: test/vectors/README.md). */
export function loadVectors<T>(name: string): T {
  return JSON.parse(readFileSync(join(VECTORS_DIR, name), 'utf8')) as T;
}

export const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
export const toHexStr = (b: Uint8Array) => Buffer.from(b).toString('hex');
