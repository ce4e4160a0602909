/**
 * The link framing (firmware/link/frame.ts): round trips, corruption of every byte, chunks split
 * and merged at every boundary, garbage between frames, resynchronisation.
 */
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  frameDecoder,
  crc16,
  fromUtf8,
  PUBLISH,
  SUBSCRIBE,
  ACK,
  HELLO,
  UNSUBSCRIBE,
  FRAME_OVERHEAD,
  type Frame,
} from '../firmware/link/frame';
import { utf8 } from '../firmware/bytes';

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 255);
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const plain = (f: Frame) => ({ type: f.type, seq: f.seq, topic: f.topic, payload: Buffer.from(f.payload).toString('hex') });

function collect(opts?: Parameters<typeof frameDecoder>[1]) {
  const frames: ReturnType<typeof plain>[] = [];
  const drops: string[] = [];
  const dec = frameDecoder((f) => frames.push(plain(f)), { onDrop: (r) => drops.push(r), ...opts });
  return { dec, frames, drops };
}

const samples: [number, number, string, Uint8Array][] = [
  [PUBLISH, 0, 'health/heart-rate', bytes(40)],
  [SUBSCRIBE, 7, 'e4/0123456789abcdef0123456789abcdef', new Uint8Array(0)],
  [ACK, 7, '', new Uint8Array([0])],
  [HELLO, 0, '', new Uint8Array(0)],
  [PUBLISH, 255, 'ünïcødé/тема/😀', bytes(300, 3)],
  [UNSUBSCRIBE, 1, 'x'.repeat(255), new Uint8Array(0)],
];
const encoded = samples.map(([t, s, topic, p]) => encodeFrame(t, s, topic, p));
const expected = samples.map(([type, seq, topic, p]) => ({ type, seq, topic, payload: Buffer.from(p).toString('hex') }));

describe('crc16', () => {
  it('is CRC-16/CCITT-FALSE (check value of "123456789" is 0x29B1)', () => {
    expect(crc16(utf8('123456789'), 0, 9)).toBe(0x29b1);
    expect(crc16(new Uint8Array(0), 0, 0)).toBe(0xffff);
  });
  it('continues across calls', () => {
    const b = bytes(100);
    expect(crc16(b, 40, 100, crc16(b, 0, 40))).toBe(crc16(b, 0, 100));
  });
});

describe('encode', () => {
  it('lays out magic, header, check, topic, payload, CRC', () => {
    const f = encodeFrame(PUBLISH, 9, 'ab', new Uint8Array([1, 2, 3]));
    expect(Array.from(f.subarray(0, 7))).toEqual([0xe4, 0x4c, 1, 9, 2, 3, 0]);
    expect(f[7]).toBe(crc16(f, 2, 7) & 255);
    expect(Array.from(f.subarray(8, 13))).toEqual([97, 98, 1, 2, 3]);
    const crc = crc16(f, 2, 13);
    expect([f[13], f[14]]).toEqual([crc >> 8, crc & 255]);
    expect(f.length).toBe(FRAME_OVERHEAD + 5);
  });
  it('rejects what does not fit', () => {
    expect(() => encodeFrame(PUBLISH, 0, 'x'.repeat(256), null)).toThrow(/topic/);
    expect(() => encodeFrame(PUBLISH, 0, 't', new Uint8Array(65536))).toThrow(/payload/);
    expect(() => encodeFrame(256, 0, 't')).toThrow(/byte/);
    expect(() => encodeFrame(1, -1, 't')).toThrow(/byte/);
  });
});

