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
import type { IClientOptions, MqttClient } from 'mqtt';
import type { storageArea } from '../../boards/espruino/boot.ts';
import type { Device } from '../../boards/shared/runtime.ts';
import type { Client } from '../../firmware/client.ts';
import { espruinoCrypto } from './espruino-crypto.ts';
import type { EspruinoCrypto, EspruinoCryptoAes } from './espruino-crypto.ts';
import type { EspruinoFlash, EspruinoStorage, FlashSim } from './flash-sim.ts';

/** The global `E4` of an Espruino board image (boards/espruino-<board>/main.ts, as built). */
export type EspruinoImage =
  | typeof import('../../boards/espruino-puckjs/main.ts')
  | typeof import('../../boards/espruino-nrf52/main.ts')
  | typeof import('../../boards/espruino-esp32/main.ts');

/** The client of an image that started (E4.status().ok); throws with the image's reason otherwise. */
export function imageClient(E4: EspruinoImage): Client {
  const c = E4.client();
  if (!c) throw new Error(`the image has no client: ${E4.status().error}`);
  return c;
}

/** The device runtime of an image that started with a transport; throws otherwise. */
export function imageDevice(E4: EspruinoImage): Device {
  const d = E4.device();
  if (!d) throw new Error(`the image has no device runtime: ${E4.status().error || 'no transport configured'}`);
  return d;
}

/** A listener of an Espruino event: its arguments are whatever the event carries. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each event passes its own arguments; a listener declares the ones its event carries
export type EspruinoListener = (...args: any[]) => void;

/** The event methods Espruino gives every object. */
export interface EspruinoEvents {
  on(event: string, fn: EspruinoListener): EspruinoEvents;
  emit(event: string, ...args: unknown[]): void;
  removeAllListeners(event?: string): void;
  /** Not Espruino's: how many listeners `event` has (for tests). */
  listenerCount(event: string): number;
}

/** What Espruino's Serial.write takes: a string (one byte per character), bytes, or byte values. */
export type SerialData = string | ArrayBufferView | number[];

/** An Espruino `Serial` (Bluetooth, Serial1, LoopbackA), with the far end for the test. */
export interface EspruinoSerial extends EspruinoEvents {
  readonly name: string;
  /** What the board wrote since the last take(). */
  written: Buffer[];
  /** Whether this stream is the console (its input goes to the console, not to 'data'). */
  console: boolean;
  /** Set by setup(). */
  baud?: number;
  opts?: unknown;
  write(data: SerialData): void;
  print(data: SerialData): void;
  setConsole(): void;
  setup(baud: number, opts?: unknown): void;
  /** Bytes written since the last take(), as one Buffer. */
  take(): Buffer;
  /** Data arriving from outside (a string, as Espruino delivers it), unless the console has it. */
  receive(bytes: Uint8Array): void;
}

/** What E.CRC32 takes: a string or bytes. */
export type CrcData = string | ArrayBuffer | ArrayBufferView | number[];

/** Espruino's `E` (the part the images use). */
export interface EspruinoE extends EspruinoEvents {
  CRC32(data: CrcData): number;
  toString(data: string | ArrayBuffer | ArrayLike<number>): string;
  toUint8Array(s: string): Uint8Array;
  /** The flash address of a string read from Storage, or 0. */
  getAddressOf(s: string): number;
}

/** Espruino's `process` as boards/espruino/boot.ts reads it (storageArea). */
export interface EspruinoProcess {
  env: Parameters<typeof storageArea>[0];
  memory(): Parameters<typeof storageArea>[1];
}

/** Espruino's `require("Wifi")`: connects and sets SNTP at once. */
export interface EspruinoWifi {
  connect(ssid: string, options: { password?: string } | undefined, callback: (error: string | null) => void): void;
  setSNTP(server: string, timezone: number): void;
}

/** The options of Espruino's MQTT module's create(). */
export interface EspruinoMqttOptions {
  port?: number;
  client_id?: string;
  username?: string;
  password?: string;
  keep_alive?: number;
}

/** A connection of Espruino's MQTT module; events 'connected', 'disconnected', 'publish'
 * ({ topic, message (a binary string), dup, qos, retain }), 'error'. */
export interface EspruinoMqtt extends EspruinoEvents {
  connected: boolean;
  connect(): void;
  subscribe(topic: string, options?: number | { qos?: number }): void;
  publish(topic: string, message: string, qos?: number): void;
  disconnect(): void;
  /** Not the module's: the npm client underneath (null when not connected). */
  client(): MqttClient | null;
}

/** Espruino's MQTT module (require("MQTT")). */
export interface EspruinoMqttModule {
  create(server: string, options?: EspruinoMqttOptions): EspruinoMqtt;
}

