/**
 * The stub HAL of a simulated device: time sources and clocks, a native-AES block (what
 * Espruino's `require("crypto").AES` gives a Puck.js), and a durable flash store with fault
 * injection. Everything here lives in the host realm; bytes handed to the device are made in the
 * device's realm (sandbox.bytesIn), because the core checks `instanceof Uint8Array`.
 */
import { createCipheriv } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { AesBlock, Clock, Store, StoredState } from '../../firmware/hal.ts';
import type { Sandbox } from './image.ts';

// --- time ------------------------------------------------------------------------------------

/** Where a simulated world's time comes from: whole seconds since 1970. */
export interface TimeSource {
  kind: 'system' | 'virtual';
  now(): number;
}

/** A time source that moves only when told to. */
export interface VirtualTime extends TimeSource {
  kind: 'virtual';
  /** Moves time on by `s` seconds; returns the new time. */
  advance(s: number): number;
  set(v: number): void;
}

/** Real time, whole seconds since 1970. */
export function systemTime(): TimeSource {
  return { kind: 'system', now: () => Math.floor(Date.now() / 1000) };
}

/** Time that moves only when told to (tests). */
export function virtualTime(start: number = Math.floor(Date.now() / 1000)): VirtualTime {
  let t = start;
  return {
    kind: 'virtual',
    now: () => t,
    advance(s: number) {
      t += s;
      return t;
    },
    set(v: number) {
      t = v;
    },
  };
}

export const CLOCK_MODES = ['trusted', 'untrusted', 'skewed', 'monotonic', 'none'] as const;
export type ClockMode = (typeof CLOCK_MODES)[number];

/** A parsed clock spec: the mode and, for `skewed`, how far off the clock is (seconds). */
export interface ClockSetting {
  mode: ClockMode;
  skew: number;
}

/** A clock spec as written ("trusted", "skewed:-90", ...) or already parsed. */
export type ClockSpec = string | { mode: ClockMode; skew?: number };

/**
 * Parses a clock spec: "trusted", "untrusted", "skewed:<±seconds>" (an untrusted clock that is
 * off by that much), "monotonic" (seconds since boot), "none". Throws on anything else.
 */
export function parseClock(spec: ClockSpec | null | undefined): ClockSetting {
  if (spec == null) return { mode: 'trusted', skew: 0 };
  if (typeof spec === 'object') return { mode: spec.mode, skew: spec.skew || 0 };
  const m = /^(trusted|untrusted|monotonic|none)$|^skewed:([+-]?\d+)$/.exec(String(spec));
  if (!m) throw new Error(`bad clock "${spec}": trusted, untrusted, skewed:<±seconds>, monotonic or none`);
  if (m[1]) return { mode: m[1] as ClockMode, skew: 0 }; // one of the alternatives just matched
  return { mode: 'skewed', skew: Number(m[2]) };
}

/**
 * A HAL Clock for one boot of a device, or undefined for "none". `world` is the time source;
 * `bootAt` the world time of power-on (monotonic clocks count from it).
 */
export function makeClock(spec: ClockSpec | null | undefined, world: TimeSource, bootAt: number = world.now()): Clock | undefined {
  const { mode, skew } = parseClock(spec);
  switch (mode) {
    case 'trusted':
      return { kind: 'trusted', now: () => world.now() };
    case 'untrusted':
    case 'skewed':
      return { kind: 'untrusted', now: () => world.now() + skew };
    case 'monotonic':
      return { kind: 'monotonic', now: () => Math.max(0, world.now() - bootAt) };
    case 'none':
      return undefined;
    default:
      throw new Error(`bad clock mode ${mode}`);
  }
}

// --- native AES ------------------------------------------------------------------------------

/**
 * An AesBlock (hal.ts) from node:crypto, standing for a board's native AES (Espruino's
 * `require("crypto").AES`: ECB, and CBC with a zero IV). Returns bytes of the device's realm.
 */
export function nativeAesBlock(sandbox: Pick<Sandbox, 'bytesIn'>, { cbc = true }: { cbc?: boolean } = {}): AesBlock {
  const zeroIv = Buffer.alloc(16);
  const run = (mode: 'ecb' | 'cbc', key: Uint8Array, data: Uint8Array): Uint8Array => {
    const c = createCipheriv(`aes-256-${mode}`, key, mode === 'ecb' ? null : zeroIv);
    c.setAutoPadding(false);
    const out = Buffer.concat([c.update(data), c.final()]);
    return sandbox.bytesIn(out);
  };
  const block: AesBlock = { ecb: (k, d) => run('ecb', k, d) };
  if (cbc) block.cbc = (k, d) => run('cbc', k, d);
  return block;
}

// --- flash -----------------------------------------------------------------------------------

const hex = (u: Uint8Array): string => Buffer.from(u.buffer, u.byteOffset, u.length).toString('hex');

/** StoredState as the simulated medium records it: bytes as hex. */
export interface EncodedState {
  id: string;
  key: string;
  topics: { hash: string; key: string; prevKey: string | null; prevSince: number }[];
  lastCommand: number;
  lastTags: string;
}

/** The record on the medium: the state and a checksum of it. */
interface FlashRecord {
  magic: string;
  sum: string;
  body: EncodedState;
}

/** A StoredState as the simulated medium records it (bytes as hex). */
export function encodeState(s: StoredState): EncodedState {
  return {
    id: hex(s.id),
    key: hex(s.key),
    topics: s.topics.map((t) => ({
      hash: hex(t.hash),
      key: hex(t.key),
      prevKey: t.prevKey ? hex(t.prevKey) : null,
      prevSince: t.prevSince,
    })),
    lastCommand: s.lastCommand,
    lastTags: hex(s.lastTags),
  };
}

