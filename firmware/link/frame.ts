/**
 * The framed link between a device without a network stack (nRF52 boards over BLE UART or a
 * serial line) and its gateway. Both ends use this codec: the device image (ES5, no Node APIs)
 * and the host gateway. docs/link.md describes the format.
 *
 *   0  magic  E4 4C
 *   2  type   1 PUBLISH, 2 SUBSCRIBE, 3 UNSUBSCRIBE, 4 ACK, 5 HELLO
 *   3  seq    0 = no acknowledgement wanted, else echoed by the ACK
 *   4  topic length T (0..255)
 *   5  payload length P (2 bytes, little-endian)
 *   7  header check: low byte of CRC-16 of bytes 2..6
 *   8  topic (T bytes, UTF-8)
 * 8+T  payload (P bytes)
 * 8+T+P CRC-16/CCITT-FALSE of bytes 2 .. 8+T+P-1, big-endian
 *
 * The decoder accepts the byte stream in chunks of any size (strings as Espruino delivers BLE
 * data, arrays, Uint8Arrays), drops what is not a valid frame and resynchronises on the next
 * magic: a corrupted frame is lost, the frames after it are not.
 */
import { utf8 } from '../bytes';

export var MAGIC0 = 0xe4;
export var MAGIC1 = 0x4c;
export var PUBLISH = 1;
export var SUBSCRIBE = 2;
export var UNSUBSCRIBE = 3;
export var ACK = 4;
export var HELLO = 5;
/** Bytes around topic and payload: magic 2, header 5, header check 1, CRC 2. */
export var FRAME_OVERHEAD = 10;
var HEADER = 8;

export interface Frame {
  type: number;
  seq: number;
  topic: string;
  payload: Uint8Array;
}

/** CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection) of `b[start..end)`, bit by bit
 * (no table: RAM is what small boards lack); `crc` continues an earlier run (default 0xFFFF). */
