/**
 * The system over real TCP, against the embedded aedes and Debian's mosquitto: simulated devices
 * (the built image in device-only sandboxes), the C2 library sending commands with QoS 2, and an
 * observer on `#` that records every byte the broker carries.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SimDevice } from '../host-sim/shared/device.ts';
import type { DataEvent, RejectedEvent, SimDeviceOptions } from '../host-sim/shared/device.ts';
import { flashStore } from '../host-sim/shared/hal.ts';
import type { ClockSpec, SimFlashStore } from '../host-sim/shared/hal.ts';
import { MqttTransport } from '../host-sim/shared/mqtt-transport.ts';
import type { QoS } from '../host-sim/shared/mqtt-transport.ts';
import { openC2 } from '../host-sim/c2/c2.ts';
import { brokerKinds, c2On, hostE4, image, observer, sleep, tempDir, until, brokerPerSuite } from './support/sim.ts';

const img = image();

/** How a device of a test system differs from the default (trusted clock, flash in memory). */
interface DeviceOptions {
  store?: SimFlashStore;
  /** A flash file in the test's folder. */
  file?: string;
  clock?: ClockSpec;
  extra?: Partial<SimDeviceOptions>;
}

describe.each(brokerKinds())('fleet over %s', (kind) => {
  const suite = brokerPerSuite(kind);
  const cleanup = suite.cleanup;

  /** A C2 with `topic`, devices granted as given ({ name: role }), started on the broker. */
  async function system(topic: string, roles: Record<string, 'pub' | 'sub' | 'both'>, deviceOpts: Record<string, DeviceOptions> = {}) {
    const { c2, tmp } = await suite.c2({ send: false });
    await c2.addTopic(topic);
    const devices: Record<string, SimDevice> = {};
    for (const [name, role] of Object.entries(roles)) {
      await c2.addDevice({ name });
      await c2.grant(name, topic, { role });
    }
    for (const [name, role] of Object.entries(roles)) {
      const o = deviceOpts[name] || {};
      const dev = new SimDevice({
        image: img,
        config: await c2.deviceConfig(name),
        network: suite.broker.url,
        subscribe: role === 'pub' ? [] : [topic],
        store: o.store || flashStore(o.file ? { file: join(tmp.dir, o.file) } : {}),
        clock: o.clock || 'trusted',
        ...o.extra,
      });
      await dev.start();
      cleanup.push(() => dev.stop());
      devices[name] = dev;
    }
    // On line: the queued grants go out (the keys are those provisioned; the commands calibrate).
    const ran = Object.values(devices).map((d) => new Promise((r) => d.once('command', r)));
    c2.enableSend();
    const flushed = await c2.flush();
    expect(flushed.failed).toEqual([]);
    await Promise.all(ran);
    return { c2, devices, dir: tmp.dir };
  }

  it('plaintext never crosses the broker: readings, commands and keys are all opaque there', async () => {
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const { c2, devices } = await system('plant/temperature', { sensor: 'pub', dashboard: 'sub', archive: 'sub' });
    const got = { dashboard: [] as string[], archive: [] as string[] };
    devices.dashboard.on('data', (e) => got.dashboard.push(e.payload.toString()));
    devices.archive.on('data', (e) => got.archive.push(e.payload.toString()));
    const texts: string[] = [];
    for (let i = 0; i < 25; i++) {
      const t = `temperature=${20 + (i % 7)}.5C reading #${i} SECRET-PLAINTEXT`;
      texts.push(t);
      await devices.sensor.publish('plant/temperature', t);
    }
    await c2.rotateTopic('plant/temperature');
    for (let i = 25; i < 30; i++) {
      const t = `temperature=30.0C reading #${i} SECRET-PLAINTEXT`;
      texts.push(t);
      await devices.sensor.publish('plant/temperature', t);
    }
    await until(() => got.dashboard.length === 30 && got.archive.length === 30, 10000, 'all readings');
    await sleep(200);
    expect(got.dashboard).toEqual(texts);
    expect(got.archive).toEqual(texts);

    const data = obs.seen.filter((s) => s.topic === 'plant/temperature');
    const commands = obs.seen.filter((s) => s.topic.startsWith('e4/'));
    expect(data.length).toBe(30);
    expect(commands.length).toBeGreaterThanOrEqual(6); // 3 grants + 3 rotations
    // Every key any party holds (current and previous), as bytes and as hex.
    const secrets: string[] = [];
    for (const d of Object.values(devices)) {
      const s = d.snapshot();
      secrets.push(s.key, ...s.topics.flatMap((t) => [t.key, t.prevKey].filter((k): k is string => Boolean(k))));
    }
    expect(secrets.length).toBeGreaterThanOrEqual(9);
    for (const s of obs.seen) {
      for (const t of texts) expect(s.payload.includes(t)).toBe(false);
      expect(s.payload.includes('SECRET')).toBe(false);
      for (const k of secrets) {
        expect(s.payload.includes(Buffer.from(k, 'hex'))).toBe(false);
        expect(s.payload.includes(k)).toBe(false);
      }
    }
    // The wire format: timestamp | tag | ciphertext, 24 bytes over the plaintext.
    data.forEach((s, i) => expect(s.payload.length).toBe(Buffer.byteLength(texts[i]) + 24));
  });

  it('a topic key rotation under steady traffic loses no message (key transition)', async () => {
    const { c2, devices } = await system('line/vibration', { motor: 'pub', scada: 'sub', historian: 'both' });
    const got = { scada: new Set<string>(), historian: new Set<string>() };
    const rejected: string[] = [];
    for (const n of ['scada', 'historian'] as const) {
      devices[n].on('data', (e) => got[n].add(e.payload.toString()));
      devices[n].on('rejected', (e) => rejected.push(e.result));
    }
    const sent = [];
    let stop = false;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        const t = `vibration ${i}`;
        await devices.motor.publish('line/vibration', t);
        sent.push(t);
        await sleep(5);
      }
    })();
    await until(() => sent.length >= 40, 5000, 'traffic');
    const before = devices.scada.snapshot().topics[0].key;
    const r = await c2.rotateTopic('line/vibration');
    expect(r.holders.map((h) => h.role)).toEqual(['sub', 'both', 'pub']); // consumers first
    expect(r.delivery.acked.length).toBe(3);
    await until(() => devices.motor.snapshot().topics[0].key !== before, 5000, 'the publisher to switch');
    const atSwitch = sent.length;
    await until(() => sent.length >= atSwitch + 40, 5000, 'traffic after the rotation');
    stop = true;
    await traffic;
    await until(() => got.scada.size === sent.length && got.historian.size === sent.length, 10000, 'every message');
    expect(rejected).toEqual([]);
    // The consumers hold the new key and keep the old one as previous (the transition).
    const t = devices.scada.snapshot().topics[0];
    expect(t.key).not.toBe(before);
    expect(t.prevKey).toBe(before);
    // The last messages really were under the new key: the C2 opens them with generation 1.
    const last = await devices.motor.publish('line/vibration', 'final');
    expect(await c2.observe('line/vibration', new Uint8Array(last))).toMatchObject({ gen: 1, current: true });
    // A message still sealed with the previous key (a publisher that has not switched yet) is
    // accepted during the grace period; a consumer without key transition drops it.
    const E4 = hostE4();
    const late = Buffer.from(
      E4.protectMessage(
        E4.vault(),
        new Uint8Array(Buffer.from(before, 'hex')),
        Math.floor(Date.now() / 1000),
        new TextEncoder().encode('late'),
      ),
    );
    expect(devices.scada.deliver('line/vibration', late)).toMatchObject({ kind: 'data' });
    const strict = new SimDevice({ image: img, config: await c2.deviceConfig('scada'), options: { keyTransition: 0 } });
    await strict.start();
    expect(strict.deliver('line/vibration', late)).toMatchObject({ kind: 'rejected', result: 'E4_ERROR_INVALID_TAG' });
    await strict.stop();
  });

  it('a restarted device keeps its keys (flash wins over its stale device.json)', async () => {
    const { c2, devices, dir } = await system('home/door', { lock: 'sub', app: 'pub' }, { lock: { file: 'lock.flash' } });
    const config = devices.lock.config; // as provisioned: the keys of generation 0
    let ran = new Promise((r) => devices.lock.once('command', r));
    await c2.rotateTopic('home/door');
    await ran;
    ran = new Promise((r) => devices.lock.once('command', r));
    await c2.rotateDeviceKey('lock');
    await ran;
    const rotated = devices.lock.snapshot();
    expect(rotated.key).not.toBe(config.key);
    expect(rotated.topics[0].key).not.toBe(config.topics?.[0].key);

    // Power cycle, and a fresh process: a new SimDevice on the same flash file.
    await devices.lock.powerCycle();
    expect(devices.lock.snapshot().topics[0].key).toBe(rotated.topics[0].key);
    await devices.lock.stop();
    const again = new SimDevice({
      image: img,
      config,
      network: suite.broker.url,
      subscribe: ['home/door'],
      store: flashStore({ file: join(dir, 'lock.flash') }),
    });
    await again.start();
    cleanup.push(() => again.stop());
    expect(again.snapshot().key).toBe(rotated.key);
    expect(again.snapshot().topics[0].key).toBe(rotated.topics[0].key);
    const got = new Promise<DataEvent>((r) => again.once('data', r));
    await devices.app.publish('home/door', 'open');
    expect((await got).payload.toString()).toBe('open');
    // ...and it still takes commands under its rotated client key.
    ran = new Promise((r) => again.once('command', r));
    await c2.rotateTopic('home/door');
    await ran;

    // Control: without its flash (provisioned again from the same device.json) it cannot read.
    const amnesiac = new SimDevice({ image: img, config, network: suite.broker.url, subscribe: ['home/door'] });
    await amnesiac.start();
    cleanup.push(() => amnesiac.stop());
    const rej = new Promise<RejectedEvent>((r) => amnesiac.once('rejected', r));
    await devices.app.publish('home/door', 'close');
    expect((await rej).result).toBe('E4_ERROR_INVALID_TAG');
  });

  it('replayed commands captured on the broker are rejected by a device with no clock, also after a reboot', async () => {
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const store = flashStore();
    const { c2, devices } = await system('valve/setpoint', { valve: 'sub', plc: 'pub' }, { valve: { clock: 'none', store } });
    const valve = devices.valve;
    expect(valve.time().now).toBe(-1); // no clock: no notion of "now"...
    expect(valve.time().lastCommand).toBeGreaterThan(0); // ...but the grant's time is kept
    let ran = new Promise((r) => valve.once('command', r));
    await c2.rotateTopic('valve/setpoint');
    await ran;
    await sleep(1100); // the next command gets a later second
    ran = new Promise((r) => valve.once('command', r));
    await c2.rotateTopic('valve/setpoint');
    await ran;
    const keyNow = valve.snapshot().topics[0].key;
    await sleep(200);
    const captured = obs.seen.filter((s) => s.topic === valve.controlTopic);
    expect(captured.length).toBe(3); // grant, rotation 1, rotation 2

    const attacker = new MqttTransport(suite.broker.url);
    await attacker.open();
    cleanup.push(() => attacker.close());
    const replay = async () => {
      const results: string[] = [];
      const on = (e: RejectedEvent) => results.push(e.result);
      valve.on('rejected', on);
      valve.on('command', () => results.push('ACCEPTED'));
      for (const c of captured) await attacker.publish(valve.controlTopic!, c.payload, 1);
      await until(() => results.length === captured.length, 5000, 'the replays to be handled');
      valve.off('rejected', on);
      valve.removeAllListeners('command');
      return results;
    };
    expect(await replay()).toEqual(['E4_ERROR_MESSAGE_REPLAYED', 'E4_ERROR_MESSAGE_REPLAYED', 'E4_ERROR_MESSAGE_REPLAYED']);
    expect(valve.snapshot().topics[0].key).toBe(keyNow);
    // After a power cycle (RAM and its duplicate cache gone) the stored command order still holds.
    await valve.powerCycle();
    expect(valve.boots).toBe(2);
    expect(await replay()).toEqual(['E4_ERROR_MESSAGE_REPLAYED', 'E4_ERROR_MESSAGE_REPLAYED', 'E4_ERROR_MESSAGE_REPLAYED']);
    expect(valve.snapshot().topics[0].key).toBe(keyNow);
    // Control: a device without these defences (the reference behaviour) accepts the captured
    // grant and goes back to the key of generation 0: the rejections above are the defence at work.
    const lax = new SimDevice({
      image: img,
      config: await c2.deviceConfig('valve'),
      clock: 'none',
      options: { rejectOldCommands: false, replayCache: 0 },
    });
    await lax.start();
    expect(lax.snapshot().topics[0].key).toBe(keyNow);
    expect(lax.deliver(valve.controlTopic!, captured[0].payload).kind).toBe('command');
    expect(lax.snapshot().topics[0].key).not.toBe(keyNow);
    await lax.stop();
  });

  it('C2 commands to many devices all reach the broker (QoS 2 with a bounded number in flight)', async () => {
    // Mosquitto completes the QoS 2 handshake for publishes beyond its max_inflight_messages (20)
    // and then drops them: a sender with more in flight would count lost commands as delivered.
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const { c2 } = await suite.c2({ send: false });
    const raw = await mqtt.connectAsync(suite.broker.url, { reconnectPeriod: 0 });
    cleanup.push(() => raw.endAsync());
    const N = 300;
    await c2.batch(async (c) => {
      await c.addTopic('plant/alarm');
      for (let i = 0; i < N; i++) {
        await c.addDevice({ name: `sensor-${i}` });
        await c.grant(`sensor-${i}`, 'plant/alarm', { role: 'sub' });
      }
    });
    c2.setSend((topic: string, bytes: Uint8Array, { qos }: { qos: QoS }) => raw.publishAsync(topic, Buffer.from(bytes), { qos }));
    await c2.flush();
    const commands = () => obs.seen.filter((m) => m.topic.startsWith('e4/'));
    await until(() => commands().length >= N, 10000, 'every command at the observer');
    await sleep(200);
    expect(new Set(commands().map((m) => m.topic)).size).toBe(N);
    expect(commands().length).toBe(N);
  });

  it('a tampered C2 database or a wrong passphrase is detected and sends nothing', async () => {
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const tmp = tempDir();
    cleanup.push(async () => tmp.remove());
    const c2 = await c2On(suite.broker.url, tmp.dir, { passphrase: 'right passphrase' });
    await c2.addTopic('a/b');
    await c2.addDevice({ name: 'dev' });
    await c2.grant('dev', 'a/b');
    await c2.close();
    await c2.link.close();
    const file = join(tmp.dir, 'c2.db');
    const original = readFileSync(file);
    await sleep(100);
    const before = obs.seen.length;
    let sent = 0;
    const send = async () => {
      sent++;
    };
    await expect(openC2({ dbPath: file, passphrase: 'wrong passphrase', e4: null, send })).rejects.toMatchObject({
      code: 'WRONG_PASSPHRASE',
    });
    expect(readFileSync(file).equals(original)).toBe(true);
    // A grant edited outside the C2 (its row MAC no longer matches): the rotation that reads it is refused.
    const db = new Database(file);
    db.prepare(`UPDATE grants SET role = 'sub'`).run();
    db.close();
    const tampered = await openC2({ dbPath: file, passphrase: 'right passphrase', e4: hostE4(), send });
    await expect(tampered.rotateTopic('a/b')).rejects.toMatchObject({ code: 'INTEGRITY' });
    await expect(tampered.flush()).resolves.toMatchObject({ acked: [] });
    await tampered.close();
    await sleep(100);
    expect(sent).toBe(0);
    expect(obs.seen.length).toBe(before);
  });
});
