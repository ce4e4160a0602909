/**
 * A simulated device: the built image running in its own sandbox (or in a shared one, see
 * `realm`), over the stub HAL of hal.ts, talking to a broker through a transport (mqtt-transport.ts: its
 * own MQTT connection; link.ts: a framed byte stream to a gateway).
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
import type { Client, DeviceConfig, Options } from '../../firmware/client.ts';
import type { Hal } from '../../firmware/hal.ts';
import { isE4Error } from '../../firmware/errors.ts';
import { createSandbox } from './image.ts';
import type { PrintSink, Sandbox, SandboxImage, SandboxProfile } from './image.ts';
import { flashStore, makeClock, nativeAesBlock, parseClock, systemTime } from './hal.ts';
import type { ClockSpec, SimFlashStore, TimeSource } from './hal.ts';
import type { DeviceFile } from './device-config.ts';
import { DEFAULT_QOS, MqttTransport, mqttClientId } from './mqtt-transport.ts';
import type { DeviceTransport, QoS } from './mqtt-transport.ts';

/** Reads the 64-bit LE timestamp of a protected message (as a double: exact below 2^53). */
export function messageTimestamp(buf: Buffer): number {
  if (buf.length < 8) return -1;
  return buf.readUInt32LE(0) + buf.readUInt32LE(4) * 0x100000000;
}

/** Vault kinds: `noble` (the image's pure-JS AES-SIV and SHA3: any engine), `native-aes` (the
 * generic SIV over a board's AES block, no SHA-3: the Puck.js / ESP32 profile). */
export const VAULTS = ['noble', 'native-aes'] as const;
export type VaultKind = (typeof VAULTS)[number];

/** Replay window (client option replayCache) of a simulated device unless its options give one:
 * sized like a host's or an ESP32's, not a Puck.js's (16), since the simulator's fleets run at
 * host rates (hundreds of messages a second); README.md, "Time and replay". */
export const SIM_REPLAY_CACHE = 256;

/** A data message the device accepted: its plaintext. */
export interface DataEvent {
  kind: 'data';
  topic: string;
  payload: Buffer;
  /** The message's timestamp (seconds). */
  timestamp: number;
}

/** A C2 command the device ran. */
export interface CommandEvent {
  kind: 'command';
  topic: string;
  timestamp: number;
}

/** A message the device refused, with the E4 result (e.g. E4_ERROR_INVALID_TAG). */
export interface RejectedEvent {
  kind: 'rejected';
  topic: string;
  code: number;
  result: string;
  timestamp: number;
}

/** What deliver() did with a message ('off': the device is powered off, nothing happened). */
export type Delivery = DataEvent | CommandEvent | RejectedEvent | { kind: 'off' };

/** The device's log output. */
export interface LogEvent {
  level: string;
  text: string;
}

export interface SimDeviceEvents {
  data: [DataEvent];
  command: [CommandEvent];
  rejected: [RejectedEvent];
  log: [LogEvent];
  boot: [{ boots: number }];
  off: [];
}

/** A transport of the device's own, made for it at each power-on, with the realm it boots in
 * (device.sandbox, already set). */
export type TransportFactory = (device: SimDevice, sandbox: Sandbox) => DeviceTransport;

export interface SimDeviceOptions {
  config: DeviceFile;
  image?: SandboxImage | null;
  realm?: Sandbox | null;
  profile?: SandboxProfile;
  vault?: VaultKind;
  clock?: ClockSpec;
  world?: TimeSource;
  store?: SimFlashStore | null;
  network?: string | TransportFactory | null;
  subscribe?: string[];
  options?: Options;
  qos?: QoS;
  print?: PrintSink | null;
  filter?: ((topic: string, bytes: Buffer) => boolean) | null;
}

/** SimDevice.snapshot(): the device's state with bytes as hex. */
export interface DeviceSnapshot {
  id: string;
  key: string;
  topics: { hash: string; key: string; prevKey: string | null; prevSince: number }[];
  lastCommand: number;
}

/** Messages handled since the device was made. rejectedBy counts per E4 result name. */
export interface DeviceStats {
  published: number;
  received: number;
  commands: number;
  rejected: number;
  rejectedBy: Record<string, number>;
}