/** The part of the npm `mqtt` package the emulated module uses. */
export type MqttPackage = { connect(url: string, options: IClientOptions): MqttClient };

/** Espruino's event methods, for emulated objects. */
function emitter<T extends object>(obj: T): T & EspruinoEvents {
  const handlers: { [event: string]: EspruinoListener[] } = {};
  const out: T & EspruinoEvents = Object.assign(obj, {
    on: (ev: string, fn: EspruinoListener): EspruinoEvents => {
      (handlers[ev] = handlers[ev] || []).push(fn);
      return out;
    },
    emit: (ev: string, ...args: unknown[]) => {
      for (const fn of (handlers[ev] || []).slice()) fn(...args);
    },
    removeAllListeners: (ev?: string) => {
      if (ev === undefined) for (const k of Object.keys(handlers)) delete handlers[k];
      else delete handlers[ev];
    },
    listenerCount: (ev: string) => (handlers[ev] || []).length,
  });
  return out;
}

const latin1 = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1');

/** The bytes of bytes-like data as E.CRC32 reads them (a view's own bytes, an array's values). */
function rawBytes(d: ArrayBuffer | ArrayBufferView | number[]): Uint8Array {
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  return new Uint8Array(d);
}

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
export function mqttModule(mqttPkg: MqttPackage): EspruinoMqttModule {
  return {
    create(server: string, options: EspruinoMqttOptions = {}): EspruinoMqtt {
      let client: MqttClient | null = null;
      const m: EspruinoMqtt = emitter({
        connected: false,
        connect: () => {
          const c = mqttPkg.connect(`mqtt://${server}:${options.port || 1883}`, {
            clientId: options.client_id,
            username: options.username,
            password: options.password,
            keepalive: options.keep_alive || 60,
            reconnectPeriod: 0,
            protocolVersion: 4,
          });
          client = c;
          c.on('connect', () => {
            m.connected = true;
            m.emit('connected');
          });
          c.on('message', (topic, payload) => m.emit('publish', { topic, message: payload.toString('latin1'), dup: 0, qos: 0, retain: 0 }));
          c.on('close', () => {
            if (m.connected) {
              m.connected = false;
              m.emit('disconnected');
            }
          });
          c.on('error', (e) => m.emit('error', String(e.message || e)));
        },
        subscribe: (topic: string, opts?: number | { qos?: number }) => {
          if (client) client.subscribe(topic, { qos: qosOf(typeof opts === 'number' ? opts : (opts && opts.qos) || 0) });
        },
        publish: (topic: string, message: string, qos?: number) => {
          if (client) client.publish(topic, Buffer.from(String(message), 'latin1'), { qos: qosOf(qos || 0) });
        },
        disconnect: () => {
          if (client) client.end(true);
          client = null;
        },
        client: () => client,
      });
      return m;
    },
  };
}

/** An MQTT QoS level (0, 1 or 2) from the module's number. */
function qosOf(n: number): 0 | 1 | 2 {
  if (n === 0 || n === 1 || n === 2) return n;
  throw new Error(`MQTT: QoS ${n} is not 0, 1 or 2`);
}

/** A running board's context: the globals of an Espruino board, and the image's `E4` once it ran. */
export interface BoardContext extends vm.Context {
  E4?: EspruinoImage;
}

export interface EspruinoBoardOptions {
  flash: FlashSim;
  /** The npm `mqtt` package, for images that use MQTT (require("MQTT")). */
  mqtt?: MqttPackage | null;
  /** The clock's start in seconds (Espruino boards count from 0 at power-on). */
  time?: number;
  /** Called with every console line as it is printed. */
  onPrint?: ((line: string) => void) | null;
}

/** The emulated board: its hardware, what it printed, and the test's controls. */
export interface EspruinoBoard {
  flash: FlashSim;
  /** Console lines (console.log, print, and the "ERROR: ..." lines Espruino prints). */
  printed: string[];
  /** The running context (its RAM), null while off. */
  context: BoardContext | null;
  crypto: EspruinoCrypto;
  Bluetooth: EspruinoSerial;
  Serial1: EspruinoSerial;
  LoopbackA: EspruinoSerial;
  NRF: EspruinoEvents;
  E: EspruinoE;
  /** MQTT connections the image created since power-on. */
  mqttClients: EspruinoMqtt[];
  /** What the image passed to Wifi.connect() and Wifi.setSNTP(). */
  wifi?: { ssid: string; password?: string };
  sntp?: { server: string; tz: number };
  /** The last upload script called load(). */
  loadRequested?: boolean;
  /** Advances the virtual clock by `seconds`, running the timers that fall due, in order. */
  tick(seconds?: number): void;
  time(): number;
  setTime(t: number): void;
  /** A copy of `bytes` made in the board's realm (the image checks `instanceof Uint8Array`). */
  bytesIn(bytes: ArrayLike<number>): Uint8Array;
  /** Evaluates code in the board's context (what the console would run). */
  eval(code: string): unknown;
  /** Power-on: the boot files run, then E.on('init'); returns the image's E4. */
  boot(): EspruinoImage;
  /** Power lost and back: RAM is gone, flash stays, the clock starts again from `time`. */
  powerCycle(): EspruinoImage;
  /** Runs an upload script as the espruino tool would send it to the console; whether it called load(). */
  upload(script: string): boolean;
}

