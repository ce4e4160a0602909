/**
 * Shared setup of the integration tests over real TCP (fleet, gateway, proxy): which brokers to
 * run against, the built image, a C2 with a fast KDF, and small waiting helpers.
 *
 * Brokers: the embedded aedes always; Debian's mosquitto when installed (/usr/sbin/mosquitto or
 * $MOSQUITTO). Under CI=true a missing mosquitto is a failure, not a skip.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { haveMosquitto, startBroker } from '../../host-sim/services/broker.ts';
import { DEFAULT_IMAGE, loadImage } from '../../host-sim/shared/image.ts';
import { initC2 } from '../../host-sim/c2/c2.ts';
import { MqttTransport } from '../../host-sim/shared/mqtt-transport.ts';

/** The image every simulated device runs (override with E4_IMAGE). */
export const IMAGE_PATH = resolve(process.env.E4_IMAGE || DEFAULT_IMAGE);

export function image() {
  return loadImage(IMAGE_PATH);
}

/** The image's exports loaded in the host (what the C2 and the gateway use). */
export function hostE4() {
  return createRequire(import.meta.url)(IMAGE_PATH);
}

export function brokerKinds() {
  if (haveMosquitto()) return ['aedes', 'mosquitto'];
  if (process.env.CI === 'true') return ['aedes', 'mosquitto']; // fails loudly in startBroker
  return ['aedes'];
}

export async function withBroker(kind) {
  return startBroker({ kind });
}

/** For the enclosing describe: a broker of `kind` started before its tests, and a cleanup list
 * run (last in, first out) after them, before the broker closes. */
export function brokerPerSuite(kind) {
  const suite = { broker: null, cleanup: [] };
  beforeAll(async () => {
    suite.broker = await withBroker(kind);
  });
  afterAll(async () => {
    for (const f of suite.cleanup.reverse()) await f().catch(() => {});
    await suite.broker.close();
  });
  /** A C2 on the suite's broker in a fresh temporary directory, both removed after the suite. */
  suite.c2 = async (options) => {
    const tmp = tempDir();
    suite.cleanup.push(async () => tmp.remove());
    const c2 = await c2On(suite.broker.url, tmp.dir, options);
    suite.cleanup.push(async () => {
      await c2.close();
      await c2.link.close();
    });
    return { c2, tmp };
  };
  return suite;
}

export function tempDir(prefix = 'e4-test-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Argon2id parameters small enough for tests (the C2's own tests cover the defaults). */
export const FAST_KDF = { t: 1, m: 64, p: 1 };

/** A C2 whose commands go to the broker with QoS 2 over its own connection. */
export async function c2On(brokerUrl, dir, { passphrase = 'test passphrase', send = true } = {}) {
  const link = new MqttTransport(brokerUrl);
  await link.open();
  const c2 = await initC2({
    dbPath: join(dir, 'c2.db'),
    passphrase,
    kdf: FAST_KDF,
    e4: hostE4(),
    send: send ? (topic, bytes, { qos }) => link.publish(topic, Buffer.from(bytes), qos) : undefined,
  });
  c2.link = link;
  c2.enableSend = () => c2.setSend((topic, bytes, { qos }) => link.publish(topic, Buffer.from(bytes), qos));
  return c2;
}

/** An MQTT client on `#` that keeps every message it sees. */
export async function observer(brokerUrl) {
  const t = new MqttTransport(brokerUrl);
  t.seen = [];
  t.onMessage = (topic, payload) => t.seen.push({ topic, payload: Buffer.from(payload) });
  await t.open();
  await t.subscribe('#', 1);
  return t;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `pred()` is true; rejects after `ms` with `what`. */
export async function until(pred, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Resolves with the next `event` of `emitter` (or rejects after `ms`). */
export function next(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const on = (ev) => {
      clearTimeout(t);
      resolve(ev);
    };
    emitter.once(event, on);
  });
}
