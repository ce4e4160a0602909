/**
 * The portable image's public surface (global `E4`): the core plus the noble vault.
 */
export * from './core';
export { nobleVault } from './crypto/noble-vault';
