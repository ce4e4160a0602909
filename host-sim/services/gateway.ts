/**
 * The gateway: bridges the framed link of devices that cannot reach the broker themselves
 * (nRF52 boards over BLE UART or a serial line, see link.ts and docs/link.md) to an MQTT broker.
 * It holds no keys and runs no E4 client: it moves the devices' protected bytes between the link
 * and the broker unchanged, so a message stays end to end across both hops.
 *
 * One MQTT connection serves every link; a message from the broker goes to each link whose
 * subscriptions match its topic, as a PUBLISH frame the device acknowledges (retransmitted
 * otherwise). A device's PUBLISH is acknowledged once the broker has it (QoS 1 PUBACK).
 *
 *   const gw = new Gateway({ broker: url, codec: linkCodec(E4) });
 *   await gw.start();
 *   gw.attach(stream, { name: 'puck-1' });   // stream: write(bytes), 'data', 'close' events
 *
 * As a command:
 *   node host-sim/services/gateway.ts --broker URL --serial /dev/ttyACM0 [--baud 115200] [--console-line] [--image FILE]
 *   node host-sim/services/gateway.ts --broker URL --listen 127.0.0.1:7000    (byte-stream links over TCP)
 *   node host-sim/services/gateway.ts --broker URL --connect tcp://127.0.0.1:2323  (an Espruino console over TCP)
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import type { IClientPublishOptions } from 'mqtt';
import type { Frame, FrameDecoder } from '../../firmware/link/frame.ts';
import { LINK_IMAGE } from '../shared/image.ts';
import { linkCodec, type ByteStream, type LinkCodec } from './link.ts';
import { MqttTransport, mqttClientId, topicMatches } from '../shared/mqtt-transport.ts';
import { packageVersion, runIfMain, stopOnSignal, useCallerFolder } from '../shared/cli.ts';
import { bleUartLinks, loadNoble } from './ble-uart.ts';

type QoS = NonNullable<IClientPublishOptions['qos']>;

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** A device link as attach() takes it: any byte stream with write() and 'data'/'close' events. */
export interface DeviceStream extends ByteStream {
  /** A full EventEmitter (one with once()) also reports errors: the link is then dropped. */
  once?(event: 'error', listener: (e: Error) => void): unknown;
}

/** Events of a Gateway, and what each carries. */
export interface GatewayEvents {
  /** A device said who it is (id: its client id in hex, null if it sent none). */
  hello: [{ link: string; id: string | null }];
  /** Bytes from a device that were not a valid frame. */
  drop: [{ link: string; reason: string; bytes: number }];
  /** A message for a device that was never acknowledged. */
  lost: [{ link: string; topic: string }];
  /** A subscription or publication the broker refused (never fatal). */
  error: [Error];
  /** The broker connection went away or came back. */
  broker: [{ level: string; text: string }];
  attach: [{ link: string }];
  detach: [{ link: string; id: string | null }];
}

/** Counters of one device link. */
export interface LinkCounters {
  framesIn: number;
  framesOut: number;
  published: number;
  duplicates: number;
  delivered: number;
  retransmits: number;
  lost: number;
}

/** A message toward the device, waiting for its ACK. */
interface PendingDelivery {
  tries: number;
  timer: NodeJS.Timeout | undefined;
}

/** The device's last PUBLISH, to recognise its retransmission. */
interface LastPublish {
  seq: number;
  topic: string;
  payload: Buffer;
  /** The broker answered (status: 0 published, 1 refused). */
  done: boolean;
  status: number;
}

/** The frame codec from the built link image (module.exports of dist/link.js). */
export function loadImageCodec(file: string = LINK_IMAGE): LinkCodec {
  const E4 = createRequire(import.meta.url)(file);
  return linkCodec(E4);
}

export class Link {
  gw: Gateway;
  stream: DeviceStream;
  name: string;
  /** The device's client id (hex) from its HELLO. */
  id: string | null;
  filters: Set<string>;
  seq: number;
  pending: Map<number, PendingDelivery>;
  stats: LinkCounters;
  lastPublish: LastPublish | null;
  decoder: FrameDecoder;
  onData: (chunk: Uint8Array) => void;
  onClose: () => void;

