/**
 * `npm run bench:fleet`: many simulated devices in one process against a real broker (in its own
 * process), driven by the real C2.
 *
 *   node host-sim/tools/bench-fleet.ts [--devices N] [--per-context K] [--broker aedes|mosquitto|URL]
 *                                       [--messages M] [--out FILE]
 *   node host-sim/tools/bench-fleet.ts --scale N [--db sqlite|postgres] [--in-flight K] [--out FILE]
 *
 * `--scale` measures the C2 alone at fleet size (see runScale below). Otherwise:
 * Measures
 * - the cost of a device sandbox: a vm context with the image loaded and one client, against one
 *   more client in a shared context (many clients in one sandbox);
 * - fleet set-up: C2 batch (N devices, one topic), devices booted and connected (each its own MQTT
 *   connection);
 * - rotation: one topic key to all N devices (C2 rotateTopic: consumers first; QoS 2 acked by the
 *   broker; then every device has applied it);
 * - end to end: messages protected by the devices, carried by the broker, unprotected by a
 *   collector, per second;
 * - memory per device (RSS and JS heap deltas over the whole fleet).
 * Prints a table and writes JSON (default dist/bench-fleet.json).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startBroker, startBrokerProcess } from '../services/broker.ts';
import { SimDevice } from '../shared/device.ts';
import { flashStore, makeClock, systemTime } from '../shared/hal.ts';
import { createSandbox, loadImage, ROOT } from '../shared/image.ts';
import { makeDeviceConfig } from '../shared/device-config.ts';
import { initC2 } from '../c2/c2.ts';
import type { C2 } from '../c2/c2.ts';
import { loadE4Image } from '../c2/e4.ts';
import { startPostgres } from '../c2/pg-server.ts';
import type { PgServer } from '../c2/pg-server.ts';
import { MqttTransport } from '../shared/mqtt-transport.ts';
import { isMain, TS_NODE } from '../shared/cli.ts';

const TOPIC = 'fleet/telemetry';
const USAGE = `usage: npm run bench:fleet -- [--devices N] [--per-context K] [--broker aedes|mosquitto|URL] [--messages M] [--out FILE]
  --devices N       simulated devices (1-20000, default 10000)
  --per-context K   devices per vm context (default: all in one shared sandbox; 1 = a sandbox per device)
  --broker B        aedes (default) or mosquitto, started in a child process; or mqtt://host:port
  --messages M      end-to-end messages, spread over the devices (default 20000)
  --sample S        sandboxes created to measure the cost of one (default 200)
  --out FILE        JSON results (default dist/bench-fleet.json, or dist/bench-fleet-scale-DB.json)
  --scale N         the C2 at fleet size instead: N devices (1-1000000) registered, granted a topic,
                    the topic rotated until every device applied it (a device stand-in, mosquitto)
  --db D            with --scale: sqlite (default) or postgres (a throwaway server)
  --in-flight K     with --scale: QoS 2 publishes in flight (default 64: 16 per MQTT connection)`;

export interface BenchOptions {
  devices: number;
  perContext: number;
  broker: string;
  messages: number;
  sample: number;
  out: string;
  help?: boolean;
  scale?: ScaleOptions;
}

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const o: BenchOptions = { devices: 10000, perContext: 0, broker: 'aedes', messages: 20000, sample: 200, out: '' };
  let scale = 0;
  let db: 'sqlite' | 'postgres' = 'sqlite';
  let inFlight = 64;
  const int = (flag: string, v: string | undefined, lo: number, hi: number) => {
    if (!/^\d+$/.test(v || '') || Number(v) < lo || Number(v) > hi) throw new Error(`${flag} takes a whole number from ${lo} to ${hi}`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--devices') o.devices = int(a, argv[++i], 1, 20000);
    else if (a === '--per-context') o.perContext = int(a, argv[++i], 1, 20000);
    else if (a === '--messages') o.messages = int(a, argv[++i], 1, 10000000);
    else if (a === '--sample') o.sample = int(a, argv[++i], 1, 5000);
    else if (a === '--scale') scale = int(a, argv[++i], 1, 1000000);
    else if (a === '--in-flight') inFlight = int(a, argv[++i], 1, 1000);
    else if (a === '--db') {
      const v = argv[++i];
      if (v !== 'sqlite' && v !== 'postgres') throw new Error('--db takes sqlite or postgres');
      db = v;
    } else if (a === '--broker') {
      o.broker = argv[++i] ?? '';
      if (!['aedes', 'mosquitto'].includes(o.broker) && !/^mqtt:\/\/[^/\s]+:\d+\/?$/.test(o.broker || ''))
        throw new Error('--broker takes aedes, mosquitto or mqtt://host:port');
    } else if (a === '--out') {
      o.out = argv[++i] ?? '';
      if (!o.out) throw new Error('--out needs a file');
    } else if (a === '-h' || a === '--help') o.help = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.perContext || o.perContext > o.devices) o.perContext = o.devices;
  if (scale) o.scale = { devices: scale, db, inFlight, connections: 16, out: o.out || join(ROOT, 'dist', `bench-fleet-scale-${db}.json`) };
  if (!o.out) o.out = join(ROOT, 'dist', 'bench-fleet.json');
  return o;
}

// A full collection before each memory reading (without requiring node --expose-gc).
let gc: (() => void) | null = null;
const mem = (): { rss: number; heap: number; external: number } => {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    const fn: unknown = vm.runInNewContext('gc');
    if (typeof fn !== 'function') throw new Error('--expose-gc did not expose gc');
    gc = () => fn();
  }
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external + m.arrayBuffers };
};
const kb = (b: number) => Math.round(b / 1024);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pool<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i], i);
      }
    }),
  );
}

function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  return new Promise<void>((resolve, reject) => {
    const tick = () => {
      if (pred()) return resolve();
      if (Date.now() > end) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 5);
    };
    tick();
  });
}

interface SandboxCost {
  msEach: number;
  rssKB: number;
  heapKB: number;
}

/** Cost of one device sandbox vs. one more client in a shared sandbox. */
function sandboxCost(image: ReturnType<typeof loadImage>, sample: number): { context: SandboxCost; shared: SandboxCost } {
  const cfgs = Array.from({ length: sample }, (_, i) => makeDeviceConfig({ name: `probe-${i}`, topics: [TOPIC] }));
  const world = systemTime();
  const one = (sb: ReturnType<typeof createSandbox>, cfg: ReturnType<typeof makeDeviceConfig>) => {
    const store = flashStore().attach(sb);
    const c = sb.E4.create({ vault: sb.E4.vault(), store, clock: makeClock('trusted', world) }, cfg);
    c.protect(TOPIC, 'probe');
    return c;
  };
  const keep: unknown[] = [];
  // Shared first (the smaller), then a context each: each phase grows the process afresh.
  let m0 = mem();
  let t = performance.now();
  const sharedBox = createSandbox(image);
  for (const cfg of cfgs) keep.push(one(sharedBox, cfg));
  const shMs = (performance.now() - t) / sample;
  let m1 = mem();
  const shared = { msEach: +shMs.toFixed(3), rssKB: kb((m1.rss - m0.rss) / sample), heapKB: kb((m1.heap - m0.heap) / sample) };
  m0 = m1;
  t = performance.now();
  for (const cfg of cfgs) {
    const sb = createSandbox(image);
    keep.push(one(sb, cfg), sb);
  }
  const ctxMs = (performance.now() - t) / sample;
  m1 = mem();
  const context = { msEach: +ctxMs.toFixed(3), rssKB: kb((m1.rss - m0.rss) / sample), heapKB: kb((m1.heap - m0.heap) / sample) };
  keep.length = 0;
  return { context, shared };
}

