/**
 * Connects an emulated Espruino board (host-sim/sim/espruino-board.ts, running a real board image such
 * as dist/boards/espruino-puckjs.min.js) to the gateway: the board's Bluetooth (or Serial1) stream
 * becomes a byte stream the Gateway can attach, and the board's virtual clock is driven in real
 * time so its link retransmissions and clock run.
 *
 *   const run = boardRunner(board);                    // ticks the board's timers
 *   const link = boardLink(board, 'Bluetooth');        // after board.boot()
 *   gateway.attach(link, { name: 'puck', consoleLine: 'E4.gateway()' });
 *   ... board.powerCycle(); link.close();              // the connection drops with the power
 */
import { EventEmitter } from 'node:events';
import type { DeviceFile } from '../../boards/espruino/boot.ts';
import type { Client } from '../../firmware/client.ts';
import type { TopicRecord } from '../../firmware/hal.ts';
import type { loadImage } from '../shared/image.ts';
import { imageClient, imageDevice } from './espruino-board.ts';
import type { EspruinoBoard, EspruinoImage, EspruinoSerial } from './espruino-board.ts';

/**
 * Where a board's link is plugged in: what BoardDevice needs of a gateway (services/gateway.ts
 * implements it). Declared here so the simulated hardware does not depend on the services.
 */
export interface LinkHub {
  attach(stream: BoardLink, options: { name?: string; consoleLine?: string | null }): unknown;
}

/** The board's streams a link can use. */
export type BoardStreamName = 'Bluetooth' | 'Serial1' | 'LoopbackA';

/** Drives `board.tick` from a real interval; returns { stop() }. */
export function boardRunner(board: EspruinoBoard, { everyMs = 20 }: { everyMs?: number } = {}): { stop(): void } {
  let last = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    if (board.context) board.tick((now - last) / 1000);
    last = now;
  }, everyMs);
  return { stop: () => clearInterval(timer) };
}

/**
 * The board end of a BLE UART (or serial) connection as a stream: write(bytes) delivers to the
 * board (a console line "\x10E4.gateway()\n" is run on its console, as Espruino would), 'data'
 * carries what the board writes, 'close' when the connection is dropped (close(), or power loss).
 */
export function boardLink(board: EspruinoBoard, streamName: BoardStreamName = 'Bluetooth'): BoardLink {
  return new BoardLink(board, streamName);
}

/** The stream boardLink() returns: write(bytes), close() (also destroy(), end()), events 'data'
 * (a Buffer) and 'close'. */
export class BoardLink extends EventEmitter {
  readonly #board: EspruinoBoard;
  readonly #streamName: BoardStreamName;
  readonly #port: EspruinoSerial;
  readonly #original: EspruinoSerial['write'];
  #open = true;

