/**
 * The device runtime every board image runs: one E4 client, one transport (MQTT, the framed
 * link to a gateway, or a C port's publish/subscribe), and the application's handlers.
 * Subscribes to the control topic and to the topic names of the configuration, hands every
 * received payload to client.unprotect and the plaintext to the application; C2 commands are
 * applied by the client itself. ES5, no timers, no platform APIs: boards bring those.
 */
import type { Client } from '../../firmware/client';
import type { Log } from '../../firmware/hal';
import { isE4Error, MESSAGE_REPLAYED } from '../../firmware/errors';
import { toBytes } from '../../firmware/bytes';

/** What a transport reports to the runtime. */
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

export type Handler = (a?: any, b?: any) => void;

export interface Device {
  client: Client;
  /** Topics subscribed to (control topic first). */
  topics: string[];
  connected: boolean;
  /** Protects `payload` for `topic` and sends it. Throws E4Error (e.g. no key for the topic). */
  publish(topic: string, payload: Uint8Array | string): void;
  /** Adds a topic name to the subscriptions (it needs a key, now or later from C2, to be read). */
  subscribe(topic: string): void;
  /**
   * One handler per event: 'message' (topic, plaintext Uint8Array), 'command' (topic) after a
   * C2 command ran, 'error' (E4Error, topic) for a rejected message, 'up', 'down'.
   */
  on(event: string, fn: Handler): void;
  stats: { received: number; accepted: number; rejected: number; commands: number; published: number };
  /** Starts the transport (once; later calls do nothing). */
  start(): void;
  stop(): void;
}

export function runDevice(client: Client, transport: Transport, topicNames: string[], log: Log): Device {
  var handlers: { [event: string]: Handler } = {};
  var started = false;
  var topics = [client.controlTopic];
  for (var i = 0; i < topicNames.length; i++) if (topics.indexOf(topicNames[i]) < 0) topics.push(topicNames[i]);

  function emit(event: string, a?: any, b?: any): void {
    var fn = handlers['$' + event];
    if (!fn) return;
    try {
      fn(a, b);
    } catch (e) {
      log('error', 'handler for ' + event + ' threw');
    }
  }

  var device: Device = {
    client: client,
    topics: topics,
    connected: false,
    stats: { received: 0, accepted: 0, rejected: 0, commands: 0, published: 0 },
    publish: function (topic, payload) {
      var m = client.protect(topic, toBytes(payload, 'payload'));
      transport.publish(topic, m);
      device.stats.published++;
    },
    subscribe: function (topic) {
      if (topics.indexOf(topic) >= 0) return;
      topics.push(topic);
      if (device.connected) transport.subscribe(topic);
    },
    on: function (event, fn) {
      handlers['$' + event] = fn;
    },
    start: function () {
      if (started) return;
      started = true;
      transport.start(sink);
    },
    stop: function () {
      if (transport.stop) transport.stop();
      device.connected = false;
      started = false;
    },
  };

  var sink: TransportSink = {
    up: function () {
      device.connected = true;
      for (var i = 0; i < topics.length; i++) transport.subscribe(topics[i]);
      emit('up');
    },
    down: function () {
      device.connected = false;
      emit('down');
    },
    message: function (topic, data) {
      device.stats.received++;
      var plain: Uint8Array | null;
      try {
        plain = client.unprotect(topic, data);
      } catch (e) {
        device.stats.rejected++;
        if (!isE4Error(e)) {
          log('error', 'unprotect failed on ' + topic);
          return;
        }
        // QoS 0 delivers duplicates: an exact duplicate is expected noise, not an attack.
        log(e.code === MESSAGE_REPLAYED ? 'debug' : 'warn', e.result + ' on ' + topic);
        emit('error', e, topic);
        return;
      }
      device.stats.accepted++;
      if (plain === null) {
        device.stats.commands++;
        emit('command', topic);
      } else emit('message', topic, plain);
    },
  };
  return device;
}