/** The sandbox probe in a fresh process, so that neither its memory nor the fleet's disturb the other. */
function probeInChild(sample: number): { context: SandboxCost; shared: SandboxCost } {
  const r = spawnSync(process.execPath, [...TS_NODE, fileURLToPath(import.meta.url), '--probe', String(sample)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(`sandbox probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** What `npm run bench:fleet` (without --scale) measures; written as JSON. */
export interface FleetResult {
  date: string;
  node: string;
  cpus: number;
  image: { path: string; bytes: number; sha256: string; check: string };
  devices: number;
  perContext: number;
  sandboxes: number;
  broker?: { kind: string; url: string; ownProcess: boolean };
  c2SetupMs?: number;
  bootMs?: number;
  memory?: { rssPerDeviceKB: number | null; heapPerDeviceKB: number; rssTotalMB: number };
  rotation?: {
    holders: number;
    brokerAcked: number;
    failed: number;
    c2AllAckedMs: number;
    allAppliedMs: number;
    commandsPerSecond: number;
  };
  endToEnd?: { messages: number; publishedMs: number; allReceivedMs: number; messagesPerSecond: number; received: number };
  rejected?: { [result: string]: number };
  sandbox?: { context: SandboxCost; shared: SandboxCost };
  totalMs?: number;
}

export async function runBench(o: BenchOptions, say = (s: string) => process.stderr.write(s + '\n')): Promise<FleetResult> {
  const started = Date.now();
  const image = loadImage();
  const E4 = createRequire(import.meta.url)(image.path);
  const result: FleetResult = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    image: { path: image.path, bytes: image.size, sha256: image.sha256, check: image.check },
    devices: o.devices,
    perContext: o.perContext,
    sandboxes: Math.ceil(o.devices / o.perContext),
  };
  say(`image ${image.size} bytes sha256 ${image.sha256.slice(0, 16)}… (${image.check})`);

  // 2. Broker in its own process (its sockets and CPU are not ours).
  const broker = o.broker.includes('://') ? await startBroker({ url: o.broker }) : await startBrokerProcess({ kind: o.broker });
  result.broker = { kind: broker.kind, url: broker.url, ownProcess: broker.kind !== 'external' };
  const dir = mkdtempSync(join(tmpdir(), 'e4-bench-fleet-'));
  const devices: SimDevice[] = [];
  let sink: SimDevice | null = null;
  let c2: C2 | null = null;
  let c2link: MqttTransport | null = null;
  try {
    // 3. C2: one batch registers the fleet and grants the topic (devices 'pub', the collector 'sub').
    const link = new MqttTransport(broker.url);
    c2link = link;
    await link.open();
    let t = Date.now();
    const c = await initC2({ dbPath: join(dir, 'c2.db'), passphrase: 'bench passphrase', e4: E4 });
    c2 = c;
    const names = Array.from({ length: o.devices }, (_, i) => `dev-${String(i).padStart(5, '0')}`);
    await c.batch(async (b) => {
      await b.addTopic(TOPIC);
      await b.addDevices([{ name: 'collector' }, ...names.map((name) => ({ name }))]);
      await b.grant('collector', TOPIC, { role: 'sub' });
      await b.grantAll(names, TOPIC, { role: 'pub' });
    });
    c.setSend((topic, bytes, { qos }) => link.publish(topic, Buffer.from(bytes), qos));
    await c.flush(); // nobody listens yet: the grants are what the devices are provisioned with
    result.c2SetupMs = Date.now() - t;
    say(`c2: ${o.devices} devices added and granted in one batch in ${result.c2SetupMs} ms`);

    // 4. Devices: boot (sandbox, client, flash) and connect.
    const world = systemTime();
    const before = mem();
    t = Date.now();
    let realm = null;
    const configs = [];
    for (const n of names) configs.push(await c.deviceConfig(n));
    for (let i = 0; i < o.devices; i++) {
      if (o.perContext > 1 && i % o.perContext === 0) realm = createSandbox(image, { name: `shared-${i / o.perContext}` });
      devices.push(
        new SimDevice({
          image,
          realm: o.perContext > 1 ? realm : null,
          config: configs[i],
          clock: 'trusted',
          world,
          network: broker.url,
          qos: 1,
        }),
      );
    }
    configs.length = 0;
    let booted = 0;
    await pool(devices, 100, async (d) => {
      await d.start();
      if (++booted % 1000 === 0) say(`  ${booted} devices on line (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    });
    result.bootMs = Date.now() - t;
    const after = mem();
    result.memory = {
      // RSS deltas below a few MB are noise (memory freed by the C2's Argon2id is reused).
      rssPerDeviceKB: after.rss - before.rss > 8 << 20 ? kb((after.rss - before.rss) / o.devices) : null,
      heapPerDeviceKB: kb((after.heap - before.heap) / o.devices),
      rssTotalMB: Math.round(after.rss / 1048576),
    };
    say(
      `devices: ${o.devices} booted and connected in ${result.bootMs} ms; ${result.memory.rssPerDeviceKB} KB RSS per device (sandbox + client + MQTT connection)`,
    );

    sink = new SimDevice({
      image,
      config: await c.deviceConfig('collector'),
      clock: 'trusted',
      world,
      network: broker.url,
      subscribe: [TOPIC],
      qos: 1,
    });
    await sink.start();

    // 5. Rotation of the topic key to every holder.
    let applied = 0;
    for (const d of [...devices, sink]) d.on('command', () => applied++);
    const rejected: { [result: string]: number } = {};
    for (const d of [...devices, sink]) d.on('rejected', (e: { result: string }) => (rejected[e.result] = (rejected[e.result] || 0) + 1));
    t = Date.now();
    const rot = await c.rotateTopic(TOPIC);
    const ackedMs = Date.now() - t;
    await until(() => applied >= o.devices + 1, 120000, 'every device to apply the rotation').catch((e) => {
      throw new Error(
        `${e.message}: ${applied} of ${o.devices + 1} applied; broker acked ${rot.delivery.acked.length}, failed ${rot.delivery.failed.length}; rejected ${JSON.stringify(rejected)}`,
      );
    });
    const appliedMs = Date.now() - t;
    result.rotation = {
      holders: rot.holders.length,
      brokerAcked: rot.delivery.acked.length,
      failed: rot.delivery.failed.length,
      c2AllAckedMs: ackedMs,
      allAppliedMs: appliedMs,
      commandsPerSecond: Math.round((o.devices + 1) / (appliedMs / 1000)),
    };
    say(`rotation: ${rot.holders.length} holders, broker acked ${ackedMs} ms, every device applied ${appliedMs} ms`);

    // 6. End to end: devices protect and publish, the collector unprotects.
    let received = 0;
    sink.on('data', () => received++);
    const perDevice = Math.max(1, Math.floor(o.messages / o.devices));
    const total = perDevice * o.devices;
    t = Date.now();
    await pool(devices, 200, async (d, i) => {
      for (let k = 0; k < perDevice; k++) await d.publish(TOPIC, `{"d":${i},"k":${k},"v":${(i * 31 + k) % 1000}}`);
    });
    const publishedMs = Date.now() - t;
    await until(() => received >= total, 300000, 'the collector to receive every message');
    const e2eMs = Date.now() - t;
    result.endToEnd = {
      messages: total,
      publishedMs,
      allReceivedMs: e2eMs,
      messagesPerSecond: Math.round(total / (e2eMs / 1000)),
      received,
    };
    result.rejected = rejected;
    say(`end to end: ${total} messages in ${e2eMs} ms = ${result.endToEnd.messagesPerSecond}/s`);
  } finally {
    for (const d of devices) await d.stop().catch(() => {});
    if (sink) await sink.stop().catch(() => {});
    if (c2) await c2.close();
    if (c2link) await c2link.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
  // The cost of one sandbox alone, measured in a fresh process.
  result.sandbox = probeInChild(o.sample);
  say(
    `sandbox: ${result.sandbox.context.msEach} ms and ${result.sandbox.context.heapKB} KB JS heap per device context; shared: ${result.sandbox.shared.msEach} ms, ${result.sandbox.shared.heapKB} KB per client`,
  );
  result.totalMs = Date.now() - started;
  return result;
}

// ------------------------------------------------------------------ --scale: the C2 at fleet size

/**
 * `--scale N`: the C2 itself at fleet size (issue 13): register N devices and grant them a topic,
 * then rotate that topic to all of them until every device has applied it, on SQLite or
 * PostgreSQL (`--db`), over mosquitto.
 *
 * What is real: the C2 library and its database; the image's protect (every command); QoS 2
 * publishes to mosquitto in its own process, one control topic per device. What stands in for the
 * devices: one child process holding every device's client key, which receives the commands
 * through 16 MQTT connections sharing one subscription ($share/…/e4/+, QoS 1) and for each one
 * does what the device core does with a command: the image's unprotect (AES-SIV under that
 * device's key), the timestamp check (strictly newer than its last command), and SetTopicKey
 * parsed and applied to that device's key table. Not simulated: 100,000 sandboxes, flash writes,
 * 100,000 MQTT sessions. The set-up's grants count as delivered at provisioning (the devices
 * start with the keys of their device files); only the rotation goes over the broker.
 */
export interface ScaleOptions {
  devices: number;
  db: 'sqlite' | 'postgres';
  inFlight: number;
  connections: number;
  out: string;
}

interface StandInReport {
  applied: number;
  rejected: number;
  stale: number;
  unknownDevice: number;
  distinctKeys?: string[];
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);

/** An MQTT connection, or an error after 30 s (mqtt.js's connectAsync waits forever for a broker
 * that accepts the TCP connection but never answers CONNECT). */
async function connectWithin(url: string, clientId: string): Promise<MqttClient> {
  const c = mqtt.connect(url, { clientId, clean: true, reconnectPeriod: 0, connectTimeout: 30000 });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => (c.end(true), reject(new Error(`no MQTT connection to ${url} within 30 s`))), 30000);
    c.once('connect', () => (clearTimeout(timer), resolve()));
    c.once('error', (e) => (clearTimeout(timer), reject(e)));
  });
  return c;
}

