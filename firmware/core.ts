/**
 * The platform-neutral runtime, without any particular crypto backend: what every image
 * contains. Board images pick their vault (native AES, the portable vault) on top of it; index.ts
 * adds the portable vault.
 */
export { create, IGNORE_TIMESTAMP } from './client';
export type { Client, DeviceConfig, Options, BytesLike, TopicRef } from './client';
export type { Hal, Vault, AesBlock, Clock, ClockKind, Store, StoredState, Change, TopicRecord, Log, LogLevel } from './hal';
export { sivVault, sivEncrypt, sivDecrypt, s2v } from './crypto/siv';
export { memoryStore } from './storage/memory-store';
export { encodeE41P, decodeE41P } from './storage/e41p';
export { applyChanges, cloneState, wipeState } from './state';
export { clientId, topicHash, controlTopic, protectMessage, unprotectMessage, commands } from './protocol';
/** @deprecated Renamed unprotectMessage (one verb pair, protect/unprotect); this alias goes in the next release. */
export { unprotectMessage as openMessage } from './protocol';
export { CLOCK_VALID_FROM } from './time';
export {
  E4Error,
  isE4Error,
  resultName,
  resultCode,
  OK,
  OK_CONTROL,
  INTERNAL,
  INVALID_TAG,
  TIMESTAMP_IN_FUTURE,
  TIMESTAMP_TOO_OLD,
  CIPHERTEXT_TOO_SHORT,
  TOPICKEY_MISSING,
  MESSAGE_REPLAYED,
  INVALID_COMMAND,
  PERSISTENCE_ERROR,
  PARAMETER_INVALID,
  PERSISTENCE_INCOMPATIBLE,
} from './errors';
export { toHex, fromHex, utf8, wipe, equalBytes } from './bytes';

/** Image version, for devices to report. */
export var version = '0.1.0';