function decodeState(j: EncodedState, bytesIn: Sandbox['bytesIn']): StoredState {
  const b = (h: string) => bytesIn(Buffer.from(h, 'hex'));
  return {
    id: b(j.id),
    key: b(j.key),
    topics: j.topics.map((t) => ({ hash: b(t.hash), key: b(t.key), prevKey: t.prevKey ? b(t.prevKey) : null, prevSince: t.prevSince })),
    lastCommand: j.lastCommand,
    lastTags: b(j.lastTags),
  };
}

const MAGIC = 'e4-sim-flash/1';

/**
 * A durable Store standing for the device's flash: it survives power cycles (the object, or the
 * file when `file` is given, outlives the device's sandbox). Each commit replays the changes
 * through the image's own applyChanges (state.ts) on a copy and replaces the medium's record
 * whole (file: write-then-rename, so a crash leaves the old or the new record), so replaced and
 * removed keys are gone from the medium. The record carries a checksum: a corrupted medium is
 * reported as PERSISTENCE_INCOMPATIBLE, never loaded.
 *
 * Fault injection: `failNext(err?)` (the next commit throws and changes nothing), `failAlways`
 * (every commit throws, like worn-out flash), `corrupt()` (flips a byte of the medium).
 * Counters: commits, failed, bytesWritten.
 */
/** Files that hold keys are created readable and writable by their owner only. */
export const KEY_FILE_MODE = 0o600;

export interface FlashStoreOptions {
  /** The file that holds the medium (absent: the medium lives in memory). */
  file?: string | null;
}

/** The simulated flash: a Store with its medium, counters and fault injection. */
export interface SimFlashStore extends Store {
  kind: 'file' | 'memory';
  file: string | null;
  commits: number;
  failed: number;
  bytesWritten: number;
  /** Every commit throws (worn-out flash). */
  failAlways: boolean;
  /** The error the next commit throws, if any. */
  pendingFailure: Error | null;
  /** Binds the store to the realm of the device that boots on it (done by SimDevice). */
  attach(sandbox: Sandbox): SimFlashStore;
  /** The next commit throws `err` and changes nothing. */
  failNext(err?: Error): void;
  /** Flips a byte of the medium (at `at`, default its middle). */
  corrupt(at?: number): void;
  erase(): void;
  /** True when the medium holds the byte pattern, raw or as hex (a key must be absent after removal). */
  contains(bytes: Uint8Array): boolean;
}

export function flashStore({ file = null }: FlashStoreOptions = {}): SimFlashStore {
  let medium: Buffer | null = file && existsSync(file) ? readFileSync(file) : null;
  let realm: Sandbox | null = null;
  const store: SimFlashStore = {
    kind: file ? 'file' : 'memory',
    file,
    commits: 0,
    failed: 0,
    bytesWritten: 0,
    failAlways: false,
    pendingFailure: null,
    attach(sandbox) {
      realm = sandbox;
      return store;
    },
    failNext(err = new Error('flash write failed (injected)')) {
      store.pendingFailure = err;
    },
    corrupt(at = -1) {
      if (!medium) throw new Error('flash is empty');
      const i = at >= 0 ? at : Math.floor(medium.length / 2);
      medium[i] ^= 0x5a;
      if (file) writeFileSync(file, medium, { mode: KEY_FILE_MODE });
    },
    erase() {
      medium = null;
      if (file) writeFileSync(file, Buffer.alloc(0), { mode: KEY_FILE_MODE });
    },
    /** True when the medium holds the byte pattern (a key must be absent after removal). */
    contains(bytes) {
      if (!medium) return false;
      return medium.includes(Buffer.from(bytes).toString('hex')) || medium.includes(Buffer.from(bytes));
    },
    load() {
      if (!realm) throw new Error('flashStore: attach(sandbox) before use');
      if (!medium || medium.length === 0) return null;
      let rec: Partial<FlashRecord> | null;
      try {
        const parsed: unknown = JSON.parse(medium.toString('utf8'));
        rec = parsed && typeof parsed === 'object' ? parsed : null;
      } catch {
        rec = null;
      }
      const sum = rec && rec.body ? checksum(JSON.stringify(rec.body)) : null;
      if (!rec || !rec.body || rec.magic !== MAGIC || rec.sum !== sum) {
        throw new realm.E4.E4Error(realm.E4.PERSISTENCE_INCOMPATIBLE, 'flash record damaged or of another format');
      }
      // The checksum matched: the body is the one encodeState wrote.
      return decodeState(rec.body, realm.bytesIn);
    },
    commit(changes) {
      if (!realm) throw new Error('flashStore: attach(sandbox) before use');
      if (store.pendingFailure || store.failAlways) {
        const e = store.pendingFailure || new Error('flash write failed (injected, persistent)');
        store.pendingFailure = null;
        store.failed++;
        throw e;
      }
      const current = store.load();
      const next = realm.E4.applyChanges(current, changes);
      const body = encodeState(next);
      realm.E4.wipeState(next);
      const out = Buffer.from(JSON.stringify({ magic: MAGIC, sum: checksum(JSON.stringify(body)), body }));
      if (file) {
        // The record holds keys: readable by its owner only (a new file and every rewrite).
        writeFileSync(file + '.tmp', out, { mode: KEY_FILE_MODE });
        chmodSync(file + '.tmp', KEY_FILE_MODE);
        renameSync(file + '.tmp', file);
      }
      if (medium) medium.fill(0); // the old record, keys included, is erased
      medium = out;
      store.commits++;
      store.bytesWritten += out.length;
    },
  };
  return store;
}

function checksum(s: string): string {
  // FNV-1a 32: detects accidental damage of the simulated medium (not an integrity MAC).
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16);
}