/** The modules require() serves on the board. */
interface EspruinoModules {
  Storage: EspruinoStorage;
  Flash: EspruinoFlash;
  crypto: { AES: EspruinoCryptoAes };
  Wifi: EspruinoWifi;
  MQTT?: EspruinoMqttModule;
}

/** The globals of the emulated board that the images use. */
interface EspruinoGlobals {
  require(name: string): unknown;
  E: EspruinoE;
  process: EspruinoProcess;
  Bluetooth: EspruinoSerial;
  Serial1: EspruinoSerial;
  LoopbackA: EspruinoSerial;
  NRF: EspruinoEvents;
  getTime(): number;
  setTime(t: number): void;
  setTimeout(fn: () => void, ms?: number): number;
  setInterval(fn: () => void, ms?: number): number;
  clearTimeout(id?: number): void;
  clearInterval(id?: number): void;
  console: { log(...args: unknown[]): void };
  print(...args: unknown[]): void;
  atob(s: string): string;
  btoa(s: string): string;
  clearWatch(): void;
  load(): void;
}

interface Timer {
  id: number;
  fn: () => void;
  /** When it falls due (board seconds). */
  at: number;
  /** Its period in seconds (setInterval), 0 for a timeout. */
  every: number;
}

/**
 * A board. `flash`: a FlashSim; `mqtt`: the npm `mqtt` package (for images that use MQTT);
 * `time`: the clock's start (seconds; Espruino boards count from 0 at power-on).
 */
