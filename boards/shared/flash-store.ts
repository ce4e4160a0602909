/**
 * A power-safe Store on a flash file storage (docs/flash-store.md): Espruino's `Storage`, or a
 * JerryScript port's storage functions; shared by the Espruino and JerryScript boards.
 *
 * One file at a time, `<name>0` or `<name>1`, pre-sized by its first write and then only
 * appended to (Espruino refuses writes to bytes already written). It starts with a 12-byte
 * header ("E4S", format version, generation, 4 reserved bytes) and a snapshot of the state,
 * followed by one record group per commit. A group carries its length and, at its end, a CRC-32:
 * a group torn by a power cut is recognised, and load() replays the complete groups through
 * applyChanges, stopping at the first incomplete or damaged one. Every key sits in a 36-byte blob
 * (key | CRC-32 of the key) that the group CRC reads as zeros, so a blob can later be overwritten
 * with zeros in place without invalidating its group.
 *
 * A full file is compacted (by the store itself, never by Storage.compact()): a snapshot goes to
 * the other name with the next generation, then the old file is removed. Until the new file is
 * complete the old one is what load() finds; after, the higher generation wins.
 *
 * Removed or replaced keys leave the medium with the commit that drops them, and no step calls
 * `Storage.compact()` (which holds up to a page of files in RAM while it rewrites flash: a power
 * cut inside it loses files) or creates a file where Espruino would compact to make room:
 * - with a `zero` hook (raw 1->0 flash writes, see boards/espruino/storage-zero.ts; every Espruino board): the
 *   commit is appended, then every blob of a key the new state no longer holds is overwritten
 *   with zeros; a file is removed only after its key blobs are zeroed.
 * - on a storage whose erase() erases the bytes (`erases`: a JerryScript port's contract): the
 *   new state goes to a new file, then the old file is erased.
 * load() finishes an erasure that a power cut interrupted.
 */
import type { Change, Store, StoredState } from '../../firmware/hal';
import { applyChanges, wipeState } from '../../firmware/state';
import { checkBytes, readU64LE, wipe, writeU64LE } from '../../firmware/bytes';
import { E4Error, PARAMETER_INVALID, PERSISTENCE_ERROR, PERSISTENCE_INCOMPATIBLE } from '../../firmware/errors';

/** The part of Espruino's `require("Storage")` this store uses. */
export interface StorageApi {
  readArrayBuffer(name: string): ArrayBuffer | undefined;
  write(name: string, data: Uint8Array, offset?: number, size?: number): boolean;
  erase(name: string): void;
  /** Bytes free after the last file (Espruino): creating a file that needs more makes Espruino
   * compact Storage first, which the store never lets happen. */
  getFree?(): number;
}

/** Overwrites spans of the file `name` with zeros, in place, in the order given (1->0 bit
 * writes, which NOR flash allows and Storage.write refuses). `spans` holds (offset, length) pairs,
 * ascending. */
export type ZeroFn = (name: string, spans: number[]) => void;

export interface FlashStoreOptions {
  /** File name prefix: the store uses `<name>0` and `<name>1` (default "e4s"). */
  name?: string;
  /** Smallest file size in bytes (default 1024); a file is made at least twice its snapshot. */
  size?: number;
  /** In-place zeroing (every Espruino board: `storageZero`, boards/espruino/storage-zero.ts). */
  zero?: ZeroFn;
  /** The storage's erase() removes the file's bytes from the medium (not Espruino's Storage,
   * whose erase only unlinks). Needed when there is no `zero` hook. */
  erases?: boolean;
  /** CRC-32 (IEEE, as zlib); pass Espruino's native `E.CRC32`. Default: a JS implementation. */
  crc32?: (data: Uint8Array) => number;
}

var MAGIC = [0x45, 0x34, 0x53, 1]; // "E4S", format version 1
var HEAD = 12; // MAGIC | generation (u32 LE) | 0 0 0 0 (FF FF FF FF in files of earlier releases: ignored)
var BLOB = 36; // key (32) | CRC-32 of the key (4)
var PROVISION = 1;
var CLIENT_KEY = 2;
var TOPIC = 3;
var REMOVE = 4;
var RESET = 5;
var CALIBRATE = 6;