export class SimDevice extends EventEmitter<SimDeviceEvents> {
  config: DeviceFile;
  name: string;
  image: SandboxImage | null;
  /** A sandbox shared with other devices, or null: each power-on makes the device its own. */
  realm: Sandbox | null;
  profile: SandboxProfile;
  vaultKind: VaultKind;
  clockSpec: ClockSpec;
  world: TimeSource;
  store: SimFlashStore;
  network: string | TransportFactory | null;
  /** Data topics subscribed to (the control topic aside). */
  topics: string[];
  options: Options;
  qos: QoS;
  print: PrintSink | null;
  filter: ((topic: string, bytes: Buffer) => boolean) | null;
  /** The realm the device runs in while on (RAM). */
  sandbox: Sandbox | null;
  client: Client | null;
  transport: DeviceTransport | null;
  /** The client id (hex), known once the device has booted. */
  id: string | null;
  controlTopic: string | null;
  boots: number;
  stats: DeviceStats;

  /**
   * - config: a device.json object ({ name?, id, key, topics: [{topic, hash, key}], options?, clock? }).
   * - image: from loadImage(); or realm: a sandbox shared by many devices (shared-image mode).
   * - profile: sandbox profile (image.ts), default 'device'.
   * - vault: 'noble' (default) or 'native-aes'.
   * - clock: 'trusted' | 'untrusted' | 'skewed:<s>' | 'monotonic' | 'none' (default: config.clock, else trusted).
   * - world: time source (hal.ts systemTime/virtualTime).
   * - store: a flashStore (default: a new in-memory one; it outlives power cycles).
   * - network: an MQTT URL, a transport factory `(device, sandbox) => transport`, or null (no network:
   *   use deliver() to hand it messages).
   * - subscribe: data topics to subscribe to (the control topic is always subscribed).
   * - options: client options (override config.options).
   * - qos: MQTT QoS of publishes and subscriptions (default 1).
   * - print: where the device's print/log output goes.
   * - filter: (topic, bytes) => boolean, consulted before a network message reaches the device
   *   (the proxy drops the echo of its own publications with it).
   */
  constructor({
    config,
    image = null,
    realm = null,
    profile = 'device',
    vault = 'noble',
    clock,
    world = systemTime(),
    store = null,
    network = null,
    subscribe = [],
    options = {},
    qos = DEFAULT_QOS,
    print = null,
    filter = null,
  }: SimDeviceOptions) {
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

  get isOn(): boolean {
    return !!this.client;
  }

  /** Power on: a fresh sandbox (RAM), the client from flash (or provisioned from config). */
  async start(): Promise<this> {
    if (this.client) throw new Error(`${this.name}: already on`);
    let sandbox = this.realm;
    if (!sandbox) {
      if (!this.image) throw new Error('SimDevice: an image (loadImage) or a shared realm is required');
      sandbox = createSandbox(this.image, {
        name: this.name,
        profile: this.profile,
        print: (s) => (this.print ? this.print(`${this.name}: ${s}`) : undefined),
      });
    }
    this.store.attach(sandbox);
    const E4 = sandbox.E4;
    const vault = this.vaultKind === 'native-aes' ? E4.sivVault(nativeAesBlock(sandbox)) : E4.vault();
    const hal: Hal = {
      vault,
      store: this.store,
      log: (level, text) => this.emit('log', { level: String(level), text: String(text) }),
    };
    const clock = makeClock(this.clockSpec, this.world);
    if (clock) hal.clock = clock;
    const provisioning: DeviceConfig = {
      id: this.config.id,
      name: this.config.id ? undefined : this.config.name,
      // Without a key the device boots from its store; an empty store reports the missing key.
      key: this.config.key ?? '',
      topics: (this.config.topics || []).map((t) => ({ topic: t.topic, hash: t.hash, key: t.key })),
    };
    const client = E4.create(hal, provisioning, this.options);
    this.client = client;
    this.sandbox = sandbox;
    this.id = Buffer.from(sandbox.bytesOut(client.id)).toString('hex');
    const controlTopic = client.controlTopic;
    this.controlTopic = controlTopic;
    this.boots++;
    try {
      if (this.network) {
        const transport =
          typeof this.network === 'function'
            ? this.network(this, sandbox)
            : new MqttTransport(this.network, { clientId: mqttClientId('dev', this.name) });
        this.transport = transport;
        transport.onMessage = (topic, bytes) => {
          if (!this.filter || this.filter(topic, bytes)) this.deliver(topic, bytes);
        };
        await transport.open();
        await transport.subscribe(controlTopic, this.qos);
        for (const t of this.topics) await transport.subscribe(t, this.qos);
      }
    } catch (e) {
      this._drop();
      throw e;
    }
    this.emit('boot', { boots: this.boots });
    return this;
  }

  _drop(): void {
    if (this.transport) {
      if (this.transport.kill) this.transport.kill();
      else this.transport.close();
    }
    this.transport = null;
    if (this.client) this.client.close();
    this.client = null;
    this.sandbox = null;
  }

  /** Power off: the connection drops and RAM (the sandbox, every key in it) is gone. */
  async stop({ graceful = true }: { graceful?: boolean } = {}): Promise<void> {
    if (!this.client) return;
    if (this.transport && graceful) await this.transport.close();
    this._drop();
    this.emit('off');
  }

  async powerCycle(): Promise<void> {
    await this.stop({ graceful: false });
    await this.start();
  }

  async subscribe(topic: string): Promise<void> {
    if (!this.topics.includes(topic)) this.topics.push(topic);
    if (this.transport) await this.transport.subscribe(topic, this.qos);
  }

  async unsubscribe(topic: string): Promise<void> {
    this.topics = this.topics.filter((t) => t !== topic);
    if (this.transport && this.transport.unsubscribe) await this.transport.unsubscribe(topic);
  }

  /** Protects and publishes. Returns the protected bytes (a Buffer). */
  async publish(topic: string, payload: Uint8Array | string): Promise<Buffer> {
    const protectedBytes = this.protect(topic, payload);
    if (!this.transport) throw new Error(`${this.name}: no network`);
    await this.transport.publish(topic, protectedBytes, this.qos);
    this.stats.published++;
    return protectedBytes;
  }

  protect(topic: string, payload: Uint8Array | string): Buffer {
    const { client, sandbox } = this.powered();
    const data = typeof payload === 'string' ? payload : sandbox.bytesIn(payload);
    return sandbox.bytesOut(client.protect(topic, data));
  }

  /** The client and its realm; throws when the device is off. */
  private powered(): { client: Client; sandbox: Sandbox } {
    if (!this.client || !this.sandbox) throw new Error(`${this.name}: off`);
    return { client: this.client, sandbox: this.sandbox };
  }

  /**
   * A message as the network delivers it. Returns { kind: 'data'|'command'|'rejected', ... }
   * and emits the matching event. E4 failures never throw out of here.
   */
  deliver(topic: string, bytes: Uint8Array): Delivery {
    const { client, sandbox } = this;
    if (!client || !sandbox) return { kind: 'off' };
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    const timestamp = messageTimestamp(buf);
    this.stats.received++;
    let plaintext: Uint8Array | null;
    try {
      plaintext = client.unprotect(topic, sandbox.bytesIn(buf));
    } catch (e) {
      if (!isE4Error(e)) throw e;
      this.stats.rejected++;
      this.stats.rejectedBy[e.result] = (this.stats.rejectedBy[e.result] || 0) + 1;
      const ev: RejectedEvent = { kind: 'rejected', topic, code: e.code, result: e.result, timestamp };
      this.emit('rejected', ev);
      return ev;
    }
    if (plaintext === null) {
      this.stats.commands++;
      const ev: CommandEvent = { kind: 'command', topic, timestamp };
      this.emit('command', ev);
      return ev;
    }
    const ev: DataEvent = { kind: 'data', topic, payload: sandbox.bytesOut(plaintext), timestamp };
    this.emit('data', ev);
    return ev;
  }

  /** The device's state (keys included): for tests and the C2's bookkeeping checks only. */
  snapshot(): DeviceSnapshot {
    const { client, sandbox } = this.powered();
    const s = client.snapshot();
    const h = (u: Uint8Array) => sandbox.bytesOut(u).toString('hex');
    return {
      id: h(s.id),
      key: h(s.key),
      topics: Array.from(s.topics, (t) => ({
        hash: h(t.hash),
        key: h(t.key),
        prevKey: t.prevKey ? h(t.prevKey) : null,
        prevSince: t.prevSince,
      })),
      lastCommand: s.lastCommand,
    };
  }

  /** The key held for a topic hash (hex), or null. */
  topicKey(hashHex: string): string | null {
    const t = this.snapshot().topics.find((x) => x.hash === hashHex);
    return t ? t.key : null;
  }

  time(): ReturnType<Client['time']> {
    return this.powered().client.time();
  }
}
