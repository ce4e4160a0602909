/**
 * The JerryScript image: for a C port that embeds JerryScript and registers a few native
 * functions (boards/jerryscript/README.md). AES-SIV over the port's native AES when it has one,
 * else the portable AES; SHA-3 for topic names met at run time, the power-safe flash store over the port's storage functions, and a transport that is
 * the port's own publish/subscribe. No timers are needed.
 *
 * The port calls: E4.boot() once at start; E4.up() / E4.down() when its network connects or
 * drops; E4.receive(topic, bytes) for every message on a subscribed topic.
 */
import { sha3_256 } from '../../firmware/crypto/sha3';
import type { Client, Options } from '../../firmware/client';
import { create } from '../../firmware/client';
import { wipeState } from '../../firmware/state';
import type { AesBlock, Clock, Log, LogLevel, Vault } from '../../firmware/hal';
import { sivVault } from '../../firmware/crypto/siv';
import { E4Error, INTERNAL } from '../../firmware/errors';
import { flashStore } from '../shared/flash-store';
import { portableVault } from '../../firmware/crypto/portable-vault';
import type { Device, DeviceStatus, Transport, TransportSink } from '../shared/runtime';
import { runDevice } from '../shared/runtime';

export { create };

/** Native functions of the port (README.md). */
declare var e4_storage_read: (name: string) => ArrayBuffer | undefined;
declare var e4_storage_write: (name: string, data: Uint8Array, offset: number, size: number) => boolean;
declare var e4_storage_erase: (name: string) => void;
declare var e4_publish: (topic: string, data: Uint8Array) => void;
declare var e4_subscribe: (topic: string) => void;
declare var e4_time: (() => number) | undefined;
declare var e4_log: ((level: string, message: string) => void) | undefined;
/** A port's native AES (ECB, or CBC with a zero IV): the output, or undefined when it failed. */
type NativeAes = (key: Uint8Array, data: Uint8Array) => ArrayBuffer | Uint8Array | undefined;
declare var e4_aes_ecb: NativeAes | undefined;
declare var e4_aes_cbc: NativeAes | undefined;
declare var print: (m: string) => void;

export var CONFIG_FILE = 'e4.json';

interface DeviceFile {
  format?: string;
  version?: number;
  name?: string;
  id?: string;
  key?: string;
  topics?: { topic?: string; hash?: string; key?: string }[];
  options?: Options;
  clock?: string;
  log?: string;
  provisioned?: boolean;
}

var state: { client: Client | null; device: Device | null; error: string; sink: TransportSink | null } = {
  client: null,
  device: null,
  error: '',
  sink: null,
};

/** The port's native AES (optional functions e4_aes_ecb, e4_aes_cbc), or null without it. */
function nativeAesBlock(): AesBlock | null {
  if (typeof e4_aes_ecb !== 'function') return null;
  function run(fn: NativeAes, key: Uint8Array, data: Uint8Array): Uint8Array {
    var out = fn(key, data);
    if (!out || out.byteLength !== data.length) throw new E4Error(INTERNAL, 'native AES failed');
    return out instanceof Uint8Array ? out : new Uint8Array(out);
  }
  var block: AesBlock = {
    ecb: function (key, data) {
      return run(e4_aes_ecb as NativeAes, key, data);
    },
  };
  if (typeof e4_aes_cbc === 'function') {
    block.cbc = function (key, data) {
      return run(e4_aes_cbc as NativeAes, key, data);
    };
  }
  return block;
}

/** This image's vault: AES-SIV over the port's native AES when it registers one, else over the
 * portable AES; SHA-3 for topic names met at run time. */
export function vault(): Vault {
  var block = nativeAesBlock();
  return block ? sivVault(block, sha3_256) : portableVault(sha3_256);
}

var LEVELS: { [l: string]: number } = { debug: 0, info: 1, warn: 2, error: 3 };

function makeLog(level?: string): Log {
  var min = level && LEVELS[level] !== undefined ? LEVELS[level] : 2;
  return function (l: LogLevel, m: string) {
    if (LEVELS[l] < min) return;
    if (typeof e4_log === 'function') e4_log(l, m);
    else print('E4 ' + l + ': ' + m);
  };
}

