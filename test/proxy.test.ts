/**
 * The protection proxy over real TCP (aedes and mosquitto): unmodified MQTT applications talk
 * plaintext to the proxy's own listener; only E4 ciphertext reaches the real broker.
 */
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { assert, describe, expect, it } from 'vitest';
import { SimDevice } from '../host-sim/shared/device.ts';
import { flashStore } from '../host-sim/shared/hal.ts';
import { ROOT } from '../host-sim/shared/image.ts';
import { parseProxyArgs, ProtectionProxy } from '../host-sim/services/proxy.ts';
import { brokerKinds, image, IMAGE_PATH, observer, sleep, until, brokerPerSuite } from './support/sim.ts';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const img = image();
const PROXY = join(ROOT, 'host-sim/services/proxy.ts');

describe.each(brokerKinds())('protection proxy over %s', (kind) => {
  const suite = brokerPerSuite(kind);
  const cleanup = suite.cleanup;

  async function setup() {
    const { c2, tmp } = await suite.c2({ send: false });
    for (const t of ['factory/line1/speed', 'factory/line1/setpoint']) await c2.addTopic(t);
    for (const name of ['proxy', 'plc']) {
      await c2.addDevice({ name });
      await c2.grant(name, 'factory/line1/speed', { role: name === 'plc' ? 'pub' : 'sub' });
      await c2.grant(name, 'factory/line1/setpoint', { role: name === 'plc' ? 'sub' : 'pub' });
    }
    const flash = join(tmp.dir, 'proxy.flash');
    const proxyConfig = await c2.deviceConfig('proxy');
    const proxy = new ProtectionProxy({ config: proxyConfig, image: img, broker: suite.broker.url, store: flashStore({ file: flash }) });
    await proxy.start();
    cleanup.push(() => proxy.stop());
    const plc = new SimDevice({
      image: img,
      config: await c2.deviceConfig('plc'),
      network: suite.broker.url,
      subscribe: ['factory/line1/setpoint'],
    });
    await plc.start();
    cleanup.push(() => plc.stop());
    const ran = [plc, proxy.device].map((d) => new Promise((r) => d.once('command', r)));
    c2.enableSend();
    await c2.flush();
    await Promise.all(ran);
    return { c2, proxy, plc, flash, proxyConfig, dir: tmp.dir };
  }

  async function legacyClient(url: string, id: string) {
    const c = Object.assign(await mqtt.connectAsync(url, { clientId: id, reconnectPeriod: 0 }), {
      got: [] as { topic: string; text: string }[],
    });
    cleanup.push(() => c.endAsync());
    c.on('message', (topic, payload) => c.got.push({ topic, text: payload.toString() }));
    return c;
  }

  it('bridges plaintext applications to E4 in both directions; the broker sees ciphertext only', async () => {
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const { proxy, plc } = await setup();
    const hmi = await legacyClient(proxy.url, 'hmi');
    const logger = await legacyClient(proxy.url, 'logger');
    await hmi.subscribeAsync('factory/#', { qos: 1 });
    await logger.subscribeAsync('factory/line1/speed', { qos: 1 });
    await sleep(100);
    // Device -> legacy applications.
    const speeds: string[] = [];
    for (let i = 0; i < 10; i++) {
      speeds.push(`speed=${1200 + i} rpm PLAINTEXT`);
      await plc.publish('factory/line1/speed', speeds[i]);
    }
    await until(() => hmi.got.length >= 10 && logger.got.length === 10, 5000, 'speeds at the legacy apps');
    expect(logger.got.map((m) => m.text)).toEqual(speeds);
    // Legacy application -> device.
    const got: string[] = [];
    plc.on('data', (e) => got.push(e.payload.toString()));
    await hmi.publishAsync('factory/line1/setpoint', 'setpoint=1500 PLAINTEXT', { qos: 1 });
    await until(() => got.length === 1, 5000, 'the setpoint at the PLC');
    expect(got).toEqual(['setpoint=1500 PLAINTEXT']);
    // The other local application sees it once (locally), not a second time from upstream.
    await sleep(300);
    expect(hmi.got.filter((m) => m.topic === 'factory/line1/setpoint').length).toBe(1);
    expect(hmi.got.filter((m) => m.topic === 'factory/line1/speed').map((m) => m.text)).toEqual(speeds);
    // Upstream: ciphertext only.
    const upstream = obs.seen.filter((s) => s.topic.startsWith('factory/'));
    expect(upstream.length).toBe(11);
    for (const s of obs.seen) expect(s.payload.includes('PLAINTEXT')).toBe(false);
    expect(proxy.stats).toMatchObject({ protected: 1, unprotected: 10, dropped: 0 });
  });

  it('never forwards what it cannot protect: unknown topics and control topics stay local', async () => {
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const { proxy } = await setup();
    const app = await legacyClient(proxy.url, 'legacy');
    await app.publishAsync('factory/unregistered', 'SECRET no key for this', { qos: 1 });
    const control = proxy.device.controlTopic;
    assert(control, 'the proxy is on');
    await app.publishAsync(control, 'SECRET not a command', { qos: 1 });
    await app.publishAsync('e4/00112233445566778899aabbccddeeff', 'SECRET', { qos: 1 });
    await sleep(300);
    expect(obs.seen.filter((s) => s.topic === 'factory/unregistered')).toEqual([]);
    for (const s of obs.seen) expect(s.payload.includes('SECRET')).toBe(false);
    expect(proxy.stats.dropped).toBe(3);
    expect(proxy.stats.droppedBy).toMatchObject({ E4_ERROR_TOPICKEY_MISSING: 1, CONTROL_TOPIC: 2 });
  });

  it('follows C2 key rotations and keeps its keys across a restart', async () => {
    const { c2, proxy, plc, flash, proxyConfig } = await setup();
    const ran = new Promise((r) => proxy.device.once('command', r));
    const ranPlc = new Promise((r) => plc.once('command', r));
    await c2.rotateTopic('factory/line1/speed');
    await Promise.all([ran, ranPlc]);
    const keys = proxy.device.snapshot();
    await proxy.stop();
    // Restarted with its original (now stale) identity file: the flash wins.
    const again = new ProtectionProxy({ config: proxyConfig, image: img, broker: suite.broker.url, store: flashStore({ file: flash }) });
    await again.start();
    cleanup.push(() => again.stop());
    expect(again.device.snapshot()).toEqual(keys);
    expect(keys.topics.find((t) => t.hash === proxyConfig.topics[0].hash || t.hash === proxyConfig.topics[1].hash)).toBeTruthy();
    const granted = proxyConfig.topics.find((t) => t.topic === 'factory/line1/speed');
    assert(granted, 'the proxy was granted the speed topic');
    const speed = keys.topics.find((t) => t.hash === granted.hash);
    assert(speed, 'the proxy holds the speed topic');
    expect(speed.key).not.toBe(granted.key);
    const app = await legacyClient(again.url, 'after-restart');
    await app.subscribeAsync('factory/line1/speed', { qos: 1 });
    await sleep(100);
    await plc.publish('factory/line1/speed', 'speed=900 rpm');
    await until(() => app.got.length === 1, 5000, 'a reading under the new key');
    expect(app.got[0].text).toBe('speed=900 rpm');
  });

  it('runs as a command, and rejects wrong arguments with exit code 2', async () => {
    const { c2, plc, dir } = await setup();
    await c2.addDevice({ name: 'proxy2' });
    await c2.grant('proxy2', 'factory/line1/speed', { role: 'sub' });
    const cfg = join(dir, 'proxy2.json');
    writeFileSync(cfg, JSON.stringify(await c2.deviceConfig('proxy2')));
    const child = spawn(
      process.execPath,
      [...TS_NODE, PROXY, '--device', cfg, '--broker', suite.broker.url, '--listen', '127.0.0.1:0', '--image', IMAGE_PATH],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    cleanup.push(async () => child.kill());
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /listening (mqtt:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      child.once('exit', (c) => reject(new Error(`proxy exited ${c}`)));
    });
    const app = await legacyClient(url, 'cli-app');
    await app.subscribeAsync('factory/line1/speed', { qos: 1 });
    await sleep(200);
    await plc.publish('factory/line1/speed', 'speed=1 rpm');
    await until(() => app.got.length === 1, 5000, 'the reading through the CLI proxy');
    expect(app.got[0].text).toBe('speed=1 rpm');

    expect(() => parseProxyArgs([])).toThrow(/--device is required/);
    expect(() => parseProxyArgs(['--device', 'x'])).toThrow(/--broker is required/);
    expect(() => parseProxyArgs(['--device', 'x', '--broker', 'y', '--listen', 'bad'])).toThrow(/HOST:PORT/);
    const r = spawnSync(process.execPath, [...TS_NODE, PROXY, '--nope'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown argument --nope/);
  });
});
