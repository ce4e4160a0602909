/**
 * A simulated device: the built image running in its own sandbox (or in a shared one, see
 * `realm`), over the stub HAL of hal.mjs, talking to a broker through a transport (net.mjs: its
 * own MQTT connection; link.mjs: a framed byte stream to a gateway).
 *
 *   const image = loadImage();                       // dist/e4.js, sha256 checked
 *   const dev = new SimDevice({ image, config, network: 'mqtt://127.0.0.1:1883', subscribe: ['a/b'] });
 *   await dev.start();                               // power on: boot, provision or load flash, connect
 *   dev.on('data', ({ topic, payload, timestamp }) => ...);
 *   await dev.publish('a/b', 'hello');
 *   await dev.powerCycle();                          // RAM lost, flash kept
 *
 * Events: 'data' {topic, payload: Buffer, timestamp}, 'command' {topic, timestamp},
 * 'rejected' {topic, code, result}, 'log' {level, text}, 'boot', 'off'.
 */
import { EventEmitter } from 'node:events';
import { createSandbox } from './image.mjs';
import { flashStore, makeClock, nativeAesBlock, parseClock, systemTime } from './hal.mjs';
import { DEFAULT_QOS, MqttTransport, mqttClientId } from './net.mjs';

/** Reads the 64-bit LE timestamp of a protected message (as a double: exact below 2^53). */
export function messageTimestamp(buf) {
  if (buf.length < 8) return -1;
  return buf.readUInt32LE(0) + buf.readUInt32LE(4) * 0x100000000;
}

/** Vault kinds: `noble` (the image's pure-JS AES-SIV and SHA3: any engine), `native-aes` (the
 * generic SIV over a board's AES block, no SHA-3: the Puck.js / ESP32 profile). */
export const VAULTS = ['noble', 'native-aes'];

/** Replay window (client option replayCache) of a simulated device unless its options give one:
 * sized like a host's or an ESP32's, not a Puck.js's (16), since the simulator's fleets run at
 * host rates (hundreds of messages a second); README.md, "Time and replay". */
export const SIM_REPLAY_CACHE = 256;

export class SimDevice extends EventEmitter {
  /**
   * - config: a device.json object ({ name?, id, key, topics: [{topic, hash, key}], options?, clock? }).
   * - image: from loadImage(); or realm: a sandbox shared by many devices (shared-image mode).
   * - profile: sandbox profile (image.mjs), default 'device'.
   * - vault: 'noble' (default) or 'native-aes'.
   * - clock: 'trusted' | 'untrusted' | 'skewed:<s>' | 'monotonic' | 'none' (default: config.clock, else trusted).
   * - world: time source (hal.mjs systemTime/virtualTime).
   * - store: a flashStore (default: a new in-memory one; it outlives power cycles).
   * - network: an MQTT URL, a transport factory `(device) => transport`, or null (no network:
   *   use deliver() to hand it messages).
   * - subscribe: data topics to subscribe to (the control topic is always subscribed).
   * - options: client options (override config.options).
   * - qos: MQTT QoS of publishes and subscriptions (default 1).
   * - print: where the device's print/log output goes.
   * - filter: (topic, bytes) => boolean, consulted before a network message reaches the device
   *   (the proxy drops the echo of its own publications with it).
   */
  constructor({ config, image = null, realm = null, profile = 'device', vault = 'noble', clock, world = systemTime(), store = null, network = null, subscribe = [], options = {}, qos = DEFAULT_QOS, print = null, filter = null } = {}) {
    super();
    if (!config || (!config.key && !store)) throw new Error('SimDevice: config with a key is required');
    if (!image && !realm) throw new Error('SimDevice: an image (loadImage) or a shared realm is required');
    if (!VAULTS.includes(vault)) throw new Error(`SimDevice: vault must be one of ${VAULTS.join(', ')}`);
    this.config = config;
    this.name = config.name || config.id || 'device';
    this.image = image;
    this.realm = realm;
    this.profile = profile;
    this.vaultKind = vault;
    this.clockSpec = clock ?? config.clock ?? 'trusted';
    parseClock(this.clockSpec); // throws on a bad spec, before anything starts
    this.world = world;
    this.store = store || flashStore();
    this.network = network;
    this.topics = [...subscribe];
    // A host-sized replay window (docs/simulator.md): simulated devices carry host-rate traffic.
    this.options = { replayCache: SIM_REPLAY_CACHE, ...(config.options || {}), ...options };
    this.qos = qos;
    this.print = print;
    this.filter = filter;
    this.sandbox = null;
    this.client = null;
    this.transport = null;
    this.id = null;
    this.controlTopic = null;
    this.boots = 0;
    this.stats = { published: 0, received: 0, commands: 0, rejected: 0, rejectedBy: {} };
  }

  get isOn() {
    return !!this.client;
  }