  constructor(gw: Gateway, stream: DeviceStream, name: string) {
    this.gw = gw;
    this.stream = stream;
    this.name = name;
    this.id = null;
    this.filters = new Set();
    this.seq = 0;
    this.pending = new Map(); // seq -> { timer, tries }
    this.stats = { framesIn: 0, framesOut: 0, published: 0, duplicates: 0, delivered: 0, retransmits: 0, lost: 0 };
    this.lastPublish = null;
    this.decoder = gw.codec.frameDecoder((f) => this.onFrame(f), {
      maxPayload: gw.maxPayload,
      onDrop: (reason, n) => gw.emit('drop', { link: this.name, reason, bytes: n }),
    });
    this.onData = (chunk) => this.decoder.push(chunk);
    this.onClose = () => gw.detach(this);
    stream.on('data', this.onData);
    stream.on('close', this.onClose);
    if (stream.on && stream.once) stream.on('error', () => gw.detach(this));
  }

  send(type: number, seq: number, topic: string, payload?: Uint8Array | null): Uint8Array {
    const frame = this.gw.codec.encodeFrame(type, seq, topic, payload || null);
    this.stats.framesOut++;
    this.stream.write(Buffer.from(frame.buffer, frame.byteOffset, frame.length));
    return frame;
  }

  ack(seq: number, status = 0): void {
    if (seq) this.send(this.gw.codec.ACK, seq, '', new Uint8Array([status]));
  }

  /** A broker message for this device: PUBLISH with a sequence number, retransmitted until ACKed. */
  deliver(topic: string, payload: Uint8Array): void {
    const c = this.gw.codec;
    this.seq = (this.seq % 255) + 1;
    const seq = this.seq;
    const old = this.pending.get(seq);
    if (old) {
      clearTimeout(old.timer);
      this.stats.lost++;
    }
    const p: PendingDelivery = { tries: 0, timer: undefined };
    const attempt = () => {
      if (p.tries++ > this.gw.retries) {
        this.pending.delete(seq);
        this.stats.lost++;
        this.gw.emit('lost', { link: this.name, topic });
        return;
      }
      if (p.tries > 1) this.stats.retransmits++;
      this.send(c.PUBLISH, seq, topic, payload);
      p.timer = setTimeout(attempt, this.gw.ackTimeoutMs);
    };
    this.pending.set(seq, p);
    this.stats.delivered++;
    attempt();
  }

  onFrame(f: Frame): void {
    const c = this.gw.codec;
    this.stats.framesIn++;
    switch (f.type) {
      case c.HELLO:
        this.id = f.payload.length === 16 ? toHex(f.payload) : null;
        this.gw.emit('hello', { link: this.name, id: this.id });
        this.ack(f.seq);
        break;
      case c.SUBSCRIBE:
        this.gw
          .subscribe(this, f.topic)
          .then(() => this.ack(f.seq, 0))
          .catch((e) => {
            this.gw.emit('error', e);
            this.ack(f.seq, 1);
          });
        break;
      case c.UNSUBSCRIBE:
        this.gw.unsubscribe(this, f.topic).catch(() => {});
        this.ack(f.seq, 0);
        break;
      case c.PUBLISH: {
        // A retransmission (its ACK was lost or is still to come) is not published twice: same
        // sequence number and same bytes as the last PUBLISH of this link.
        const last = this.lastPublish;
        if (f.seq && last && last.seq === f.seq && last.topic === f.topic && Buffer.compare(last.payload, Buffer.from(f.payload)) === 0) {
          this.stats.duplicates = (this.stats.duplicates || 0) + 1;
          if (last.done) this.ack(f.seq, last.status);
          break;
        }
        const entry: LastPublish = { seq: f.seq, topic: f.topic, payload: Buffer.from(f.payload), done: false, status: 0 };
        this.lastPublish = entry;
        this.gw
          .publish(this, f.topic, f.payload)
          .then(() => {
            this.stats.published++;
            entry.done = true;
            this.ack(f.seq, 0);
          })
          .catch((e) => {
            this.gw.emit('error', e);
            entry.done = true;
            entry.status = 1;
            this.lastPublish = null;
            this.ack(f.seq, 1);
          });
        break;
      }
      case c.ACK: {
        const p = this.pending.get(f.seq);
        if (p) {
          clearTimeout(p.timer);
          this.pending.delete(f.seq);
        }
        break;
      }
      default:
        this.gw.emit('drop', { link: this.name, reason: `unknown frame type ${f.type}`, bytes: 0 });
    }
  }