  constructor(board: EspruinoBoard, streamName: BoardStreamName) {
    super();
    this.#board = board;
    this.#streamName = streamName;
    const port = board[streamName];
    this.#port = port;
    const original = port.write;
    this.#original = original;
    port.write = (data) => {
      original(data);
      const out = port.take();
      if (this.#open && out.length) setImmediate(() => this.emit('data', out));
    };
    port.print = port.write;
  }

  write(bytes: Uint8Array): boolean {
    if (!this.#open) return false;
    const port = this.#port;
    const buf = Buffer.from(bytes);
    const text = buf.toString('latin1');
    // eslint-disable-next-line no-control-regex -- Espruino's console prefixes a line with DLE (\x10) to hide its echo
    const m = /^\x10?(E4\.gateway\(\))\n$/.exec(text);
    if (m && port.console) {
      this.#board.eval(m[1]);
      return true;
    }
    setImmediate(() => {
      if (this.#open && this.#board[this.#streamName] === port) port.receive(buf);
    });
    return true;
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#port.write = this.#original;
    this.#port.print = this.#original;
    setImmediate(() => this.emit('close'));
  }

  destroy(): void {
    this.close();
  }

  end(): void {
    this.close();
  }
}

export interface BoardDeviceOptions {
  /** loadImage() of dist/boards/<board>.min.js: exact bytes, hash checked. */
  image: ReturnType<typeof loadImage>;
  /** The board the image is for (default espruino-puckjs). */
  board?: string;
  /** The device's configuration (device.json). */
  config: DeviceFile;
  gateway: LinkHub;
  /** Storage bytes (default 64 KB). */
  flashSize?: number;
}

/** What BoardDevice counts. */
export interface BoardDeviceStats {
  published: number;
  commands: number;
  rejected: number;
}

/** The client's state as hex (id, client key, topic keys), as SimDevice.snapshot() gives it too. */
export interface HexSnapshot {
  id: string;
  key: string;
  topics: { hash: string; key: string; prevKey: string | null }[];
}

/**
 * A monitor that is a real board image on an emulated Espruino board, flashed the way
 * `npm run flash` does (host-sim/tools/flash.ts), reaching the broker through `gateway` over a
 * BLE UART connection. The same surface as SimDevice where the fleet story needs it: start(),
 * stop(), powerCycle(), publish(), isOn, boots, stats, topicKey(hash), events 'command' and
 * 'rejected'.
 */
export class BoardDevice extends EventEmitter {
  readonly image: ReturnType<typeof loadImage>;
  readonly boardName: string;
  readonly config: DeviceFile;
  readonly name: string | undefined;
  readonly id: string | undefined;
  readonly gateway: LinkHub;
  readonly flashSize: number;
  board: EspruinoBoard | null;
  /** The image's E4 while the board is on. */
  E4: EspruinoImage | null;
  link: BoardLink | null;
  runner: { stop(): void } | null;
  boots: number;
  stats: BoardDeviceStats;

  constructor({ image, board = 'espruino-puckjs', config, gateway, flashSize = 64 * 1024 }: BoardDeviceOptions) {
    super();
    this.image = image;
    this.boardName = board;
    this.config = config;
    this.name = config.name;
    this.id = config.id;
    this.gateway = gateway;
    this.flashSize = flashSize;
    this.board = null;
    this.E4 = null;
    this.link = null;
    this.runner = null;
    this.boots = 0;
    this.stats = { published: 0, commands: 0, rejected: 0 };
  }

  get isOn(): boolean {
    return !!this.E4;
  }

  async start(): Promise<this> {
    const { espruinoBoard } = await import('./espruino-board.ts');
    const { flashSim } = await import('./flash-sim.ts');
    const { deviceConfigFor, uploadScript, verifyFlash } = await import('../shared/flash-files.ts');
    let board = this.board;
    let E4: EspruinoImage;
    if (!board) {
      board = espruinoBoard({ flash: flashSim({ size: this.flashSize }), time: 100 });
      this.board = board;
      const { script, files } = uploadScript({
        image: this.image.bytes.toString('latin1'),
        config: deviceConfigFor(this.boardName, this.config),
      });
      if (!board.upload(script)) throw new Error(`${this.name}: the flash script did not finish`);
      verifyFlash(board.printed, files);
      E4 = board.boot();
    } else {
      E4 = board.powerCycle();
    }
    this.E4 = E4;
    const st = E4.status();
    if (!st.ok) throw new Error(`${this.name}: the image did not start: ${st.error}`);
    this.boots++;
    this.runner = this.runner || boardRunner(board);
    const d = imageDevice(E4);
    d.on('command', (topic: string) => {
      this.stats.commands++;
      this.emit('command', { topic });
    });
    d.on('error', (e: { result?: string } | undefined, topic: string) => {
      this.stats.rejected++;
      this.emit('rejected', { topic, result: e && e.result });
    });
    this.link = boardLink(board, 'Bluetooth');
    this.gateway.attach(this.link, { name: this.name, consoleLine: 'E4.gateway()' });
    const end = Date.now() + 5000;
    while (!d.connected) {
      if (Date.now() > end) throw new Error(`${this.name}: no link to the gateway`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this;
  }

  /** Power off: the BLE connection drops, RAM (the board's context) is gone; flash stays. */
  async stop(): Promise<void> {
    if (this.link) this.link.close();
    this.link = null;
    this.E4 = null;
    if (this.board) this.board.context = null;
  }

  async halt(): Promise<void> {
    await this.stop();
    if (this.runner) this.runner.stop();
    this.runner = null;
  }

  async powerCycle(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** The device runtime protects and sends (over the link; its frames carry no ACK, like QoS 0). */
  async publish(topic: string, text: string | Uint8Array): Promise<null> {
    if (!this.E4) throw new Error(`${this.name}: off`);
    imageDevice(this.E4).publish(topic, text);
    this.stats.published++;
    return null;
  }

  /** The client of the running image. */
  #client(): Client {
    if (!this.E4) throw new Error(`${this.name}: off`);
    return imageClient(this.E4);
  }

  topicKey(hashHex: string): string | null {
    if (!this.E4) return null;
    const s = this.#client().snapshot();
    for (let i = 0; i < s.topics.length; i++) {
      const t = s.topics[i];
      if (Buffer.from(t.hash).toString('hex') === hashHex) return Buffer.from(t.key).toString('hex');
    }
    return null;
  }

  snapshot(): HexSnapshot {
    const s = this.#client().snapshot();
    const h = (u: Uint8Array) => Buffer.from(u).toString('hex');
    return {
      id: h(s.id),
      key: h(s.key),
      topics: Array.from(s.topics, (t: TopicRecord) => ({ hash: h(t.hash), key: h(t.key), prevKey: t.prevKey ? h(t.prevKey) : null })),
    };
  }

  time(): ReturnType<Client['time']> {
    return this.#client().time();
  }
}
