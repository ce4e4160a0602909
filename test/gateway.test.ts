/**
 * The gateway over real TCP (aedes and mosquitto): devices on a simulated BLE UART link (20-byte
 * chunks, corruption, losses) reach the broker through it; it holds no keys and passes the
 * devices' protected bytes unchanged, so messages stay end to end across both hops.
 */
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { assert, describe, expect, it } from 'vitest';
import { SimDevice } from '../host-sim/shared/device.ts';
import { Gateway, loadImageCodec, parseGatewayArgs } from '../host-sim/services/gateway.ts';
import { flashStore } from '../host-sim/shared/hal.ts';
import { linkPair, LinkTransport, type LinkPair, type LinkPairOptions } from '../host-sim/services/link.ts';
import { ROOT } from '../host-sim/shared/image.ts';
import { brokerKinds, c2On, image, observer, sleep, tempDir, until, brokerPerSuite } from './support/sim.ts';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const img = image();
const GATEWAY = join(ROOT, 'host-sim/services/gateway.ts');

describe.each(brokerKinds())('gateway over %s', (kind) => {
  const suite = brokerPerSuite(kind);
  const cleanup = suite.cleanup;

  async function setup(linkOpts: LinkPairOptions = {}) {
    const tmp = tempDir();
    cleanup.push(async () => tmp.remove());
    const gw = new Gateway({ broker: suite.broker.url, codec: loadImageCodec(), ackTimeoutMs: 100, retries: 8 });
    await gw.start();
    cleanup.push(() => gw.stop());
    const c2 = await c2On(suite.broker.url, tmp.dir, { send: false });
    cleanup.push(async () => {
      await c2.close();
      await c2.link.close();
    });
    await c2.addTopic('ward/spo2');
    for (const [name, role] of [
      ['puck', 'pub'],
      ['nurse', 'sub'],
    ] as const) {
      await c2.addDevice({ name });
      await c2.grant(name, 'ward/spo2', { role });
    }
    const taps: Buffer[] = [];
    const pairs: LinkPair[] = [];
    const puck = new SimDevice({
      image: img,
      config: await c2.deviceConfig('puck'),
      vault: 'native-aes',
      clock: 'monotonic',
      store: flashStore({ file: join(tmp.dir, 'puck.flash') }),
      subscribe: ['ward/spo2'],
      network: (d: SimDevice) => {
        const pair = linkPair({ mtu: 20, ...linkOpts });
        pairs.push(pair);
        // Tap both directions of the radio link.
        pair.device.on('data', (b) => taps.push(Buffer.from(b)));
        pair.gateway.on('data', (b) => taps.push(Buffer.from(b)));
        gw.attach(pair.gateway, { name: 'puck' });
        return new LinkTransport(pair.device, d.sandbox, { id: d.id, ackTimeoutMs: 100, retries: 8 });
      },
    });
    await puck.start();
    cleanup.push(() => puck.stop());
    const nurse = new SimDevice({
      image: img,
      config: await c2.deviceConfig('nurse'),
      network: suite.broker.url,
      subscribe: ['ward/spo2'],
    });
    await nurse.start();
    cleanup.push(() => nurse.stop());
    const ran = [puck, nurse].map((d) => new Promise((r) => d.once('command', r)));
    c2.enableSend();
    await c2.flush();
    await Promise.all(ran); // the grant reached the puck through the gateway and calibrated it
    return { gw, c2, puck, nurse, taps, pairs };
  }

  it('carries the device’s protected bytes unchanged, both hops opaque, and holds no keys', async () => {
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const { gw, puck, nurse, taps, pairs } = await setup({ corruptRate: 0.03, seed: 11 });
    const got: string[] = [];
    nurse.on('data', (e) => got.push(e.payload.toString()));
    const sent: Buffer[] = [];
    const texts: string[] = [];
    for (let i = 0; i < 30; i++) {
      const t = `SpO2 ${95 + (i % 4)}% sample ${i} PLAINTEXT`;
      texts.push(t);
      sent.push(await puck.publish('ward/spo2', t));
    }
    await until(() => got.length === 30, 10000, 'every sample at the nurse');
    expect(got).toEqual(texts);
    expect(pairs[0].stats.corrupted).toBeGreaterThan(0); // the link did damage frames...
    // ...yet the broker saw exactly the bytes the device produced, once each (the observer is a
    // subscriber of its own: wait for it too, not only for the nurse).
    const spo2 = () => obs.seen.filter((s) => s.topic === 'ward/spo2');
    await until(() => spo2().length >= 30, 10000, 'every sample at the observer');
    await new Promise((r) => setTimeout(r, 100)); // and nothing more after them
    const onBroker = spo2().map((s) => s.payload.toString('hex'));
    expect(onBroker).toEqual(sent.map((b) => b.toString('hex')));
    const radio = Buffer.concat(taps);
    for (const t of texts) expect(radio.includes(t)).toBe(false);
    expect(radio.includes('PLAINTEXT')).toBe(false);
    // No key of the device's appears on the radio link or at the broker.
    const s = puck.snapshot();
    for (const k of [s.key, ...s.topics.map((t) => t.key)]) {
      expect(radio.includes(Buffer.from(k, 'hex'))).toBe(false);
      for (const m of obs.seen) expect(m.payload.includes(Buffer.from(k, 'hex'))).toBe(false);
    }
    // The gateway is keyless: nothing in it is an E4 client, and it never loaded one.
    const link = [...gw.links][0];
    expect(link.id).toBe(puck.id);
    expect(Object.keys(gw).sort()).toEqual(expect.not.arrayContaining(['client', 'vault', 'keys']));
    expect(JSON.stringify(gw.stats)).not.toContain(s.key);
  });

  it('delivers C2 commands to the device over a lossy link, and the device comes back after a power cycle', async () => {
    const { gw, c2, puck, nurse } = await setup({ dropRate: 0.1, seed: 5 });
    const before = puck.snapshot().topics[0].key;
    const ran = new Promise((r) => puck.once('command', r));
    await c2.rotateTopic('ward/spo2');
    await ran;
    expect(puck.snapshot().topics[0].key).not.toBe(before);
    await puck.powerCycle();
    const control = puck.controlTopic;
    assert(control, 'the device is on');
    await until(() => gw.links.size === 1 && [...gw.links][0].filters.has(control), 5000, 'the device to re-attach');
    expect(puck.boots).toBe(2);
    // Broker -> device: every message arrives despite 10 % lost chunks (retransmission).
    const got: string[] = [];
    puck.on('data', (e) => got.push(e.payload.toString()));
    const texts: string[] = [];
    for (let i = 0; i < 15; i++) {
      texts.push(`ack ${i}`);
      await nurse.publish('ward/spo2', texts[i]);
    }
    await until(() => new Set(got).size === 15, 15000, 'every message at the device');
    expect([...new Set(got)].sort()).toEqual([...texts].sort()); // retransmissions may reorder
    // And the device, calibrated again by nothing since boot, still publishes readable data.
    const back = new Promise<{ payload: Buffer }>((r) => nurse.once('data', r));
    await puck.publish('ward/spo2', 'after reboot');
    expect((await back).payload.toString()).toBe('after reboot');
  });

  it('retransmits toward a device until acknowledged and never publishes a retransmitted frame twice', async () => {
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const { c2, puck, pairs } = await setup({ dropRate: 0.15, seed: 3 });
    await c2.grant('nurse', 'ward/spo2', { role: 'both' }); // the nurse may now publish too
    const got: string[] = [];
    const rejected: string[] = [];
    puck.on('data', (e) => got.push(e.payload.toString()));
    puck.on('rejected', (e) => rejected.push(e.result));
    const phone = new SimDevice({ image: img, config: await c2.deviceConfig('nurse'), network: suite.broker.url });
    await phone.start();
    cleanup.push(() => phone.stop());
    const texts: string[] = [];
    for (let i = 0; i < 20; i++) {
      texts.push(`alarm threshold ${i}`);
      await phone.publish('ward/spo2', texts[i]);
    }
    await until(() => new Set(got).size === 20, 15000, 'every message at the device');
    expect([...new Set(got)].sort()).toEqual([...texts].sort()); // retransmissions may reorder
    expect(rejected.every((r) => r === 'E4_ERROR_MESSAGE_REPLAYED')).toBe(true); // duplicates only
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) sent.push((await puck.publish('ward/spo2', `reading ${i}`)).toString('hex'));
    await sleep(300);
    expect(pairs.at(-1)?.stats.dropped).toBeGreaterThan(0);
    const mine = obs.seen
      .filter((s) => s.topic === 'ward/spo2')
      .map((s) => s.payload.toString('hex'))
      .filter((h) => sent.includes(h));
    expect(mine).toEqual(sent); // each exactly once, in order
  });

  it('runs as a command: byte-stream links over TCP', async () => {
    const child = spawn(process.execPath, [...TS_NODE, GATEWAY, '--broker', suite.broker.url, '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanup.push(async () => child.kill());
    const addr = await new Promise<{ host: string; port: number }>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /listening tcp:\/\/([\d.]+):(\d+)/.exec(out);
        if (m) resolve({ host: m[1], port: Number(m[2]) });
      });
      child.once('exit', (c) => reject(new Error(`gateway exited ${c}`)));
    });
    const tmp = tempDir();
    cleanup.push(async () => tmp.remove());
    const c2 = await c2On(suite.broker.url, tmp.dir);
    cleanup.push(async () => {
      await c2.close();
      await c2.link.close();
    });
    await c2.addTopic('t/x');
    await c2.addDevice({ name: 'serial-dev' });
    await c2.addDevice({ name: 'app' });
    await c2.grant('serial-dev', 't/x', { role: 'pub' });
    await c2.grant('app', 't/x', { role: 'sub' });
    const dev = new SimDevice({
      image: img,
      config: await c2.deviceConfig('serial-dev'),
      clock: 'trusted',
      network: (d: SimDevice) => new LinkTransport(net.connect(addr.port, addr.host), d.sandbox, { id: d.id }),
    });
    await dev.start();
    cleanup.push(() => dev.stop());
    const app = new SimDevice({ image: img, config: await c2.deviceConfig('app'), network: suite.broker.url, subscribe: ['t/x'] });
    await app.start();
    cleanup.push(() => app.stop());
    const got = new Promise<{ payload: Buffer }>((r) => app.once('data', r));
    await dev.publish('t/x', 'over tcp');
    expect((await got).payload.toString()).toBe('over tcp');
  });

  it('rejects wrong arguments with exit code 2', () => {
    expect(() => parseGatewayArgs([])).toThrow(/--broker is required/);
    expect(() => parseGatewayArgs(['--broker', 'mqtt://127.0.0.1:1'])).toThrow(
      /--serial PATH, --listen HOST:PORT or --connect tcp:\/\/HOST:PORT/,
    );
    expect(() => parseGatewayArgs(['--broker', 'x', '--connect', '127.0.0.1:2323'])).toThrow(/--connect takes tcp:\/\/HOST:PORT/);
    expect(parseGatewayArgs(['--broker', 'x', '--connect', 'tcp://127.0.0.1:2323']).connect).toEqual([{ host: '127.0.0.1', port: 2323 }]);
    expect(() => parseGatewayArgs(['--broker', 'x', '--listen', 'nope'])).toThrow(/HOST:PORT/);
    expect(() => parseGatewayArgs(['--broker', 'x', '--baud', '-3', '--serial', 'p'])).toThrow(/--baud/);
    const r = spawnSync(process.execPath, [...TS_NODE, GATEWAY, '--frobnicate'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown argument --frobnicate/);
  });
});