  close(): void {
    this.stream.off('data', this.onData);
    this.stream.off('close', this.onClose);
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}

export interface GatewayOptions {
  /** The MQTT broker's URL (required). */
  broker?: string;
  codec?: LinkCodec | null;
  qos?: QoS;
  ackTimeoutMs?: number;
  retries?: number;
  maxPayload?: number;
  name?: string;
}

export interface AttachOptions {
  name?: string;
  consoleLine?: string | null;
}

export class Gateway extends EventEmitter<GatewayEvents> {
  brokerUrl: string;
  codec: LinkCodec;
  qos: QoS;
  ackTimeoutMs: number;
  retries: number;
  maxPayload: number;
  name: string;
  links: Set<Link>;
  filters: Map<string, Set<Link>>;
  mqtt: MqttTransport | null;
  stats: { up: number; down: number; links: number };

  /**
   * broker: MQTT URL. codec: linkCodec(E4Link) (default: from dist/link.js). qos: toward the broker
   * (default 1). ackTimeoutMs / retries: retransmission toward devices. maxPayload: largest frame
   * payload accepted from a device (default 1024).
   */
  constructor({
    broker,
    codec = null,
    qos = 1,
    ackTimeoutMs = 1000,
    retries = 3,
    maxPayload = 1024,
    name = 'gateway',
  }: GatewayOptions = {}) {
    super();
    if (!broker) throw new Error('gateway: a broker URL is required');
    this.brokerUrl = broker;
    this.codec = codec || loadImageCodec();
    this.qos = qos;
    this.ackTimeoutMs = ackTimeoutMs;
    this.retries = retries;
    this.maxPayload = maxPayload;
    this.name = name;
    this.links = new Set();
    this.filters = new Map(); // filter -> Set of links
    this.mqtt = null;
    this.stats = { up: 0, down: 0, links: 0 };
    this.on('error', () => {}); // reported through the event, never fatal
  }

  async start(): Promise<this> {
    // Reconnects with back-off; each disconnect and reconnect is a 'broker' event (and logged by
    // the command). Publications from devices made meanwhile wait in the MQTT client's queue.
    this.mqtt = new MqttTransport(this.brokerUrl, {
      clientId: mqttClientId('gw', this.name),
      reconnect: true,
      log: (level: string, text: string) => this.emit('broker', { level, text }),
    });
    this.mqtt.onMessage = (topic: string, payload: Buffer) => this.fromBroker(topic, payload);
    await this.mqtt.open();
    return this;
  }

  async stop(): Promise<void> {
    for (const l of [...this.links]) this.detach(l);
    if (this.mqtt) await this.mqtt.close();
    this.mqtt = null;
  }

  /**
   * Adds a device link (any byte stream with write() and 'data'/'close' events). `consoleLine`:
   * text written first, for a link that starts as the board's console (Espruino's BLE UART: the
   * Puck.js image switches to frames on the line "E4.gateway()", see boards/espruino/link.ts).
   */
  attach(stream: DeviceStream, { name = `link-${this.stats.links + 1}`, consoleLine = null }: AttachOptions = {}): Link {
    if (consoleLine) stream.write(Buffer.from('\x10' + consoleLine + '\n'));
    const link = new Link(this, stream, name);
    this.links.add(link);
    this.stats.links++;
    this.emit('attach', { link: name });
    return link;
  }

  detach(link: Link): void {
    if (!this.links.delete(link)) return;
    link.close();
    for (const f of [...link.filters]) this.unsubscribe(link, f).catch(() => {});
    this.emit('detach', { link: link.name, id: link.id });
  }

  async subscribe(link: Link, filter: string): Promise<void> {
    link.filters.add(filter);
    let set = this.filters.get(filter);
    if (!set) {
      set = new Set();
      this.filters.set(filter, set);
    }
    const first = set.size === 0;
    set.add(link);
    if (!first) return;
    if (!this.mqtt) throw new Error('gateway stopped');
    await this.mqtt.subscribe(filter, this.qos);
  }

  async unsubscribe(link: Link, filter: string): Promise<void> {
    link.filters.delete(filter);
    const set = this.filters.get(filter);
    if (!set) return;
    set.delete(link);
    if (set.size === 0) {
      this.filters.delete(filter);
      if (this.mqtt && this.mqtt.connected) await this.mqtt.unsubscribe(filter);
    }
  }

