/**
 * The gateway's BLE UART links (host-sim/services/ble-uart.ts) against a simulated Bluetooth stack: a
 * noble-compatible object whose one peripheral offers the Nordic UART Service and is the real
 * Puck.js image on an emulated Espruino board (flashed the way `npm run flash` does). The gateway
 * finds it by address, connects, switches its console to the link (`E4.gateway()`), and the
 * reading it publishes reaches a phone through the broker; when the radio link drops, the
 * gateway logs it, reconnects with back-off and the next reading gets through too.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { boardLink, boardRunner } from '../host-sim/sim/board-link.ts';
import { BLE_CHUNK, bleUartLinks, NUS_RX, NUS_SERVICE, NUS_TX, type WritableCharacteristic } from '../host-sim/services/ble-uart.ts';
import { SimDevice } from '../host-sim/shared/device.ts';
import { espruinoBoard } from '../host-sim/sim/espruino-board.ts';
import { Gateway, loadImageCodec } from '../host-sim/services/gateway.ts';
import { brokerKinds, brokerPerSuite, flashedPuck, image, until } from './support/sim.ts';

const TOPIC = 'health/heart-rate';
const ADDRESS = 'e7:12:34:56:78:9a';

/** noble's surface as ble-uart.ts uses it (its Noble interface), with one peripheral: the emulated board. */
function simulatedNoble(board: ReturnType<typeof espruinoBoard>) {
  let link: ReturnType<typeof boardLink> | null = null;
  const connected = () => {
    if (!link) throw new Error('the simulated peripheral is not connected');
    return link;
  };
  const writes: { bytes: number; withoutResponse: boolean }[] = [];
  const p = Object.assign(new EventEmitter(), {
    address: ADDRESS.toUpperCase(), // noble reports addresses in either case
    connectAsync: async () => {
      // As on Espruino: a new BLE connection gets the console.
      board.Bluetooth.setConsole();
      link = boardLink(board, 'Bluetooth');
    },
    disconnectAsync: async () => {
      if (link) link.close();
      link = null;
    },
    /** The radio link drops (out of range): the board's end closes, noble reports it. */
    drop: () => {
      connected().close();
      link = null;
      board.NRF.emit('disconnect');
      p.emit('disconnect');
    },
    discoverSomeServicesAndCharacteristicsAsync: async (services: string[], chars: string[]) => {
      expect(services).toEqual([NUS_SERVICE]);
      expect(chars).toEqual([NUS_RX, NUS_TX]);
      const rx: WritableCharacteristic = {
        uuid: NUS_RX,
        writeAsync: async (b, withoutResponse) => {
          writes.push({ bytes: b.length, withoutResponse });
          if (link) link.write(b);
        },
      };
      const tx = Object.assign(new EventEmitter(), {
        uuid: NUS_TX,
        subscribeAsync: async () => {
          connected().on('data', (d: Uint8Array) => tx.emit('data', Buffer.from(d), true));
        },
      });
      return { characteristics: [rx, tx] };
    },
  });
  const noble = Object.assign(new EventEmitter(), {
    state: 'poweredOn',
    scans: 0,
    writes,
    startScanningAsync: async (services: string[]) => {
      expect(services).toEqual([NUS_SERVICE]);
      noble.scans++;
      setImmediate(() => noble.emit('discover', p));
    },
    stopScanningAsync: async () => {},
    peripheral: p,
  });
  return noble;
}

describe.each(brokerKinds())('gateway over BLE UART (simulated stack) to the Puck.js image, broker %s', (kind) => {
  const suite = brokerPerSuite(kind);
  const cleanup = suite.cleanup;

  it('connects by address, bridges a reading to the broker, logs a dropped link and reconnects with back-off', async () => {
    const { c2 } = await suite.c2({ send: false });
    const { cfg, board, E4 } = await flashedPuck(c2, TOPIC);
    /** The device object the booted image made. */
    const device = () => {
      const d = E4.device();
      if (!d) throw new Error('the Puck.js image made no device');
      return d;
    };
    const runner = boardRunner(board);
    cleanup.push(async () => runner.stop());

    const gw = new Gateway({ broker: suite.broker.url, codec: loadImageCodec(), ackTimeoutMs: 300 });
    await gw.start();
    cleanup.push(() => gw.stop());
    const noble = simulatedNoble(board);
    const log: string[] = [];
    const ble = bleUartLinks({ noble, addresses: [ADDRESS], log: (m) => log.push(m), backoff: { firstMs: 100, maxMs: 400 } });
    ble.on('link', (stream, { name }) => gw.attach(stream, { name, consoleLine: 'E4.gateway()' }));
    await ble.start();
    cleanup.push(() => ble.stop());
    await until(() => device().connected && [...gw.links][0]?.filters.has('e4/' + cfg.id), 5000, 'the link handshake over BLE');
    expect(log).toContain(`ble: ${ADDRESS}: connected`);

    const phone = new SimDevice({ image: image(), config: await c2.deviceConfig('phone'), network: suite.broker.url, subscribe: [TOPIC] });
    await phone.start();
    cleanup.push(() => phone.stop());
    const got: string[] = [];
    phone.on('data', (e) => got.push(e.payload.toString()));
    // The queued grant reaches the Puck.js over BLE (its monotonic clock calibrates on it).
    let commands = 0;
    device().on('command', () => commands++);
    c2.enableSend();
    await c2.flush();
    await until(() => commands === 1, 5000, 'the grant at the Puck.js');
    device().publish(TOPIC, '{"bpm":71,"n":1}');
    await until(() => got.length === 1, 5000, 'the first reading at the phone');
    // Written without response, never more than one ATT payload at a time.
    expect(noble.writes.length).toBeGreaterThan(0);
    for (const w of noble.writes) {
      expect(w.bytes).toBeLessThanOrEqual(BLE_CHUNK);
      expect(w.withoutResponse).toBe(true);
    }

    // Out of range: the gateway logs it and reconnects after its back-off; readings flow again.
    noble.peripheral.drop();
    await until(() => log.some((l) => l === `ble: ${ADDRESS}: disconnected; retry in 0 s`), 2000, 'the logged disconnect');
    await until(() => log.filter((l) => l === `ble: ${ADDRESS}: connected`).length === 2, 5000, 'the reconnection');
    await until(
      () => device().connected && [...gw.links].some((l) => l.filters.has('e4/' + cfg.id)),
      5000,
      'the link handshake after reconnecting',
    );
    device().publish(TOPIC, '{"bpm":72,"n":2}');
    await until(() => got.length === 2, 5000, 'a reading after the reconnection');
    expect(got).toEqual(['{"bpm":71,"n":1}', '{"bpm":72,"n":2}']);
    expect(noble.scans).toBe(2);
  });
});