/** The device stand-in (a child process): see above. Talks to the bench over IPC. */
async function standIn(): Promise<void> {
  const send = (m: object) => process.send?.(m);
  const e4 = loadE4Image();
  const devices = new Map<string, { key: Uint8Array; lastTs: number; topicKey: string | null }>();
  const counts: StandInReport = { applied: 0, rejected: 0, stale: 0, unknownDevice: 0 };
  let topicHash = '';
  const clients: MqttClient[] = [];
  const onMessage = (topic: string, payload: Buffer) => {
    const d = devices.get(topic.slice(3));
    if (!d) {
      counts.unknownDevice++;
      return;
    }
    try {
      const { timestamp, plaintext } = e4.unprotect(d.key, new Uint8Array(payload));
      if (timestamp <= d.lastTs) {
        counts.stale++;
        return;
      }
      d.lastTs = timestamp;
      // docs/protocol.md, "Commands": 3 | key (32) | topic hash (16)
      if (plaintext[0] === 3 && plaintext.length === 49 && Buffer.from(plaintext.subarray(33)).toString('hex') === topicHash) {
        d.topicKey = sha(plaintext.subarray(1, 33));
        counts.applied++;
      } else counts.rejected++;
    } catch {
      counts.rejected++;
    }
  };
  process.on('message', async (m: unknown) => {
    if (!m || typeof m !== 'object') return;
    if (
      'keys' in m &&
      Array.isArray(m.keys) &&
      'broker' in m &&
      typeof m.broker === 'string' &&
      'topicHash' in m &&
      typeof m.topicHash === 'string'
    ) {
      topicHash = m.topicHash;
      for (const entry of m.keys)
        if (Array.isArray(entry))
          devices.set(String(entry[0]), { key: new Uint8Array(Buffer.from(String(entry[1]), 'hex')), lastTs: 0, topicKey: null });
      const n = 'connections' in m && typeof m.connections === 'number' ? m.connections : 16;
      for (let i = 0; i < n; i++) {
        const c = await connectWithin(m.broker, `e4-stand-in-${process.pid}-${i}`);
        c.on('message', onMessage);
        await c.subscribeAsync('$share/e4-stand-in/e4/+', { qos: 1 });
        clients.push(c);
      }
      send({ ready: devices.size });
      setInterval(() => send({ progress: counts }), 100).unref();
    } else if ('report' in m) {
      send({ final: { ...counts, distinctKeys: [...new Set([...devices.values()].map((d) => d.topicKey ?? 'none'))] } });
    } else if ('stop' in m) {
      for (const c of clients) await c.endAsync();
      process.exit(0);
    }
  });
}

