/**
 * Links to Puck.js-class devices over Bluetooth LE UART (the Nordic UART Service, which Espruino
 * boards expose), for the gateway: the library is @abandonware/noble (the one the espruino tool
 * itself uses: a dependency of espruino 0.1.67), or any object with its interface (tests inject a
 * simulated peripheral; docs/gateway-ble.md).
 *
 *   const ble = bleUartLinks({ noble, addresses: ['aa:bb:cc:dd:ee:ff'], log });
 *   ble.on('link', (stream, { name }) => gateway.attach(stream, { name, consoleLine: 'E4.gateway()' }));
 *   await ble.start(); ... await ble.stop();
 *
 * Each address is connected to when it is seen advertising, and again after every disconnect,
 * with back-off (1 s doubling to 30 s); every state change is logged: scanning, connecting,
 * connected, disconnected, retry in N s.
 */
import { EventEmitter } from 'node:events';

/** Nordic UART Service and its characteristics, as noble spells UUIDs (lowercase, no dashes). */
export const NUS_SERVICE = '6e400001b5a3f393e0a9e50e24dcca9e';
export const NUS_RX = '6e400002b5a3f393e0a9e50e24dcca9e'; // we write here
export const NUS_TX = '6e400003b5a3f393e0a9e50e24dcca9e'; // the device notifies here
/** Bytes per write: the default ATT MTU (23) less the 3-byte header. */
export const BLE_CHUNK = 20;

/** Loads noble, or says in one line how to get a BLE stack. */
export async function loadNoble() {
  try {
    return (await import('@abandonware/noble')).default;
  } catch (e) {
    if (e.code === 'ERR_MODULE_NOT_FOUND') throw new Error('no Bluetooth LE library: the BLE gateway uses @abandonware/noble, installed with the espruino tool (npm ci)');
    throw new Error(
      `no Bluetooth LE stack (${e.code || e.message}): this system offers no Bluetooth socket; on Linux the gateway needs a Bluetooth adapter and BlueZ (sudo apt-get install bluez), run as root or with cap_net_raw for node (docs/gateway-ble.md)`,
    );
  }
}

const normal = (a) => a.toLowerCase();

/**
 * A peripheral's NUS as a byte stream: write(bytes) (sent in BLE_CHUNK pieces, in order), 'data'
 * (notifications), 'close' (once, on disconnect or close()).
 */
export function nusStream(peripheral, rx, tx) {
  const s = new EventEmitter();
  let open = true;
  let queue = Promise.resolve();
  const onData = (data) => {
    if (open) s.emit('data', Buffer.from(data));
  };
  tx.on('data', onData);
  s.write = (bytes) => {
    const b = Buffer.from(bytes);
    for (let i = 0; i < b.length; i += BLE_CHUNK) {
      const part = b.subarray(i, i + BLE_CHUNK);
      // Without response (as the Nordic UART Service expects), one after the other.
      queue = queue.then(() => (open ? rx.writeAsync(part, true) : undefined)).catch((e) => s.emit('error', e));
    }
    return true;
  };
  s.end = s.close = () => {
    if (!open) return;
    open = false;
    tx.removeListener('data', onData);
    s.emit('close');
    peripheral.disconnectAsync().catch(() => {});
  };
  s.closed = () => !open;
  return s;
}

/** Keeps a NUS link to each of `addresses`; emits 'link' (stream, { name, address }). */
export function bleUartLinks({ noble, addresses, log = () => {}, backoff = { firstMs: 1000, maxMs: 30000 } }) {
  const ev = new EventEmitter();
  const wanted = new Map(addresses.map((a) => [normal(a), { state: 'idle', delay: backoff.firstMs, timer: null, stream: null }]));
  let stopped = false;
  let scanning = false;

  const scan = async () => {
    if (stopped || scanning || ![...wanted.values()].some((w) => w.state === 'idle')) return;
    scanning = true;
    log(`ble: scanning for ${[...wanted].filter(([, w]) => w.state === 'idle').map(([a]) => a).join(', ')}`);
    await noble.startScanningAsync([NUS_SERVICE], false).catch((e) => log(`ble: cannot scan: ${e.message}`));
  };
  const stopScan = async () => {
    if (!scanning) return;
    scanning = false;
    await noble.stopScanningAsync().catch(() => {});
  };
  const retry = (address, w, why) => {
    w.state = 'waiting';
    log(`ble: ${address}: ${why}; retry in ${Math.round(w.delay / 1000)} s`);
    w.timer = setTimeout(() => {
      w.timer = null;
      w.state = 'idle';
      scan();
    }, w.delay);
    w.delay = Math.min(w.delay * 2, backoff.maxMs);
  };

  const onDiscover = async (p) => {
    const address = normal(p.address || p.id || '');
    const w = wanted.get(address);
    if (!w || w.state !== 'idle' || stopped) return;
    w.state = 'connecting';
    // One connection at a time is what most adapters allow while scanning: stop, connect, resume.
    await stopScan();
    log(`ble: ${address}: connecting`);
    try {
      await p.connectAsync();
      const { characteristics } = await p.discoverSomeServicesAndCharacteristicsAsync([NUS_SERVICE], [NUS_RX, NUS_TX]);
      const rx = characteristics.find((c) => c.uuid === NUS_RX);
      const tx = characteristics.find((c) => c.uuid === NUS_TX);
      if (!rx || !tx) throw new Error('no Nordic UART Service (not an Espruino board?)');
      await tx.subscribeAsync();
      const stream = nusStream(p, rx, tx);
      w.stream = stream;
      w.state = 'connected';
      w.delay = backoff.firstMs;
      log(`ble: ${address}: connected`);
      p.once('disconnect', () => {
        stream.close();
        w.stream = null;
        if (!stopped) retry(address, w, 'disconnected');
      });
      ev.emit('link', stream, { name: `ble:${address}`, address });
    } catch (e) {
      p.disconnectAsync?.().catch(() => {});
      retry(address, w, `cannot connect: ${e.message}`);
    }
    scan();
  };

  const onState = (state) => {
    log(`ble: adapter ${state}`);
    if (state === 'poweredOn') scan();
    else scanning = false;
  };

  ev.start = async () => {
    noble.on('discover', onDiscover);
    noble.on('stateChange', onState);
    if (noble.state === 'poweredOn') await scan();
    else log(`ble: waiting for the adapter (${noble.state || 'unknown'})`);
  };
  ev.stop = async () => {
    stopped = true;
    noble.removeListener('discover', onDiscover);
    noble.removeListener('stateChange', onState);
    await stopScan();
    for (const w of wanted.values()) {
      if (w.timer) clearTimeout(w.timer);
      if (w.stream) w.stream.close();
    }
  };
  ev.state = (address) => wanted.get(normal(address))?.state;
  return ev;
}
