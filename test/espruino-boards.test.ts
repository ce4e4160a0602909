/**
 * The Espruino board images (dist/boards/espruino-*.min.js, as built) on an emulated board
 * (host-sim/sim/espruino-board.ts: Espruino's Storage layout and rules, crypto.AES, the Bluetooth /
 * Serial1 streams, MQTT over a real broker): flashed with the flash tool's own upload script,
 * booted from Storage, driven through their transports like a gateway or broker would, power
 * cycled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqttPkg from 'mqtt';
import { aessiv } from '@noble/ciphers/aes.js';
import { flashSim } from '../host-sim/sim/flash-sim.ts';
import { espruinoBoard, imageClient, imageDevice, type EspruinoSerial, type MqttPackage } from '../host-sim/sim/espruino-board.ts';
import type { DeviceFile } from '../boards/espruino/boot';
import type { LinkConfig } from '../boards/espruino/link';
import type { MqttConfig } from '../boards/espruino/mqtt';
import type { E4Error } from '../firmware/errors';
import { jsonObject } from './support/json';
import { deviceConfigFor, uploadScript, verifyFlash, sha3_16 } from '../host-sim/shared/flash-files.ts';
import { startBroker } from '../host-sim/services/broker.ts';
import { parseMqttUrl } from '../boards/espruino/mqtt';
import { encodeFrame, frameDecoder, ACK, HELLO, PUBLISH, SUBSCRIBE, type Frame } from '../firmware/link/frame';

const DIST = join(__dirname, '..', 'dist', 'boards');
const image = (board: string) => readFileSync(join(DIST, board + '.min.js'), 'latin1');
const unhex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const key = (n: number) => n.toString(16).padStart(2, '0').repeat(32);

function protect(k: string, ts: number, payload: Uint8Array | string): Uint8Array {
  const t = Buffer.alloc(8);
  t.writeBigUInt64LE(BigInt(ts));
  const kk = unhex(k);
  const p = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  return Uint8Array.from([...t, ...aessiv(Uint8Array.from([...kk, ...kk]), t).encrypt(p)]);
}
function open(k: string, m: Uint8Array): string | null {
  const kk = unhex(k);
  try {
    return new TextDecoder().decode(aessiv(Uint8Array.from([...kk, ...kk]), m.subarray(0, 8)).decrypt(m.subarray(8)));
  } catch {
    return null;
  }
}
const setTopicKey = (k: string, topic: string) => Uint8Array.from([3, ...unhex(k), ...unhex(sha3_16(topic))]);

const TOPICS = ['health/heart-rate', 'health/spo2', 'health/temp', 'health/steps'];
/** The transports the board images speak: the gateway link, or MQTT over Wi-Fi (ESP32). */
type BoardTransport = { link: LinkConfig } | MqttConfig;

function device(transport: BoardTransport | undefined, extra: Omit<DeviceFile, 'key' | 'topics'> = {}) {
  return {
    format: 'e4-device',
    version: 1,
    name: 'monitor-1',
    key: key(0x11),
    topics: TOPICS.map((topic, i) => ({ topic, key: key(0x21 + i) })),
    clock: 'monotonic',
    log: 'warn',
    transport,
    ...extra,
  };
}

/** Flashes `board` into a fresh emulated board with the flash tool's script; boots it. */
interface FlashOptions {
  /** Storage bytes (default 64 KB). */
  size?: number;
  /** The npm mqtt package, for the MQTT module. */
  mqtt?: MqttPackage;
  /** The Storage file "MQTT" the upload script writes. */
  mqttModule?: string;
}

function flashBoard(boardName: string, cfg: DeviceFile, opts: FlashOptions = {}) {
  const sim = flashSim({ size: opts.size || 64 * 1024 });
  const board = espruinoBoard({ flash: sim, mqtt: opts.mqtt || null, time: 100 });
  const { script, files } = uploadScript({
    image: image(boardName),
    config: deviceConfigFor(boardName, cfg),
    mqtt: opts.mqttModule ?? null,
  });
  expect(board.upload(script)).toBe(true); // ends with load()
  verifyFlash(board.printed, files);
  const E4 = board.boot();
  return { sim, board, E4, files };
}