describe('decode', () => {
  it('round-trips every sample, in one chunk', () => {
    const { dec, frames, drops } = collect();
    dec.push(concat(...encoded));
    expect(frames).toEqual(expected);
    expect(drops).toEqual([]);
    expect(dec.stats).toEqual({ frames: samples.length, dropped: 0 });
  });

  it('accepts strings (Espruino BLE data), arrays and Uint8Arrays', () => {
    const all = concat(...encoded);
    for (const form of [String.fromCharCode(...all), Array.from(all), all]) {
      const { dec, frames } = collect();
      dec.push(form);
      expect(frames).toEqual(expected);
    }
  });

  it('reassembles a stream split at every offset into two chunks', () => {
    const all = concat(encoded[0], encoded[1], encoded[2]);
    for (let cut = 0; cut <= all.length; cut++) {
      const { dec, frames } = collect();
      dec.push(all.subarray(0, cut));
      dec.push(all.subarray(cut));
      expect(frames, `cut at ${cut}`).toEqual(expected.slice(0, 3));
    }
  });

  it('reassembles byte-by-byte and in 20-byte BLE chunks', () => {
    const all = concat(...encoded);
    for (const size of [1, 3, 20, 64]) {
      const { dec, frames } = collect();
      for (let i = 0; i < all.length; i += size) dec.push(all.subarray(i, i + size));
      expect(frames, `chunk ${size}`).toEqual(expected);
    }
  });

  it('skips garbage between frames, including stray magic bytes', () => {
    const junk = [
      new Uint8Array([0, 1, 2]),
      new Uint8Array([0xe4]),
      new Uint8Array([0xe4, 0x4c, 1]),
      new Uint8Array([0xe4, 0x4c, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
      utf8('>\r\nhello\r\n'),
    ];
    const stream = concat(junk[4], encoded[0], junk[0], junk[1], encoded[1], junk[2], encoded[2], junk[3], encoded[3], junk[4]);
    const { dec, frames, drops } = collect();
    dec.push(stream);
    expect(frames).toEqual(expected.slice(0, 4));
    expect(drops.length).toBeGreaterThan(0);
    // Only junk was dropped: never a byte of a good frame.
    const junkBytes = junk[4].length * 2 + junk[0].length + junk[1].length + junk[2].length + junk[3].length;
    expect(dec.stats.dropped).toBeLessThanOrEqual(junkBytes);
    expect(dec.stats.dropped).toBeGreaterThanOrEqual(junkBytes - junk[4].length);
  });

  it('a corrupted byte anywhere loses that frame only, and the next frames resynchronise', () => {
    const a = encoded[0];
    const b = encoded[1];
    const c = encoded[2];
    for (let i = 0; i < a.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Uint8Array.from(a);
        bad[i] ^= mask;
        const { dec, frames } = collect();
        dec.push(concat(bad, b, c));
        // A corrupted frame may only be delivered if its bytes still form a valid frame, which a
        // flipped byte never does with CRC-16 over everything but the magic.
        expect(frames, `byte ${i} ^ ${mask}`).toEqual(expected.slice(1, 3));
      }
    }
  });

  it('survives a frame cut short by a disconnection, then reset()', () => {
    const { dec, frames } = collect();
    dec.push(encoded[0].subarray(0, 20));
    dec.reset();
    dec.push(concat(encoded[1], encoded[2]));
    expect(frames).toEqual(expected.slice(1, 3));
  });

  it('a truncated frame followed by whole frames: the whole frames are recovered', () => {
    const { dec, frames } = collect();
    dec.push(concat(encoded[0].subarray(0, 30), encoded[1], encoded[2], encoded[3]));
    // The truncated frame's declared length swallows the next bytes until its CRC fails; the
    // decoder then rescans those bytes and finds the following frames.
    expect(frames).toEqual(expected.slice(1, 4));
  });

  it('treats a payload above maxPayload as corruption and resynchronises at once', () => {
    const big = encodeFrame(PUBLISH, 0, 't', bytes(600));
    const { dec, frames, drops } = collect({ maxPayload: 512 });
    dec.push(concat(big, encoded[2]));
    expect(frames).toEqual([expected[2]]);
    expect(drops).toContain('bad header');
  });

  it('treats a topic above maxTopic as corruption too', () => {
    const { dec, frames, drops } = collect({ maxTopic: 16 });
    dec.push(concat(encodeFrame(PUBLISH, 0, 'a/very/long/topic/name', bytes(4)), encoded[2]));
    expect(frames).toEqual([expected[2]]);
    expect(drops).toContain('bad header');
  });

  it('hands out payloads it no longer references', () => {
    const got: Frame[] = [];
    const dec = frameDecoder((f) => got.push(f));
    dec.push(encoded[0]);
    dec.push(encoded[4]);
    expect(Buffer.from(got[0].payload).toString('hex')).toBe(expected[0].payload);
  });

  it('a handler that pushes more bytes (loopback) sees frames in order', () => {
    const seen: number[] = [];
    const dec = frameDecoder((f) => {
      seen.push(f.seq);
      if (f.seq === 1) dec.push(encodeFrame(ACK, 3, ''));
    });
    dec.push(concat(encodeFrame(PUBLISH, 1, 'a'), encodeFrame(PUBLISH, 2, 'b')));
    expect(seen).toEqual([1, 2, 3]);
  });

  it('random noise never yields a frame, and a frame after it is found', () => {
    let x = 12345;
    const noise = Uint8Array.from({ length: 20000 }, () => ((x = (x * 1103515245 + 12345) >>> 0), x >>> 24));
    const { dec, frames } = collect();
    dec.push(noise);
    expect(frames).toEqual([]);
    dec.push(concat(encoded[0], encoded[0]));
    expect(frames.length).toBeGreaterThanOrEqual(1);
    expect(frames[frames.length - 1]).toEqual(expected[0]);
  });
});

describe('fromUtf8', () => {
  it('decodes what utf8() encodes', () => {
    for (const s of ['', 'abc', 'é', '€', '😀', 'a\u0000b', 'ünïcødé/тема/😀']) expect(fromUtf8(utf8(s))).toBe(s);
  });
  it('turns malformed input into U+FFFD', () => {
    expect(fromUtf8(new Uint8Array([0xc3]))).toBe('\ufffd');
    expect(fromUtf8(new Uint8Array([0x80, 0x41]))).toBe('\ufffdA');
    expect(fromUtf8(new Uint8Array([0xe0, 0x80, 0x80]))).toBe('\ufffd'); // overlong
    expect(fromUtf8(new Uint8Array([0xed, 0xa0, 0x80]))).toContain('\ufffd');
    expect(fromUtf8(new Uint8Array([0xf8, 0x41]))).toBe('\ufffdA');
  });
});
