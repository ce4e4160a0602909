/**
 * Network transports of simulated devices and host tools: a real MQTT connection (the `mqtt`
 * package). A transport moves opaque bytes: protection happens in the device before publish and
 * after delivery.
 *
 * Interface (shared with the link transport of devices behind a gateway, see link.ts):
 *   open() -> Promise, close() -> Promise, subscribe(topic, qos) -> Promise,
 *   publish(topic, bytes, qos) -> Promise, onMessage = (topic, Buffer) => void, connected
 */
import mqtt from 'mqtt';
import type { IClientOptions, IClientPublishOptions, ISubscriptionGrant, MqttClient } from 'mqtt';

/** MQTT quality of service: 0, 1 or 2. */
export type QoS = NonNullable<IClientPublishOptions['qos']>;

export const DEFAULT_QOS = 1;

/** What a SimDevice (and a host tool) needs from a transport: this MQTT one, or the link to a
 * gateway (services/link.ts). Payloads are opaque bytes. */
export interface DeviceTransport {
  readonly connected: boolean;
  /** Every message on a subscribed topic. */
  onMessage: ((topic: string, payload: Buffer) => void) | null;
  open(): Promise<unknown>;
  close(): Promise<void>;
  subscribe(topic: string, qos?: QoS): Promise<unknown>;
  unsubscribe?(topic: string): Promise<unknown>;
  publish(topic: string, bytes: Uint8Array, qos?: QoS): Promise<unknown>;
  /** Drops the connection at once (power loss). */
  kill?(): void;
}

/** Diagnostics of a transport: disconnects and reconnects. */
export type TransportLog = (level: 'info' | 'warn', text: string) => void;

export interface MqttTransportOptions {
  clientId?: string;
  /** Seconds. */
  keepalive?: number;
  /** Milliseconds. */
  connectTimeout?: number;
  reconnect?: boolean;
  maxInflight?: number;
  log?: TransportLog | null;
}

/** MQTT topic filter matching (`+` one level, `#` the rest; `$` topics only match `$` filters). */
export function topicMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  if (topic.startsWith('$') && !filter.startsWith('$')) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

let counter = 0;

/** A client id the brokers accept (MQTT 3.1.1: keep it short and plain). */
export function mqttClientId(prefix: string, name: unknown): string {
  const safe = String(name)
    .replace(/[^A-Za-z0-9_-]/g, '')
    .slice(0, 40);
  return `${prefix}-${safe || 'x'}-${process.pid.toString(36)}${(counter++).toString(36)}`;
}

/** Reconnection back-off of services: the first retry, doubling up to the longest wait. */
export const RECONNECT_MS = { first: 250, max: 10000 };

export class MqttTransport implements DeviceTransport {
  url: string;
  reconnect: boolean;
  log: TransportLog;
  maxInflight: number;
  /** QoS 1/2 publications awaiting their acknowledgement. */
  inflight: number;
  /** Publications waiting for a free in-flight slot. */
  waiting: (() => void)[];
  clientId: string;
  opts: IClientOptions;
  client: MqttClient | null;
  onMessage: ((topic: string, payload: Buffer) => void) | null;
  /** Errors after the connection was made (before it, open() rejects). */
  onError: ((e: Error) => void) | null;

  /**
   * url: mqtt://host:port. options: clientId, keepalive (s), connectTimeout (ms), reconnect
   * (default false: a simulated device that loses its broker reports it instead of retrying
   * silently; services pass true: they reconnect with back-off, RECONNECT_MS, and publications
   * made meanwhile wait for the broker instead of failing), maxInflight (default 20, mosquitto's
   * default max_inflight_messages), log(level, text): every disconnect and reconnect.
   */
  constructor(
    url: string,
    {
      clientId = mqttClientId('e4sim', 'dev'),
      keepalive = 60,
      connectTimeout = 10000,
      reconnect = false,
      maxInflight = 20,
      log = null,
    }: MqttTransportOptions = {},
  ) {
    this.url = url;
    this.reconnect = reconnect;
    this.log = log || (() => {});
    this.maxInflight = maxInflight;
    this.inflight = 0;
    this.waiting = [];
    this.clientId = clientId;
    this.opts = {
      clientId,
      keepalive,
      connectTimeout,
      reconnectPeriod: reconnect ? RECONNECT_MS.first : 0,
      clean: true,
      protocolVersion: 4,
      resubscribe: true,
    };
    this.client = null;
    this.onMessage = null;
    this.onError = null;
  }

  get connected(): boolean {
    return !!this.client && this.client.connected;
  }

