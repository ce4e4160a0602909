/**
 * The local protection proxy (E4's "local protection proxy" integration). An unmodified MQTT
 * application connects to the proxy's own MQTT listener and publishes and subscribes in
 * plaintext; the proxy is an E4 client with its own identity (a device.json from the C2) that
 * protects what the application publishes and unprotects what arrives from the real broker.
 * Nothing unprotected ever goes upstream: a publication on a topic the proxy holds no key for is
 * dropped (and counted), never forwarded.
 *
 *   legacy app --plaintext--> proxy (local aedes) --E4--> broker --E4--> proxy --plaintext--> legacy app
 *
 * Local semantics are those of a broker: applications connected to the same proxy also see each
 * other's publications directly; the copy echoed back by the upstream broker is recognised and
 * not delivered twice. Commands from the C2 (on the proxy's control topic) are run, never shown.
 *
 * QoS holds end to end: a local QoS 1/2 publication is acknowledged only once the upstream broker
 * acknowledged its protected copy. When the broker goes away the proxy reconnects with back-off
 * (logging each disconnect and reconnect) and the pending publications wait for it; an
 * application whose publication could not be forwarded is disconnected without an
 * acknowledgement, so its MQTT client sends it again.
 *
 * As a command: node host-sim/services/proxy.ts --device proxy.json [--broker URL] [--listen HOST:PORT]
 *               [--flash FILE] [--clock MODE]
 */
import { createHash } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import type { Aedes, PublishPacket } from 'aedes';
import type { IClientPublishOptions } from 'mqtt';
import type { DeviceFile } from '../../boards/espruino/boot.ts';
import type { E4Error } from '../../firmware/errors.ts';
import { SimDevice } from '../shared/device.ts';
import { readDeviceConfig } from '../shared/device-config.ts';
import { flashStore, systemTime } from '../shared/hal.ts';
import { loadImage } from '../shared/image.ts';
import { MqttTransport, mqttClientId, topicMatches } from '../shared/mqtt-transport.ts';
import { packageVersion, runIfMain, stopOnSignal, useCallerFolder } from '../shared/cli.ts';

const ECHO_MEMORY = 1024;

type QoS = NonNullable<IClientPublishOptions['qos']>;

/** Where the proxy's diagnostics go: level ('info', 'warn', 'error') and one line of text. */
export type ProxyLog = (level: string, text: string) => void;

export interface ProxyOptions {
  /** The proxy's E4 identity: a device.json object. */
  config: DeviceFile;
  image?: ReturnType<typeof loadImage> | null;
  /** The upstream broker's URL (required). */
  broker?: string;
  listen?: { host?: string; port?: number };
  store?: ReturnType<typeof flashStore> | null;
  /** A clock spec (shared/hal.ts parseClock). */
  clock?: string;
  world?: ReturnType<typeof systemTime>;
  log?: ProxyLog | null;
  qos?: QoS;
}

/** What the proxy did with the publications it saw. */
export interface ProxyStats {
  /** Local publications protected and sent upstream. */
  protected: number;
  /** Upstream messages unprotected and delivered locally. */
  unprotected: number;
  /** Publications not forwarded (either way), by reason in droppedBy. */
  dropped: number;
  droppedBy: Record<string, number>;
  /** C2 commands run. */
  commands: number;
}

/** An E4 failure thrown in the device's realm (instanceof does not cross realms; the name does). */
function isE4Error(e: unknown): e is E4Error {
  return typeof e === 'object' && e !== null && 'name' in e && e.name === 'E4Error';
}

/** aedes reports a refused subscription with the SUBACK failure code 128, which its QoS type leaves out. */
const refused = (qos: number): boolean => qos === 128;

export class ProtectionProxy {
  config: DeviceFile;
  image: ReturnType<typeof loadImage>;
  brokerUrl: string;
  listenHost: string;
  listenPort: number;
  log: ProxyLog;
  qos: QoS;
  subs: Map<string, number>;
  clientSubs: Map<string, Set<string>>;
  echo: Set<string>;
  echoOrder: string[];
  stats: ProxyStats;
  device: SimDevice;
  /** The local broker (from start()). */
  local: Aedes | null = null;
  server: net.Server | null = null;
  sockets: Set<net.Socket> = new Set();

