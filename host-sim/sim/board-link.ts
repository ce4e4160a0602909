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

/** Drives `board.tick` from a real interval; returns { stop() }. */
export function boardRunner(board, { everyMs = 20 } = {}) {
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
export function boardLink(board, streamName = 'Bluetooth') {
  const s = new EventEmitter();
  const port = board[streamName];
  const original = port.write;
  let open = true;
  port.write = (data) => {
    original(data);
    const out = port.take();
    if (open && out.length) setImmediate(() => s.emit('data', out));
  };
  port.print = port.write;
  s.write = (bytes) => {
    if (!open) return false;
    const buf = Buffer.from(bytes);
    const text = buf.toString('latin1');
    const m = /^\x10?(E4\.gateway\(\))\n$/.exec(text);
    if (m && port.console) {
      board.eval(m[1]);
      return true;
    }
    setImmediate(() => {
      if (open && board[streamName] === port) port.receive(buf);
    });
    return true;
  };
  s.close = () => {
    if (!open) return;
    open = false;
    port.write = original;
    port.print = original;
    setImmediate(() => s.emit('close'));
  };
  s.destroy = s.close;
  s.end = s.close;
  return s;
}

/**
 * A monitor that is a real board image on an emulated Espruino board, flashed the way
 * `npm run flash` does (host-sim/tools/flash.ts), reaching the broker through `gateway` over a
 * BLE UART connection. The same surface as SimDevice where the fleet story needs it: start(),
 * stop(), powerCycle(), publish(), isOn, boots, stats, topicKey(hash), events 'command' and
 * 'rejected'.
 */
export class BoardDevice extends EventEmitter {
  constructor({ image, board = 'espruino-puckjs', config, gateway, flashSize = 64 * 1024 }) {
    super();
    this.image = image; // loadImage() of dist/boards/<board>.min.js: exact bytes, hash checked
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

  get isOn() {
    return !!this.E4;
  }

  async start() {
    const { espruinoBoard } = await import('./espruino-board.ts');
    const { flashSim } = await import('./flash-sim.ts');
    const { deviceConfigFor, uploadScript, verifyFlash } = await import('../shared/flash-files.ts');
    if (!this.board) {
      this.board = espruinoBoard({ flash: flashSim({ size: this.flashSize }), time: 100 });
      const { script, files } = uploadScript({ image: this.image.bytes.toString('latin1'), config: deviceConfigFor(this.boardName, this.config) });
      if (!this.board.upload(script)) throw new Error(`${this.name}: the flash script did not finish`);
      verifyFlash(this.board.printed, files);
      this.E4 = this.board.boot();
    } else {
      this.E4 = this.board.powerCycle();
    }
    const st = this.E4.status();
    if (!st.ok) throw new Error(`${this.name}: the image did not start: ${st.error}`);
    this.boots++;
    this.runner = this.runner || boardRunner(this.board);
    const d = this.E4.device();
    d.on('command', (topic) => {
      this.stats.commands++;
      this.emit('command', { topic });
    });
    d.on('error', (e, topic) => {
      this.stats.rejected++;
      this.emit('rejected', { topic, result: e && e.result });
    });
    this.link = boardLink(this.board, 'Bluetooth');
    this.gateway.attach(this.link, { name: this.name, consoleLine: 'E4.gateway()' });
    const end = Date.now() + 5000;
    while (!d.connected) {
      if (Date.now() > end) throw new Error(`${this.name}: no link to the gateway`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this;
  }

  /** Power off: the BLE connection drops, RAM (the board's context) is gone; flash stays. */
  async stop() {
    if (this.link) this.link.close();
    this.link = null;
    this.E4 = null;
    if (this.board) this.board.context = null;
  }

  async halt() {
    await this.stop();
    if (this.runner) this.runner.stop();
    this.runner = null;
  }

  async powerCycle() {
    await this.stop();
    await this.start();
  }

  /** The device runtime protects and sends (over the link; its frames carry no ACK, like QoS 0). */
  async publish(topic, text) {
    if (!this.E4) throw new Error(`${this.name}: off`);
    this.E4.device().publish(topic, text);
    this.stats.published++;
    return null;
  }

  topicKey(hashHex) {
    if (!this.E4) return null;
    const s = this.E4.client().snapshot();
    for (let i = 0; i < s.topics.length; i++) {
      const t = s.topics[i];
      if (Buffer.from(t.hash).toString('hex') === hashHex) return Buffer.from(t.key).toString('hex');
    }
    return null;
  }

  snapshot() {
    const s = this.E4.client().snapshot();
    const h = (u) => Buffer.from(u).toString('hex');
    return { id: h(s.id), key: h(s.key), topics: Array.prototype.map.call(s.topics, (t) => ({ hash: h(t.hash), key: h(t.key), prevKey: t.prevKey ? h(t.prevKey) : null })) };
  }

  time() {
    return this.E4.client().time();
  }
}
