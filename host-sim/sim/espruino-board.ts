/**
 * An emulated Espruino board for running the Espruino board images (dist/boards/espruino-*.js)
 * on the host, in a node:vm context with the globals those images use:
 *   require("Storage") / require("Flash")  a FlashSim (host-sim/sim/flash-sim.ts): Espruino's layout
 *                                          and write rules, survives "power cycles"
 *   require("crypto").AES                  host-sim/sim/espruino-crypto.ts (faithful emulation)
 *   require("MQTT")                        the MQTT module's API over the `mqtt` package (optional)
 *   require("Wifi")                        connect()/setSNTP() that succeed at once
 *   E                                      on/emit/removeAllListeners, CRC32, toString,
 *                                          toUint8Array, getAddressOf
 *   getTime/setTime, setTimeout/setInterval/clear*   a virtual clock the test advances (tick)
 *   Bluetooth, Serial1, LoopbackA, NRF     byte streams the test plays the gateway on
 *   console.log / print                    collected in `printed`
 * boot() evaluates the Storage's boot files like Espruino does (.boot0-3, then .bootcde) and
 * emits 'init'; powerCycle() drops the context and boots again on the same flash.
 */
import vm from 'node:vm';
import { crc32 } from 'node:zlib';
import { espruinoCrypto } from './espruino-crypto.ts';

/** Espruino's event methods, for emulated objects. */
function emitter(obj = {}) {
  const handlers = {};
  obj.on = (ev, fn) => {
    (handlers[ev] = handlers[ev] || []).push(fn);
    return obj;
  };
  obj.emit = (ev, ...args) => {
    for (const fn of (handlers[ev] || []).slice()) fn(...args);
  };
  obj.removeAllListeners = (ev) => {
    if (ev === undefined) for (const k of Object.keys(handlers)) delete handlers[k];
    else delete handlers[ev];
  };
  obj.listenerCount = (ev) => (handlers[ev] || []).length;
  return obj;
}

const latin1 = (bytes) => Buffer.from(bytes).toString('latin1');

const ESPRUINO_EVENTS = `(function () {
  function def(name, fn) { Object.defineProperty(Object.prototype, name, { value: fn, enumerable: false, configurable: true, writable: true }); }
  def('on', function (ev, fn) {
    var k = '#on' + ev;
    if (!Object.prototype.hasOwnProperty.call(this, k)) Object.defineProperty(this, k, { value: [], enumerable: false, configurable: true, writable: true });
    this[k].push(fn);
    return this;
  });
  def('emit', function (ev) {
    var l = this['#on' + ev];
    if (!l) return;
    var args = Array.prototype.slice.call(arguments, 1);
    l = l.slice();
    for (var i = 0; i < l.length; i++) l[i].apply(this, args);
  });
  def('removeAllListeners', function (ev) {
    if (ev === undefined) { var ks = Object.getOwnPropertyNames(this); for (var i = 0; i < ks.length; i++) if (ks[i].indexOf('#on') === 0) delete this[ks[i]]; }
    else delete this['#on' + ev];
  });
})();`;

/**
 * The Espruino MQTT module (require("MQTT")) over the npm `mqtt` client: create(server, options)
 * -> { connect, subscribe, publish, disconnect, on('connected' | 'disconnected' | 'publish' | 'error') }.
 * Messages are binary strings, as in the module.
 */
export function mqttModule(mqttPkg) {
  return {
    create(server, options = {}) {
      const m = emitter({ connected: false });
      let client = null;
      m.connect = () => {
        client = mqttPkg.connect(`mqtt://${server}:${options.port || 1883}`, { clientId: options.client_id, username: options.username, password: options.password, keepalive: options.keep_alive || 60, reconnectPeriod: 0, protocolVersion: 4 });
        client.on('connect', () => {
          m.connected = true;
          m.emit('connected');
        });
        client.on('message', (topic, payload) => m.emit('publish', { topic, message: payload.toString('latin1'), dup: 0, qos: 0, retain: 0 }));
        client.on('close', () => {
          if (m.connected) {
            m.connected = false;
            m.emit('disconnected');
          }
        });
        client.on('error', (e) => m.emit('error', String(e.message || e)));
      };
      m.subscribe = (topic, opts) => {
        if (client) client.subscribe(topic, { qos: typeof opts === 'number' ? opts : (opts && opts.qos) || 0 });
      };
      m.publish = (topic, message, qos) => {
        if (client) client.publish(topic, Buffer.from(String(message), 'latin1'), { qos: qos || 0 });
      };
      m.disconnect = () => {
        if (client) client.end(true);
        client = null;
      };
      m.client = () => client;
      return m;
    },
  };
}

