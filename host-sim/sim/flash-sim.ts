/**
 * A simulated Espruino flash `Storage` (and the raw `require("Flash")` subset), byte for byte as
 * Espruino 2v2x lays it out (src/jsflash.c): files are a 32-byte header (u32 size | flags << 24,
 * 28-byte zero-padded name) followed by the data, appended at 4-byte aligned addresses across
 * pages. The rules that matter for a power-safe store are Espruino's own:
 * - write(name, data, 0, size) creates a file (replacing an existing one unless it is identical
 *   or still blank); write(name, data, offset > 0) only writes bytes that still read 0xFF and
 *   throws "File already written with different data" otherwise.
 * - erase(name) only zeroes the first 4 bytes of the name in the header: the data stays on the
 *   medium ("trash") until compact(), which streams the live files down through a RAM buffer of
 *   up to a page + 32 bytes, erasing pages ahead of itself, and erases everything after.
 * - creating a file when there is no room compacts first if that would make room.
 * - on boot, a Storage whose header chain ends in something that is neither a valid header nor
 *   blank is reset (all erased), as jsinteractive.c does on first boot (`bootCheck`).
 *
 * Programming is NOR-like (new = old AND data). Fault injection:
 * - cutAfter(n): the power fails after n more events (an event is one programmed byte, or one
 *   programmed `unit` when unit > 1, or one page erase); the write in progress is torn there and
 *   every later call throws PowerCut until reboot().
 * - failNext(op, { after, returnFalse }): the next `op` call fails after programming `after`
 *   bytes (the power stays on).
 * - corrupt(addr, value), corruptFile(name, offset, xor): change bytes behind Storage's back.
 * Observation: bytes() (the raw medium), contains(bytes), addressOf(name), stats, events.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { StorageApi } from '../../boards/shared/flash-store.ts';
import type { RawFlash } from '../../boards/espruino/storage-zero.ts';

const HEADER = 32;
const NAME = 28;
const UNSET = 0xffffffff;
const FLAG_TABLE = 32; // JSFF_FILENAME_TABLE: never a "real" file
const REAL_FLAGS = [0, 64, 128]; // JSFF_NONE, JSFF_STORAGEFILE, JSFF_COMPRESSED

/** What Espruino's Storage.write and Flash.write accept as data: a string (one byte per
 * character), an ArrayBuffer, a typed array or DataView (its bytes), an array of numbers, or any
 * other object (written as its JSON). */
export type FlashData = string | ArrayBuffer | ArrayBufferView | number[] | object;

/** Espruino's `require("Flash")` (the subset emulated): raw reads, NOR writes, pages. */
export interface EspruinoFlash extends RawFlash {
  write(data: FlashData, addr: number): void;
  erasePage(addr: number): void;
}

/** Storage.getStats() (jswrap_storage.c). */
export interface StorageStats {
  totalBytes: number;
  freeBytes: number;
  fileBytes: number;
  fileCount: number;
  trashBytes: number;
  trashCount: number;
}

/** Espruino's `require("Storage")`: the whole API the emulation offers (the flash store uses the
 * StorageApi part). */
export interface EspruinoStorage extends StorageApi {
  read(name: string, offset?: number, length?: number): string | undefined;
  readArrayBuffer(name: string): ArrayBuffer | undefined;
  readJSON(name: string, noExceptions?: boolean): unknown;
  write(name: string, data: FlashData, offset?: number, size?: number): boolean;
  writeJSON(name: string, data: unknown): boolean;
  erase(name: string): void;
  eraseAll(): void;
  list(): string[];
  getFree(): number;
  getStats(): StorageStats;
  compact(): void;
}

export interface FlashSimOptions {
  /** Storage bytes (default 40960: Puck.js class, 10 pages of 4 KB). */
  size?: number;
  /** Default 4096. */
  pageSize?: number;
  /** Address of the first byte (default 0x60000; 0 is never a valid address). */
  base?: number;
  /** JSF_ALIGNMENT (default 4). */
  align?: number;
  /** Bytes programmed atomically: the granularity of a power cut (default 1). */
  unit?: number;
  /** Reset a corrupt Storage on reboot, as Espruino does (default true). */
  bootCheck?: boolean;
  /** Keep the medium in this file (created when missing). */
  file?: string | null;
}

