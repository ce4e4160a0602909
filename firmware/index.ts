/**
 * The portable image's public surface (global `E4`): the core, the portable vault (compact AES
 * under AES-SIV, SHA3-256) and that AES block on its own (RFC 5297 conformance, sivVault).
 */
import type { Vault } from './hal';
import { portableVault } from './crypto/portable-vault';
import { sha3_256 } from './crypto/sha3';

export * from './core';
export { aesBlock } from './crypto/aes';

/** The portable image's vault: AES-SIV over the compact AES, SHA3-256 for topic names. */
export function vault(): Vault {
  return portableVault(sha3_256);
}
