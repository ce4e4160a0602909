/**
 * The `zero` hook of the flash store (boards/shared/flash-store.ts) on Espruino: programs zeros
 * over a Storage file's key blobs in raw flash, where Storage.write refuses to write bytes
 * already written (docs/flash-store.md).
 */
import { E4Error, PERSISTENCE_ERROR } from '../../firmware/errors';
import { r32 } from '../shared/flash-store';
import type { ZeroFn } from '../shared/flash-store';

/** Espruino's `require("Flash")` subset used by storageZero. */
export interface RawFlash {
  read(length: number, addr: number): Uint8Array;
  write(data: Uint8Array, addr: number): void;
  getPage(addr: number): { addr: number; length: number } | undefined;
}

/** The 32-byte file header at flash address `a` when it is valid (jsflash.c jsfGetFileHeader:
 * size word neither blank nor 0, the file inside Storage), else null. */
function header(f: RawFlash, a: number, end: number): Uint8Array | null {
  if (a + 32 > end) return null;
  var h = f.read(32, a);
  var size = r32(h, 0);
  return size === -1 || size === 0 || a + 32 + (size & 0xffffff) > end ? null : h;
}

/**
 * Flash address of the data of the Storage file `name`, or 0: walks Storage's file chain from
 * `start` as Espruino does (jsflash.c jsfFindFile / jsfGetNextFileHeader with GET_ALL): a file is
 * a 32-byte header (u32 size | flags << 24, 28-byte zero-padded name, first 4 name bytes zero
 * once erased) and its data; the next header is at the 4-byte aligned end; where that is not a
 * valid header, the chain goes on at the start of the next page, or ends.
 */
export function findFile(f: RawFlash, start: number, end: number, name: string): number {
  var a = start;
  var h = header(f, a, end);
  while (h) {
    var same = r32(h, 4) !== 0;
    for (var i = 0; i < 28 && same; i++) same = h[4 + i] === (i < name.length ? name.charCodeAt(i) : 0);
    if (same) return a + 32;
    a = (a + 32 + (r32(h, 0) & 0xffffff) + 3) & ~3;
    if (a + 32 > end) return 0;
    h = header(f, a, end);
    if (!h) {
      var p = f.getPage(a);
      a = p ? p.addr + p.length : end;
      h = header(f, a, end);
    }
  }
  return 0;
}

/**
 * The `zero` hook of every Espruino board: finds the file in raw flash by walking Storage's
 * headers from `start` (FLASH_SAVED_CODE_START: see boards/espruino/boot.ts) to `end`, checks
 * that the flash there holds the file's own bytes (so a wrong `start` gets an error, not a stray
 * write), then programs zeros over the span (NOR flash: 1 -> 0 bits, the nRF52's internal flash
 * and the SPI NOR of ESP32 and Bangle.js 2 alike; on the Linux build, the file espruino.flash).
 */
export function storageZero(
  flash: RawFlash,
  storage: { read(name: string, offset?: number, length?: number): string | undefined },
  start: number,
  end: number
): ZeroFn {
  return function (name: string, spans: number[]) {
    var s = storage.read(name, spans[0], spans[1] < 64 ? spans[1] : 64) || '';
    var a = s ? findFile(flash, start, end, name) : 0;
    var probe = a ? flash.read(s.length, a + spans[0]) : null;
    var ok = !!probe;
    for (var i = 0; ok && i < s.length; i++) ok = (probe as Uint8Array)[i] === s.charCodeAt(i);
    if (!ok) throw new E4Error(PERSISTENCE_ERROR, 'flash file not found at its address');
    var z = new Uint8Array(64);
    for (var j = 0; j < spans.length; j += 2) {
      for (i = 0; i < spans[j + 1]; i += 64) flash.write(spans[j + 1] - i < 64 ? new Uint8Array(spans[j + 1] - i) : z, a + spans[j] + i);
    }
  };
}