/** What an event of the medium was part of: a file header, file data, an erase mark, a
 * compaction, a raw Flash.write, or a page erase. */
export type EventKind = 'header' | 'data' | 'erase' | 'compact' | 'raw' | 'page';

/** A run of consecutive events of one kind: event indexes [from, to). */
export interface TraceEntry {
  kind: EventKind;
  from: number;
  to: number;
}

/** The calls failNext can make fail. */
export type FlashOp = 'write' | 'erase' | 'compact' | 'flashWrite';

export interface FailOptions {
  /** Bytes of the call's data programmed before it fails (write, flashWrite). */
  after?: number;
  /** Return false instead of throwing. */
  returnFalse?: boolean;
}

interface Failure {
  op: FlashOp;
  after: number;
  returnFalse: boolean;
}

export interface FlashStats {
  write: number;
  erase: number;
  compact: number;
  flashWrite: number;
  bytesProgrammed: number;
  pageErases: number;
  /** Storage resets by the boot check. */
  resets: number;
}

/** A file header as jsfGetFileHeader reads it. */
interface FileHeader {
  valid: boolean;
  raw: Uint8Array;
  size: number;
  fileSize: number;
  flags: number;
  firstChars: number;
  name: string;
}

/** A file found in Storage: its header's address, its data's address, its header. */
interface FoundFile {
  addr: number;
  data: number;
  h: FileHeader;
}

export class PowerCut extends Error {
  constructor() {
    super('power cut (simulated)');
    this.name = 'PowerCut';
  }
}

function toBytes(data: FlashData): Uint8Array {
  if (typeof data === 'string') {
    const b = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) b[i] = data.charCodeAt(i) & 255;
    return b;
  }
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  if (Array.isArray(data)) return Uint8Array.from(data, (v) => v & 255);
  if (data && typeof data === 'object') return toBytes(JSON.stringify(data));
  throw new Error("Can't get pointer to data to write");
}

function noStats(): FlashStats {
  return { write: 0, erase: 0, compact: 0, flashWrite: 0, bytesProgrammed: 0, pageErases: 0, resets: 0 };
}

