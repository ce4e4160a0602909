/**
 * Wi-Fi and MQTT for the ESP32 image: Espruino's `Wifi` module and its JavaScript `MQTT`
 * module (`require("MQTT").create(server, options)`, events `connected`, `disconnected`,
 * `publish`), which `npm run flash` stores on the board as the Storage file "MQTT".
 *
 * Subscriptions are QoS 0: a message can be lost or delivered twice; the client rejects exact
 * duplicates (MESSAGE_REPLAYED) and C2 commands are idempotent. Payloads travel as binary
 * strings, the module's format (E.toString / E.toUint8Array convert).
 */
import type { Log } from '../../firmware/hal';
import type { Transport, TransportSink } from '../shared/runtime';

/** The part of an Espruino MQTT client (the JavaScript `MQTT` module) used here. */
interface EspruinoMqtt {
  on(event: 'connected' | 'disconnected', fn: () => void): void;
  on(event: 'publish', fn: (p: { topic: string; message: string }) => void): void;
  on(event: 'error', fn: (e: string) => void): void;
  connect(): void;
  disconnect(): void;
  subscribe(topic: string, options: { qos: number }): void;
  publish(topic: string, message: string, qos: number): void;
}

interface EspruinoMqttModule {
  create(
    server: string,
    options: { port: number; client_id: string; username?: string; password?: string; keep_alive: number }
  ): EspruinoMqtt;
}

/** The part of Espruino's `Wifi` module used here (ESP32). */
interface EspruinoWifi {
  /** `err` is null once connected. */
  connect(ssid: string, options: { password?: string }, callback: (err: string | null) => void): void;
  setSNTP(server: string, timezone: number): void;
}

declare var require: { (name: 'MQTT'): EspruinoMqttModule; (name: 'Wifi'): EspruinoWifi };
declare var E: { toUint8Array(s: string): Uint8Array; toString(data: Uint8Array): string };
declare var setTimeout: (fn: () => void, ms: number) => number;
declare var clearTimeout: (id: number) => void;

export interface MqttConfig {
  mqtt: { url?: string; host?: string; port?: number; client_id?: string; username?: string; password?: string; keep_alive?: number };
  wifi?: { ssid: string; password?: string };
  /** SNTP server (ESP32): sets the clock once Wi-Fi is up. */
  ntp?: string;
}

/** "mqtt://host:port" -> { host, port } (port 1883 by default). Throws on another form. No
 * regular expression: Espruino's lexer ends a regex literal at a "/" inside a character class. */
export function parseMqttUrl(url: string): { host: string; port: number } {
  var bad = new Error('transport.mqtt.url must look like mqtt://host:port');
  if (typeof url !== 'string' || url.substr(0, 7) !== 'mqtt://') throw bad;
  var rest = url.substr(7);
  if (rest.charAt(rest.length - 1) === '/') rest = rest.substr(0, rest.length - 1);
  var colon = rest.indexOf(':');
  var host = colon < 0 ? rest : rest.substr(0, colon);
  var port = colon < 0 ? 1883 : +rest.substr(colon + 1);
  if (!host || host.indexOf('/') >= 0 || !(port > 0 && port < 65536 && port === Math.floor(port))) throw bad;
  return { host: host, port: port };
}

export function mqttTransport(cfg: MqttConfig, clientName: string, log: Log): Transport {
  var m = cfg.mqtt;
  var addr = m.url ? parseMqttUrl(m.url) : { host: m.host as string, port: m.port || 1883 };
  var sink: TransportSink | null = null;
  var mqtt: EspruinoMqtt | null = null;
  var connected = false;
  var stopped = false;
  var timer: number | null = null;

  function later(fn: () => void, ms: number): void {
    if (timer) clearTimeout(timer);
    timer = setTimeout(function () {
      timer = null;
      if (!stopped) fn();
    }, ms);
  }

  function connectBroker(): void {
    if (!mqtt) {
      mqtt = require('MQTT').create(addr.host, {
        port: addr.port,
        client_id: m.client_id || clientName,
        username: m.username,
        password: m.password,
        keep_alive: m.keep_alive || 60,
      });
      mqtt.on('connected', function () {
        connected = true;
        if (timer) clearTimeout(timer);
        timer = null;
        if (sink) sink.up();
      });
      mqtt.on('publish', function (p: { topic: string; message: string }) {
        if (sink) sink.message(p.topic, E.toUint8Array(p.message));
      });
      mqtt.on('disconnected', function () {
        var was = connected;
        connected = false;
        if (was && sink) sink.down();
        log('info', 'mqtt disconnected');
        later(connectBroker, 5000);
      });
      mqtt.on('error', function (e: string) {
        log('warn', 'mqtt: ' + e);
      });
    }
    mqtt.connect();
    // The module reports nothing when the TCP connection itself fails: try again if no CONNACK.
    later(function () {
      if (!connected) {
        log('info', 'mqtt: no connection to ' + addr.host + ', retrying');
        mqtt!.disconnect(); // created just above, before this timer was set
        connectBroker();
      }
    }, 15000);
  }

  function connectWifi(): void {
    var wifi = require('Wifi');
    var w = cfg.wifi as { ssid: string; password?: string };
    wifi.connect(w.ssid, { password: w.password }, function (err: string | null) {
      if (err) {
        log('warn', 'wifi: ' + err);
        later(connectWifi, 10000);
        return;
      }
      if (cfg.ntp) wifi.setSNTP(cfg.ntp, 0);
      connectBroker();
    });
  }

  return {
    start: function (s) {
      sink = s;
      stopped = false;
      if (cfg.wifi) connectWifi();
      else connectBroker();
    },
    subscribe: function (topic) {
      if (mqtt && connected) mqtt.subscribe(topic, { qos: 0 });
    },
    publish: function (topic, data) {
      if (!mqtt || !connected) throw new Error('mqtt not connected');
      mqtt.publish(topic, E.toString(data), 0);
    },
    stop: function () {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      if (mqtt) mqtt.disconnect();
      connected = false;
    },
  };
}