  /**
   * - config: the proxy's device.json object; image: loadImage() result (default dist/e4.js).
   * - broker: upstream URL. listen: { host, port } of the local listener (default 127.0.0.1:0).
   * - store: a flashStore (default in memory; give flashStore({ file }) to keep keys across runs).
   * - clock: the proxy's clock (default trusted: it runs on a host).
   */
  constructor({
    config,
    image = null,
    broker,
    listen = {},
    store = null,
    clock = 'trusted',
    world = systemTime(),
    log = null,
    qos = 1,
  }: ProxyOptions) {
    if (!broker) throw new Error('proxy: an upstream broker URL is required');
    this.config = config;
    this.image = image || loadImage();
    this.brokerUrl = broker;
    this.listenHost = listen.host || '127.0.0.1';
    this.listenPort = listen.port || 0;
    this.log = log || (() => {});
    this.qos = qos;
    this.subs = new Map(); // upstream filter -> number of local subscriptions
    this.clientSubs = new Map(); // local client id -> Set of filters
    this.echo = new Set(); // sha256 of protected messages the proxy sent, to skip their echo
    this.echoOrder = [];
    this.stats = { protected: 0, unprotected: 0, dropped: 0, droppedBy: {}, commands: 0 };
    this.device = new SimDevice({
      config,
      image: this.image,
      store: store || flashStore(),
      clock,
      world,
      // A service: it reconnects (with back-off, logged) instead of giving up on its broker.
      network: (dev: SimDevice) =>
        new MqttTransport(broker, {
          clientId: mqttClientId('proxy', dev.name),
          reconnect: true,
          log: (level: string, text: string) => this.log(level, `proxy: ${text}`),
        }),
      qos,
      filter: (topic: string, bytes: Uint8Array) => {
        const h = digest(bytes);
        if (this.echo.has(h)) return false;
        return true;
      },
    });
    this.device.on('data', (ev: { topic: string; payload: Buffer }) => this._toLocal(ev));
    this.device.on('command', () => this.stats.commands++);
    this.device.on('rejected', (ev: { topic: string; result: string }) =>
      this._drop(ev.result, `upstream message on ${ev.topic} rejected: ${ev.result}`),
    );
  }

  get url(): string {
    return `mqtt://${this.listenHost}:${this.listenPort}`;
  }

  async start(): Promise<this> {
    await this.device.start();
    const { Aedes } = await import('aedes');
    // Forwarding happens while aedes authorises a local publication, before it acknowledges it:
    // the PUBACK (or PUBREC) then means the protected copy reached the upstream broker.
    const local = await Aedes.createBroker({
      drainTimeout: 30000,
      authorizePublish: (client, packet, done) => {
        this._fromLocal(packet).then(
          () => done(null),
          (e) => {
            this.log(
              'error',
              `proxy: publication on ${packet.topic} not forwarded (${e.message}): not acknowledged, the application will send it again`,
            );
            done(e);
          },
        );
      },
    });
    this.local = local;
    local.on('subscribe', (subscriptions, client) => {
      for (const s of subscriptions)
        if (!refused(s.qos)) this._addSub(client.id, s.topic).catch((e) => this.log('error', `proxy: subscribe ${s.topic}: ${e.message}`));
    });
    local.on('unsubscribe', (topics, client) => {
      for (const t of topics) this._removeSub(client.id, t).catch(() => {});
    });
    local.on('clientDisconnect', (client) => {
      const set = this.clientSubs.get(client.id);
      if (set) for (const t of [...set]) this._removeSub(client.id, t).catch(() => {});
    });
    const server = net.createServer(local.handle);
    this.server = server;
    this.sockets = new Set();
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenPort, this.listenHost, resolve);
    });
    this.listenPort = (server.address() as AddressInfo).port; // a TCP listener: never a pipe name
    this.log('info', `proxy ${this.device.name} (${this.device.id}) listening ${this.url}, upstream ${this.brokerUrl}`);
    return this;
  }

  async stop(): Promise<void> {
    const { server, local } = this;
    if (server && local) {
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => local.close(() => r()));
      this.server = null;
    }
    await this.device.stop();
  }

  _drop(reason: string, text: string): void {
    this.stats.dropped++;
    this.stats.droppedBy[reason] = (this.stats.droppedBy[reason] || 0) + 1;
    this.log('warn', text);
  }

  async _fromLocal(packet: PublishPacket): Promise<void> {
    const topic = packet.topic;
    if (topic.startsWith('$')) return;
    if (topic.startsWith('e4/')) return this._drop('CONTROL_TOPIC', `local publication on control topic ${topic} not forwarded`);
    let bytes;
    try {
      bytes = this.device.protect(topic, packet.payload);
    } catch (e) {
      if (isE4Error(e)) return this._drop(e.result, `local publication on ${topic} not forwarded: ${e.result}`);
      throw e;
    }
    this._remember(bytes);
    this.stats.protected++;
    const upstream = this.device.transport;
    if (!upstream) throw new Error('the proxy is stopping');
    // The network of the proxy's device (constructor): an MQTT connection, which keeps the retain flag.
    if (!(upstream instanceof MqttTransport)) throw new Error('proxy: the upstream transport is not MQTT');
    await upstream.publish(topic, bytes, this.qos, !!packet.retain);
  }

  _toLocal(ev: { topic: string; payload: Buffer }): void {
    // Deliver only topics some local client subscribed to (a wildcard upstream may bring more).
    let wanted = false;
    for (const f of this.subs.keys()) if (topicMatches(f, ev.topic)) wanted = true;
    if (!wanted || !this.local) return; // (subscriptions come from local clients: it is there)
    this.stats.unprotected++;
    this.local.publish({ cmd: 'publish', topic: ev.topic, payload: ev.payload, qos: this.qos, retain: false, dup: false }, () => {});
  }

  _remember(bytes: Uint8Array): void {
    const h = digest(bytes);
    this.echo.add(h);
    this.echoOrder.push(h);
    const oldest = this.echoOrder.length > ECHO_MEMORY ? this.echoOrder.shift() : undefined;
    if (oldest !== undefined) this.echo.delete(oldest);
  }

  async _addSub(clientId: string, filter: string): Promise<void> {
    if (filter.startsWith('$')) return;
    let set = this.clientSubs.get(clientId);
    if (!set) this.clientSubs.set(clientId, (set = new Set()));
    if (set.has(filter)) return;
    set.add(filter);
    const n = this.subs.get(filter) || 0;
    this.subs.set(filter, n + 1);
    if (n === 0) await this.device.subscribe(filter);
  }

  async _removeSub(clientId: string, filter: string): Promise<void> {
    const set = this.clientSubs.get(clientId);
    if (!set || !set.delete(filter)) return;
    if (!set.size) this.clientSubs.delete(clientId);
    const n = (this.subs.get(filter) || 1) - 1;
    if (n > 0) return void this.subs.set(filter, n);
    this.subs.delete(filter);
    if (this.device.isOn) await this.device.unsubscribe(filter);
  }
}