  async publish(link: Link, topic: string, payload: Uint8Array): Promise<void> {
    if (!this.mqtt) throw new Error('gateway stopped');
    await this.mqtt.publish(topic, Buffer.from(payload.buffer, payload.byteOffset, payload.length), this.qos);
    this.stats.up++;
  }

  fromBroker(topic: string, payload: Buffer): void {
    if (payload.length > 65535) return;
    const targets = new Set<Link>();
    for (const [filter, set] of this.filters) if (topicMatches(filter, topic)) for (const l of set) targets.add(l);
    for (const l of targets) {
      l.deliver(topic, payload);
      this.stats.down++;
    }
  }
}

// --- command line ----------------------------------------------------------------------------

const USAGE = `usage: node host-sim/services/gateway.ts --broker URL (--ble ADDRESS | --serial PATH [--baud N] | --listen HOST:PORT | --connect tcp://HOST:PORT) [--console-line] [--image FILE]
  --broker URL        the MQTT broker, mqtt://host:port
  --ble ADDRESS       a Puck.js-class device over Bluetooth LE UART (repeatable): connected when
                      seen, again after every disconnect (back-off 1 s to 30 s); docs/gateway-ble.md
  --serial PATH       a device's serial port (repeatable; needs the "serialport" package)
  --baud N            serial speed (default 115200)
  --listen HOST:PORT  accept byte-stream links over TCP (one device per connection)
  --connect tcp://HOST:PORT
                      dial an Espruino console over TCP (repeatable; e.g. the Linux build's
                      --telnet console), send "E4.gateway()" on it, dial again when it ends
  --console-line      first send "E4.gateway()" on each link (an Espruino console, e.g. a BLE UART bridge)
  --image FILE        the image whose frame codec to use (default dist/link.js)
  --version           print the version`;

/** The gateway's command line. */
export interface GatewayArgs {
  broker?: string;
  serial: string[];
  ble: string[];
  baud: number;
  listen?: { host: string; port: number };
  connect: { host: string; port: number }[];
  consoleLine?: string;
  image?: string;
  help?: boolean;
  version?: boolean;
}

/** What the gateway uses of the optional "serialport" package. */
interface SerialPortStream extends DeviceStream {
  once(event: 'open', listener: () => void): this;
  once(event: 'error', listener: (e: Error) => void): this;
}

interface SerialPortModule {
  SerialPort: new (options: { path: string; baudRate: number }) => SerialPortStream;
}

/** Optional: named in a variable so that typechecking does not need it installed. */
const SERIALPORT_PACKAGE = 'serialport';

function isSerialPortModule(m: unknown): m is SerialPortModule {
  return typeof m === 'object' && m !== null && 'SerialPort' in m && typeof m.SerialPort === 'function';
}

export function parseGatewayArgs(argv: string[]): GatewayArgs {
  const o: GatewayArgs = { serial: [], ble: [], connect: [], baud: 115200 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--broker') o.broker = val();
    else if (a === '--serial') o.serial.push(val());
    else if (a === '--ble') {
      const addr = val();
      if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(addr)) throw new Error(`--ble ${addr}: expected a Bluetooth address aa:bb:cc:dd:ee:ff`);
      o.ble.push(addr);
    } else if (a === '--console-line') o.consoleLine = 'E4.gateway()';
    else if (a === '--version') o.version = true;
    else if (a === '--baud') {
      o.baud = Number(val());
      if (!Number.isInteger(o.baud) || o.baud <= 0) throw new Error('--baud takes a positive integer');
    } else if (a === '--listen') {
      const m = /^(.*):(\d+)$/.exec(val());
      if (!m || Number(m[2]) > 65535) throw new Error('--listen takes HOST:PORT');
      o.listen = { host: m[1] || '127.0.0.1', port: Number(m[2]) };
    } else if (a === '--connect') {
      const m = /^tcp:\/\/([^:/\s]+):(\d+)\/?$/.exec(val());
      if (!m || Number(m[2]) > 65535) throw new Error('--connect takes tcp://HOST:PORT');
      o.connect.push({ host: m[1], port: Number(m[2]) });
    } else if (a === '--image') o.image = val();
    else if (a === '-h' || a === '--help') o.help = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (o.help || o.version) return o;
  if (!o.broker) throw new Error('--broker is required');
  if (!o.serial.length && !o.listen && !o.ble.length && !o.connect.length)
    throw new Error('give --ble ADDRESS, --serial PATH, --listen HOST:PORT or --connect tcp://HOST:PORT');
  return o;
}

/** Keeps a link to an Espruino console over TCP: dials it, switches it to frames with
 * E4.gateway() (it is a console, as BLE UART is), and dials again after it ends (1 s, doubling up
 * to 30 s while it fails). */
function dialConsole(gw: Gateway, { host, port }: { host: string; port: number }, say: (line: string) => void): void {
  const name = `tcp://${host}:${port}`;
  let wait = 1000;
  const dial = () => {
    const sock = net.connect(port, host);
    sock.once('connect', () => {
      wait = 1000;
      say(`${name}: connected`);
      gw.attach(sock, { name, consoleLine: 'E4.gateway()' });
    });
    sock.once('error', (e: NodeJS.ErrnoException) => say(`${name}: ${e.code === 'ECONNREFUSED' ? 'connection refused' : e.message}`));
    sock.once('close', () => {
      say(`${name}: closed, dialling again in ${wait / 1000} s`);
      setTimeout(dial, wait).unref();
      wait = Math.min(wait * 2, 30000);
    });
  };
  dial();
}

async function main(argv: string[]): Promise<void> {
  // Under `npm run gateway` relative paths on the command line are the caller's (INIT_CWD).
  useCallerFolder('gateway');
  let o: GatewayArgs;
  try {
    o = parseGatewayArgs(argv);
  } catch (e) {
    process.stderr.write(`gateway: ${(e as Error).message} (see node host-sim/services/gateway.ts --help)\n`);
    process.exit(2);
  }
  if (o.help) return void process.stdout.write(USAGE + '\n');
  if (o.version) return void process.stdout.write(packageVersion() + '\n');
  const gw = new Gateway({ broker: o.broker, codec: loadImageCodec(o.image || LINK_IMAGE) });
  const say = (s: string) => process.stderr.write(`gateway: ${s}\n`);
  gw.on('hello', (e) => say(`${e.link}: device ${e.id || '(no id)'}`));
  gw.on('detach', (e) => say(`${e.link}: gone`));
  gw.on('drop', (e) => say(`${e.link}: dropped ${e.bytes} bytes (${e.reason})`));
  gw.on('error', (e) => say(`error: ${e.message}`));
  gw.on('broker', (e) => say(e.text));
  await gw.start();
  for (const path of o.serial) {
    let serialport: unknown;
    try {
      serialport = await import(SERIALPORT_PACKAGE);
    } catch {
      throw new Error('--serial needs the "serialport" package (npm install serialport)');
    }
    if (!isSerialPortModule(serialport))
      throw new Error('--serial needs the "serialport" package (npm install serialport): this one exports no SerialPort');
    const port = new serialport.SerialPort({ path, baudRate: o.baud });
    await new Promise<void>((resolve, reject) => port.once('open', resolve).once('error', reject));
    gw.attach(port, { name: path, consoleLine: o.consoleLine });
    say(`serial ${path} at ${o.baud} baud`);
  }
  if (o.ble.length) {
    const noble = await loadNoble();
    const ble = bleUartLinks({ noble, addresses: o.ble, log: say });
    // The device's console moves to the link on E4.gateway(): always sent over BLE.
    ble.on('link', (stream, { name }) => gw.attach(stream, { name, consoleLine: 'E4.gateway()' }));
    await ble.start();
    const stopGateway = gw.stop.bind(gw);
    gw.stop = async () => {
      await ble.stop();
      await stopGateway();
    };
  }
  const listen = o.listen;
  if (listen) {
    const server = net.createServer((sock) =>
      gw.attach(sock, { name: `${sock.remoteAddress}:${sock.remotePort}`, consoleLine: o.consoleLine }),
    );
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(listen.port, listen.host, resolve));
    const addr = server.address() as AddressInfo; // a TCP listener: never a pipe name
    process.stdout.write(`listening tcp://${addr.address}:${addr.port}\n`);
  }
  for (const c of o.connect) dialConsole(gw, c, say);
  say(`bridging to ${o.broker}`);
  stopOnSignal(() => gw.stop());
}

runIfMain(import.meta.url, 'gateway', main);
