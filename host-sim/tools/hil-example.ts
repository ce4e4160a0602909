/**
 * `npm run hil -- --board <board> --port <port> --example <name> [--broker URL]`
 *
 * Runs an application of examples/ on a board, end to end: flashes the board with a throwaway
 * identity holding the example's two topics (examples/<name>/example.json) and the example as
 * its application (.bootcde), then, through an MQTT broker (aedes started here on loopback, or
 * --broker URL, which an ESP32 on Wi-Fi must be able to reach):
 *  - the board's readings arrive on the broker protected (no plaintext there) and decrypt here
 *    with the topic key;
 *  - a message protected here for the board's receiving topic is received by it (its next
 *    reading reports it as `last`).
 * ESP32 boards connect to the broker themselves (Wi-Fi from E4_WIFI_SSID / E4_WIFI_PASSWORD,
 * or none: the Linux build and a board already on a network). nRF52 boards speak the link: a
 * gateway here dials the board's console (tcp:// ports: the Linux build's telnet console), opens
 * its serial port or connects over Bluetooth LE (as `gateway --ble`), and sends E4.gateway().
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { flash } from './flash.ts';
import { sha3_16 } from '../shared/device-config.ts';
import { portKind, ROOT } from './espruino-cli.ts';
import { UsageError } from '../shared/cli.ts';
import { startBroker } from '../services/broker.ts';
import { Gateway, loadImageCodec } from '../services/gateway.ts';
import type { DeviceStream } from '../services/gateway.ts';
import type { DeviceFile } from '../../boards/espruino/boot.ts';
import type { HilOptions, Tally } from './hil.ts';

/** examples/<name>/example.json: the boards it runs on, its application, its two topics. */
export interface Example {
  name: string;
  boards: string[];
  app: string;
  publishes: string;
  receives: string;
  appFile: string;
}

function isExampleJson(v: unknown): v is Omit<Example, 'name' | 'appFile'> {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    Array.isArray(o.boards) &&
    o.boards.every((b) => typeof b === 'string') &&
    typeof o.app === 'string' &&
    typeof o.publishes === 'string' &&
    typeof o.receives === 'string'
  );
}

/** The example's throwaway identity: a complete device file (id, key, both topics with keys). */
export interface ExampleDevice extends DeviceFile {
  name: string;
  id: string;
  key: string;
  topics: { topic: string; hash: string; key: string }[];
}

/** hil's wire helpers (hil.ts): protect with a topic key, open (unprotect) with one. */
export interface WireHelpers {
  protect(key: string, ts: number, payload: Uint8Array): Uint8Array;
  open(key: string, message: Uint8Array): Uint8Array | null;
}

/** A decrypted reading: the example's JSON (null when a message did not decrypt or parse). */
type Reading = { last?: string; [field: string]: unknown } | null;

/** What the example needs of the optional "serialport" package. */
interface SerialPortLike extends DeviceStream {
  once(event: 'open', listener: () => void): this;
  once(event: 'error', listener: (e: Error) => void): this;
  close(): void;
}
interface SerialPortModule {
  SerialPort: new (options: { path: string; baudRate: number }) => SerialPortLike;
}
/** Optional: named in a variable so that typechecking does not need it installed. */
const SERIALPORT_PACKAGE = 'serialport';

