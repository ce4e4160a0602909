/**
 * The framed link to a gateway (docs/link.md) for nRF52 boards: over Bluetooth LE UART (the
 * Nordic UART service Espruino exposes) or a serial port. Frames: firmware/link/frame.ts.
 *
 * Protocol, device side: HELLO(seq, client id) when the link starts, answered by ACK; then
 * SUBSCRIBE(seq, topic) for the control topic and each topic, each answered by ACK (status 0 =
 * subscribed). Requests without an ACK are sent again every second, up to 3 times. PUBLISH from
 * the gateway is handed to the runtime and acknowledged when it carries a seq; the device's own
 * PUBLISH frames carry seq 0 (no ACK, like MQTT QoS 0). A HELLO from the gateway (it restarted)
 * makes the device start over.
 *
 * BLE UART: while a connection is the Espruino console, the bytes are console input. The gateway
 * sends the console line `E4.gateway()`; the device then moves the console to LoopbackA (not
 * forced: the next connection gets the console again, so the IDE and `npm run flash` keep
 * working) and speaks frames on that connection until it ends.
 * Serial: `Serial1.setup(baud, {rx, tx})` and the console moved off Serial1 (also after each BLE
 * connection, when Espruino hands it back to Serial1).
 */
import type { Log } from '../../firmware/hal';
import { ACK, encodeFrame, frameDecoder, HELLO, PUBLISH, SUBSCRIBE } from '../../firmware/link/frame';
import type { Transport, TransportSink } from '../shared/runtime';

/** The part of Espruino's Bluetooth (BLE UART), Serial1 and Telnet objects the link uses. */
interface EspruinoPort {
  write(data: Uint8Array): void;
  on(event: 'data', fn: (data: string) => void): void;
  removeAllListeners(event: string): void;
}

interface EspruinoSerial extends EspruinoPort {
  setup(baud: number, options: { rx?: string | number; tx?: string | number }): void;
}

declare var Bluetooth: EspruinoPort;
declare var Telnet: EspruinoPort;
declare var Serial1: EspruinoSerial;
declare var LoopbackA: { setConsole(): void };
declare var NRF: { on(event: 'disconnect', fn: () => void): void };
declare var setInterval: (fn: () => void, ms: number) => number;
declare var clearInterval: (id: number) => void;

export interface LinkConfig {
  kind?: 'ble-uart' | 'serial';
  baud?: number;
  /** Serial pins, by name as the device file gives them (e.g. "D8") or number. */
  rx?: string | number;
  tx?: string | number;
  /** Largest payload accepted from the gateway (default 512). */
  maxPayload?: number;
  /** Longest topic accepted from the gateway, in bytes (default 96). */
  maxTopic?: number;
}

interface Pending {
  type: number;
  topic: string;
  payload: Uint8Array | null;
  tries: number;
}

export interface LinkTransport extends Transport {
  /** BLE UART: called (as E4.gateway()) by the gateway on the console to switch to frames. */
  attach(): void;
}

export function linkTransport(cfg: LinkConfig, id: Uint8Array, log: Log): LinkTransport {
  var ble = cfg.kind !== 'serial';
  var port: EspruinoPort | null = null; // Bluetooth or Serial1, taken at start (absent on some builds)
  var sink: TransportSink | null = null;
  var seq = 0;
  var pending: { [seq: string]: Pending } = {};
  var timer: number | null = null;
  var up = false;

  /** Runs once start() has taken the port: from start(), attach() and the port's own data. */
  function send(type: number, s: number, topic: string, payload: Uint8Array | null): void {
    port!.write(encodeFrame(type, s, topic, payload));
  }

  /** Sends `type` as a request (seq > 0) and keeps it for retransmission until its ACK; with no
   * argument, retransmits what is still unanswered (every second, 3 times). */
  function request(type?: number, topic?: string, payload?: Uint8Array | null): void {
    if (type !== undefined) {
      seq = (seq % 255) + 1;
      pending['$' + seq] = { type: type, topic: topic || '', payload: payload || null, tries: 0 };
      send(type, seq, topic || '', payload || null);
    } else {
      for (var k in pending) {
        var p = pending[k];
        if (p.tries++ >= 3) {
          log('warn', 'link: no answer to frame ' + k.substr(1));
          delete pending[k];
        } else send(p.type, +k.substr(1), p.topic, p.payload);
      }
    }
    var any = false;
    for (var j in pending) any = !!j;
    if (any && !timer) timer = setInterval(request, 1000);
    if (!any && timer) {
      clearInterval(timer);
      timer = null;
    }
  }

  function hello(): void {
    up = false;
    pending = {};
    request(HELLO, '', id);
  }

  var decoder = frameDecoder(
    function (f) {
      if (f.type === ACK) {
        var p = pending['$' + f.seq];
        if (!p) return; // late duplicate
        delete pending['$' + f.seq];
        if (f.payload.length && f.payload[0]) log('warn', 'link: gateway refused ' + (p.topic || 'frame ' + f.seq));
        else if (p.type === HELLO && sink) {
          up = true;
          sink.up();
        }
      } else if (f.type === PUBLISH) {
        if (f.seq) send(ACK, f.seq, '', new Uint8Array(1));
        if (up && sink) sink.message(f.topic, f.payload);
      } else if (f.type === HELLO) {
        hello();
      }
    },
    { maxPayload: cfg.maxPayload || 512, maxTopic: cfg.maxTopic || 96 }
  );

  var link: LinkTransport = {
    start: function (s) {
      sink = s;
      var nrf = typeof NRF !== 'undefined';
      // The Linux build has no Bluetooth: its telnet console (--telnet) stands in for the BLE
      // UART console, and the gateway dials it (gateway --connect).
      if (ble && !nrf && typeof Telnet !== 'undefined') port = Telnet;
      else if (!nrf) {
        log('error', 'link: no Bluetooth/Serial1 on this board');
        return;
      }
      if (ble) {
        if (!nrf) return;
        port = Bluetooth;
        NRF.on('disconnect', function () {
          decoder.reset();
          if (up && sink) sink.down();
          up = false;
          pending = {};
        });
        return; // the gateway calls attach() (E4.gateway()) once connected
      }
      port = Serial1;
      Serial1.setup(cfg.baud || 115200, { rx: cfg.rx, tx: cfg.tx });
      LoopbackA.setConsole();
      // Espruino gives the console back to Serial1 when a BLE connection ends.
      NRF.on('disconnect', function () {
        LoopbackA.setConsole();
      });
      Serial1.on('data', decoder.push);
      hello();
    },
    attach: function () {
      if (!ble || !port) return;
      LoopbackA.setConsole();
      decoder.reset();
      port.removeAllListeners('data');
      port.on('data', decoder.push);
      hello();
    },
    subscribe: function (topic) {
      request(SUBSCRIBE, topic, null);
    },
    publish: function (topic, data) {
      send(PUBLISH, 0, topic, data);
    },
    stop: function () {
      if (timer) clearInterval(timer);
      timer = null;
      pending = {};
      up = false;
    },
  };
  return link;
}