export function crc16(b: Uint8Array, start: number, end: number, crc?: number): number {
  var c = crc === undefined ? 0xffff : crc;
  for (var i = start; i < end; i++) {
    c ^= b[i] << 8;
    for (var k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
  }
  return c;
}

/** UTF-8 bytes to a string; malformed sequences become U+FFFD. */
export function fromUtf8(b: Uint8Array): string {
  var s = '';
  for (var i = 0; i < b.length;) {
    var c = b[i++];
    var need = c >= 0xf0 && c < 0xf5 ? 3 : c >= 0xe0 ? (c < 0xf0 ? 2 : -1) : c >= 0xc2 ? 1 : c < 0x80 ? 0 : -1;
    if (need < 0) {
      s += '\ufffd';
      continue;
    }
    var cp = need ? c & (0x3f >> need) : c;
    var ok = true;
    for (var k = 0; k < need; k++) {
      if (i >= b.length || (b[i] & 0xc0) !== 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (b[i++] & 0x3f);
    }
    if (!ok || (need === 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (need === 3 && (cp < 0x10000 || cp > 0x10ffff))) {
      s += '\ufffd';
      continue;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      s += String.fromCharCode(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
    } else s += String.fromCharCode(cp);
  }
  return s;
}

/** One frame as bytes. Throws when topic or payload do not fit the format. */
export function encodeFrame(type: number, seq: number, topic: string, payload?: Uint8Array | null): Uint8Array {
  var t = utf8(topic || '');
  var p = payload || new Uint8Array(0);
  if (t.length > 255) throw new Error('frame: topic longer than 255 bytes');
  if (p.length > 65535) throw new Error('frame: payload longer than 65535 bytes');
  if (type < 0 || type > 255 || seq < 0 || seq > 255) throw new Error('frame: type and seq are bytes');
  var out = new Uint8Array(HEADER + t.length + p.length + 2);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = type;
  out[3] = seq;
  out[4] = t.length;
  out[5] = p.length & 255;
  out[6] = p.length >> 8;
  out[7] = crc16(out, 2, 7) & 255;
  out.set(t, HEADER);
  out.set(p, HEADER + t.length);
  var end = HEADER + t.length + p.length;
  var crc = crc16(out, 2, end);
  out[end] = crc >> 8;
  out[end + 1] = crc & 255;
  return out;
}

export interface DecoderOptions {
  /** Frames with a longer payload are treated as corruption (default 1024: device-sized). */
  maxPayload?: number;
  /** Frames with a longer topic (in bytes) are treated as corruption (default 255). */
  maxTopic?: number;
  /** Called with a reason each time bytes are dropped (diagnostics). */
  onDrop?: (reason: string, bytes: number) => void;
}

export interface FrameDecoder {
  /** Feeds received bytes: a string (one byte per character), an array of numbers or a Uint8Array. */
  push(chunk: string | ArrayLike<number>): void;
  /** Forgets a partial frame (e.g. when the connection drops). */
  reset(): void;
  /** Counters: frames delivered, bytes dropped. */
  stats: { frames: number; dropped: number };
}

/**
 * A stream decoder calling `onFrame` for each valid frame, in order. The payload handed out is
 * a fresh copy the receiver owns.
 */
export function frameDecoder(onFrame: (f: Frame) => void, options?: DecoderOptions): FrameDecoder {
  var o = options || {};
  var maxPayload = o.maxPayload === undefined ? 1024 : o.maxPayload;
  var maxTopic = o.maxTopic === undefined ? 255 : o.maxTopic;
  // Allocated with the first bytes: a link that is never used costs no buffer.
  var buf: Uint8Array = null as unknown as Uint8Array;
  var len = 0;
  var stats = { frames: 0, dropped: 0 };

  function drop(n: number, reason: string): void {
    for (var i = n; i < len; i++) buf[i - n] = buf[i];
    len -= n;
    stats.dropped += n;
    if (o.onDrop) o.onDrop(reason, n);
  }

  /** Bytes before the next possible frame start (a magic, or a lone MAGIC0 at the end). */
  function skipToMagic(from: number): number {
    for (var i = from; i < len; i++) {
      if (buf[i] === MAGIC0 && (i + 1 === len || buf[i + 1] === MAGIC1)) return i;
    }
    return len;
  }

  function parse(): void {
    for (;;) {
      var start = skipToMagic(0);
      if (start) drop(start, 'garbage');
      if (len < HEADER) return;
      var tlen = buf[4];
      var plen = buf[5] | (buf[6] << 8);
      if ((crc16(buf, 2, 7) & 255) !== buf[7] || plen > maxPayload || tlen > maxTopic) {
        drop(skipToMagic(1), 'bad header');
        continue;
      }
      var end = HEADER + tlen + plen;
      if (len < end + 2) return;
      var crc = crc16(buf, 2, end);
      if (buf[end] !== crc >> 8 || buf[end + 1] !== (crc & 255)) {
        drop(skipToMagic(1), 'bad crc');
        continue;
      }
      var payload = new Uint8Array(plen);
      payload.set(buf.subarray(HEADER + tlen, end));
      var frame: Frame = { type: buf[2], seq: buf[3], topic: fromUtf8(buf.subarray(HEADER, HEADER + tlen)), payload: payload };
      // Consume before delivering: the handler may push more bytes (e.g. a loopback).
      for (var i = end + 2; i < len; i++) buf[i - end - 2] = buf[i];
      len -= end + 2;
      stats.frames++;
      onFrame(frame);
    }
  }

  return {
    push: function (chunk) {
      var str = typeof chunk === 'string';
      var n = chunk.length;
      if (!buf) buf = new Uint8Array(HEADER + maxTopic + maxPayload + 2);
      for (var i = 0; i < n; i++) {
        buf[len++] = str ? (chunk as string).charCodeAt(i) & 255 : (chunk as ArrayLike<number>)[i];
        if (len === buf.length) parse();
      }
      parse();
    },
    reset: function () {
      len = 0;
    },
    stats: stats,
  };
}
