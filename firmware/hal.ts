/**
 * The platform contract: everything the E4 core needs from the device, declared in one place.
 *
 * The core (everything else in firmware/) never touches a platform API. Boards (boards/) and the
 * host simulator (host-sim/) implement these interfaces; tests run the core on mock backends.
 * All byte strings are Uint8Array; all times are whole seconds.
 */

/**
 * Authenticated encryption and hashing. Keys are the 32-byte E4 keys; the vault derives the
 * 64-byte SIV key `key | key` itself.
 */
export interface Vault {
  /** SIV-ENCRYPT (RFC 5297 §2.6), SIV key `key | key`, exactly one associated-data component, no
   * nonce. Returns `V (16) | ciphertext`. */
  sivEncrypt(key: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** SIV-DECRYPT (RFC 5297 §2.7), the inverse. Returns null when authentication fails: never a
   * partial plaintext. */
  sivDecrypt(key: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null;
  /** SHA3-256. Optional: a device provisioned with the hashes of every topic it uses needs none. */
  sha3?(data: Uint8Array): Uint8Array;
}

/**
 * An AES-256 block primitive: all a board must supply to get a Vault (see crypto/siv.ts), e.g.
 * from Espruino's native `require("crypto").AES`.
 */
export interface AesBlock {
  /** AES-256-ECB encryption of `data` (a multiple of 16 bytes) under a 32-byte key. */
  ecb(key: Uint8Array, data: Uint8Array): Uint8Array;
  /** Optional AES-256-CBC encryption with a zero IV (a multiple of 16 bytes in and out). When
   * present, CMAC takes one call per message instead of one per block. */
  cbc?(key: Uint8Array, data: Uint8Array): Uint8Array;
}

/**
 * How far the device may believe its clock:
 * - `trusted`: wall-clock seconds since 1970 (RTC set by a trusted source). A reading below
 *   946684800 (2000-01-01) means "not set", as in the reference.
 * - `untrusted`: wall-clock seconds that may be wrong; corrected by C2 calibration.
 * - `monotonic`: seconds since boot only; becomes wall time once calibrated.
 * A HAL without a clock has no notion of time except what C2 commands tell it.
 */
export type ClockKind = 'trusted' | 'untrusted' | 'monotonic';

export interface Clock {
  kind: ClockKind;
  /** Whole seconds (see ClockKind). Must not go backwards for `monotonic`. */
  now(): number;
}

/** One entry of the topic-key table as it is stored. */
export interface TopicRecord {
  /** 16-byte topic hash. */
  hash: Uint8Array;
  /** 32-byte current key. */
  key: Uint8Array;
  /** Key in force before the last rotation (key transition), or null. */
  prevKey: Uint8Array | null;
  /** Device time of that rotation; -1 when the device had no notion of time. */
  prevSince: number;
}

/** Everything the device keeps across power loss. */
export interface StoredState {
  /** 16-byte client id. */
  id: Uint8Array;
  /** 32-byte client key. */
  key: Uint8Array;
  /** Topic table, in the order the reference keeps it (append; replace in place; removal closes the gap). */
  topics: TopicRecord[];
  /** Timestamp of the last accepted C2 command (the calibration anchor); -1 before the first. */
  lastCommand: number;
  /** Tags (16 bytes each, concatenated) of the commands accepted with timestamp `lastCommand`,
   * so that a replay of one of them is recognised even after a reboot. */
  lastTags: Uint8Array;
}

/**
 * One step of an atomic state change. A commit is a list of them, applied in order by
 * `applyChanges` (state.ts), which every store uses to replay what it has recorded.
 */
export type Change =
  | { op: 'provision'; id: Uint8Array; key: Uint8Array }
  | { op: 'clientKey'; key: Uint8Array }
  | { op: 'topic'; topic: TopicRecord }
  | { op: 'removeTopic'; hash: Uint8Array }
  | { op: 'resetTopics' }
  | { op: 'calibrate'; time: number; tags: Uint8Array };

/**
 * Durable storage. `commit` is all-or-nothing across power loss: after a crash the store reopens
 * with the state either before or after the commit, never between. It throws (any error) when the
 * change could not be made durable; the core then reports PERSISTENCE_ERROR and changes nothing.
 * A store must wipe from its medium the keys that a commit removes or replaces.
 * The arrays handed to commit belong to the caller: a store copies what it keeps.
 */
export interface Store {
  /** The stored state, or null when the store is empty (never provisioned). Throws an
   * E4Error PERSISTENCE_INCOMPATIBLE / PERSISTENCE_ERROR when the medium holds something else. */
  load(): StoredState | null;
  commit(changes: Change[]): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Diagnostics. Messages never contain key material or plaintext. */
export type Log = (level: LogLevel, message: string) => void;

/** The services handed to the core. Only the vault is required. */
export interface Hal {
  vault: Vault;
  /** Defaults to an in-memory store (state lost at reset). */
  store?: Store;
  /** Absent: the device only knows the time C2 commands tell it. */
  clock?: Clock;
  log?: Log;
}