function bytesToString(b: ArrayBuffer): string {
  var u = new Uint8Array(b);
  var s = '';
  for (var i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
  return s;
}

function stringToBytes(s: string): Uint8Array {
  var u = new Uint8Array(s.length);
  for (var i = 0; i < s.length; i++) u[i] = s.charCodeAt(i) & 255;
  return u;
}

/** The port's storage as the flash store sees it: e4_storage_erase erases for real (README.md),
 * so the store drops keys by moving to a new file and erasing the old one. */
var storage = {
  readArrayBuffer: function (name: string) {
    return e4_storage_read(name);
  },
  write: function (name: string, data: Uint8Array, offset?: number, size?: number) {
    return e4_storage_write(name, data, offset || 0, size || 0);
  },
  erase: function (name: string) {
    e4_storage_erase(name);
  },
};

function clock(kind: string): Clock | undefined {
  if (typeof e4_time !== 'function' || kind === 'none') return undefined;
  return {
    kind: kind === 'trusted' || kind === 'untrusted' ? kind : 'monotonic',
    now: function () {
      return Math.floor((e4_time as () => number)());
    },
  };
}

var transport: Transport = {
  start: function (sink) {
    state.sink = sink;
  },
  subscribe: function (topic) {
    e4_subscribe(topic);
  },
  publish: function (topic, data) {
    e4_publish(topic, data);
  },
};

/** Opens the device from the port's storage (provisioning it from e4.json the first time). */
export function boot(): Device | null {
  if (state.client) return state.device;
  var raw = e4_storage_read(CONFIG_FILE);
  var cfg: DeviceFile | null = null;
  try {
    cfg = raw ? JSON.parse(bytesToString(raw)) : null;
  } catch (e) {
    cfg = null;
  }
  var log = makeLog(cfg ? cfg.log : undefined);
  if (!cfg || (cfg.format !== undefined && cfg.format !== 'e4-device')) {
    state.error = 'no usable ' + CONFIG_FILE + ' in storage';
    log('error', state.error);
    return null;
  }
  try {
    var withKeys = typeof cfg.key === 'string';
    // Entries without a key (every entry once provisioned) still teach names and hashes.
    var dev = { id: cfg.id, name: cfg.name, key: cfg.key as string, topics: cfg.topics };
    var c = create(
      { vault: vault(), store: flashStore(storage, { name: 'e4s', erases: true }), clock: clock(cfg.clock || 'monotonic'), log: log },
      dev,
      cfg.options
    );
    var names: string[] = [];
    var t = cfg.topics || [];
    var kept: { topic?: string; hash?: string }[] = [];
    for (var i = 0; i < t.length; i++) {
      if (typeof t[i].topic === 'string') names.push(t[i].topic as string);
      kept.push({ topic: t[i].topic, hash: t[i].hash });
    }
    if (withKeys) {
      // The store holds the keys now: the configuration keeps only names and hashes.
      var out: { [field: string]: unknown } = {};
      for (var k in cfg) if (k !== 'key' && k !== 'topics') out[k] = cfg[k as keyof DeviceFile];
      out.topics = kept;
      out.provisioned = true;
      var text = stringToBytes(JSON.stringify(out));
      e4_storage_erase(CONFIG_FILE);
      e4_storage_write(CONFIG_FILE, text, 0, text.length);
    }
    state.client = c;
    state.device = runDevice(c, transport, names, log);
    state.device.start();
    state.error = '';
  } catch (e) {
    state.error = e && (e as Error).message ? (e as Error).message : String(e);
    log('error', 'boot failed: ' + state.error);
  }
  return state.device;
}

/** The port's network is up: the runtime subscribes to the control topic and the topics. */
export function up(): void {
  if (state.sink) state.sink.up();
}

export function down(): void {
  if (state.sink) state.sink.down();
}

/** A message arrived on `topic` (bytes: a Uint8Array, or an ArrayBuffer). */
export function receive(topic: string, data: Uint8Array | ArrayBuffer): void {
  if (state.sink) state.sink.message(topic, data instanceof Uint8Array ? data : new Uint8Array(data));
}

export function client(): Client | null {
  return state.client;
}

export function device(): Device | null {
  return state.device;
}

export function status(): DeviceStatus {
  var c = state.client;
  var d = state.device;
  // The topic count comes from a snapshot: its key copies are wiped at once, not left to the GC.
  var topics = 0;
  if (c) {
    var snap = c.snapshot();
    topics = snap.topics.length;
    wipeState(snap);
  }
  return {
    ok: !!c,
    error: state.error,
    controlTopic: c ? c.controlTopic : null,
    topics: topics,
    connected: d ? d.connected : false,
    stats: d ? d.stats : null,
  };
}

export var version = '0.1.0';
