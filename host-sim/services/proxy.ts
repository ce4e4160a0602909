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
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { SimDevice } from '../shared/device.ts';
import { flashStore, systemTime } from '../shared/hal.ts';
import { loadImage } from '../shared/image.ts';
import { MqttTransport, mqttClientId, topicMatches } from '../shared/mqtt-transport.ts';
import { packageVersion, runIfMain, stopOnSignal } from '../shared/cli.ts';

const ECHO_MEMORY = 1024;

export class ProtectionProxy {
  /**
   * - config: the proxy's device.json object; image: loadImage() result (default dist/e4.js).
   * - broker: upstream URL. listen: { host, port } of the local listener (default 127.0.0.1:0).
   * - store: a flashStore (default in memory; give flashStore({ file }) to keep keys across runs).
   * - clock: the proxy's clock (default trusted: it runs on a host).
   */
  constructor({ config, image = null, broker, listen = {}, store = null, clock = 'trusted', world = systemTime(), log = null, qos = 1 }) {
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
      network: (dev) => new MqttTransport(broker, { clientId: mqttClientId('proxy', dev.name), reconnect: true, log: (level, text) => this.log(level, `proxy: ${text}`) }),
      qos,
      filter: (topic, bytes) => {
        const h = digest(bytes);
        if (this.echo.has(h)) return false;
        return true;
      },
    });
    this.device.on('data', (ev) => this._toLocal(ev));
    this.device.on('command', () => this.stats.commands++);
    this.device.on('rejected', (ev) => this._drop(ev.result, `upstream message on ${ev.topic} rejected: ${ev.result}`));
  }

  get url() {
    return `mqtt://${this.listenHost}:${this.listenPort}`;
  }

  async start() {
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
            this.log('error', `proxy: publication on ${packet.topic} not forwarded (${e.message}): not acknowledged, the application will send it again`);
            done(e);
          },
        );
      },
    });
    this.local = local;
    local.on('subscribe', (subscriptions, client) => {
      for (const s of subscriptions) if (s.qos !== 128) this._addSub(client.id, s.topic).catch((e) => this.log('error', `proxy: subscribe ${s.topic}: ${e.message}`));
    });
    local.on('unsubscribe', (topics, client) => {
      for (const t of topics) this._removeSub(client.id, t).catch(() => {});
    });
    local.on('clientDisconnect', (client) => {
      const set = this.clientSubs.get(client.id);
      if (set) for (const t of [...set]) this._removeSub(client.id, t).catch(() => {});
    });
    this.server = net.createServer(local.handle);
    this.sockets = new Set();
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.listenPort, this.listenHost, resolve);
    });
    this.listenPort = this.server.address().port;
    this.log('info', `proxy ${this.device.name} (${this.device.id}) listening ${this.url}, upstream ${this.brokerUrl}`);
    return this;
  }

  async stop() {
    if (this.server) {
      for (const s of this.sockets) s.destroy();
      await new Promise((r) => this.server.close(() => r()));
      await new Promise((r) => this.local.close(() => r()));
      this.server = null;
    }
    await this.device.stop();
  }

  _drop(reason, text) {
    this.stats.dropped++;
    this.stats.droppedBy[reason] = (this.stats.droppedBy[reason] || 0) + 1;
    this.log('warn', text);
  }

  async _fromLocal(packet) {
    const topic = packet.topic;
    if (topic.startsWith('$')) return;
    if (topic.startsWith('e4/')) return this._drop('CONTROL_TOPIC', `local publication on control topic ${topic} not forwarded`);
    let bytes;
    try {
      bytes = this.device.protect(topic, packet.payload);
    } catch (e) {
      if (e && e.name === 'E4Error') return this._drop(e.result, `local publication on ${topic} not forwarded: ${e.result}`);
      throw e;
    }
    this._remember(bytes);
    this.stats.protected++;
    if (!this.device.transport) throw new Error('the proxy is stopping');
    await this.device.transport.publish(topic, bytes, this.qos, !!packet.retain);
  }

  _toLocal(ev) {
    // Deliver only topics some local client subscribed to (a wildcard upstream may bring more).
    let wanted = false;
    for (const f of this.subs.keys()) if (topicMatches(f, ev.topic)) wanted = true;
    if (!wanted) return;
    this.stats.unprotected++;
    this.local.publish({ cmd: 'publish', topic: ev.topic, payload: ev.payload, qos: this.qos, retain: false, dup: false }, () => {});
  }

  _remember(bytes) {
    const h = digest(bytes);
    this.echo.add(h);
    this.echoOrder.push(h);
    if (this.echoOrder.length > ECHO_MEMORY) this.echo.delete(this.echoOrder.shift());
  }

  async _addSub(clientId, filter) {
    if (filter.startsWith('$')) return;
    let set = this.clientSubs.get(clientId);
    if (!set) this.clientSubs.set(clientId, (set = new Set()));
    if (set.has(filter)) return;
    set.add(filter);
    const n = this.subs.get(filter) || 0;
    this.subs.set(filter, n + 1);
    if (n === 0) await this.device.subscribe(filter);
  }

  async _removeSub(clientId, filter) {
    const set = this.clientSubs.get(clientId);
    if (!set || !set.delete(filter)) return;
    if (!set.size) this.clientSubs.delete(clientId);
    const n = (this.subs.get(filter) || 1) - 1;
    if (n > 0) return void this.subs.set(filter, n);
    this.subs.delete(filter);
    if (this.device.isOn) await this.device.unsubscribe(filter);
  }
}

function digest(bytes) {
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

export function parseProxyArgs(argv) {
  const o = { listen: { host: '127.0.0.1', port: 1884 }, clock: 'trusted' };
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

async function main(argv) {
  let o;
  try {
    o = parseProxyArgs(argv);
  } catch (e) {
    process.stderr.write(`proxy: ${e.message} (see node host-sim/services/proxy.ts --help)\n`);
    process.exit(2);
  }
  if (o.help) return void process.stdout.write(USAGE + '\n');
  if (o.version) return void process.stdout.write(packageVersion() + '\n');
  const config = JSON.parse(readFileSync(o.device, 'utf8'));
  const proxy = new ProtectionProxy({
    config,
    image: o.image ? loadImage(o.image) : null,
    broker: o.broker,
    listen: o.listen,
    clock: o.clock,
    store: o.flash ? flashStore({ file: o.flash }) : null,
    log: (level, text) => process.stderr.write(`[${level}] ${text}\n`),
  });
  await proxy.start();
  process.stdout.write(`listening ${proxy.url}\n`);
  stopOnSignal(() => proxy.stop());
}

runIfMain(import.meta.url, 'proxy', main);