/** The gateway's end of a link stream: decodes what the device wrote, answers. */
function gatewayEnd(stream: EspruinoSerial) {
  const frames: Frame[] = [];
  const dec = frameDecoder((f) => frames.push(f));
  return {
    frames,
    /** Frames the device wrote since the last read. */
    read(): Frame[] {
      dec.push(stream.take());
      return frames.splice(0);
    },
    send(type: number, seq: number, topic: string, payload?: Uint8Array) {
      stream.receive(encodeFrame(type, seq, topic, payload || null));
    },
    raw(bytes: Uint8Array) {
      stream.receive(bytes);
    },
  };
}

/** HELLO -> ACK, then every SUBSCRIBE -> ACK. Returns the subscribed topics. */
function handshake(gw: ReturnType<typeof gatewayEnd>, id: string): string[] {
  const hello = gw.read();
  expect(hello.map((f) => f.type)).toEqual([HELLO]);
  expect(Buffer.from(hello[0].payload).toString('hex')).toBe(id);
  gw.send(ACK, hello[0].seq, '', new Uint8Array([0]));
  const subs = gw.read();
  expect(subs.every((f) => f.type === SUBSCRIBE && f.seq > 0)).toBe(true);
  for (const s of subs) gw.send(ACK, s.seq, '', new Uint8Array([0]));
  expect(gw.read()).toEqual([]);
  return subs.map((s) => s.topic);
}