  /** Power on: a fresh sandbox (RAM), the client from flash (or provisioned from config). */
  async start() {
    if (this.client) throw new Error(`${this.name}: already on`);
    const sandbox =
      this.realm ||
      createSandbox(this.image, {
        name: this.name,
        profile: this.profile,
        print: (s) => (this.print ? this.print(`${this.name}: ${s}`) : undefined),
      });
    this.store.attach(sandbox);
    const E4 = sandbox.E4;
    const vault = this.vaultKind === 'native-aes' ? E4.sivVault(nativeAesBlock(sandbox)) : E4.vault();
    const hal = {
      vault,
      store: this.store,
      clock: makeClock(this.clockSpec, this.world),
      log: (level, text) => this.emit('log', { level: String(level), text: String(text) }),
    };
    if (!hal.clock) delete hal.clock;
    const provisioning = {
      id: this.config.id,
      name: this.config.id ? undefined : this.config.name,
      key: this.config.key,
      topics: (this.config.topics || []).map((t) => ({ topic: t.topic, hash: t.hash, key: t.key })),
    };
    this.client = E4.create(hal, provisioning, this.options);
    this.sandbox = sandbox;
    this.id = Buffer.from(sandbox.bytesOut(this.client.id)).toString('hex');
    this.controlTopic = this.client.controlTopic;
    this.boots++;
    try {
      if (this.network) {
        this.transport =
          typeof this.network === 'function'
            ? this.network(this)
            : new MqttTransport(this.network, { clientId: mqttClientId('dev', this.name) });
        this.transport.onMessage = (topic, bytes) => {
          if (!this.filter || this.filter(topic, bytes)) this.deliver(topic, bytes);
        };
        await this.transport.open();
        await this.transport.subscribe(this.controlTopic, this.qos);
        for (const t of this.topics) await this.transport.subscribe(t, this.qos);
      }
    } catch (e) {
      this._drop();
      throw e;
    }
    this.emit('boot', { boots: this.boots });
    return this;
  }

  _drop() {
    if (this.transport) this.transport.kill ? this.transport.kill() : this.transport.close();
    this.transport = null;
    if (this.client) this.client.close();
    this.client = null;
    this.sandbox = null;
  }

  /** Power off: the connection drops and RAM (the sandbox, every key in it) is gone. */
  async stop({ graceful = true } = {}) {
    if (!this.client) return;
    if (this.transport && graceful) await this.transport.close();
    this._drop();
    this.emit('off');
  }

  async powerCycle() {
    await this.stop({ graceful: false });
    await this.start();
  }

  async subscribe(topic) {
    if (!this.topics.includes(topic)) this.topics.push(topic);
    if (this.transport) await this.transport.subscribe(topic, this.qos);
  }

  async unsubscribe(topic) {
    this.topics = this.topics.filter((t) => t !== topic);
    if (this.transport && this.transport.unsubscribe) await this.transport.unsubscribe(topic);
  }

  /** Protects and publishes. Returns the protected bytes (a Buffer). */
  async publish(topic, payload) {
    const protectedBytes = this.protect(topic, payload);
    if (!this.transport) throw new Error(`${this.name}: no network`);
    await this.transport.publish(topic, protectedBytes, this.qos);
    this.stats.published++;
    return protectedBytes;
  }

  protect(topic, payload) {
    if (!this.client) throw new Error(`${this.name}: off`);
    const data = typeof payload === 'string' ? payload : this.sandbox.bytesIn(payload);
    return this.sandbox.bytesOut(this.client.protect(topic, data));
  }

  /**
   * A message as the network delivers it. Returns { kind: 'data'|'command'|'rejected', ... }
   * and emits the matching event. E4 failures never throw out of here.
   */
  deliver(topic, bytes) {
    if (!this.client) return { kind: 'off' };
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    const timestamp = messageTimestamp(buf);
    this.stats.received++;
    let plaintext;
    try {
      plaintext = this.client.unprotect(topic, this.sandbox.bytesIn(buf));
    } catch (e) {
      if (!e || e.name !== 'E4Error') throw e;
      this.stats.rejected++;
      this.stats.rejectedBy[e.result] = (this.stats.rejectedBy[e.result] || 0) + 1;
      const ev = { kind: 'rejected', topic, code: e.code, result: e.result, timestamp };
      this.emit('rejected', ev);
      return ev;
    }
    if (plaintext === null) {
      this.stats.commands++;
      const ev = { kind: 'command', topic, timestamp };
      this.emit('command', ev);
      return ev;
    }
    const ev = { kind: 'data', topic, payload: this.sandbox.bytesOut(plaintext), timestamp };
    this.emit('data', ev);
    return ev;
  }

  /** The device's state (keys included): for tests and the C2's bookkeeping checks only. */
  snapshot() {
    const s = this.client.snapshot();
    const h = (u) => this.sandbox.bytesOut(u).toString('hex');
    return {
      id: h(s.id),
      key: h(s.key),
      topics: Array.prototype.map.call(s.topics, (t) => ({ hash: h(t.hash), key: h(t.key), prevKey: t.prevKey ? h(t.prevKey) : null, prevSince: t.prevSince })),
      lastCommand: s.lastCommand,
    };
  }

  /** The key held for a topic hash (hex), or null. */
  topicKey(hashHex) {
    const t = this.snapshot().topics.find((x) => x.hash === hashHex);
    return t ? t.key : null;
  }

  time() {
    return this.client.time();
  }
}