function startStandIn(): {
  child: ChildProcess;
  next: (pred: (m: { [k: string]: unknown }) => boolean, ms: number, what: string) => Promise<{ [k: string]: unknown }>;
  latest: () => StandInReport;
} {
  const child = spawn(process.execPath, [...TS_NODE, fileURLToPath(import.meta.url), '--stand-in'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let last: StandInReport = { applied: 0, rejected: 0, stale: 0, unknownDevice: 0 };
  const waiters: { pred: (m: { [k: string]: unknown }) => boolean; resolve: (m: { [k: string]: unknown }) => void }[] = [];
  child.on('message', (raw: unknown) => {
    if (!raw || typeof raw !== 'object') return;
    const m = raw as { [k: string]: unknown }; // our own child's messages (above)
    if (m.progress && typeof m.progress === 'object') last = m.progress as StandInReport;
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const next = (pred: (m: { [k: string]: unknown }) => boolean, ms: number, what: string) =>
    new Promise<{ [k: string]: unknown }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`device stand-in: timed out waiting for ${what}`)), ms);
      waiters.push({ pred, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  return { child, next, latest: () => last };
}

export async function runScale(o: ScaleOptions, say: (s: string) => void = (s) => void process.stderr.write(s + '\n')) {
  const started = Date.now();
  const e4 = loadE4Image();
  const broker = await startBrokerProcess({ kind: 'mosquitto' });
  const dir = mkdtempSync(join(tmpdir(), 'e4-bench-scale-'));
  let pgServer: PgServer | null = null;
  let c2: C2 | null = null;
  const links: MqttClient[] = [];
  const stand = startStandIn();
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  const result: { [k: string]: unknown } = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    loadAverageAtStart: os.loadavg().map((x) => +x.toFixed(1)),
    devices: o.devices,
    db: o.db,
    broker: 'mosquitto',
    inFlight: o.inFlight,
    standInConnections: o.connections,
  };
  try {
    let dbPath = join(dir, 'c2.db');
    if (o.db === 'postgres') {
      pgServer = await startPostgres();
      dbPath = await pgServer.createDatabase('e4_bench');
    }
    let t = Date.now();
    const c = await initC2({ dbPath, passphrase: 'bench passphrase', e4, concurrency: o.inFlight });
    c2 = c;
    await c.addTopic(TOPIC);
    const names = Array.from({ length: o.devices }, (_, i) => `dev-${String(i).padStart(6, '0')}`);
    const CHUNK = 10000;
    for (let i = 0; i < names.length; i += CHUNK) await c.addDevices(names.slice(i, i + CHUNK).map((name) => ({ name })));
    result.registerMs = Date.now() - t;
    say(`c2 (${o.db}): ${o.devices} devices registered in ${result.registerMs} ms`);
    t = Date.now();
    c.setSend(() => undefined); // provisioning: the devices start with the keys of their device files
    for (let i = 0; i < names.length; i += CHUNK) {
      const chunk = names.slice(i, i + CHUNK);
      // One device in ten only subscribes (rotations reach consumers first).
      await c.grantAll(
        chunk.filter((_, k) => k % 10 === 0),
        TOPIC,
        { role: 'sub' },
      );
      await c.grantAll(
        chunk.filter((_, k) => k % 10 !== 0),
        TOPIC,
        { role: 'pub' },
      );
    }
    result.grantMs = Date.now() - t;
    say(`c2: topic granted to all in ${result.grantMs} ms`);
    const keys = await c.clientKeys();
    say(`c2: ${keys.size} client keys handed to the device stand-in`);
    const topicHash = Buffer.from(e4.topicHash(TOPIC)).toString('hex');
    stand.child.send({
      broker: broker.url,
      topicHash,
      connections: o.connections,
      keys: [...keys].map(([id, k]) => [id, Buffer.from(k).toString('hex')]),
    });
    for (const k of keys.values()) k.fill(0);
    keys.clear();
    await stand.next((m) => typeof m.ready === 'number', 120000, 'the stand-in to subscribe');
    // The C2's publisher: a few MQTT connections, each with at most 16 QoS 2 messages in flight
    // (mosquitto's per-client window), commands spread over them round robin.
    const brokerUrl = String(broker.url); // mqtt://host:port, from startBrokerProcess
    for (let i = 0; i < Math.ceil(o.inFlight / 16); i++) links.push(await connectWithin(brokerUrl, `e4-c2-bench-${process.pid}-${i}`));
    say(`stand-in subscribed (${o.connections} connections); the C2 publishes over ${links.length}`);
    let turn = 0;
    const rssBefore = process.memoryUsage().rss;
    peakRss = rssBefore;

    // The rotation: one transaction (new key; a command per holder, protected and stored), then
    // delivery (QoS 2, consumers first), until the stand-in has applied every command.
    c.setSend(null);
    t = Date.now();
    const cpu0 = process.cpuUsage();
    const rot = await c.rotateTopic(TOPIC);
    const queuedMs = Date.now() - t;
    c.setSend((topic, bytes) => links[turn++ % links.length].publishAsync(topic, Buffer.from(bytes), { qos: 2 }));
    const delivery = await c.flush();
    const ackedMs = Date.now() - t;
    const cpu = process.cpuUsage(cpu0);
    say(
      `rotation: ${rot.holders.length} commands queued in ${queuedMs} ms; broker acked ${delivery.acked.length} (failed ${delivery.failed.length}) at ${ackedMs} ms`,
    );
    let appliedMs: number | null = null;
    const deadline = Date.now() + 300000;
    while (Date.now() < deadline) {
      if (stand.latest().applied >= o.devices) {
        appliedMs = Date.now() - t;
        break;
      }
      await sleep(20);
    }
    await sleep(500); // anything late or twice
    stand.child.send({ report: true });
    const fin = (await stand.next((m) => !!m.final, 30000, 'the final report')).final as StandInReport;
    const newKey = await c.topicKey(topicHash, rot.gen);
    const expectedKey = sha(newKey);
    newKey.fill(0);
    const left = (await c.store.get(`SELECT COUNT(*) AS n FROM commands WHERE status = 'queued'`))?.n;
    result.rotation = {
      holders: rot.holders.length,
      queuedMs,
      brokerAcked: delivery.acked.length,
      failed: delivery.failed.length,
      c2AllAckedMs: ackedMs,
      allAppliedMs: appliedMs,
      applied: fin.applied,
      lost: o.devices - fin.applied,
      rejected: fin.rejected,
      stale: fin.stale,
      stillQueued: Number(left),
      everyDeviceHasTheNewKey: fin.distinctKeys?.length === 1 && fin.distinctKeys[0] === expectedKey,
      commandsPerSecond: appliedMs ? Math.round(o.devices / (appliedMs / 1000)) : null,
      // CPU time of the C2 process (queue + send + acknowledgements): what the rotation costs
      // whatever else runs on the machine.
      c2CpuMs: Math.round((cpu.user + cpu.system) / 1000),
      loadAverageAfter: os.loadavg().map((x) => +x.toFixed(1)),
    };
    result.memory = { c2RssBeforeMB: Math.round(rssBefore / 1048576), c2RssPeakMB: Math.round(peakRss / 1048576) };
    if (o.db === 'sqlite')
      result.dbBytes = [dbPath, dbPath + '-wal'].filter((f) => existsSync(f)).reduce((a, f) => a + statSync(f).size, 0);
    result.goals = {
      rotationUnder30s: appliedMs !== null && appliedMs < 30000,
      c2MemoryUnder1GB: peakRss < 1 << 30,
      noCommandLost: fin.applied === o.devices && delivery.failed.length === 0,
    };
    say(
      `rotation: every device applied it at ${appliedMs} ms; lost ${o.devices - fin.applied}; C2 peak RSS ${Math.round(peakRss / 1048576)} MB`,
    );
  } finally {
    clearInterval(sampler);
    stand.child.send({ stop: true });
    for (const l of links) await l.endAsync().catch(() => undefined);
    if (c2) await c2.close();
    await broker.close();
    if (pgServer) await pgServer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  result.totalMs = Date.now() - started;
  return result;
}

function scaleTable(r: { [k: string]: unknown }): string {
  const rot = r.rotation as { [k: string]: unknown };
  const mem = r.memory as { [k: string]: unknown };
  const goals = r.goals as { [k: string]: boolean };
  const rows: [string, string][] = [
    [
      'devices',
      `${r.devices} (device stand-in: the image's unprotect per command, ${r.standInConnections} MQTT connections sharing one subscription)`,
    ],
    ['database', `${r.db}${r.dbBytes ? ` (${Math.round(Number(r.dbBytes) / 1048576)} MB)` : ''}`],
    ['register', `${r.registerMs} ms`],
    ['grant the topic', `${r.grantMs} ms`],
    ['rotate: queued', `${rot.queuedMs} ms (one transaction: new key, ${rot.holders} commands protected and stored)`],
    [
      'rotate: broker acked',
      `${rot.c2AllAckedMs} ms (${rot.brokerAcked} QoS 2, ${r.inFlight} in flight over ${Math.ceil(Number(r.inFlight) / 16)} connections; failed ${rot.failed})`,
    ],
    [
      'rotate: all applied',
      `${rot.allAppliedMs} ms (${rot.commandsPerSecond}/s) ${goals.rotationUnder30s ? '< 30 s: goal met' : '>= 30 s: goal NOT met'}`,
    ],
    [
      'rotate: C2 CPU time',
      `${rot.c2CpuMs} ms (load average ${JSON.stringify(r.loadAverageAtStart)} at start, ${JSON.stringify(rot.loadAverageAfter)} after)`,
    ],
    [
      'commands lost',
      `${rot.lost} (rejected ${rot.rejected}, stale ${rot.stale}, still queued ${rot.stillQueued}; every device has the new key: ${rot.everyDeviceHasTheNewKey}) ${goals.noCommandLost ? 'goal met' : 'goal NOT met'}`,
    ],
    [
      'C2 memory (RSS)',
      `${mem.c2RssBeforeMB} MB before, ${mem.c2RssPeakMB} MB peak ${goals.c2MemoryUnder1GB ? '< 1 GB: goal met' : '>= 1 GB: goal NOT met'}`,
    ],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

function table(r: FleetResult): string {
  const { broker, sandbox, memory, rotation, endToEnd } = r;
  if (!broker || !sandbox || !memory || !rotation || !endToEnd) throw new Error('bench-fleet: the run did not finish');
  const rows = [
    [
      'devices',
      `${r.devices} (${r.perContext === 1 ? 'a vm context each' : `${r.perContext} per shared vm context`}, own MQTT connection each)`,
    ],
    ['broker', `${broker.kind} ${broker.ownProcess ? '(own process)' : ''}`],
    ['sandbox cost', `${sandbox.context.msEach} ms, ${sandbox.context.heapKB} KB JS heap per device context (image loaded, one client)`],
    ['shared sandbox', `${sandbox.shared.msEach} ms, ${sandbox.shared.heapKB} KB JS heap per extra client in one context`],
    ['C2 set-up (batch)', `${r.c2SetupMs} ms`],
    ['boot + connect', `${r.bootMs} ms`],
    [
      'memory per device',
      `${memory.rssPerDeviceKB === null ? '(too few devices to measure) ' : memory.rssPerDeviceKB + ' KB '}RSS, ${memory.heapPerDeviceKB} KB JS heap (process ${memory.rssTotalMB} MB)`,
    ],
    [
      'rotate one topic key',
      `${rotation.allAppliedMs} ms until all ${rotation.holders} holders applied it (broker acked all in ${rotation.c2AllAckedMs} ms)`,
    ],
    ['end to end', `${endToEnd.messagesPerSecond} messages/s (${endToEnd.messages} in ${endToEnd.allReceivedMs} ms)`],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

async function main(argv: readonly string[]): Promise<void> {
  if (argv[0] === '--probe') {
    process.stdout.write(JSON.stringify(sandboxCost(loadImage(), Number(argv[1]) || 200)));
    return;
  }
  if (argv[0] === '--stand-in') return standIn();
  let o: BenchOptions;
  try {
    o = parseBenchArgs(argv);
  } catch (e) {
    process.stderr.write(`bench-fleet: ${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    process.exit(2);
  }
  if (o.help) return void process.stdout.write(USAGE + '\n');
  if (o.scale) {
    const r = await runScale(o.scale);
    mkdirSync(dirname(o.scale.out), { recursive: true });
    writeFileSync(o.scale.out, JSON.stringify(r, null, 2) + '\n');
    process.stdout.write('\n' + scaleTable(r) + `\n\nwritten to ${o.scale.out}\n`);
    process.exit(0);
  }
  const r = await runBench(o);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(r, null, 2) + '\n');
  process.stdout.write('\n' + table(r) + `\n\nwritten to ${o.out}\n`);
  process.exit(0);
}

if (isMain(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`bench-fleet: ${e.stack || e.message}\n`);
    process.exit(1);
  });
}