for (const boardName of ['espruino-puckjs', 'espruino-nrf52']) {
  const kind = boardName === 'espruino-puckjs' ? 'ble-uart' : 'serial';
  describe(`${boardName} over ${kind}`, () => {
    // No key transition: a replaced key must leave the flash with the command.
    const cfg = device({ link: { kind, baud: 115200 } }, { options: { keyTransition: 0 } });
    const id = sha3_16('monitor-1');
    const ctl = 'e4/' + id;
    let t: ReturnType<typeof flashBoard>;
    let gw: ReturnType<typeof gatewayEnd>;
    const events: unknown[][] = [];

    it('flashes, boots from Storage and moves the keys from e4.json into the store', () => {
      t = flashBoard(boardName, cfg);
      const st = t.E4.status();
      expect(st).toMatchObject({ ok: true, error: '', controlTopic: ctl, topics: 4 });
      const stored = jsonObject(t.sim.readJSON('e4.json'));
      expect(stored.provisioned).toBe(true);
      expect(stored.key).toBeUndefined();
      expect(stored.topics).toEqual(TOPICS.map((topic) => ({ topic, hash: sha3_16(topic) })));
      // The configuration's keys (hex text) are gone from the medium, trash included.
      for (const k of [cfg.key, ...cfg.topics.map((x) => x.key)]) expect(t.sim.contains(Buffer.from(k))).toBe(false);
      expect(t.sim.list().sort()).toEqual(['.boot0', 'e4.json', 'e4b.js', 'e4s0']);
      // Native AES on the Puck.js image; the portable one (no native call) on the nRF52 image.
      imageClient(t.E4).protect('health/temp', 'x');
      if (boardName === 'espruino-puckjs') expect(t.board.crypto.calls.total).toBeGreaterThan(0);
      else expect(t.board.crypto.calls.total).toBe(0);
    });

    it('starts the link (HELLO with the id) and subscribes to the control topic and every topic', () => {
      const d = imageDevice(t.E4);
      d.on('message', (topic: string, p: Uint8Array) => events.push(['message', topic, new TextDecoder().decode(p)]));
      d.on('command', (topic: string) => events.push(['command', topic]));
      d.on('error', (e: E4Error, topic: string) => events.push(['error', e.result, topic]));
      const stream = kind === 'ble-uart' ? t.board.Bluetooth : t.board.Serial1;
      gw = gatewayEnd(stream);
      if (kind === 'ble-uart') {
        // Connected over BLE the console has the bytes, until the gateway's console line.
        expect(gw.read()).toEqual([]);
        expect(() => gw.raw(new Uint8Array([1]))).toThrow(/console/);
        t.board.eval('E4.gateway()');
      } else {
        expect(t.board.Serial1.baud).toBe(115200);
      }
      expect(t.board.LoopbackA.console).toBe(true);
      expect(handshake(gw, id)).toEqual([ctl, ...TOPICS]);
      expect(d.connected).toBe(true);
    });

    it('hands gateway PUBLISH frames to the client, acknowledges them, rejects a duplicate', () => {
      const m = protect(key(0x22), 1000, 'spo2 97%');
      gw.send(PUBLISH, 9, 'health/spo2', m);
      expect(gw.read().map((f) => [f.type, f.seq])).toEqual([[ACK, 9]]);
      gw.send(PUBLISH, 9, 'health/spo2', m); // retransmitted (the ACK was lost)
      expect(gw.read().map((f) => [f.type, f.seq])).toEqual([[ACK, 9]]);
      expect(events.splice(0)).toEqual([
        ['message', 'health/spo2', 'spo2 97%'],
        ['error', 'E4_ERROR_MESSAGE_REPLAYED', 'health/spo2'],
      ]);
    });

    it('survives corrupted bytes and garbage on the link', () => {
      const good = encodeFrame(PUBLISH, 0, 'health/temp', protect(key(0x23), 1001, '36.6'));
      const bad = Uint8Array.from(good);
      bad[20] ^= 4;
      gw.raw(Uint8Array.from([...[0, 1, 0xe4, 0x4c, 7], ...bad, ...Buffer.from('noise'), ...good]));
      expect(events.splice(0)).toEqual([['message', 'health/temp', '36.6']]);
    });

    it('applies a C2 command from the control topic and publishes with the new key', () => {
      gw.send(PUBLISH, 10, ctl, protect(cfg.key, 2000, setTopicKey(key(0x77), 'health/spo2')));
      expect(gw.read().map((f) => f.type)).toEqual([ACK]);
      expect(events.splice(0)).toEqual([['command', ctl]]);
      imageDevice(t.E4).publish('health/spo2', 'spo2 96%');
      const out = gw.read();
      expect(out.map((f) => [f.type, f.seq, f.topic])).toEqual([[PUBLISH, 0, 'health/spo2']]);
      expect(open(key(0x77), out[0].payload)).toBe('spo2 96%');
      expect(() => imageDevice(t.E4).publish('not/provisioned', 'x')).toThrow(/TOPICKEY_MISSING/);
    });

    it('keeps its state across a power cycle; the replaced key is erased from flash', () => {
      const E4 = t.board.powerCycle();
      expect(E4.status()).toMatchObject({ ok: true, topics: 4 });
      expect(open(key(0x77), imageClient(E4).protect('health/spo2', 'after reboot'))).toBe('after reboot');
      // A replay of the command is rejected: the store kept the last command's timestamp and tag.
      expect(() => imageClient(E4).unprotect(ctl, t.board.bytesIn(protect(cfg.key, 1999, setTopicKey(key(0x78), 'health/spo2'))))).toThrow(
        /MESSAGE_REPLAYED/,
      );
      expect(t.sim.contains(unhex(key(0x22)))).toBe(false);
      expect(t.sim.contains(unhex(key(0x77)))).toBe(true);
    });

    it('a HELLO from a restarted gateway makes the device subscribe again', () => {
      const E4 = t.board.context?.E4;
      if (!E4) throw new Error('the board is off');
      const stream = kind === 'ble-uart' ? t.board.Bluetooth : t.board.Serial1;
      if (kind === 'ble-uart') {
        t.board.Bluetooth.console = true; // a new connection gets the console
        t.board.eval('E4.gateway()');
      }
      gw = gatewayEnd(stream);
      expect(handshake(gw, id)).toEqual([ctl, ...TOPICS]);
      gw.send(HELLO, 0, '');
      expect(handshake(gw, id)).toEqual([ctl, ...TOPICS]);
      expect(imageDevice(E4).connected).toBe(true);
    });

    it('retransmits an unanswered SUBSCRIBE every second, three times, then gives up', () => {
      gw.send(HELLO, 0, '');
      const hello = gw.read();
      gw.send(ACK, hello[0].seq, '', new Uint8Array([0]));
      const first = gw.read();
      expect(first.length).toBe(5);
      t.board.tick(1);
      expect(gw.read().map((f) => f.seq)).toEqual(first.map((f) => f.seq));
      t.board.tick(1);
      t.board.tick(1);
      expect(gw.read().length).toBe(10);
      t.board.tick(1);
      expect(gw.read()).toEqual([]);
      expect(t.board.printed.filter((l) => /no answer to frame/.test(l)).length).toBe(5);
    });
  });
}