  open(): Promise<this> {
    return new Promise((resolve, reject) => {
      const c = mqtt.connect(this.url, this.opts);
      this.client = c;
      let settled = false;
      c.once('connect', () => {
        settled = true;
        resolve(this);
      });
      c.on('error', (e) => {
        if (!settled) {
          settled = true;
          c.end(true);
          reject(new Error(`MQTT ${this.url}: ${e.message}`));
        } else if (this.onError) this.onError(e);
      });
      c.on('close', () => {
        if (!settled) {
          settled = true;
          reject(new Error(`MQTT ${this.url}: connection closed before CONNACK`));
        }
      });
      c.on('message', (topic, payload) => {
        if (this.onMessage) this.onMessage(topic, payload);
      });
      if (this.reconnect) this._backOff(c);
    });
  }

  /**
   * Reconnection with exponential back-off, logged. mqtt.js (5.16, pinned) retries at a fixed
   * `reconnectPeriod` from an interval timer it keeps in `reconnectTimer`: at each attempt the
   * interval is replaced by a longer one (doubling up to RECONNECT_MS.max); a connection resets it.
   * Its offline queue and in-flight store keep what was published meanwhile, and resend it.
   */
  _backOff(c: MqttClient): void {
    let lostAt = 0;
    let attempts = 0;
    c.on('offline', () => {
      lostAt = Date.now();
      attempts = 0;
      this.log('warn', `MQTT ${this.url}: connection lost; reconnecting (first try in ${c.options.reconnectPeriod} ms)`);
    });
    c.on('reconnect', () => {
      attempts++;
      const next = Math.min(RECONNECT_MS.max, RECONNECT_MS.first * 2 ** attempts);
      // mqtt.js internals (private in its types, hence the element access): see above.
      if (c['reconnectTimer']) clearInterval(c['reconnectTimer']);
      c['reconnectTimer'] = null;
      c.options.reconnectPeriod = next;
      c['_setupReconnect']();
      this.log('info', `MQTT ${this.url}: reconnect attempt ${attempts} (next in ${next} ms if it fails)`);
    });
    c.on('connect', () => {
      if (!lostAt) return;
      this.log(
        'info',
        `MQTT ${this.url}: reconnected after ${((Date.now() - lostAt) / 1000).toFixed(1)} s and ${attempts} attempt${attempts === 1 ? '' : 's'}`,
      );
      lostAt = 0;
      c.options.reconnectPeriod = RECONNECT_MS.first;
    });
  }

  subscribe(topic: string, qos: QoS = DEFAULT_QOS): Promise<ISubscriptionGrant[] | undefined> {
    return new Promise((resolve, reject) => {
      if (!this.client) return reject(new Error('MQTT connection closed'));
      this.client.subscribe(topic, { qos }, (err, granted) => {
        if (err) reject(err);
        else if (granted && granted.some((g) => g.qos === 128)) reject(new Error(`MQTT: subscription to ${topic} refused`));
        else resolve(granted);
      });
    });
  }

  unsubscribe(topic: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.client) return reject(new Error('MQTT connection closed'));
      this.client.unsubscribe(topic, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Publishes; resolves when the broker acknowledged it (QoS 1 PUBACK, QoS 2 PUBCOMP). At most
   * `maxInflight` QoS 1/2 publications are outstanding per connection, the rest wait their turn:
   * mosquitto 2.0 completes the QoS 2 handshake for publications beyond its max_inflight_messages
   * (default 20) from an MQTT 3.1.1 client but silently drops them.
   */
  publish(topic: string, bytes: Uint8Array, qos: QoS = DEFAULT_QOS, retain = false): Promise<void> {
    const payload = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    const send = () =>
      new Promise<void>((resolve, reject) => {
        if (!this.client) return reject(new Error('MQTT connection closed'));
        this.client.publish(topic, payload, { qos, retain }, (err) => (err ? reject(err) : resolve()));
      });
    if (!qos) return send();
    if (this.inflight < this.maxInflight) return this._run(send);
    return new Promise<void>((resolve, reject) => this.waiting.push(() => this._run(send).then(resolve, reject)));
  }

  _run(send: () => Promise<void>): Promise<void> {
    this.inflight++;
    return send().finally(() => {
      this.inflight--;
      const next = this.waiting.shift();
      if (next) next();
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.client) return resolve();
      const c = this.client;
      this.client = null;
      c.end(false, {}, () => resolve());
    });
  }

  /** Drops the connection at once (power loss: nothing is flushed). */
  kill(): void {
    if (this.client) {
      this.client.end(true);
      this.client = null;
    }
  }
}
