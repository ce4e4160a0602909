/**
 * The framed link of devices without a network stack (nRF52 over BLE UART or a serial line),
 * simulated: a byte-stream pair with BLE-sized chunks and fault injection, and the device end of
 * the protocol (LinkTransport) speaking the image's own frame codec (firmware/link/frame.ts,
 * docs/link.md) from inside the device's sandbox.
 *
 * Protocol used over the frames (device <-> gateway):
 *   HELLO(seq, payload = 16-byte client id)   -> ACK(seq, [0])
 *   SUBSCRIBE(seq, topic)                     -> ACK(seq, [0] ok | [1] refused)
 *   UNSUBSCRIBE(seq, topic)                   -> ACK(seq, [0])
 *   PUBLISH(seq, topic, protected bytes)      -> ACK(seq, [0]) once the broker has it (seq 0: no ACK)
 *   gateway -> device PUBLISH(seq, topic, bytes) -> device ACK(seq, [0]) (the gateway retransmits)
 */
import { EventEmitter } from 'node:events';
import type { Frame, FrameDecoder } from '../../firmware/link/frame.ts';
import { createSandbox, LINK_IMAGE, loadImage } from '../shared/image.ts';

/** The link image's exports (dist/link.js, global E4Link): firmware/link/frame.ts. */
type FrameModule = typeof import('../../firmware/link/frame.ts');

/** A device realm with an image loaded (shared/image.ts). */
type Sandbox = ReturnType<typeof createSandbox>;

/** The frame codec of an image, with the frame types it numbers. */
export interface LinkCodec {
  encodeFrame: FrameModule['encodeFrame'];
  frameDecoder: FrameModule['frameDecoder'];
  PUBLISH: number;
  SUBSCRIBE: number;
  UNSUBSCRIBE: number;
  ACK: number;
  HELLO: number;
}

/**
 * A byte stream that carries frames: a TCP socket, a serial port, a BLE UART stream, a simulated
 * link end. Any EventEmitter with write() is one.
 */
