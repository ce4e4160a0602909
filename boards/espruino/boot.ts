/**
 * Start-up of an E4 image on an Espruino board (boards/espruino/README.md):
 *
 * 1. read the device configuration `e4.json` from Storage (written by `npm run flash`);
 * 2. open the power-safe flash store (boards/shared/flash-store.ts, files `e4s0`/`e4s1`);
 * 3. create the client: from the store when it holds a state, else provisioned from the
 *    configuration, whose keys are then erased from flash (the store keeps them from now on, and
 *    erases them when C2 removes or replaces them);
 * 4. on `E.on('init')` (after every boot file and the application's code have run, so its
 *    handlers are in place) start the transport; on `E.on('kill')` (reset/load) stop it.
 *
 * The clock is Espruino's getTime(): `monotonic` (seconds since power-on; a setTime() jump, e.g.
 * from an IDE connecting, is absorbed so the clock never leaps), `untrusted` (wall time that may
 * be wrong: ESP32 with SNTP, or a board whose time was set by hand), `trusted`, or `none`.
 */
import type { Client, Options } from '../../firmware/client';
import type { Clock, Log, LogLevel, Store, Vault } from '../../firmware/hal';
import { create } from '../../firmware/client';
import type { Device, Transport } from '../shared/runtime';
import { runDevice } from '../shared/runtime';
import { flashStore } from '../shared/flash-store';
import type { StorageApi } from '../shared/flash-store';
import type { RawFlash } from './storage-zero';
import type { LinkConfig } from './link';
import type { MqttConfig } from './mqtt';
import { storageZero } from './storage-zero';

/** The part of Espruino's `require("Storage")` the boot and the flash store use. */
export interface EspruinoStorage extends StorageApi {
  read(name: string, offset?: number, length?: number): string | undefined;
  write(name: string, data: string | Uint8Array, offset?: number, size?: number): boolean;
  /** The file parsed as JSON; undefined when absent or (noExceptions) not JSON. */
  readJSON(name: string, noExceptions: boolean): unknown;
  compact(): void;
}

declare var require: { (name: 'Storage'): EspruinoStorage; (name: 'Flash'): RawFlash };
declare var E: { CRC32(data: Uint8Array): number; on(event: 'init' | 'kill', fn: () => void): void };
declare var process: { env: { BOARD?: string; STORAGE?: number }; memory(gc: boolean): { flash_code_start?: number } };
declare var getTime: () => number;
declare var setInterval: (fn: () => void, ms: number) => number;
declare var setTimeout: (fn: () => void, ms: number) => number;
declare var console: { log(m: string): void };

/** The device configuration file (device.json as written by C2/flash; keys removed after provisioning). */
export var CONFIG_FILE = 'e4.json';
/** Prefix of the flash store's files (`e4s0`, `e4s1`). */
export var STORE_NAME = 'e4s';

export interface TopicEntry {
  topic?: string;
  hash?: string;
  key?: string;
}

export interface DeviceFile {
  format?: string;
  version?: number;
  name?: string;
  id?: string;
  key?: string;
  topics?: TopicEntry[];
  options?: Options;
  clock?: string;
  transport?: TransportConfig;
  /** Least level logged to the console: debug, info, warn (default), error. */
  log?: string;
  /** Set once the keys have moved to the store. */
  provisioned?: boolean;
}

/** The device file's `transport`: the framed link to a gateway (nRF52 boards) or MQTT over Wi-Fi (ESP32). */
export interface TransportConfig {
  link?: LinkConfig;
  mqtt?: MqttConfig['mqtt'];
  wifi?: MqttConfig['wifi'];
  ntp?: string;
}

/** What a board entry (boards/<board>/main.ts) supplies. */
export interface BoardSpec {
  /** Clock kind when the configuration names none. */
  clock: string;
  vault(cfg: DeviceFile): Vault;
  /** The transport the configuration asks for, or null (then only the client is available). */
  transport(cfg: DeviceFile, client: Client, log: Log): Transport | null;
}

/** The board's state: `E4.client()`, `E4.device()`, `E4.status()` read it. */
export var board: { client: Client | null; device: Device | null; transport: Transport | null; error: string } = {
  client: null,
  device: null,
  transport: null,
  error: '',
};

var LEVELS: { [l: string]: number } = { debug: 0, info: 1, warn: 2, error: 3 };

export function consoleLog(level?: string): Log {
  var min = level && LEVELS[level] !== undefined ? LEVELS[level] : 2;
  return function (l: LogLevel, m: string) {
    if (LEVELS[l] >= min) console.log('E4 ' + l + ': ' + m);
  };
}

/** A HAL clock over getTime(), or undefined for "none". */
export function espruinoClock(kind: string): Clock | undefined {
  if (kind === 'none') return undefined;
  if (kind !== 'monotonic') {
    return {
      kind: kind === 'trusted' ? 'trusted' : 'untrusted',
      now: function () {
        return Math.floor(getTime());
      },
    };
  }
  var off = 0;
  var last = -1;
  function now(): number {
    var t = getTime() + off;
    // Read at least every minute (below): a step back, or forward by more than 5 minutes, is a
    // setTime(), not time passing.
    if (last >= 0 && (t < last || t > last + 300)) {
      off += last - t;
      t = last;
    }
    last = t;
    return Math.floor(t);
  }
  now();
  setInterval(now, 60000);
  return { kind: 'monotonic', now: now };
}

