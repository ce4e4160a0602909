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

/*
 * noble's surface as this module uses it. @abandonware/noble is an optional dependency of the
 * espruino tool (a native addon that may not build), so its typings cannot be relied on; they
 * also omit `state`, which the adapter's readiness is read from.
 */

/** A characteristic the gateway writes to (the NUS RX). */
export interface WritableCharacteristic {
  uuid: string;
  writeAsync(data: Buffer, withoutResponse: boolean): Promise<void>;
}

/** A characteristic that notifies (the NUS TX). */
export interface NotifyingCharacteristic {
  uuid: string;
  subscribeAsync(): Promise<void>;
  on(event: 'data', listener: (data: Buffer, isNotification: boolean) => void): unknown;
  removeListener(event: 'data', listener: (data: Buffer, isNotification: boolean) => void): unknown;
}

/** A device seen advertising. */
export interface BlePeripheral {
  address?: string;
  id?: string;
  connectAsync(): Promise<void>;
  disconnectAsync(): Promise<void>;
  discoverSomeServicesAndCharacteristicsAsync(
    serviceUUIDs: string[],
    characteristicUUIDs: string[],
  ): Promise<{ characteristics: Array<WritableCharacteristic | NotifyingCharacteristic> }>;
  once(event: 'disconnect', listener: () => void): unknown;
}

/** The Bluetooth adapter (noble's default export). */
export interface Noble {
  /** 'poweredOn' once the adapter is usable. */
  state?: string;
  startScanningAsync(serviceUUIDs: string[], allowDuplicates: boolean): Promise<void>;
  stopScanningAsync(): Promise<void>;
  on(event: 'discover', listener: (peripheral: BlePeripheral) => void): unknown;
  on(event: 'stateChange', listener: (state: string) => void): unknown;
  removeListener(event: 'discover', listener: (peripheral: BlePeripheral) => void): unknown;
  removeListener(event: 'stateChange', listener: (state: string) => void): unknown;
}

/** Optional: named in a variable so that typechecking does not need it installed. */
const NOBLE_PACKAGE = '@abandonware/noble';

function isNoble(x: unknown): x is Noble {
  return typeof x === 'object' && x !== null && 'startScanningAsync' in x && typeof x.startScanningAsync === 'function';
}

/** Loads noble, or says in one line how to get a BLE stack. */
export async function loadNoble(): Promise<Noble> {
  let noble: unknown;
  try {
    noble = (await import(NOBLE_PACKAGE)).default;
  } catch (e) {
    const err = e as NodeJS.ErrnoException; // what a failed import throws
    if (err.code === 'ERR_MODULE_NOT_FOUND')
      throw new Error('no Bluetooth LE library: the BLE gateway uses @abandonware/noble, installed with the espruino tool (npm ci)', {
        cause: e,
      });
    throw new Error(
      `no Bluetooth LE stack (${err.code || err.message}): this system offers no Bluetooth socket; on Linux the gateway needs a Bluetooth adapter and BlueZ (sudo apt-get install bluez), run as root or with cap_net_raw for node (docs/gateway-ble.md)`,
      { cause: e },
    );
  }
  if (!isNoble(noble)) throw new Error(`no Bluetooth LE library: ${NOBLE_PACKAGE} does not export noble's interface (startScanningAsync)`);
  return noble;
}

const normal = (a: string): string => a.toLowerCase();

/** Events of a NUS stream. */
interface NusStreamEvents {
  data: [Buffer];
  close: [];
  error: [Error];
}

/** A peripheral's Nordic UART Service as a byte stream (nusStream()). */
export interface NusStream extends EventEmitter<NusStreamEvents> {
  write(bytes: Uint8Array): boolean;
  end(): void;
  close(): void;
  closed(): boolean;
}

/**
 * A peripheral's NUS as a byte stream: write(bytes) (sent in BLE_CHUNK pieces, in order), 'data'
 * (notifications), 'close' (once, on disconnect or close()).
 */