describe('monotonic clock', () => {
  it('absorbs a setTime() jump (an IDE connecting) so calibrated time does not leap', () => {
    const t = flashBoard('espruino-puckjs', device(undefined));
    const ctl = 'e4/' + sha3_16('monitor-1');
    const C2_TIME = 1_700_000_000;
    imageClient(t.E4).unprotect(ctl, t.board.bytesIn(protect(key(0x11), C2_TIME, setTopicKey(key(0x55), 'health/temp'))));
    expect(imageClient(t.E4).time().now).toBe(C2_TIME);
    t.board.tick(30);
    expect(imageClient(t.E4).time().now).toBe(C2_TIME + 30);
    t.board.setTime(1_800_000_000); // setTime() from a host
    t.board.tick(60);
    const now = imageClient(t.E4).time().now;
    expect(now).toBeGreaterThanOrEqual(C2_TIME + 30);
    expect(now).toBeLessThanOrEqual(C2_TIME + 90);
  });

  it('boots without configuration with a clear status', () => {
    const sim = flashSim({ size: 64 * 1024 });
    const board = espruinoBoard({ flash: sim });
    board.upload(uploadScript({ image: image('espruino-puckjs'), config: null }).script);
    const E4 = board.boot();
    expect(E4.status()).toMatchObject({ ok: false, error: 'no usable e4.json in Storage: run npm run flash' });
    expect(board.printed.some((l) => /E4 error: no usable e4.json/.test(l))).toBe(true);
  });
});

