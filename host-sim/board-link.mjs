/**
 * Connects an emulated Espruino board (host-sim/espruino-env.mjs, running a real board image such
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