function nameBytes(name: string): Uint8Array {
  const s = String(name);
  if (s.length > NAME) throw new Error('filename too long');
  const b = new Uint8Array(NAME);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 255;
  return b;
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

export class FlashSim implements EspruinoStorage {
  /** The kind every event is recorded as while set (a compaction), else null. */
  #kind: EventKind | null;
  readonly size: number;
  readonly pageSize: number;
  readonly base: number;
  readonly align: number;
  readonly unit: number;
  readonly bootCheck: boolean;
  readonly file: string | null;
  /** First and one past the last address of the medium. */
  readonly start: number;
  readonly end: number;
  readonly mem: Uint8Array;
  readonly wordWrites: Uint16Array;
  /** The power is off (after a cut) until reboot(). */
  dead: boolean;
  /** Events left before the power fails. */
  budget: number;
  failure: Failure | null;
  /** Events since construction. */
  events: number;
  /** Flash address of the data the last read()/readArrayBuffer() returned. */
  lastReadAddress: number;
  stats: FlashStats;
  /** What each event was (see EventKind; 'compact' covers every event of a compaction, also
   * one run by a write). */
  trace: TraceEntry[];
  readonly flash: EspruinoFlash;

  constructor({ size = 40960, pageSize = 4096, base = 0x60000, align = 4, unit = 1, bootCheck = true, file = null }: FlashSimOptions = {}) {
    if (size % pageSize || base % pageSize || !base) throw new Error('bad flash geometry');
    this.size = size;
    this.pageSize = pageSize;
    this.base = base;
    this.align = align;
    this.unit = unit;
    this.bootCheck = bootCheck;
    this.file = file;
    this.start = base;
    this.end = base + size;
    this.mem = new Uint8Array(size).fill(0xff);
    /** Program operations per 32-bit word since its page was last erased (nRF52840 allows 2; an
     * nRF52832 allows 181 per 512-byte block). */
    this.wordWrites = new Uint16Array(size / 4);
    if (file && existsSync(file)) {
      const img = readFileSync(file);
      if (img.length !== size) throw new Error(`${file}: ${img.length} bytes, expected ${size}`);
      this.mem.set(img);
    }
    this.dead = false;
    this.budget = Infinity;
    this.failure = null;
    this.events = 0;
    this.#kind = null;
    this.lastReadAddress = 0;
    this.stats = noStats();
    this.trace = [];
    /** `require("Flash")` subset: raw reads, NOR writes (no "already written" check), pages. */
    this.flash = {
      read: (length, addr) => {
        this.#alive();
        return this.#get(addr, length);
      },
      write: (data, addr) => {
        this.#alive();
        this.stats.flashWrite++;
        if (this.#fail('flashWrite', toBytes(data), addr)) return;
        this.#program(addr, toBytes(data), 'raw');
        this.#persist();
      },
      /** jshFlashGetPage: the page holding `addr`, or undefined outside the medium. */
      getPage: (addr) => {
        if (addr < this.start || addr >= this.end) return undefined;
        return { addr: this.#pageStart(addr), length: this.pageSize };
      },
      erasePage: (addr) => {
        this.#alive();
        this.#erasePage(this.#pageStart(addr), 'page');
        this.#persist();
      },
    };
  }

  resetStats(): void {
    this.stats = noStats();
    this.trace = [];
  }

  /** The kind of event number `i` (see trace), or null. */
  kindOf(i: number): EventKind | null {
    for (const t of this.trace) if (i >= t.from && i < t.to) return t.kind;
    return null;
  }

  // --- fault injection and observation ----------------------------------------------------

  /** The power fails after `n` more events (0: before the next one). */
  cutAfter(n: number): void {
    this.budget = n;
  }

  /** The next call of `op` ("write", "erase", "compact", "flashWrite") fails after programming
   * `after` bytes of its data (write/flashWrite): it throws, or returns false when `returnFalse`. */
  failNext(op: FlashOp = 'write', { after = 0, returnFalse = false }: FailOptions = {}): void {
    this.failure = { op, after, returnFalse };
  }

  /** Power back on. Espruino's first-boot check resets a corrupt Storage. */
  reboot(): void {
    this.dead = false;
    this.budget = Infinity;
    this.failure = null;
    if (this.bootCheck && !this.#storageValid()) {
      this.stats.resets++;
      for (let p = this.start; p < this.end; p += this.pageSize) this.#erasePage(p, 'page');
      this.#persist();
    }
  }

  /** The most program operations any word, and any `block`-byte block, has had since its erase. */
  writeLimits(block = 512): { word: number; block: number } {
    let word = 0;
    let blk = 0;
    for (let b = 0; b < this.wordWrites.length; b += block / 4) {
      let sum = 0;
      for (let w = b; w < b + block / 4; w++) {
        sum += this.wordWrites[w];
        if (this.wordWrites[w] > word) word = this.wordWrites[w];
      }
      if (sum > blk) blk = sum;
    }
    return { word, block: blk };
  }

  /** A copy of the raw medium. */
  bytes(): Uint8Array {
    return this.mem.slice();
  }

  /** Puts back a copy made by bytes() (power on, no pending faults). */
  restore(img: Uint8Array): void {
    this.mem.set(img);
    this.dead = false;
    this.budget = Infinity;
    this.failure = null;
    this.#persist();
  }

  /** True when the raw medium holds this byte sequence anywhere (live files, trash, anything). */
  contains(bytes: Uint8Array): boolean {
    return Buffer.from(this.mem.buffer, this.mem.byteOffset, this.mem.length).indexOf(Buffer.from(bytes)) >= 0;
  }

  corrupt(addr: number, value: number): void {
    this.mem[addr - this.base] = value;
    this.#persist();
  }

  /** XORs a byte of a live file's data (bit rot). */
  corruptFile(name: string, offset: number, xor = 0xff): void {
    const f = this.#find(name);
    if (!f) throw new Error('no such file: ' + name);
    this.mem[f.data + offset - this.base] ^= xor;
    this.#persist();
  }

  /** Flash address of a live file's data, or 0. */
  addressOf(name: string): number {
    const f = this.#find(name);
    return f ? f.data : 0;
  }

  // --- Storage API -------------------------------------------------------------------------

  read(name: string, offset = 0, length = 0): string | undefined {
    this.#alive();
    const f = this.#find(name);
    if (!f) return undefined;
    const size = f.h.fileSize;
    if (offset < 0) offset = 0;
    if (length <= 0) length = size;
    if (offset > size) offset = size;
    if (offset + length > size) length = size - offset;
    this.lastReadAddress = f.data + offset;
    return length <= 0 ? '' : latin1(this.#get(f.data + offset, length));
  }

  readArrayBuffer(name: string): ArrayBuffer | undefined {
    this.#alive();
    const f = this.#find(name);
    if (!f) return undefined;
    this.lastReadAddress = f.data;
    return this.#get(f.data, f.h.fileSize).buffer;
  }

  readJSON(name: string, noExceptions?: boolean): unknown {
    const s = this.read(name);
    if (s === undefined) return undefined;
    try {
      return JSON.parse(s);
    } catch (e) {
      if (noExceptions) return undefined;
      throw e;
    }
  }

  /** jsfWriteFile. */
  write(name: string, data: FlashData, offset = 0, size = 0): boolean {
    this.#alive();
    this.stats.write++;
    offset = offset | 0;
    size = size | 0;
    if (offset < 0 || size < 0) return false;
    const d = toBytes(data);
    if (size === 0) size = d.length;
    if (!size) throw new Error("Can't create zero length file");
    let f = this.#find(name);
    const flags = 0;
    if ((!f && offset === 0) || (f && offset === 0 && (flags !== f.h.flags || size !== f.h.fileSize || !this.#erased(f.data, size)))) {
      if (f && offset === 0 && size === f.h.fileSize && flags === f.h.flags && d.length === size && this.#equal(f.data, d)) return true;
      if (f) this.#eraseHeader(f.addr);
      f = this.#create(name, size, flags);
    }
    if (!f) throw new Error('Unable to find or create file');
    if (offset + d.length > f.h.fileSize) throw new Error('Too much data for file size');
    const at = f.data + offset;
    if (!this.#erased(at, d.length)) throw new Error('File already written with different data');
    if (this.#fail('write', d, at)) return false;
    this.#program(at, d, 'data');
    this.#persist();
    return true;
  }

  writeJSON(name: string, data: unknown): boolean {
    return this.write(name, JSON.stringify(data));
  }

  /** jsfEraseFile: marks the file deleted (first 4 name bytes zeroed); its data stays. */
  erase(name: string): void {
    this.#alive();
    this.stats.erase++;
    const f = this.#find(name);
    if (!f) return;
    if (this.#fail('erase', null, 0)) return;
    this.#eraseHeader(f.addr);
    this.#persist();
  }

  eraseAll(): void {
    this.#alive();
    for (let p = this.start; p < this.end; p += this.pageSize) this.#erasePage(p, 'page');
    this.#persist();
  }

  list(): string[] {
    this.#alive();
    const out: string[] = [];
    this.#walk((addr, h) => {
      if (this.#real(h)) out.push(h.name);
    });
    return out;
  }

  getFree(): number {
    this.#alive();
    return this.#statsAt(this.start).free;
  }

  getStats(): StorageStats {
    this.#alive();
    const s = this.#statsAt(this.start);
    return {
      totalBytes: s.total,
      freeBytes: s.free,
      fileBytes: s.fileBytes,
      fileCount: s.fileCount,
      trashBytes: s.trashBytes,
      trashCount: s.trashCount,
    };
  }

  compact(): void {
    this.#alive();
    this.stats.compact++;
    if (this.#fail('compact', null, 0)) return;
    this.#compact();
    this.#persist();
  }

  // --- medium ------------------------------------------------------------------------------

  #alive(): void {
    if (this.dead) throw new PowerCut();
  }

  #event(kind: EventKind): void {
    if (this.dead) throw new PowerCut();
    kind = this.#kind || kind;
    const t = this.trace[this.trace.length - 1];
    if (t && t.kind === kind && t.to === this.events) t.to++;
    else this.trace.push({ kind, from: this.events, to: this.events + 1 });
    if (this.budget <= 0) {
      this.dead = true;
      this.#persist();
      throw new PowerCut();
    }
    this.budget--;
    this.events++;
  }

  /** An injected failure of `op`: programs `after` bytes of `data` at `at`, then fails. */
  #fail(op: FlashOp, data: Uint8Array | null, at: number): boolean {
    const f = this.failure;
    if (!f || f.op !== op) return false;
    this.failure = null;
    if (data && f.after) this.#program(at, data.subarray(0, f.after), 'data');
    this.#persist();
    if (f.returnFalse) return true;
    throw new Error(`flash ${op} failed (injected)`);
  }

  #get(addr: number, len: number): Uint8Array<ArrayBuffer> {
    if (addr < this.start || addr + len > this.end) throw new Error('flash read out of range');
    return this.mem.slice(addr - this.base, addr - this.base + len);
  }

  /** NOR programming, ascending, one event per `unit` (aligned) or byte. */
  #program(addr: number, data: Uint8Array, kind: EventKind): void {
    if (addr < this.start || addr + data.length > this.end) throw new Error('flash write out of range');
    for (let w = (addr - this.base) >> 2; w < (addr - this.base + data.length + 3) >> 2; w++) this.wordWrites[w]++;
    let i = 0;
    while (i < data.length) {
      const stop = Math.min(data.length, this.unit > 1 ? i + this.unit - ((addr + i) % this.unit) : i + 1);
      this.#event(kind);
      for (; i < stop; i++) this.mem[addr + i - this.base] &= data[i];
    }
    this.stats.bytesProgrammed += data.length;
  }

  #erasePage(p: number, kind: EventKind): void {
    this.#event(kind);
    this.mem.fill(0xff, p - this.base, p - this.base + this.pageSize);
    this.wordWrites.fill(0, (p - this.base) >> 2, (p - this.base + this.pageSize) >> 2);
    this.stats.pageErases++;
  }

  #persist(): void {
    // The medium holds keys: owner-only, like every key file the tools write.
    if (this.file) writeFileSync(this.file, this.mem, { mode: 0o600 });
  }

  #erased(addr: number, len: number): boolean {
    for (let i = 0; i < len; i++) if (this.mem[addr + i - this.base] !== 0xff) return false;
    return true;
  }

  #equal(addr: number, d: Uint8Array): boolean {
    for (let i = 0; i < d.length; i++) if (this.mem[addr + i - this.base] !== d[i]) return false;
    return true;
  }

  #alignUp(a: number): number {
    return (a + this.align - 1) & ~(this.align - 1);
  }

  #pageStart(addr: number): number {
    return this.base + Math.floor((addr - this.base) / this.pageSize) * this.pageSize;
  }

  /** jsfGetAddressOfNextPage: 0 when none. */
  #nextPage(addr: number): number {
    if (!addr || addr < this.start || addr >= this.end) return 0;
    const n = this.#pageStart(addr) + this.pageSize;
    return n >= this.end ? 0 : n;
  }

  /** jsfGetFileHeader (full): the header at addr and whether it is valid. */
  #header(addr: number): FileHeader {
    if (!addr || addr < this.start || addr + HEADER > this.end)
      return {
        valid: false,
        raw: new Uint8Array(HEADER).fill(0xff),
        size: UNSET,
        fileSize: 0xffffff,
        flags: 255,
        firstChars: UNSET,
        name: '',
      };
    const raw = this.mem.slice(addr - this.base, addr - this.base + HEADER);
    const size = (raw[0] | (raw[1] << 8) | (raw[2] << 16) | (raw[3] << 24)) >>> 0;
    const fileSize = size & 0xffffff;
    const flags = size >>> 24;
    const firstChars = (raw[4] | (raw[5] << 8) | (raw[6] << 16) | (raw[7] << 24)) >>> 0;
    let n: number;
    let name = '';
    for (n = 4; n < HEADER && raw[n]; n++) name += String.fromCharCode(raw[n]);
    const valid = size !== UNSET && size !== 0 && addr + HEADER + fileSize <= this.end;
    return { valid, raw, size, fileSize, flags, firstChars, name };
  }

  /** jsfGetNextFileHeader: { addr (0 when none), h (unchanged when there is no room for one) }. */
  #next(addr: number, h: FileHeader, getAll: boolean): { addr: number; h: FileHeader } {
    const n = this.#alignUp(addr + h.fileSize + HEADER);
    if (n < addr || n + HEADER > this.end) return { addr: 0, h };
    let a = n;
    let nh = this.#header(a);
    if (getAll && !nh.valid) {
      a = this.#nextPage(a);
      if (!a) return { addr: 0, h: nh };
      nh = this.#header(a);
    }
    return { addr: a, h: nh };
  }

  #real(h: FileHeader): boolean {
    return h.firstChars !== 0 && REAL_FLAGS.includes(h.flags) && !(h.flags & FLAG_TABLE);
  }

  #walk(fn: (addr: number, h: FileHeader) => void): void {
    let addr = this.start;
    let h = this.#header(addr);
    while (h.valid) {
      fn(addr, h);
      ({ addr, h } = this.#next(addr, h, true));
      if (!addr) break;
    }
  }

  /** jsfFindFile: { addr (header), data, h } or null. */
  #find(name: string): FoundFile | null {
    const nb = nameBytes(name);
    let found: FoundFile | null = null;
    this.#walk((addr, h) => {
      if (found || h.firstChars === 0) return;
      for (let i = 0; i < NAME; i++) if (h.raw[4 + i] !== nb[i]) return;
      found = { addr, data: addr + HEADER, h };
    });
    return found;
  }

  #eraseHeader(addr: number): void {
    this.#program(addr + 4, new Uint8Array(4), 'erase');
  }

  /** jsfGetSpaceLeftInPage */
  #spaceLeftInPage(addr: number): number {
    if (!addr || addr < this.start || addr >= this.end) return 0;
    let next = this.#pageStart(addr) + this.pageSize;
    if (next < this.end && !this.#header(next).valid) next = this.end;
    return next - addr;
  }

  /** _jsfCreateFile: writes the header; returns { addr, data, h } or null. */
  #create(name: string, size: number, flags: number): FoundFile | null {
    const required = this.#alignUp(size) + HEADER;
    let compacted = false;
    let free: number;
    for (;;) {
      let addr = this.start;
      let freeSpace = 0;
      let trash = 0;
      free = 0;
      do {
        let h = this.#header(addr);
        if (h.valid) {
          for (;;) {
            if (h.firstChars === 0) trash += h.fileSize;
            const r = this.#next(addr, h, false);
            addr = r.addr;
            h = r.h;
            if (!addr || !h.valid) break;
          }
        }
        const space = this.#spaceLeftInPage(addr);
        freeSpace += space;
        if (space < required) addr = this.#nextPage(addr);
        else free = addr;
      } while (addr && !free);
      if (free) break;
      if (!compacted && required < freeSpace + trash) {
        compacted = true;
        if (!this.#compact()) return null;
        continue;
      }
      return null;
    }
    const hdr = new Uint8Array(HEADER);
    const v = (size | (flags << 24)) >>> 0;
    for (let i = 0; i < 4; i++) hdr[i] = (v >>> (8 * i)) & 255;
    hdr.set(nameBytes(name), 4);
    this.#program(free, hdr, 'header');
    return { addr: free, data: free + HEADER, h: this.#header(free) };
  }

  /** jsfGetStorageStats(addr, allPages = true) */
  #statsAt(start: number): {
    fileBytes: number;
    fileCount: number;
    trashBytes: number;
    trashCount: number;
    firstPageWithErasedFiles: number;
    total: number;
    free: number;
  } {
    const s = { fileBytes: 0, fileCount: 0, trashBytes: 0, trashCount: 0, firstPageWithErasedFiles: 0, total: this.end - start, free: 0 };
    let addr = start;
    let last = start;
    let unbroken = start;
    let h = this.#header(addr);
    while (h.valid) {
      if (this.#pageStart(addr) === addr) unbroken = addr;
      const fs = this.#alignUp(h.fileSize) + HEADER;
      last = addr + fs;
      if (h.firstChars !== 0) {
        s.fileBytes += fs;
        s.fileCount++;
      } else {
        s.trashBytes += fs;
        s.trashCount++;
        if (!s.firstPageWithErasedFiles) s.firstPageWithErasedFiles = unbroken;
      }
      ({ addr, h } = this.#next(addr, h, true));
      if (!addr) break;
    }
    s.free = this.end - last;
    return s;
  }

  /** jsfBankCompact + jsfCompactInternal + jsfCompactWriteBuffer. */
  #compact(): boolean {
    const outer = this.#kind;
    this.#kind = 'compact';
    try {
      return this.#compactNow();
    } finally {
      this.#kind = outer;
    }
  }

  #compactNow(): boolean {
    const st = this.#statsAt(this.start);
    if (!st.trashBytes) return false;
    const bufSize = Math.min(st.fileBytes, this.pageSize + HEADER);
    const buf = new Uint8Array(Math.max(bufSize, 1));
    let writeAddress = st.firstPageWithErasedFiles;
    let head = 0;
    let tail = 0;
    let used = 0;
    const flush = (readAddress: number): void => {
      let nextFlashPage = this.#nextPage(writeAddress) || this.end;
      while (used) {
        let s = used;
        if (s + tail > bufSize) s = bufSize - tail;
        if (s + writeAddress > nextFlashPage) s = nextFlashPage - writeAddress;
        if (readAddress < nextFlashPage) return;
        if (this.#pageStart(writeAddress) === writeAddress) this.#erasePage(writeAddress, 'compact');
        this.#program(writeAddress, buf.subarray(tail, tail + s), 'compact');
        writeAddress += s;
        nextFlashPage = this.#nextPage(writeAddress) || this.end;
        tail = (tail + s) % bufSize;
        used -= s;
      }
    };
    const push = (bytes: Uint8Array): void => {
      for (let i = 0; i < bytes.length; i++) {
        buf[head] = bytes[i];
        head = (head + 1) % bufSize;
      }
    };
    let addr = st.firstPageWithErasedFiles;
    let h = this.#header(addr);
    while (h.valid) {
      if (this.#real(h)) {
        push(h.raw);
        used += HEADER;
        let size = this.#alignUp(h.fileSize);
        let ptr = addr + HEADER;
        flush(ptr);
        while (size) {
          let s = bufSize - used;
          if (s > bufSize - head) s = bufSize - head;
          if (tail > head && s > tail - head) s = tail - head;
          if (s === 0) return false;
          if (s > size) s = size;
          buf.set(this.mem.subarray(ptr - this.base, ptr - this.base + s), head);
          size -= s;
          ptr += s;
          used += s;
          head = (head + s) % bufSize;
          flush(ptr);
        }
      }
      ({ addr, h } = this.#next(addr, h, true));
      if (!addr) break;
    }
    flush(this.end);
    if (writeAddress !== st.firstPageWithErasedFiles) writeAddress = this.#nextPage(writeAddress - 1);
    if (writeAddress) {
      if (!addr) addr = this.end;
      for (let p = writeAddress; p < addr; p += this.pageSize) this.#erasePage(p, 'compact');
    }
    return true;
  }

  /** jsfIsStorageValid(JSFSTT_NORMAL) */
  #storageValid(): boolean {
    let addr = this.start;
    let old = addr;
    let h = this.#header(addr);
    if (h.valid) {
      for (;;) {
        const r = this.#next(addr, h, true);
        addr = r.addr;
        h = r.h;
        if (!addr || !h.valid) break;
        old = addr;
      }
      if (!addr) {
        const n = this.#alignUp(old + h.fileSize + HEADER);
        if (n < old) return false;
        if (n <= this.end && n + HEADER > this.end) return true;
      }
    }
    let allFF = true;
    for (let i = 0; i < HEADER; i++) if (h.raw[i] !== 0xff) allFF = false;
    if (allFF && addr === this.start) return this.#erased(addr, this.end - addr);
    return allFF;
  }
}

/** A new simulated Storage (see FlashSim). */
export function flashSim(options?: FlashSimOptions): FlashSim {
  return new FlashSim(options);
}