export interface ByteStream {
  write(bytes: Buffer): unknown;
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  on(event: 'error', listener: (e: Error) => void): unknown;
  off(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

/** An object (an image's exports come from another realm: checked property by property). */
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null;

/** What has both functions of the codec. */
function hasFrameCodec(x: unknown): x is Record<string, unknown> & Pick<FrameModule, 'encodeFrame' | 'frameDecoder'> {
  return isObject(x) && typeof x.encodeFrame === 'function' && typeof x.frameDecoder === 'function';
}

/** Finds the frame codec in an image's exports (E4.link.* or E4.*). Throws a clear error. */
export function linkCodec(E4: unknown): LinkCodec {
  const src = isObject(E4) && isObject(E4.link) && E4.link.encodeFrame ? E4.link : E4;
  if (!hasFrameCodec(src)) {
    throw new Error('this image does not export the link frame codec (encodeFrame, frameDecoder of firmware/link/frame.ts)');
  }
  const num = (name: string, dflt: number): number => {
    const v = src[name];
    return typeof v === 'number' ? v : dflt;
  };
  return {
    encodeFrame: src.encodeFrame,
    frameDecoder: src.frameDecoder,
    PUBLISH: num('PUBLISH', 1),
    SUBSCRIBE: num('SUBSCRIBE', 2),
    UNSUBSCRIBE: num('UNSUBSCRIBE', 3),
    ACK: num('ACK', 4),
    HELLO: num('HELLO', 5),
  };
}

/**
 * The codec inside a device sandbox: the image's own when it has one (board images), else the
 * link image (dist/link.js) loaded into the sandbox beside the portable image, as a device that
 * runs both scripts would.
 */
export function sandboxLinkCodec(sandbox: Sandbox): LinkCodec {
  // The portable image's E4 has no codec; a board image's may (E4.link).
  const E4: unknown = sandbox.E4;
  if (isObject(E4) && (E4.link || E4.encodeFrame)) return linkCodec(E4);
  if (sandbox.run('typeof E4Link') === 'undefined') loadImage(LINK_IMAGE).script.runInContext(sandbox.context);
  return linkCodec(sandbox.run('E4Link'));
}

/** A small deterministic PRNG (xorshift32) for reproducible fault injection. */
export function prng(seed = 1): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

/** Fault counters of a simulated link. */
export interface LinkStats {
  chunks: number;
  corrupted: number;
  dropped: number;
}

/** Two connected ends of a simulated link (linkPair()). */
export interface LinkPair {
  stats: LinkStats;
  closed: boolean;
  /** The device's end. */
  readonly device: LinkEnd;
  /** The gateway's end. */
  readonly gateway: LinkEnd;
  _send(from: LinkEnd, buf: Buffer): void;
  /** Drops the connection: both ends emit 'close'. */
  close(): void;
}

export interface LinkPairOptions {
  mtu?: number;
  latencyMs?: number;
  corruptRate?: number;
  dropRate?: number;
  seed?: number;
}

export class LinkEnd extends EventEmitter {
  pair: LinkPair;
  side: 'device' | 'gateway';
  peer: LinkEnd | null;
  closed: boolean;
  bytesWritten: number;

  constructor(pair: LinkPair, side: 'device' | 'gateway') {
    super();
    this.pair = pair;
    this.side = side;
    this.peer = null;
    this.closed = false;
    this.bytesWritten = 0;
  }
  /** Writes bytes; they arrive at the other end in chunks of at most `mtu` bytes. */
  write(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    this.bytesWritten += bytes.length;
    this.pair._send(this, Buffer.from(bytes));
    return true;
  }
  /** Drops the connection: both ends emit 'close'. */
  destroy(): void {
    this.pair.close();
  }
  end(): void {
    this.pair.close();
  }
}

/**
 * Two connected ends of a simulated BLE UART (Nordic UART Service) or serial line.
 * Options: mtu (bytes per notification, default 20), latencyMs (default 0: next tick),
 * corruptRate / dropRate (probability per chunk of flipping one byte / losing the chunk),
 * seed (of the fault PRNG).
 */
export function linkPair({ mtu = 20, latencyMs = 0, corruptRate = 0, dropRate = 0, seed = 1 }: LinkPairOptions = {}): LinkPair {
  const rnd = prng(seed);
  const pair: LinkPair = {
    stats: { chunks: 0, corrupted: 0, dropped: 0 },
    closed: false,
    // The ends are made below, with the pair they belong to.
    get device() {
      return a;
    },
    get gateway() {
      return b;
    },
    _send(from, buf) {
      const to = from === a ? b : a;
      for (let i = 0; i < buf.length; i += mtu) {
        const chunk = Buffer.from(buf.subarray(i, i + mtu));
        pair.stats.chunks++;
        if (dropRate && rnd() < dropRate) {
          pair.stats.dropped++;
          continue;
        }
        if (corruptRate && rnd() < corruptRate) {
          chunk[Math.floor(rnd() * chunk.length)] ^= 1 << Math.floor(rnd() * 8);
          pair.stats.corrupted++;
        }
        const deliver = () => {
          if (!pair.closed) to.emit('data', chunk);
        };
        if (latencyMs) setTimeout(deliver, latencyMs);
        else setImmediate(deliver);
      }
    },
    close() {
      if (pair.closed) return;
      pair.closed = true;
      a.closed = b.closed = true;
      setImmediate(() => {
        a.emit('close');
        b.emit('close');
      });
    },
  };
  const a = new LinkEnd(pair, 'device');
  const b = new LinkEnd(pair, 'gateway');
  return pair;
}

/**
 * The device end of the link, as a SimDevice transport: frames are encoded and decoded by the
 * codec of the image running in the device's sandbox. Requests (HELLO, SUBSCRIBE, PUBLISH) wait
 * for the gateway's ACK and are retransmitted `retries` times after `ackTimeoutMs`.
 */
/** The device end of a link as LinkTransport uses it: a byte stream it can drop. */
export interface LinkTransportEnd extends ByteStream {
  destroy(): void;
}

export interface LinkTransportOptions {
  /** Wait for an ACK before retransmitting (default 1000). */
  ackTimeoutMs?: number;
  /** Retransmissions before a request fails (default 3). */
  retries?: number;
  /** The device's client id (hex), sent in HELLO. */
  id?: string | null;
}

/** A request waiting for its ACK. */
interface Waiting {
  resolve: () => void;
  reject: (e: Error) => void;
  tries: number;
  timer: NodeJS.Timeout | undefined;
}

export class LinkTransport {
  end: LinkTransportEnd;
  sandbox: Sandbox;
  codec: LinkCodec;
  ackTimeoutMs: number;
  retries: number;
  id: string | null;
  seq: number;
  waiting: Map<number, Waiting>;
  onMessage: ((topic: string, bytes: Buffer) => void) | null;
  connected: boolean;
  stats: { framesIn: number; framesOut: number; retransmits: number };
  decoder: FrameDecoder;
  _onData: (chunk: Uint8Array) => void;
  _onClose: () => void;

  /** `sandbox`: the realm of the device (a SimDevice's, which is null while it is off). */
  constructor(end: LinkTransportEnd, sandbox: Sandbox | null, { ackTimeoutMs = 1000, retries = 3, id = null }: LinkTransportOptions = {}) {
    if (!sandbox) throw new Error('LinkTransport: the device is off (no sandbox)');
    this.end = end;
    this.sandbox = sandbox;
    this.codec = sandboxLinkCodec(sandbox);
    this.ackTimeoutMs = ackTimeoutMs;
    this.retries = retries;
    this.id = id;
    this.seq = 0;
    this.waiting = new Map(); // seq -> { resolve, reject, timer, tries }
    this.onMessage = null;
    this.connected = false;
    this.stats = { framesIn: 0, framesOut: 0, retransmits: 0 };
    this.decoder = this.codec.frameDecoder((f) => this._onFrame(f), { maxPayload: 1024 });
    this._onData = (chunk) => this.decoder.push(sandbox.bytesIn(chunk));
    this._onClose = () => this._closed(new Error('link closed'));
  }

  _send(type: number, seq: number, topic: string, payload: Uint8Array | null): void {
    const frame = this.codec.encodeFrame(type, seq, topic, payload ? this.sandbox.bytesIn(payload) : null);
    this.stats.framesOut++;
    this.end.write(this.sandbox.bytesOut(frame));
  }

  _nextSeq(): number {
    this.seq = (this.seq % 255) + 1;
    return this.seq;
  }

  _request(type: number, topic: string, payload: Uint8Array | null): Promise<void> {
    if (!this.connected && type !== this.codec.HELLO) return Promise.reject(new Error('link not connected'));
    const seq = this._nextSeq();
    return new Promise((resolve, reject) => {
      const w: Waiting = { resolve, reject, tries: 0, timer: undefined };
      const attempt = () => {
        if (w.tries++ > this.retries) {
          this.waiting.delete(seq);
          return reject(new Error(`link: no ACK for frame ${seq} after ${this.retries} retransmissions`));
        }
        if (w.tries > 1) this.stats.retransmits++;
        this._send(type, seq, topic, payload);
        w.timer = setTimeout(attempt, this.ackTimeoutMs);
      };
      this.waiting.set(seq, w);
      attempt();
    });
  }

  _onFrame(f: Frame): void {
    this.stats.framesIn++;
    const c = this.codec;
    if (f.type === c.ACK) {
      const w = this.waiting.get(f.seq);
      if (!w) return; // a late duplicate
      clearTimeout(w.timer);
      this.waiting.delete(f.seq);
      if (f.payload.length && f.payload[0] !== 0) w.reject(new Error(`link: gateway refused frame ${f.seq} (status ${f.payload[0]})`));
      else w.resolve();
    } else if (f.type === c.PUBLISH) {
      if (f.seq) this._send(c.ACK, f.seq, '', new Uint8Array([0]));
      if (this.onMessage) this.onMessage(f.topic, this.sandbox.bytesOut(f.payload));
    }
  }

  _closed(err: Error): void {
    this.connected = false;
    this.end.off('data', this._onData);
    this.end.off('close', this._onClose);
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.waiting.clear();
  }

  async open(): Promise<this> {
    this.end.on('data', this._onData);
    this.end.on('close', this._onClose);
    const id = this.id ? Buffer.from(this.id, 'hex') : Buffer.alloc(0);
    await this._request(this.codec.HELLO, '', id);
    this.connected = true;
    return this;
  }

  subscribe(topic: string): Promise<void> {
    return this._request(this.codec.SUBSCRIBE, topic, null);
  }

  unsubscribe(topic: string): Promise<void> {
    return this._request(this.codec.UNSUBSCRIBE, topic, null);
  }

  publish(topic: string, bytes: Uint8Array): Promise<void> {
    return this._request(this.codec.PUBLISH, topic, bytes);
  }

  async close(): Promise<void> {
    this._closed(new Error('link closed'));
    this.end.destroy();
  }

  kill(): void {
    this._closed(new Error('power lost'));
    this.end.destroy();
  }
}