export function nusStream(peripheral: BlePeripheral, rx: WritableCharacteristic, tx: NotifyingCharacteristic): NusStream {
  const s = new EventEmitter<NusStreamEvents>();
  let open = true;
  let queue: Promise<unknown> = Promise.resolve();
  const onData = (data: Buffer) => {
    if (open) s.emit('data', Buffer.from(data));
  };
  tx.on('data', onData);
  const write = (bytes: Uint8Array): boolean => {
    const b = Buffer.from(bytes);
    for (let i = 0; i < b.length; i += BLE_CHUNK) {
      const part = b.subarray(i, i + BLE_CHUNK);
      // Without response (as the Nordic UART Service expects), one after the other.
      queue = queue.then(() => (open ? rx.writeAsync(part, true) : undefined)).catch((e) => s.emit('error', e));
    }
    return true;
  };
  const close = (): void => {
    if (!open) return;
    open = false;
    tx.removeListener('data', onData);
    s.emit('close');
    peripheral.disconnectAsync().catch(() => {});
  };
  return Object.assign(s, { write, end: close, close, closed: () => !open });
}

/** Where a wanted device is: waiting to be seen, being connected, connected, or backing off. */
export type BleLinkState = 'idle' | 'connecting' | 'connected' | 'waiting';

interface WantedDevice {
  state: BleLinkState;
  /** The next back-off (ms). */
  delay: number;
  timer: NodeJS.Timeout | null;
  stream: NusStream | null;
}

export interface BleUartOptions {
  noble: Noble;
  /** Bluetooth addresses (aa:bb:cc:dd:ee:ff, either case). */
  addresses: string[];
  /** Each state change, as one line. */
  log?: (line: string) => void;
  backoff?: { firstMs: number; maxMs: number };
}

interface BleUartEvents {
  link: [NusStream, { name: string; address: string }];
}

/** The links bleUartLinks() keeps. */
export interface BleUartLinks extends EventEmitter<BleUartEvents> {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Where the device with this address is, or undefined for one not wanted. */
  state(address: string): BleLinkState | undefined;
}

/** Keeps a NUS link to each of `addresses`; emits 'link' (stream, { name, address }). */
export function bleUartLinks({
  noble,
  addresses,
  log = () => {},
  backoff = { firstMs: 1000, maxMs: 30000 },
}: BleUartOptions): BleUartLinks {
  const ev = new EventEmitter<BleUartEvents>();
  const wanted = new Map(
    addresses.map((a): [string, WantedDevice] => [normal(a), { state: 'idle', delay: backoff.firstMs, timer: null, stream: null }]),
  );
  let stopped = false;
  let scanning = false;

  const scan = async () => {
    if (stopped || scanning || ![...wanted.values()].some((w) => w.state === 'idle')) return;
    scanning = true;
    log(
      `ble: scanning for ${[...wanted]
        .filter(([, w]) => w.state === 'idle')
        .map(([a]) => a)
        .join(', ')}`,
    );
    await noble.startScanningAsync([NUS_SERVICE], false).catch((e) => log(`ble: cannot scan: ${e.message}`));
  };
  const stopScan = async () => {
    if (!scanning) return;
    scanning = false;
    await noble.stopScanningAsync().catch(() => {});
  };
  const retry = (address: string, w: WantedDevice, why: string) => {
    w.state = 'waiting';
    log(`ble: ${address}: ${why}; retry in ${Math.round(w.delay / 1000)} s`);
    w.timer = setTimeout(() => {
      w.timer = null;
      w.state = 'idle';
      scan();
    }, w.delay);
    w.delay = Math.min(w.delay * 2, backoff.maxMs);
  };

  const onDiscover = async (p: BlePeripheral) => {
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
      if (!rx || !tx || !('writeAsync' in rx) || !('subscribeAsync' in tx))
        throw new Error('no Nordic UART Service (not an Espruino board?)');
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
      retry(address, w, `cannot connect: ${(e as Error).message}`);
    }
    scan();
  };

  const onState = (state: string) => {
    log(`ble: adapter ${state}`);
    if (state === 'poweredOn') scan();
    else scanning = false;
  };

  const start = async (): Promise<void> => {
    noble.on('discover', onDiscover);
    noble.on('stateChange', onState);
    if (noble.state === 'poweredOn') await scan();
    else log(`ble: waiting for the adapter (${noble.state || 'unknown'})`);
  };
  const stop = async (): Promise<void> => {
    stopped = true;
    noble.removeListener('discover', onDiscover);
    noble.removeListener('stateChange', onState);
    await stopScan();
    for (const w of wanted.values()) {
      if (w.timer) clearTimeout(w.timer);
      if (w.stream) w.stream.close();
    }
  };
  const state = (address: string): BleLinkState | undefined => wanted.get(normal(address))?.state;
  return Object.assign(ev, { start, stop, state });
}
