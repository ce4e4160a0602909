/**
 * Shared setup of the integration tests over real TCP (fleet, gateway, proxy): which brokers to
 * run against, the built image, a C2 with a fast KDF, and small waiting helpers.
 *
 * Brokers: the embedded aedes always; Debian's mosquitto when installed (/usr/sbin/mosquitto or
 * $MOSQUITTO). Under CI=true a missing mosquitto is a failure, not a skip.
 */
import type { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { haveMosquitto, startBroker } from '../../host-sim/services/broker.ts';
import { DEFAULT_IMAGE, loadImage } from '../../host-sim/shared/image.ts';
import type { E4Api, LoadedImage } from '../../host-sim/shared/image.ts';
import { initC2 } from '../../host-sim/c2/c2.ts';
import { MqttTransport } from '../../host-sim/shared/mqtt-transport.ts';
import type { QoS } from '../../host-sim/shared/mqtt-transport.ts';
import { espruinoBoard } from '../../host-sim/sim/espruino-board.ts';
import { flashSim } from '../../host-sim/sim/flash-sim.ts';
import { deviceConfigFor, uploadScript, verifyFlash } from '../../host-sim/shared/flash-files.ts';
import { ROOT } from '../../host-sim/shared/image.ts';

/** A broker as startBroker runs it. */
export type TestBroker = Awaited<ReturnType<typeof startBroker>>;

/** A C2 of the tests: its own MQTT connection to the broker, and a way to start sending late. */
export type TestC2 = Awaited<ReturnType<typeof initC2>> & {
  link: MqttTransport;
  /** Sends from now on (a C2 made with send: false only queues). */
  enableSend(): void;
};

/** The state of a suite made by brokerPerSuite. */
export interface BrokerSuite {
  /** The suite's broker (throws before the suite's beforeAll started it). */
  readonly broker: TestBroker;
  /** Run after the suite's tests, last in first out, before the broker closes. */
  cleanup: (() => Promise<unknown>)[];
  c2(options?: C2Options): Promise<{ c2: TestC2; tmp: TempDir }>;
}

export interface C2Options {
  passphrase?: string;
  /** Send commands at once (default); false: they stay queued until enableSend(). */
  send?: boolean;
}

export interface TempDir {
  dir: string;
  remove(): void;
}

/** A message the observer saw. */
export interface SeenMessage {
  topic: string;
  payload: Buffer;
}

/** An MQTT connection on `#` that keeps what it sees. */
export type Observer = MqttTransport & { seen: SeenMessage[] };

/** The image every simulated device runs (override with E4_IMAGE). */
export const IMAGE_PATH = resolve(process.env.E4_IMAGE || DEFAULT_IMAGE);

/** The Puck.js board image (`npm run build`). */
export const PUCK_IMAGE = join(ROOT, 'dist/boards/espruino-puckjs.min.js');

export function image(): LoadedImage {
  return loadImage(IMAGE_PATH);
}

/** The image's exports loaded in the host (what the C2 and the gateway use). */
export function hostE4(): E4Api {
  return createRequire(import.meta.url)(IMAGE_PATH);
}

export function brokerKinds(): string[] {
  if (haveMosquitto()) return ['aedes', 'mosquitto'];
  if (process.env.CI === 'true') return ['aedes', 'mosquitto']; // fails loudly in startBroker
  return ['aedes'];
}

export async function withBroker(kind: string): Promise<TestBroker> {
  return startBroker({ kind });
}

/** For the enclosing describe: a broker of `kind` started before its tests, and a cleanup list
 * run (last in, first out) after them, before the broker closes. */
export function brokerPerSuite(kind: string): BrokerSuite {
  let broker: TestBroker | null = null;
  const suite: BrokerSuite = {
    get broker() {
      if (!broker) throw new Error(`the ${kind} broker of the suite is not running`);
      return broker;
    },
    cleanup: [],
    c2: c2OnBroker,
  };
  beforeAll(async () => {
    broker = await withBroker(kind);
  });
  afterAll(async () => {
    for (const f of suite.cleanup.reverse()) await f().catch(() => {});
    await suite.broker.close();
  });
  /** A C2 on the suite's broker in a fresh temporary directory, both removed after the suite. */
  async function c2OnBroker(options?: C2Options) {
    const tmp = tempDir();
    suite.cleanup.push(async () => tmp.remove());
    const c2 = await c2On(suite.broker.url, tmp.dir, options);
    suite.cleanup.push(async () => {
      await c2.close();
      await c2.link.close();
    });
    return { c2, tmp };
  }
  return suite;
}

export function tempDir(prefix = 'e4-test-'): TempDir {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Argon2id parameters small enough for tests (the C2's own tests cover the defaults). */
export const FAST_KDF = { t: 1, m: 64, p: 1 };

/** A C2 whose commands go to the broker with QoS 2 over its own connection. */
export async function c2On(
  brokerUrl: string,
  dir: string,
  { passphrase = 'test passphrase', send = true }: C2Options = {},
): Promise<TestC2> {
  const link = new MqttTransport(brokerUrl);
  await link.open();
  const c2 = await initC2({
    dbPath: join(dir, 'c2.db'),
    passphrase,
    kdf: FAST_KDF,
    e4: hostE4(),
    send: send ? (topic: string, bytes: Uint8Array, { qos }: { qos: QoS }) => link.publish(topic, Buffer.from(bytes), qos) : undefined,
  });
  return Object.assign(c2, {
    link,
    enableSend: () => c2.setSend((topic: string, bytes: Uint8Array, { qos }: { qos: QoS }) => link.publish(topic, Buffer.from(bytes), qos)),
  });
}

/** An MQTT client on `#` that keeps every message it sees. */
export async function observer(brokerUrl: string): Promise<Observer> {
  const t: Observer = Object.assign(new MqttTransport(brokerUrl), { seen: [] as SeenMessage[] });
  t.onMessage = (topic, payload) => t.seen.push({ topic, payload: Buffer.from(payload) });
  await t.open();
  await t.subscribe('#', 1);
  return t;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once `pred()` is true; rejects after `ms` with `what`. */
export async function until(pred: () => unknown, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Resolves with the next `event` of `emitter` (or rejects after `ms`). */
export function next(emitter: Pick<EventEmitter, 'once' | 'off'>, event: string, ms = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const on = (ev: unknown) => {
      clearTimeout(t);
      resolve(ev);
    };
    emitter.once(event, on);
  });
}

/**
 * The C2 of `c2` registers a Puck.js monitor ('puck', publishes `topic`) and a phone (subscribes),
 * and an emulated Puck.js board is flashed with the Puck.js image and the monitor's device file,
 * as `npm run flash` does (upload script, CRC check), then booted. For the gateway tests.
 */
export async function flashedPuck(c2: TestC2, topic: string) {
  await c2.addTopic(topic);
  await c2.addDevice({ name: 'puck' });
  await c2.addDevice({ name: 'phone' });
  await c2.grant('puck', topic, { role: 'pub' });
  await c2.grant('phone', topic, { role: 'sub' });
  const cfg = await c2.deviceConfig('puck', { clock: 'monotonic', transport: { link: { kind: 'ble-uart' } } });
  const board = espruinoBoard({ flash: flashSim({ size: 64 * 1024 }), time: 100 });
  const { script, files } = uploadScript({ image: readFileSync(PUCK_IMAGE, 'latin1'), config: deviceConfigFor('espruino-puckjs', cfg) });
  if (!board.upload(script)) throw new Error('the emulated board refused the upload script');
  verifyFlash(board.printed, files);
  return { cfg, board, E4: board.boot() };
}
