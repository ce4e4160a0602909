/**
 * Services that survive their broker: a real mosquitto is stopped in the middle of a stream of
 * QoS 1 publications through the protection proxy and started again on the same port. The proxy
 * logs the disconnect and the reconnect, acknowledges nothing to its application while it cannot
 * forward, and every message reaches a persistent subscriber of the broker, authentic.
 * The gateway reconnects the same way and says so in 'broker' events.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { aessiv } from '@noble/ciphers/aes.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { describe, expect, it } from 'vitest';
import { freePort, haveMosquitto, MOSQUITTO, waitForPort } from '../host-sim/services/broker.ts';
import { Gateway } from '../host-sim/services/gateway.ts';
import { ProtectionProxy } from '../host-sim/services/proxy.ts';
import { image, sleep, until } from './support/sim.ts';

const present = haveMosquitto();
const TOPIC = 'plant/line7/flow';
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const key = (v: number) => hex(Uint8Array.from({ length: 32 }, (_, i) => (v + 13 * i) & 255));

/** A mosquitto that keeps sessions across a restart (persistence written when it stops). */
function mosquittoOn(port: number, dir: string) {
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${dir}/`,
      'log_dest stderr',
      'log_type error',
      '',
    ].join('\n'),
  );
  const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  return {
    child,
    ready: () => waitForPort('127.0.0.1', port, 10000, child),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

describe.skipIf(!present && !process.env.CI)('a broker restart in mid-stream', () => {
  it('mosquitto is installed on CI', () => {
    expect(present, 'mosquitto (Debian package mosquitto) is required on CI').toBe(true);
  });

  it('the proxy reconnects with back-off, acknowledges only what it forwarded, and loses no QoS 1 message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-restart-'));
    const port = await freePort('127.0.0.1');
    const url = `mqtt://127.0.0.1:${port}`;
    const topicKey = key(7);
    const config = {
      name: 'restart-proxy',
      key: key(1),
      topics: [{ topic: TOPIC, hash: hex(sha3_256(new TextEncoder().encode(TOPIC)).subarray(0, 16)), key: topicKey }],
    };
    const logs: string[] = [];
    let broker = mosquittoOn(port, dir);
    const cleanup: Array<() => Promise<unknown>> = [];
    try {
      await broker.ready();
      const proxy = new ProtectionProxy({ config, image: image(), broker: url, log: (level, text) => logs.push(`[${level}] ${text}`) });
      await proxy.start();
      cleanup.push(() => proxy.stop());
      // A persistent session: the broker keeps its subscription and queue across the restart.
      const sub = await mqtt.connectAsync(url, { clientId: 'restart-sub', clean: false, reconnectPeriod: 100 });
      cleanup.push(() => sub.endAsync(true));
      const got = new Map<string, number>();
      sub.on('message', (topic, payload) => {
        const k = Buffer.from(topicKey, 'hex');
        const plain = aessiv(Uint8Array.from([...k, ...k]), payload.subarray(0, 8)).decrypt(payload.subarray(8));
        got.set(Buffer.from(plain).toString(), (got.get(Buffer.from(plain).toString()) || 0) + 1);
      });
      await sub.subscribeAsync(TOPIC, { qos: 1 });
      const app = await mqtt.connectAsync(proxy.url, { clientId: 'legacy-app', reconnectPeriod: 100 });
      cleanup.push(() => app.endAsync(true));

      const N = 60;
      const acked = new Set<number>();
      const pending: Promise<unknown>[] = [];
      const send = (i: number) => pending.push(app.publishAsync(TOPIC, `reading ${i}`, { qos: 1 }).then(() => acked.add(i)));
      for (let i = 0; i < 20; i++) send(i);
      await until(() => acked.size === 20, 10000, 'the first 20 acknowledged');

      await broker.stop();
      await until(() => logs.some((l) => /connection lost; reconnecting/.test(l)), 10000, 'the proxy to log the disconnect');
      for (let i = 20; i < 40; i++) send(i);
      await sleep(1500);
      // Nothing that could not reach the broker was acknowledged to the application.
      expect([...acked].filter((i) => i >= 20)).toEqual([]);

      broker = mosquittoOn(port, dir);
      await broker.ready();
      for (let i = 40; i < N; i++) send(i);
      await Promise.all(pending);
      expect(acked.size).toBe(N);
      await until(() => got.size === N, 20000, `all ${N} messages at the subscriber (got ${got.size})`);
      expect([...got.keys()].sort()).toEqual(Array.from({ length: N }, (_, i) => `reading ${i}`).sort());
      expect(
        logs.some((l) => /\[info\] proxy: MQTT .* reconnected after [\d.]+ s and \d+ attempt/.test(l)),
        logs.join('\n'),
      ).toBe(true);
      expect(logs.filter((l) => /reconnect attempt/.test(l)).length).toBeGreaterThan(0);
    } finally {
      for (const c of cleanup.reverse()) await c().catch(() => {});
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60000);

  it('the gateway reconnects and reports the disconnect and the reconnect', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-restart-gw-'));
    const port = await freePort('127.0.0.1');
    let broker = mosquittoOn(port, dir);
    const events: string[] = [];
    const gw = new Gateway({ broker: `mqtt://127.0.0.1:${port}` });
    gw.on('broker', (e) => events.push(e.text));
    try {
      await broker.ready();
      await gw.start();
      await broker.stop();
      await until(() => events.some((t) => /connection lost/.test(t)), 10000, 'the disconnect event');
      broker = mosquittoOn(port, dir);
      await broker.ready();
      await until(() => events.some((t) => /reconnected after/.test(t)), 20000, 'the reconnect event');
      expect(gw.mqtt?.connected).toBe(true);
    } finally {
      await gw.stop();
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60000);
});