/**
 * Where Storage lies in require("Flash")'s address space, [start, end), from `process.env` and
 * `process.memory(false)`: the build's FLASH_SAVED_CODE_START and Storage size (Espruino's
 * boards/*.py). ARM builds (nRF52 boards, Bangle.js 2) report the start in process.memory();
 * every ESP32 build puts Storage at 0x320000, the Linux build at 0x10000000. Null when unknown.
 */
export function storageArea(env: { BOARD?: string; STORAGE?: number }, memory: { flash_code_start?: number }): number[] | null {
  var start = memory.flash_code_start;
  if (!start) start = env.BOARD === 'LINUX' ? 0x10000000 : String(env.BOARD).indexOf('ESP32') === 0 ? 0x320000 : 0;
  return start && env.STORAGE ? [start, start + env.STORAGE] : null;
}

/**
 * The store on this board's Storage: removed keys are zeroed in place in flash (NOR flash on
 * every Espruino board), the file found through Storage's header chain. Never Storage.compact()
 * (not power-safe). Where Storage's address is unknown the store cannot erase keys and refuses
 * to open (boot reports it).
 */
export function openStore(S: EspruinoStorage): Store {
  var a = storageArea(process.env, process.memory(false));
  return flashStore(S, { name: STORE_NAME, zero: a ? storageZero(require('Flash'), S, a[0], a[1]) : undefined, crc32: E.CRC32 });
}

/**
 * Storage whose compact() runs from the event loop, just after the current code returns (the
 * configuration's keys at provisioning; the store never compacts).
 * Compaction moves files; Espruino updates the variables that point into moved files, but not a
 * function that is executing from one (its parser holds a raw flash pointer). The image runs
 * from flash, so compacting while it runs could garble the running code whenever e4.js itself
 * moves. Handed to the timer as the native function, compact runs with no JavaScript on the
 * stack. (Storage compacting by itself, when a write finds it full, is not covered: keep free
 * space; see README.md. The store never creates a file that does not fit.)
 */
export function deferCompaction(S: EspruinoStorage): Pick<EspruinoStorage, 'readArrayBuffer' | 'read' | 'write' | 'erase' | 'compact'> {
  return {
    readArrayBuffer: S.readArrayBuffer,
    read: S.read,
    write: S.write,
    erase: S.erase,
    compact: function () {
      setTimeout(S.compact, 0);
    },
  };
}

/** Replaces the configuration file by one without keys, and erases the old one from flash. */
function dropKeys(S: EspruinoStorage, cfg: DeviceFile): void {
  var out: { [field: string]: unknown } = {};
  for (var k in cfg) if (k !== 'key' && k !== 'topics') out[k] = cfg[k as keyof DeviceFile];
  var topics: TopicEntry[] = [];
  var t = cfg.topics || [];
  for (var i = 0; i < t.length; i++) topics.push({ topic: t[i].topic, hash: t[i].hash });
  out.topics = topics;
  out.provisioned = true;
  S.erase(CONFIG_FILE);
  S.write(CONFIG_FILE, JSON.stringify(out));
  // Storage.erase only unlinks: compaction is what erases the old bytes (deferred: see above).
  deferCompaction(S).compact();
}

/** Names of the topics of the configuration (subscriptions, and the name table of boards without SHA-3). */
export function topicNames(cfg: DeviceFile): string[] {
  var out: string[] = [];
  var t = cfg.topics || [];
  for (var i = 0; i < t.length; i++) if (typeof t[i].topic === 'string') out.push(t[i].topic as string);
  return out;
}

/**
 * Opens the device. Returns its runtime (null without configuration, transport or on error: see
 * `board.error`); idempotent.
 */
export function boot(spec: BoardSpec): Device | null {
  if (board.client) return board.device;
  var S = require('Storage');
  var cfg = S.readJSON(CONFIG_FILE, true) as DeviceFile | undefined;
  var log = consoleLog(cfg && cfg.log);
  if (!cfg || (cfg.format !== undefined && cfg.format !== 'e4-device') || (cfg.version !== undefined && cfg.version !== 1)) {
    board.error = 'no usable ' + CONFIG_FILE + ' in Storage: run npm run flash';
    log('error', board.error);
    return null;
  }
  try {
    var store = openStore(S);
    var withKeys = typeof cfg.key === 'string';
    // Entries without a key (every entry once provisioned) still teach the client each topic's
    // name and hash: boards without SHA-3 rely on that for topics C2 grants later.
    var device = { id: cfg.id, name: cfg.name, key: cfg.key as string, topics: cfg.topics };
    var client = create(
      { vault: spec.vault(cfg), store: store, clock: espruinoClock(cfg.clock || spec.clock), log: log },
      device,
      cfg.options
    );
    if (withKeys) dropKeys(S, cfg);
    board.client = client;
    var transport = (board.transport = spec.transport(cfg, client, log));
    if (transport) board.device = runDevice(client, transport, topicNames(cfg), log);
    board.error = '';
  } catch (e) {
    board.error = e instanceof Error || (e && (e as Error).message) ? (e as Error).message : String(e);
    log('error', 'boot failed: ' + board.error);
  }
  return board.device;
}

/**
 * Registers the start-up with Espruino: boot and start the transport on E.on('init'), stop it on
 * E.on('kill'). Returns the start function (E4.start) for images evaluated outside a boot.
 */
export function install(spec: BoardSpec): () => Device | null {
  function start(): Device | null {
    var d = boot(spec);
    if (d) d.start();
    return d;
  }
  E.on('init', start);
  E.on('kill', function () {
    if (board.device) board.device.stop();
    if (board.client) board.client.close();
  });
  return start;
}