/** CRC-32 (reflected, polynomial 0xEDB88320), bit by bit: no 1 KB table in RAM. */
export function crc32(b: Uint8Array): number {
  var c = -1;
  for (var i = 0; i < b.length; i++) {
    c ^= b[i];
    for (var k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c;
}

/** The little-endian u32 at `o` (signed: 0xFFFFFFFF reads -1). */
export function r32(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
}

function w32(b: Uint8Array, o: number, v: number): void {
  for (var i = 0; i < 4; i++) b[o + i] = (v >> (8 * i)) & 255;
}

/** Index after the last byte that is not 0xFF (erased flash reads 0xFF). */
function written(b: Uint8Array): number {
  var n = b.length;
  while (n && b[n - 1] === 255) n--;
  return n;
}

function fail(msg: string): E4Error {
  return new E4Error(PERSISTENCE_ERROR, msg);
}

/** A time or a -1 ("none") as stored: value + 1, u64 LE. */
function putTime(g: Uint8Array, o: number, v: number): void {
  if (typeof v !== 'number' || v !== Math.floor(v) || v < -1 || v > 9007199254740990) throw new E4Error(PARAMETER_INVALID, 'bad time');
  writeU64LE(g, o, v + 1);
}

function sizeOf(c: Change): number {
  if (c.op === 'provision') return 56; // op | 0 0 0 | id (16) | key blob
  if (c.op === 'clientKey') return 40; // op | 0 0 0 | key blob
  if (c.op === 'topic') return c.topic.prevKey ? 100 : 64; // op | prev? | 0 0 | hash (16) | prevSince (8) | key blob [| prev key blob]
  if (c.op === 'removeTopic') return 20; // op | 0 0 0 | hash (16)
  if (c.op === 'resetTopics') return 4; // op | 0 0 0
  if (c.op === 'calibrate') return 12 + ((checkBytes(c.tags, -1, 'tags').length + 3) & ~3); // op | 0 | tags length (u16) | time (8) | tags
  throw new E4Error(PARAMETER_INVALID, 'unknown change');
}

/**
 * One record group: length (u16) | 0 0 | changes | CRC-32 of all before it, key blobs read as
 * zeros. Every change and every key blob starts at a multiple of 4 from the group start. The
 * offsets of its key blobs are pushed to `blobs` when given (in the order readGroup finds them).
 */
function encode(changes: Change[], crc: (d: Uint8Array) => number, blobs?: number[]): Uint8Array {
  var len = 8;
  for (var i = 0; i < changes.length; i++) len += sizeOf(changes[i]);
  if (len > 65532) throw new E4Error(PARAMETER_INVALID, 'commit too large');
  var g = new Uint8Array(len);
  var keys: Uint8Array[] = [];
  var at: number[] = [];
  function blob(o: number, key: Uint8Array) {
    checkBytes(key, 32, 'key');
    var z = 0;
    for (var j = 0; j < 32; j++) z |= key[j];
    // An all-zero blob marks an erased key, so an all-zero key cannot be stored.
    if (!z) throw new E4Error(PARAMETER_INVALID, 'all-zero key');
    keys.push(key);
    at.push(o);
  }
  g[0] = len & 255;
  g[1] = len >> 8;
  var p = 4;
  for (i = 0; i < changes.length; i++) {
    var c = changes[i];
    var n = sizeOf(c);
    if (c.op === 'provision') {
      g[p] = PROVISION;
      g.set(checkBytes(c.id, 16, 'id'), p + 4);
      blob(p + 20, c.key);
    } else if (c.op === 'clientKey') {
      g[p] = CLIENT_KEY;
      blob(p + 4, c.key);
    } else if (c.op === 'topic') {
      var t = c.topic;
      g[p] = TOPIC;
      g[p + 1] = t.prevKey ? 1 : 0;
      g.set(checkBytes(t.hash, 16, 'hash'), p + 4);
      putTime(g, p + 20, t.prevSince);
      blob(p + 28, t.key);
      if (t.prevKey) blob(p + 64, t.prevKey);
    } else if (c.op === 'removeTopic') {
      g[p] = REMOVE;
      g.set(checkBytes(c.hash, 16, 'hash'), p + 4);
    } else if (c.op === 'resetTopics') {
      g[p] = RESET;
    } else {
      g[p] = CALIBRATE;
      g[p + 2] = c.tags.length & 255;
      g[p + 3] = c.tags.length >> 8;
      putTime(g, p + 4, c.time);
      g.set(c.tags, p + 12);
    }
    p += n;
  }
  w32(g, len - 4, crc(g.subarray(0, len - 4)));
  for (i = 0; i < keys.length; i++) {
    g.set(keys[i], at[i]);
    w32(g, at[i] + 32, crc(keys[i]));
    if (blobs) blobs.push(at[i]);
  }
  return g;
}

/** The changes that rebuild `s` from nothing. */
function snapshot(s: StoredState): Change[] {
  var c: Change[] = [{ op: 'provision', id: s.id, key: s.key }];
  for (var i = 0; i < s.topics.length; i++) c.push({ op: 'topic', topic: s.topics[i] });
  if (s.lastCommand !== -1 || s.lastTags.length) c.push({ op: 'calibrate', time: s.lastCommand, tags: s.lastTags });
  return c;
}

/** What a file holds. */
interface Scan {
  state: StoredState | null;
  /** Offsets of the key blobs of the valid groups. */
  blobs: number[];
  /** Offset after the last valid group. */
  end: number;
}

/** A key as stored: its bytes when the blob checks, zeros when it was erased (or damaged). */
function keyAt(b: Uint8Array, o: number, crc: (d: Uint8Array) => number, zero: Uint8Array): Uint8Array {
  var k = b.subarray(o, o + 32);
  return (crc(k) | 0) === r32(b, o + 32) ? k : zero;
}

/**
 * The changes of the group at `p`, or null when there is none there (blank, torn or damaged).
 * Pushes the group's key blob offsets to `blobs`.
 */
function readGroup(b: Uint8Array, p: number, crc: (d: Uint8Array) => number, blobs: number[], zero: Uint8Array): Change[] | null {
  if (p + 8 > b.length) return null;
  var len = b[p] | (b[p + 1] << 8);
  var e = p + len - 4;
  if (len < 8 || len & 3 || p + len > b.length) return null;
  var out: Change[] = [];
  var at: number[] = [];
  var q = p + 4;
  while (q < e) {
    var op = b[q];
    var n =
      op === PROVISION
        ? 56
        : op === CLIENT_KEY
          ? 40
          : op === TOPIC
            ? b[q + 1]
              ? 100
              : 64
            : op === REMOVE
              ? 20
              : op === RESET
                ? 4
                : op === CALIBRATE
                  ? 12 + (((b[q + 2] | (b[q + 3] << 8)) + 3) & ~3)
                  : 0;
    if (!n || q + n > e) return null;
    if (op === PROVISION) {
      at.push(q + 20);
      out.push({ op: 'provision', id: b.subarray(q + 4, q + 20), key: keyAt(b, q + 20, crc, zero) });
    } else if (op === CLIENT_KEY) {
      at.push(q + 4);
      out.push({ op: 'clientKey', key: keyAt(b, q + 4, crc, zero) });
    } else if (op === TOPIC) {
      at.push(q + 28);
      if (b[q + 1]) at.push(q + 64);
      out.push({
        op: 'topic',
        topic: {
          hash: b.subarray(q + 4, q + 20),
          prevSince: readU64LE(b, q + 20) - 1,
          key: keyAt(b, q + 28, crc, zero),
          prevKey: b[q + 1] ? keyAt(b, q + 64, crc, zero) : null,
        },
      });
    } else if (op === REMOVE) {
      out.push({ op: 'removeTopic', hash: b.subarray(q + 4, q + 20) });
    } else if (op === RESET) {
      out.push({ op: 'resetTopics' });
    } else {
      out.push({ op: 'calibrate', time: readU64LE(b, q + 4) - 1, tags: b.subarray(q + 12, q + 12 + (b[q + 2] | (b[q + 3] << 8))) });
    }
    q += n;
  }
  // The group CRC reads key blobs as zeros (they may have been erased since).
  var t = new Uint8Array(len - 4);
  t.set(b.subarray(p, e));
  for (var i = 0; i < at.length; i++) for (var j = 0; j < BLOB; j++) t[at[i] - p + j] = 0;
  if ((crc(t) | 0) !== r32(b, e)) return null;
  for (i = 0; i < at.length; i++) blobs.push(at[i]);
  return out;
}

/** Replays the valid groups of a file (up to `limit`) through applyChanges. */
function scan(b: Uint8Array, limit: number, crc: (d: Uint8Array) => number): Scan {
  var zero = new Uint8Array(32);
  var s: Scan = { state: null, blobs: [], end: HEAD };
  var g: Change[] | null;
  while (s.end < limit && (g = readGroup(b, s.end, crc, s.blobs, zero))) {
    s.state = applyChanges(s.state, g);
    // Let the group's changes go before the next one is read (on Espruino a group of 5 keys
    // holds ≈ 110 variables).
    g = null;
    s.end += b[s.end] | (b[s.end + 1] << 8);
  }
  // A key that reads as erased must have been replaced later: one still in use means damage.
  var st = s.state;
  if (st) {
    var live = keysOf(st);
    for (var i = 0; i < live.length; i++) {
      var z = 0;
      for (var j = 0; j < 32; j++) z |= live[i][j];
      if (!z) {
        wipeState(st);
        throw fail('a stored key is damaged');
      }
    }
  }
  return s;
}

function keysOf(s: StoredState): Uint8Array[] {
  var k = [s.key];
  for (var i = 0; i < s.topics.length; i++) {
    k.push(s.topics[i].key);
    if (s.topics[i].prevKey) k.push(s.topics[i].prevKey as Uint8Array);
  }
  return k;
}

/** Offsets (in `b`, plus `shift`) of key blobs holding a key that `s` does not hold, or partly erased. */
function stale(b: Uint8Array, blobs: number[], s: StoredState, crc: (d: Uint8Array) => number, shift: number, out: number[]): number[] {
  var live = keysOf(s);
  // k is declared before either branch uses it: Espruino declares a `var` only when execution
  // reaches it, so `k = 0` in the else branch, reached first, would assign an outer `k`.
  var k: number;
  for (var i = 0; i < blobs.length; i++) {
    var o = blobs[i];
    var drop = true;
    if ((crc(b.subarray(o, o + 32)) | 0) === r32(b, o + 32)) {
      for (var j = 0; j < live.length && drop; j++) {
        var same = true;
        for (k = 0; k < 32 && same; k++) same = b[o + k] === live[j][k];
        if (same) drop = false;
      }
    } else {
      drop = false;
      for (k = 0; k < BLOB; k++) if (b[o + k]) drop = true;
    }
    if (drop) out.push(o + shift);
  }
  return out;
}

/** The generation of a usable file; -1 for one that is torn or erased; -2 for a damaged one.
 * Throws PERSISTENCE_INCOMPATIBLE for a file of another format or version. */
function classify(b: Uint8Array, crc: (d: Uint8Array) => number): number {
  if (!b.length || b[0] === 0) return -1; // zeroed on its way out
  for (var i = 0; i < 4; i++) {
    if (b[i] !== MAGIC[i]) {
      if (written(b) <= i) return -1; // torn while the header was written
      throw new E4Error(PERSISTENCE_INCOMPATIBLE, 'not an E4 flash store of this version');
    }
  }
  if (readGroup(b, HEAD, crc, [], new Uint8Array(32))) return r32(b, 4) >>> 0;
  // No valid snapshot: torn if nothing is written past where it should end, else damaged.
  var len = b.length > HEAD + 1 ? b[HEAD] | (b[HEAD + 1] << 8) : 0;
  return written(b) < HEAD + len ? -1 : -2;
}

interface Current {
  slot: number;
  gen: number;
  size: number;
  end: number;
  /** Bytes written after `end` (a torn or failed append): the next commit starts a new file. */
  dirty: boolean;
}

/** A store's settings and where it stands. Its functions live at module level, not in a closure
 * per store: Espruino copies the body of every function created at run time into RAM. */
interface Ctx {
  s: StorageApi;
  /** File name prefix. */
  p: string;
  min: number;
  zero: ZeroFn | undefined;
  crc: (d: Uint8Array) => number;
  cur: Current | null;
  loaded: boolean;
}

function readSlot(x: Ctx, slot: number): Uint8Array | undefined {
  var ab = x.s.readArrayBuffer(x.p + slot);
  return ab ? new Uint8Array(ab) : undefined;
}

function writeSlot(x: Ctx, slot: number, data: Uint8Array, offset: number, size?: number): void {
  if (!x.s.write(x.p + slot, data, offset, size)) throw fail('flash write failed');
}

/** Adds bytes [from, to) of a file to `spans`, less the words already zero (each word of flash
 * is then written at most twice between erases: nRF52840's limit). */
function span(b: Uint8Array, from: number, to: number, spans: number[]): void {
  while (from < to && from < b.length && !b[from]) from++;
  from &= ~3;
  if (to > from) spans.push(from, to - from);
}

/** Removes a file of the store. With a zero hook its key blobs (all of it when it cannot be
 * parsed) are zeroed first: an erased file stays on the medium until Espruino compacts. `known`
 * is the file's scan when the caller holds one of all of it (commit): it is not scanned again
 * (on Espruino a second scan beside the caller's held ≈ 150 variables more at the peak). */
function remove(x: Ctx, slot: number, known?: Scan): void {
  var b = readSlot(x, slot);
  if (!b) return;
  if (x.zero) {
    var sc: Scan | null = known || null;
    if (!sc) {
      try {
        if (classify(b, x.crc) >= 0) sc = scan(b, b.length, x.crc);
      } catch (e) {
        // Damaged: zero all of it.
      }
      if (sc) wipeState(sc.state);
    }
    zeroAll(x, slot, b, sc ? sc.blobs : [], sc ? sc.end : 0);
  }
  x.s.erase(x.p + slot);
}

/** Writes `state` as the snapshot of a new file, then removes the old file (`known`: its scan,
 * see remove). */
function rotate(x: Ctx, state: StoredState, known?: Scan): void {
  var cur = x.cur;
  var snap: Uint8Array | null = encode(snapshot(state), x.crc);
  var used = HEAD + snap.length;
  // Room for as many bytes of commits as the snapshot takes, at least.
  var size = x.min < 2 * used ? (2 * used + 255) & ~255 : x.min;
  var slot = cur ? 1 - cur.slot : 0;
  var gen = cur ? (cur.gen + 1) >>> 0 : 1;
  // Left by an interrupted compaction: it may hold keys.
  if (readSlot(x, slot)) remove(x, slot);
  // Espruino makes room for a file that does not fit by compacting Storage: not power-safe, so
  // the commit fails instead (state unchanged) and Storage is compacted at a safe time.
  var need = ((size + 3) & ~3) + 32;
  var free = x.s.getFree ? x.s.getFree() : need;
  if (free < need) throw fail('Storage full (compact it while no power cut can happen)');
  var data: Uint8Array | null = new Uint8Array(used);
  for (var i = 0; i < 4; i++) data[i] = MAGIC[i];
  w32(data, 4, gen);
  data.set(snap, HEAD);
  try {
    writeSlot(x, slot, data, 0, size);
  } catch (e) {
    try {
      remove(x, slot);
    } catch (e2) {
      // Power or flash trouble: load() removes it later.
    }
    throw e;
  } finally {
    wipe(snap);
    wipe(data);
  }
  // Both copies (wiped) go before the old file is removed: on Espruino they held ≈ 50 variables
  // through the removal's header walk, the peak of a commit that starts a new file.
  snap = data = null;
  x.cur = { slot: slot, gen: gen, size: size, end: used, dirty: false };
  if (cur) remove(x, cur.slot, known);
}

/** Zeroes, in one call of the hook, the key blobs at `at` (offsets in the file as `b` shows it,
 * or past its end) and, when `from` >= 0, everything written from `from` on. */
function zeroAll(x: Ctx, slot: number, b: Uint8Array, at: number[], from: number): void {
  var spans: number[] = [];
  for (var i = 0; i < at.length; i++) span(b, at[i], at[i] + BLOB, spans);
  if (from >= 0) span(b, from, written(b), spans);
  if (spans.length) (x.zero as ZeroFn)(x.p + slot, spans);
}

function load(x: Ctx): StoredState | null {
  x.loaded = false;
  x.cur = null;
  var best = -1;
  var gen = -1;
  var damaged = false;
  var b: Uint8Array | undefined;
  var files: (Uint8Array | undefined)[] = [];
  for (var slot = 0; slot < 2; slot++) {
    b = files[slot] = readSlot(x, slot);
    if (!b) continue;
    var g = classify(b, x.crc);
    if (g === -2) damaged = true;
    if (g > gen) {
      gen = g;
      best = slot;
    }
  }
  if (best < 0 && damaged) throw fail('flash store damaged');
  var sc: Scan | null = null;
  if (best >= 0) {
    b = files[best] as Uint8Array;
    sc = scan(b, b.length, x.crc);
    x.cur = { slot: best, gen: gen, size: b.length, end: sc.end, dirty: written(b) > sc.end };
  }
  files = [];
  // The other file is left by an interrupted compaction or a torn first write.
  for (slot = 0; slot < 2; slot++) if (slot !== best && readSlot(x, slot)) remove(x, slot);
  var state = sc ? sc.state : null;
  if (state) {
    // Keys a power cut kept from being erased.
    var old = stale(b as Uint8Array, (sc as Scan).blobs, state, x.crc, 0, []);
    if (old.length && x.zero) zeroAll(x, best, b as Uint8Array, old, -1);
    else if (old.length) rotate(x, state);
  }
  x.loaded = true;
  return state;
}

function commit(x: Ctx, changes: Change[]): void {
  if (!changes.length) return;
  if (!x.loaded) wipeState(load(x));
  var cur = x.cur;
  var gBlobs: number[] = [];
  var g = encode(changes, x.crc, gBlobs);
  var fits = cur && !cur.dirty && cur.end + g.length <= cur.size;
  var keys = false;
  for (var i = 0; i < changes.length; i++) if (changes[i].op !== 'calibrate') keys = true;
  if (fits && !keys) return append(x, g); // a calibration: no key in it
  var b = cur ? readSlot(x, cur.slot) : undefined;
  if (cur && !b) throw fail('flash store file missing');
  var sc = b ? scan(b, (cur as Current).end, x.crc) : null;
  var state = applyChanges(sc ? sc.state : null, changes);
  try {
    // Blobs of keys this commit drops: in the file, and (a key set and dropped at once) in g.
    var drop: number[] = [];
    if (sc) stale(b as Uint8Array, sc.blobs, state, x.crc, 0, drop);
    if (fits) stale(g, gBlobs, state, x.crc, (cur as Current).end, drop);
    // Without in-place zeroing, dropping a key takes a new file (and erasing the old one).
    // The scan covers all of the file unless bytes were written after its end (dirty).
    if (!fits || (drop.length && !x.zero)) return rotate(x, state, sc && !(cur as Current).dirty ? sc : undefined);
    append(x, g);
    if (drop.length) zeroAll(x, (cur as Current).slot, b as Uint8Array, drop, -1);
  } finally {
    wipeState(state);
    wipe(g);
  }
}

function append(x: Ctx, g: Uint8Array): void {
  var c = x.cur as Current;
  try {
    writeSlot(x, c.slot, g, c.end);
  } catch (e) {
    c.dirty = true;
    throw e;
  }
  c.end += g.length;
}

export function flashStore(storage: StorageApi, options?: FlashStoreOptions): Store {
  var o = options || {};
  if (!o.zero && !o.erases) throw new E4Error(PARAMETER_INVALID, 'flash store: no way to erase keys');
  var x: Ctx = { s: storage, p: o.name || 'e4s', min: o.size || 1024, zero: o.zero, crc: o.crc32 || crc32, cur: null, loaded: false };
  return {
    load: function () {
      return load(x);
    },
    commit: function (changes: Change[]) {
      commit(x, changes);
    },
  };
}