/**
 * A board. `flash`: a FlashSim; `mqtt`: the npm `mqtt` package (for images that use MQTT);
 * `time`: the clock's start (seconds; Espruino boards count from 0 at power-on).
 */
export function espruinoBoard({ flash, mqtt = null, time = 0, onPrint = null } = {}) {
  const printed = [];
  const board = { flash, printed, context: null, crypto: espruinoCrypto({ onError: (m) => printed.push('ERROR: ' + m) }) };
  let now = time;
  let timers = [];
  let nextTimer = 1;
  const out = (line) => {
    printed.push(line);
    if (onPrint) onPrint(line);
  };

  function stream(name) {
    const s = emitter({ name, written: [], console: false });
    s.write = (data) => {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : Buffer.from(data.buffer ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data);
      s.written.push(bytes);
    };
    s.print = s.write;
    s.setConsole = () => {
      for (const st of [board.Bluetooth, board.Serial1, board.LoopbackA]) st.console = st === s;
    };
    s.setup = (baud, opts) => {
      s.baud = baud;
      s.opts = opts;
    };
    /** Bytes written since the last take(), as one Buffer. */
    s.take = () => {
      const b = Buffer.concat(s.written);
      s.written = [];
      return b;
    };
    /** Data arriving from outside (a string, as Espruino delivers it), unless the console has it. */
    s.receive = (bytes) => {
      if (s.console) throw new Error(`${name}: data went to the console (the link did not take over)`);
      s.emit('data', latin1(bytes));
    };
    return s;
  }

  function makeContext() {
    const ctx = vm.createContext({});
    const U8 = vm.runInContext('Uint8Array', ctx);
    board.Bluetooth = stream('Bluetooth');
    board.Serial1 = stream('Serial1');
    board.LoopbackA = stream('LoopbackA');
    board.Bluetooth.console = true; // a BLE connection gets the console
    board.NRF = emitter({});
    board.E = emitter({
      CRC32: (d) => crc32(Buffer.from(typeof d === 'string' ? Buffer.from(d, 'latin1') : new Uint8Array(d.buffer || d, d.byteOffset || 0, d.byteLength === undefined ? d.length : d.byteLength))) >>> 0,
      toString: (d) => (typeof d === 'string' ? d : latin1(d instanceof ArrayBuffer ? new Uint8Array(d) : Uint8Array.from(d))),
      toUint8Array: (s) => {
        const b = new U8(s.length);
        for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 255;
        return b;
      },
      // Storage strings have no identity here: find the file holding exactly this text.
      getAddressOf: (s) => {
        for (const name of flash.list()) if (flash.read(name) === s) return flash.addressOf(name);
        return 0;
      },
    });
    // Espruino's Storage functions are static: they work detached from the object, as here.
    const storage = {};
    for (const m of ['read', 'readArrayBuffer', 'readJSON', 'write', 'writeJSON', 'erase', 'eraseAll', 'list', 'getFree', 'getStats', 'compact']) storage[m] = flash[m].bind(flash);
    const modules = {
      Storage: storage,
      Flash: flash.flash,
      crypto: { AES: board.crypto.AES },
      Wifi: {
        connect: (ssid, opts, cb) => {
          board.wifi = { ssid, password: opts && opts.password };
          addTimer(() => cb(null), 0, false);
        },
        setSNTP: (server, tz) => {
          board.sntp = { server, tz };
        },
      },
    };
    if (mqtt) modules.MQTT = mqttModule(mqtt);
    board.mqttClients = [];
    const g = {
      require: (name) => {
        const m = modules[name];
        if (!m) throw new Error(`Module ${name} not found`);
        if (name === 'MQTT') {
          return { create: (...a) => {
            const c = m.create(...a);
            board.mqttClients.push(c);
            return c;
          } };
        }
        return m;
      },
      E: board.E,
      // An ARM build's report: Storage starts at FLASH_SAVED_CODE_START (boards/espruino/boot.ts).
      process: { env: { BOARD: 'EMULATED', STORAGE: flash.size }, memory: () => ({ flash_code_start: flash.start }) },
      Bluetooth: board.Bluetooth,
      Serial1: board.Serial1,
      LoopbackA: board.LoopbackA,
      NRF: board.NRF,
      getTime: () => now,
      setTime: (t) => {
        now = t;
      },
      setTimeout: (fn, ms) => addTimer(fn, ms, false),
      setInterval: (fn, ms) => addTimer(fn, ms, true),
      clearTimeout: (id) => clearTimer(id),
      clearInterval: (id) => clearTimer(id),
      console: { log: (...a) => out(a.join(' ')) },
      print: (...a) => out(a.join(' ')),
      atob: (s) => Buffer.from(s, 'base64').toString('latin1'),
      btoa: (s) => Buffer.from(s, 'latin1').toString('base64'),
      clearWatch: () => {},
      load: () => {
        board.loadRequested = true;
      },
    };
    for (const [k, v] of Object.entries(g)) ctx[k] = v;
    ctx.global = ctx;
    // Espruino gives every object on/emit/removeAllListeners (listeners in hidden "#on<event>"
    // properties, several per event, called in order).
    vm.runInContext(ESPRUINO_EVENTS, ctx);
    return ctx;
  }

  function addTimer(fn, ms, repeat) {
    const id = nextTimer++;
    timers.push({ id, fn, at: now + (ms || 0) / 1000, every: repeat ? Math.max(ms, 1) / 1000 : 0 });
    return id;
  }
  function clearTimer(id) {
    if (id === undefined) timers = [];
    else timers = timers.filter((t) => t.id !== id);
  }

  /** Advances the virtual clock by `seconds`, running the timers that fall due, in order. */
  board.tick = (seconds = 0) => {
    const end = now + seconds;
    for (;;) {
      const due = timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      now = Math.max(now, due.at);
      if (due.every) due.at += due.every;
      else timers = timers.filter((t) => t !== due);
      due.fn();
    }
    now = end;
  };
  board.time = () => now;
  board.setTime = (t) => {
    now = t;
  };

  /** A copy of `bytes` made in the board's realm (the image checks `instanceof Uint8Array`). */
  board.bytesIn = (bytes) => {
    const U8 = vm.runInContext('Uint8Array', board.context);
    const b = new U8(bytes.length);
    b.set(bytes);
    return b;
  };

  /** Evaluates code in the board's context (what the console would run). */
  board.eval = (code) => vm.runInContext(code, board.context, { filename: 'console' });

  /** Power-on: the boot files run, then E.on('init'). */
  board.boot = () => {
    flash.reboot();
    timers = [];
    board.context = makeContext();
    for (const f of ['.boot0', '.boot1', '.boot2', '.boot3', '.bootcde']) {
      const code = flash.read(f);
      if (code !== undefined) vm.runInContext(code, board.context, { filename: f });
    }
    board.E.emit('init');
    board.tick(0); // idle after start-up: timers due now run (e.g. a deferred compaction)
    return board.context.E4;
  };

  /** Power lost and back: RAM is gone, flash stays, the clock starts again from `time`. */
  board.powerCycle = () => {
    for (const c of board.mqttClients || []) c.disconnect();
    board.context = null;
    now = time;
    return board.boot();
  };

  /** Runs an upload script as the espruino tool would send it to the console (flash.ts). */
  board.upload = (script) => {
    if (!board.context) {
      flash.reboot();
      board.context = makeContext();
    }
    board.loadRequested = false;
    vm.runInContext(script, board.context, { filename: 'upload.js' });
    board.tick(1); // the script's setTimeout(load)
    return board.loadRequested;
  };

  return board;
}