function digest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

// --- command line ----------------------------------------------------------------------------

const USAGE = `usage: node host-sim/services/proxy.ts --device FILE --broker URL [--listen HOST:PORT] [--flash FILE] [--clock MODE] [--image FILE]
  --device FILE      the proxy's E4 identity: a device.json written by the C2 (npm run c2 -- add-device)
  --broker URL       the real broker, mqtt://host:port
  --listen HOST:PORT where legacy applications connect (default 127.0.0.1:1884; port 0 = any)
  --flash FILE       keep the proxy's keys in this file across restarts (default: in memory).
                     The file (mode 0600) holds them as a device's flash does, unsealed: the
                     proxy restarts unattended, so a sealing passphrase would have to sit beside
                     it. Keep it on an encrypted volume readable by the proxy's user only.
  --clock MODE       trusted (default), untrusted, skewed:<s>, monotonic, none
  --image FILE       the E4 image to run (default dist/e4.js)`;

/** The proxy's command line. */
export interface ProxyArgs {
  device?: string;
  broker?: string;
  listen: { host: string; port: number };
  flash?: string;
  clock: string;
  image?: string;
  help?: boolean;
  version?: boolean;
}

export function parseProxyArgs(argv: string[]): ProxyArgs {
  const o: ProxyArgs = { listen: { host: '127.0.0.1', port: 1884 }, clock: 'trusted' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--device') o.device = val();
    else if (a === '--broker') o.broker = val();
    else if (a === '--flash') o.flash = val();
    else if (a === '--clock') o.clock = val();
    else if (a === '--image') o.image = val();
    else if (a === '--listen') {
      const m = /^(.*):(\d+)$/.exec(val());
      if (!m || Number(m[2]) > 65535) throw new Error('--listen takes HOST:PORT');
      o.listen = { host: m[1] || '127.0.0.1', port: Number(m[2]) };
    } else if (a === '-h' || a === '--help') o.help = true;
    else if (a === '--version') o.version = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (o.help || o.version) return o;
  if (!o.device) throw new Error('--device is required');
  if (!o.broker) throw new Error('--broker is required');
  return o;
}

async function main(argv: string[]): Promise<void> {
  // Under `npm run proxy` relative paths on the command line are the caller's (INIT_CWD).
  useCallerFolder('proxy');
  let o: ProxyArgs;
  try {
    o = parseProxyArgs(argv);
  } catch (e) {
    process.stderr.write(`proxy: ${(e as Error).message} (see node host-sim/services/proxy.ts --help)\n`);
    process.exit(2);
  }
  if (o.help) return void process.stdout.write(USAGE + '\n');
  if (o.version) return void process.stdout.write(packageVersion() + '\n');
  const config = readDeviceConfig(o.device!); // parseProxyArgs requires --device unless --help or --version
  const proxy = new ProtectionProxy({
    config,
    image: o.image ? loadImage(o.image) : null,
    broker: o.broker,
    listen: o.listen,
    clock: o.clock,
    store: o.flash ? flashStore({ file: o.flash }) : null,
    log: (level, text) => void process.stderr.write(`[${level}] ${text}\n`),
  });
  await proxy.start();
  process.stdout.write(`listening ${proxy.url}\n`);
  stopOnSignal(() => proxy.stop());
}

runIfMain(import.meta.url, 'proxy', main);