/** The example's description (examples/<name>/example.json) and its application's path. */
export function loadExample(name: string | undefined): Example {
  if (!/^[a-z0-9-]+$/.test(name || '')) throw new UsageError(`--example ${JSON.stringify(name)}: a folder name of examples/`);
  if (name === undefined) throw new UsageError('--example needs a name');
  let ex: unknown;
  try {
    ex = JSON.parse(readFileSync(join(ROOT, 'examples', name, 'example.json'), 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UsageError(`--example ${name}: ${err.code === 'ENOENT' ? 'no such example in examples/' : err.message}`);
  }
  if (!isExampleJson(ex)) throw new UsageError(`--example ${name}: examples/${name}/example.json lacks boards, app, publishes or receives`);
  return { ...ex, name, appFile: join(ROOT, 'examples', name, ex.app) };
}

/** The throwaway identity: both topics of the example, with keys; the board's transport. */
export function exampleDevice(board: string, ex: Example, brokerUrl: string): ExampleDevice {
  const key = () => randomBytes(32).toString('hex');
  const name = `hil-${ex.name}-${randomBytes(4).toString('hex')}`;
  const topics = [ex.publishes, ex.receives].map((topic) => ({ topic, hash: sha3_16(topic), key: key() }));
  const dev: ExampleDevice & { board: string } = {
    format: 'e4-device',
    version: 1,
    board,
    name,
    id: sha3_16(name),
    key: key(),
    topics,
    log: 'warn',
  };
  if (board === 'espruino-esp32') {
    dev.clock = 'untrusted';
    const wifi = process.env.E4_WIFI_SSID ? { ssid: process.env.E4_WIFI_SSID, password: process.env.E4_WIFI_PASSWORD } : undefined;
    dev.transport = wifi ? { mqtt: { url: brokerUrl }, wifi } : { mqtt: { url: brokerUrl } };
  } else {
    dev.clock = 'monotonic';
    dev.transport = { link: { kind: 'ble-uart' } };
  }
  return dev;
}

/** E4 protected message: timestamp (8, LE) | AES-SIV(key|key, AD = timestamp, payload). */
function sealFor(protect: WireHelpers['protect'], key: string, text: string): Buffer {
  return Buffer.from(protect(key, Math.floor(Date.now() / 1000), new TextEncoder().encode(text)));
}

/** A gateway link to an nRF52 board's console: tcp:// (dialled) or a serial port. */
async function linkToBoard(gw: Gateway, port: string, baud: number | undefined, log: (m: string) => void): Promise<() => unknown> {
  const kind = portKind(port);
  if (kind === 'tcp') {
    const m = /^tcp:\/\/([^:/]+):?(\d+)?/.exec(port);
    if (!m) throw new UsageError(`--port ${port}: expected tcp://host:port`); // portKind() said tcp
    const sock = net.connect(Number(m[2] || 23), m[1]);
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    gw.attach(sock, { name: port, consoleLine: 'E4.gateway()' });
    return () => sock.destroy();
  }
  if (kind === 'serial') {
    let serialport: unknown;
    try {
      serialport = await import(SERIALPORT_PACKAGE);
    } catch {
      throw new Error('--example on a serial port needs the "serialport" package (npm install serialport)');
    }
    const mod = serialport as Partial<SerialPortModule> | null;
    if (!mod || typeof mod.SerialPort !== 'function')
      throw new Error('--example on a serial port needs the "serialport" package: this one exports no SerialPort');
    const sp = new mod.SerialPort({ path: port, baudRate: baud || 9600 });
    await new Promise<void>((resolve, reject) => sp.once('open', resolve).once('error', reject));
    gw.attach(sp, { name: port, consoleLine: 'E4.gateway()' });
    return () => sp.close();
  }
  // Bluetooth LE: as `gateway --ble` links (the flash tool's connection has ended by now).
  const { bleUartLinks, loadNoble } = await import('../services/ble-uart.ts');
  const ble = bleUartLinks({ noble: await loadNoble(), addresses: [port], log: (m: string) => log(`hil: ${m}`) });
  ble.on('link', (stream, { name }) => gw.attach(stream, { name, consoleLine: 'E4.gateway()' }));
  await ble.start();
  return () => ble.stop();
}

/**
 * Runs the example; `tally` counts the checks (hil.ts's Tally), `helpers` = { protect, open }
 * from hil.ts. Resolves { readings } (the decrypted readings, in order).
 */
export async function runExample(
  opts: HilOptions,
  tally: Tally,
  { protect, open }: WireHelpers,
  log: (m: string) => void,
): Promise<{ readings: Reading[] }> {
  const ex = loadExample(opts.example);
  if (!ex.boards.includes(opts.board ?? ''))
    throw new UsageError(`--example ${ex.name} runs on ${ex.boards.join(', ')}, not ${opts.board}`);
  const board = opts.board;
  if (!board) throw new UsageError('--board is required');
  const port = opts.port;
  if (!port) throw new UsageError('--port is required');
  const broker = await startBroker(opts.broker ? { kind: 'external', url: opts.broker } : { kind: 'aedes', host: '127.0.0.1', port: 0 });
  const dev = exampleDevice(board, ex, broker.url);
  const keyOf = (t: string): string => {
    const found = dev.topics.find((x) => x.topic === t);
    if (!found) throw new Error(`no key for ${t}`);
    return found.key;
  };
  const cleanup: (() => unknown)[] = [() => broker.close()];
  const readings: Reading[] = [];
  try {
    const file = join(opts.state ? resolve(opts.state) : join(tmpdir(), 'e4-hil'), `example-${ex.name}.device.json`);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, JSON.stringify(dev), { mode: 0o600 });
    // The host side listens before the board starts publishing.
    const client = mqtt.connect(broker.url, { clientId: `hil-example-${randomBytes(4).toString('hex')}` });
    cleanup.unshift(() => client.end(true));
    await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
    await client.subscribeAsync(ex.publishes, { qos: 1 });
    const raw: Buffer[] = [];
    let wake: (() => void) | null = null;
    client.on('message', (topic, message) => {
      if (topic !== ex.publishes) return;
      raw.push(message);
      const plain = open(keyOf(ex.publishes), Uint8Array.from(message));
      let r: Reading;
      try {
        r = plain && (JSON.parse(new TextDecoder().decode(plain)) as Reading);
      } catch {
        r = null;
      }
      readings.push(r);
      if (wake) wake();
    });
    const f = await flash(
      { board, port, device: file, app: ex.appFile, timeout: opts.timeout, verbose: opts.verbose, baud: opts.baud },
      log,
    );
    tally.check(
      `example ${ex.name}: flashed as the application (.bootcde) with a throwaway identity`,
      true,
      `(${f.free} bytes of Storage free)`,
    );
    if (opts.board !== 'espruino-esp32') {
      const gw = new Gateway({ broker: broker.url, codec: loadImageCodec() });
      await gw.start();
      cleanup.unshift(() => gw.stop());
      cleanup.unshift(await linkToBoard(gw, port, opts.baud, log));
    }
    const waitFor = async (pred: (r: Reading) => boolean, ms: number): Promise<Reading | undefined> => {
      const until = Date.now() + ms;
      while (!readings.some(pred) && Date.now() < until) await new Promise<void>((r) => ((wake = r), setTimeout(r, 500)));
      wake = null;
      return readings.find(pred);
    };
    const first = await waitFor((r) => r !== null, 60000);
    tally.check(
      `example ${ex.name}: its readings on ${ex.publishes} decrypt with the topic key`,
      !!first && readings.every((r) => r !== null),
      first ? `(${JSON.stringify(first)})` : `${raw.length} message(s), none decrypted`,
    );
    if (!first) return { readings };
    const leaked = raw.some((m) => m.includes(Buffer.from(JSON.stringify(first))) || m.includes(Buffer.from('"n":')));
    tally.check(`example ${ex.name}: no plaintext on the broker`, !leaked);
    const alert = `hil alert ${randomBytes(3).toString('hex')}`;
    await client.publishAsync(ex.receives, sealFor(protect, keyOf(ex.receives), alert), { qos: 1 });
    const got = await waitFor((r) => !!r && r.last === alert, 30000);
    tally.check(
      `example ${ex.name}: received the message protected for it on ${ex.receives}`,
      !!got,
      got ? `(${JSON.stringify(got)})` : 'no reading reported it',
    );
    log(`hil: example ${ex.name}: ${readings.length} readings decrypted`);
    return { readings };
  } finally {
    for (const c of cleanup) await Promise.resolve(c()).catch(() => {});
  }
}