describe('espruino-esp32 over MQTT', () => {
  let broker: { url: string; close(): Promise<void> };
  beforeAll(async () => {
    broker = await startBroker({ kind: 'aedes' });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('connects (Wi-Fi, SNTP, MQTT), subscribes, receives, publishes; hashes a run-time topic once', async () => {
    const cfg = device({ mqtt: { url: broker.url }, wifi: { ssid: 'lab', password: 'pw' }, ntp: 'pool.ntp.org' }, { clock: 'untrusted' });
    const t = flashBoard('espruino-esp32', cfg, {
      mqtt: mqttPkg,
      mqttModule: '/* MQTT module: emulated by host-sim/sim/espruino-board.ts */',
    });
    expect(t.sim.read('MQTT')).toMatch(/emulated/);
    const d = imageDevice(t.E4);
    const got: unknown[][] = [];
    d.on('message', (topic: string, p: Uint8Array) => got.push([topic, new TextDecoder().decode(p)]));
    d.on('command', (topic: string) => got.push(['command', topic]));
    const up = new Promise<void>((r) => d.on('up', () => r()));
    t.board.tick(0.1); // Wi-Fi connects on the next tick
    expect(t.board.wifi).toEqual({ ssid: 'lab', password: 'pw' });
    expect(t.board.sntp).toEqual({ server: 'pool.ntp.org', tz: 0 });
    await up;
    const host = await mqttPkg.connectAsync(broker.url);
    const seen: Buffer[] = [];
    host.on('message', (_topic, payload) => seen.push(payload));
    await host.subscribeAsync('health/heart-rate');
    await new Promise((r) => setTimeout(r, 100)); // the device's SUBSCRIBEs reach the broker
    // Broker -> device
    await host.publishAsync('health/heart-rate', Buffer.from(protect(key(0x21), 5, 'hr 61')));
    await host.publishAsync('e4/' + sha3_16('monitor-1'), Buffer.from(protect(key(0x11), 6, setTopicKey(key(0x66), 'runtime/topic'))));
    await vi_waitFor(() => got.length >= 2 || null);
    expect(got).toEqual([
      ['health/heart-rate', 'hr 61'],
      ['command', 'e4/' + sha3_16('monitor-1')],
    ]);
    // Device -> broker
    d.publish('health/heart-rate', 'hr 62');
    await vi_waitFor(() => seen.find((p) => open(key(0x21), new Uint8Array(p)) === 'hr 62') || null);
    // A topic name met at run time: hashed on the device (SHA-3 in this image), then usable.
    d.subscribe('runtime/topic');
    await new Promise((r) => setTimeout(r, 100));
    await host.publishAsync('runtime/topic', Buffer.from(protect(key(0x66), 7, 'late topic')));
    await vi_waitFor(() => got.find((g) => g[0] === 'runtime/topic') || null);
    expect(Buffer.from(imageClient(t.E4).topicHash('runtime/topic')).toString('hex')).toBe(sha3_16('runtime/topic'));
    await host.endAsync();
    imageDevice(t.E4).stop();
  });
});

/** A node of an ESTree syntax tree, its fields read by name. */
type AstNode = { type: string; [field: string]: unknown };

function isAstNode(n: unknown): n is AstNode {
  return typeof n === 'object' && n !== null && 'type' in n && typeof n.type === 'string';
}

async function vi_waitFor<T>(fn: () => T | null, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('Espruino parser pitfalls in the images', () => {
  it('no regular expression literal holds a "/" (Espruino ends the literal there, even inside [...])', async () => {
    const acorn = await import('acorn');
    for (const b of ['espruino-puckjs', 'espruino-nrf52', 'espruino-esp32']) {
      const found: string[] = [];
      const walk = (n: unknown): void => {
        if (!isAstNode(n)) return;
        const regex = n.regex;
        if (
          n.type === 'Literal' &&
          typeof regex === 'object' &&
          regex !== null &&
          'pattern' in regex &&
          typeof regex.pattern === 'string' &&
          regex.pattern.includes('/')
        )
          found.push(regex.pattern);
        for (const k of Object.keys(n)) {
          const v = n[k];
          if (Array.isArray(v)) v.forEach(walk);
          else if (isAstNode(v)) walk(v);
        }
      };
      walk(acorn.parse(image(b), { ecmaVersion: 5 }));
      expect(found, b).toEqual([]);
    }
  });
});

describe('MQTT URL', () => {
  it('parses mqtt://host[:port] and refuses the rest', () => {
    expect(parseMqttUrl('mqtt://127.0.0.1:1883')).toEqual({ host: '127.0.0.1', port: 1883 });
    expect(parseMqttUrl('mqtt://broker.lan/')).toEqual({ host: 'broker.lan', port: 1883 });
    for (const bad of ['tcp://x:1', 'mqtt://', 'mqtt://h:0', 'mqtt://h:70000', 'mqtt://h:1x', 'mqtt://h/x'])
      expect(() => parseMqttUrl(bad), bad).toThrow(/mqtt:\/\/host:port/);
  });
});
