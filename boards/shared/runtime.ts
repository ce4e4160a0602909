/**
 * The device runtime every board image runs: one E4 client, one transport (MQTT, the framed
 * link to a gateway, or a C port's publish/subscribe), and the application's handlers.
 * Subscribes to the control topic and to the topic names of the configuration, hands every
 * received payload to client.unprotect and the plaintext to the application; C2 commands are
 * applied by the client itself. ES5, no timers, no platform APIs: boards bring those.
 *
 * Events use Espruino's own `on`/`emit`, which every object has there (native code, several
 * listeners per event); on other engines a small JavaScript version keeps one listener per event.
 */
import type { Client } from '../../firmware/client';
import type { Log } from '../../firmware/hal';
import { isE4Error, MESSAGE_REPLAYED } from '../../firmware/errors';
import type { E4Error } from '../../firmware/errors';
import { toBytes } from '../../firmware/bytes';

/** What a transport reports to the runtime (the Device itself). */
export interface TransportSink {
  /** Connected (again): the runtime (re)subscribes. */
  up(): void;
  down(): void;
  /** A message arrived on `topic` (the raw protected bytes). */
  message(topic: string, data: Uint8Array): void;
}

export interface Transport {
  start(sink: TransportSink): void;
  subscribe(topic: string): void;
  publish(topic: string, data: Uint8Array): void;
  stop?(): void;
}

/** A listener as the runtime stores and calls it; Device.on says what each event passes. */
export type Handler = (a?: unknown, b?: unknown) => void;

export interface Device extends TransportSink {
  client: Client;
  /** Topics subscribed to (control topic first). */
  topics: string[];
  connected: boolean;
  /** Protects `payload` for `topic` and sends it. Throws E4Error (e.g. no key for the topic). */
  publish(topic: string, payload: Uint8Array | string): void;
  /** Adds a topic name to the subscriptions (it needs a key, now or later from C2, to be read). */
  subscribe(topic: string): void;
  /**
   * Events: 'message' (topic, plaintext Uint8Array), 'command' (topic) after a C2 command ran,
   * 'error' (E4Error, topic) for a rejected message, 'up', 'down'.
   */
  on(event: 'message', fn: (topic: string, plaintext: Uint8Array) => void): void;
  on(event: 'command', fn: (topic: string) => void): void;
  on(event: 'error', fn: (error: E4Error, topic: string) => void): void;
  on(event: 'up' | 'down', fn: () => void): void;
  emit(event: string, a?: unknown, b?: unknown): void;
  stats: { received: number; accepted: number; rejected: number; commands: number; published: number };
  /** Starts the transport (once; later calls do nothing). */
  start(): void;
  stop(): void;
}

/** E4.status(): the device's state, without any key. */
export interface DeviceStatus {
  ok: boolean;
  error: string;
  controlTopic: string | null;
  /** How many topics the client holds a key for. */
  topics: number;
  connected: boolean;
  stats: Device['stats'] | null;
  /** The client's clock (Espruino boards). */
  time?: ReturnType<Client['time']> | null;
}

export function runDevice(client: Client, transport: Transport, topicNames: string[], log: Log): Device {
  var started = false;
  var topics = [client.controlTopic];
  for (var i = 0; i < topicNames.length; i++) if (topics.indexOf(topicNames[i]) < 0) topics.push(topicNames[i]);

  var device = {
    client: client,
    topics: topics,
    connected: false,
    stats: { received: 0, accepted: 0, rejected: 0, commands: 0, published: 0 },
    publish: function (topic: string, payload: Uint8Array | string) {
      transport.publish(topic, client.protect(topic, toBytes(payload, 'payload')));
      device.stats.published++;
    },
    subscribe: function (topic: string) {
      if (topics.indexOf(topic) >= 0) return;
      topics.push(topic);
      if (device.connected) transport.subscribe(topic);
    },
    start: function () {
      if (started) return;
      started = true;
      transport.start(device);
    },
    stop: function () {
      if (transport.stop) transport.stop();
      device.connected = started = false;
    },
    up: function () {
      device.connected = true;
      for (var i = 0; i < topics.length; i++) transport.subscribe(topics[i]);
      device.emit('up');
    },
    down: function () {
      device.connected = false;
      device.emit('down');
    },
    message: function (topic: string, data: Uint8Array) {
      var s = device.stats;
      s.received++;
      var plain: Uint8Array | null;
      try {
        plain = client.unprotect(topic, data);
      } catch (e) {
        s.rejected++;
        if (!isE4Error(e)) {
          log('error', 'unprotect failed on ' + topic);
          return;
        }
        // QoS 0 and link retransmissions deliver duplicates: expected noise, not an attack.
        log(e.code === MESSAGE_REPLAYED ? 'debug' : 'warn', e.result + ' on ' + topic);
        device.emit('error', e, topic);
        return;
      }
      s.accepted++;
      if (plain === null) {
        s.commands++;
        device.emit('command', topic);
      } else device.emit('message', topic, plain);
    },
  } as Device;
  if (typeof device.emit !== 'function') {
    var handlers: { [event: string]: Handler } = {};
    // One store for every event's listener: Device.on's overloads say what each one receives.
    device.on = function (event: string, fn: Handler) {
      handlers['$' + event] = fn;
    } as Device['on'];
    device.emit = function (event: string, a?: unknown, b?: unknown) {
      var fn = handlers['$' + event];
      if (fn) fn(a, b);
    };
  }
  return device;
}