export function espruinoBoard({ flash, mqtt = null, time = 0, onPrint = null }: EspruinoBoardOptions): EspruinoBoard {
  const printed: string[] = [];
  let now = time;
  let timers: Timer[] = [];
  let nextTimer = 1;
  const out = (line: string) => {
    printed.push(line);
    if (onPrint) onPrint(line);
  };

  function stream(name: string): EspruinoSerial {
    const write = (data: SerialData) => {
      const bytes =
        typeof data === 'string'
          ? Buffer.from(data, 'latin1')
          : Buffer.from(ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data);
      s.written.push(bytes);
    };
    const s: EspruinoSerial = emitter({
      name,
      written: [],
      console: false,
      write,
      print: write,
      setConsole: () => {
        for (const st of [board.Bluetooth, board.Serial1, board.LoopbackA]) st.console = st === s;
      },
      setup: (baud: number, opts?: unknown) => {
        s.baud = baud;
        s.opts = opts;
      },
      take: () => {
        const b = Buffer.concat(s.written);
        s.written = [];
        return b;
      },
      receive: (bytes: Uint8Array) => {
        if (s.console) throw new Error(`${name}: data went to the console (the link did not take over)`);
        s.emit('data', latin1(bytes));
      },
    });
    return s;
  }

  /** The board before its first power-on (makeContext gives it new streams and E at each). */
  const board: EspruinoBoard = {
    flash,
    printed,
    context: null,
    crypto: espruinoCrypto({ onError: (m) => printed.push('ERROR: ' + m) }),
    Bluetooth: stream('Bluetooth'),
    Serial1: stream('Serial1'),
    LoopbackA: stream('LoopbackA'),
    NRF: emitter({}),
    E: espruinoE(Uint8Array),
    mqttClients: [],
    tick,
    time: () => now,
    setTime: (t: number) => {
      now = t;
    },
    bytesIn,
    eval: (code: string) => vm.runInContext(code, running(), { filename: 'console' }),
    boot,
    powerCycle,
    upload,
  };

  function running(): BoardContext {
    if (!board.context) throw new Error('the board is off (boot() it first)');
    return board.context;
  }

  /** E, making its Uint8Arrays with `U8` (the board realm's). */
  function espruinoE(U8: Uint8ArrayConstructor): EspruinoE {
    return emitter({
      CRC32: (d: CrcData) => crc32(Buffer.from(typeof d === 'string' ? Buffer.from(d, 'latin1') : rawBytes(d))) >>> 0,
      toString: (d: string | ArrayBuffer | ArrayLike<number>) =>
        typeof d === 'string' ? d : latin1(d instanceof ArrayBuffer ? new Uint8Array(d) : Uint8Array.from(d)),
      toUint8Array: (s: string) => {
        const b = new U8(s.length);
        for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 255;
        return b;
      },
      // Storage strings have no identity here: find the file holding exactly this text.
      getAddressOf: (s: string) => {
        for (const name of flash.list()) if (flash.read(name) === s) return flash.addressOf(name);
        return 0;
      },
    });
  }

  function makeContext(): BoardContext {
    const ctx: BoardContext = vm.createContext({});
    const U8: Uint8ArrayConstructor = vm.runInContext('Uint8Array', ctx);
    board.Bluetooth = stream('Bluetooth');
    board.Serial1 = stream('Serial1');
    board.LoopbackA = stream('LoopbackA');
    board.Bluetooth.console = true; // a BLE connection gets the console
    board.NRF = emitter({});
    board.E = espruinoE(U8);
    // Espruino's Storage functions are static: they work detached from the object, as here.
    const storage: EspruinoStorage = {
      read: flash.read.bind(flash),
      readArrayBuffer: flash.readArrayBuffer.bind(flash),
      readJSON: flash.readJSON.bind(flash),
      write: flash.write.bind(flash),
      writeJSON: flash.writeJSON.bind(flash),
      erase: flash.erase.bind(flash),
      eraseAll: flash.eraseAll.bind(flash),
      list: flash.list.bind(flash),
      getFree: flash.getFree.bind(flash),
      getStats: flash.getStats.bind(flash),
      compact: flash.compact.bind(flash),
    };
    const wifi: EspruinoWifi = {
      connect: (ssid, opts, cb) => {
        board.wifi = { ssid, password: opts && opts.password };
        addTimer(() => cb(null), 0, false);
      },
      setSNTP: (server, tz) => {
        board.sntp = { server, tz };
      },
    };
    const mqttMod = mqtt ? mqttModule(mqtt) : undefined;
    const modules: EspruinoModules = { Storage: storage, Flash: flash.flash, crypto: { AES: board.crypto.AES }, Wifi: wifi, MQTT: mqttMod };
    const table = new Map<string, unknown>(Object.entries(modules));
    board.mqttClients = [];
    const g: EspruinoGlobals = {
      require: (name) => {
        const m = table.get(name);
        if (!m) throw new Error(`Module ${name} not found`);
        if (mqttMod && m === mqttMod) {
          const mq: EspruinoMqttModule = {
            create: (server, options) => {
              const c = mqttMod.create(server, options);
              board.mqttClients.push(c);
              return c;
            },
          };
          return mq;
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

  function addTimer(fn: () => void, ms: number | undefined, repeat: boolean): number {
    const id = nextTimer++;
    timers.push({ id, fn, at: now + (ms || 0) / 1000, every: repeat ? Math.max(Number(ms), 1) / 1000 : 0 });
    return id;
  }
  function clearTimer(id?: number): void {
    if (id === undefined) timers = [];
    else timers = timers.filter((t) => t.id !== id);
  }

  function tick(seconds = 0): void {
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
  }

  function bytesIn(bytes: ArrayLike<number>): Uint8Array {
    const U8: Uint8ArrayConstructor = vm.runInContext('Uint8Array', running());
    const b = new U8(bytes.length);
    b.set(bytes);
    return b;
  }

  function boot(): EspruinoImage {
    flash.reboot();
    timers = [];
    const ctx = makeContext();
    board.context = ctx;
    for (const f of ['.boot0', '.boot1', '.boot2', '.boot3', '.bootcde']) {
      const code = flash.read(f);
      if (code !== undefined) vm.runInContext(code, ctx, { filename: f });
    }
    board.E.emit('init');
    tick(0); // idle after start-up: timers due now run (e.g. a deferred compaction)
    if (!ctx.E4) throw new Error('no E4 after boot: Storage holds no E4 image (upload one first)');
    return ctx.E4;
  }

  function powerCycle(): EspruinoImage {
    for (const c of board.mqttClients) c.disconnect();
    board.context = null;
    now = time;
    return boot();
  }

  /** (flash.ts sends the same script to a real board.) */
  function upload(script: string): boolean {
    if (!board.context) {
      flash.reboot();
      board.context = makeContext();
    }
    board.loadRequested = false;
    vm.runInContext(script, board.context, { filename: 'upload.js' });
    tick(1); // the script's setTimeout(load)
    return board.loadRequested;
  }

  return board;
}
