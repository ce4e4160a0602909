/**
 * `npm run bench:fleet`: many simulated devices in one process against a real broker (in its own
 * process), driven by the real C2.
 *
 *   node host-sim/tools/bench-fleet.ts [--devices N] [--per-context K] [--broker aedes|mosquitto|URL]
 *                                       [--messages M] [--out FILE]
 *
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
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startBroker, startBrokerProcess } from '../services/broker.ts';
import { SimDevice } from '../shared/device.ts';
import { flashStore, makeClock, systemTime } from '../shared/hal.ts';
import { createSandbox, loadImage, ROOT } from '../shared/image.ts';
import { makeDeviceConfig } from '../shared/device-config.ts';
import { initC2 } from '../c2/c2.ts';
import { MqttTransport } from '../shared/mqtt-transport.ts';
import { isMain, TS_NODE } from '../shared/cli.ts';

const TOPIC = 'fleet/telemetry';
const USAGE = `usage: npm run bench:fleet -- [--devices N] [--per-context K] [--broker aedes|mosquitto|URL] [--messages M] [--out FILE]
  --devices N       simulated devices (1-20000, default 10000)
  --per-context K   devices per vm context (default: all in one shared sandbox; 1 = a sandbox per device)
  --broker B        aedes (default) or mosquitto, started in a child process; or mqtt://host:port
  --messages M      end-to-end messages, spread over the devices (default 20000)
  --sample S        sandboxes created to measure the cost of one (default 200)
  --out FILE        JSON results (default dist/bench-fleet.json)`;

export function parseBenchArgs(argv) {
  const o = { devices: 10000, perContext: 0, broker: 'aedes', messages: 20000, sample: 200, out: join(ROOT, 'dist', 'bench-fleet.json') };
  const int = (flag, v, lo, hi) => {
    if (!/^\d+$/.test(v || '') || Number(v) < lo || Number(v) > hi) throw new Error(`${flag} takes a whole number from ${lo} to ${hi}`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--devices') o.devices = int(a, argv[++i], 1, 20000);
    else if (a === '--per-context') o.perContext = int(a, argv[++i], 1, 20000);
    else if (a === '--messages') o.messages = int(a, argv[++i], 1, 10000000);
    else if (a === '--sample') o.sample = int(a, argv[++i], 1, 5000);
    else if (a === '--broker') {
      o.broker = argv[++i];
      if (!['aedes', 'mosquitto'].includes(o.broker) && !/^mqtt:\/\/[^/\s]+:\d+\/?$/.test(o.broker || '')) throw new Error('--broker takes aedes, mosquitto or mqtt://host:port');
    } else if (a === '--out') {
      o.out = argv[++i];
      if (!o.out) throw new Error('--out needs a file');
    } else if (a === '-h' || a === '--help') o.help = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.perContext || o.perContext > o.devices) o.perContext = o.devices;
  return o;
}

// A full collection before each memory reading (without requiring node --expose-gc).
let gc = null;
const mem = () => {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc');
  }
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external + m.arrayBuffers };
};
const kb = (b) => Math.round(b / 1024);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function pool(items, limit, fn) {
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

function until(pred, ms, what) {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (pred()) return resolve();
      if (Date.now() > end) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 5);
    };
    tick();
  });
}

/** Cost of one device sandbox vs. one more client in a shared sandbox. */
function sandboxCost(image, sample) {
  const cfgs = Array.from({ length: sample }, (_, i) => makeDeviceConfig({ name: `probe-${i}`, topics: [TOPIC] }));
  const world = systemTime();
  const one = (sb, cfg) => {
    const store = flashStore().attach(sb);
    const c = sb.E4.create({ vault: sb.E4.vault(), store, clock: makeClock('trusted', world) }, cfg);
    c.protect(TOPIC, 'probe');
    return c;
  };
  const keep = [];
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
function probeInChild(sample) {
  const r = spawnSync(process.execPath, [...TS_NODE, fileURLToPath(import.meta.url), '--probe', String(sample)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`sandbox probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export async function runBench(o, say = (s) => process.stderr.write(s + '\n')) {
  const started = Date.now();
  const image = loadImage();
  const E4 = createRequire(import.meta.url)(image.path);
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: (await import('node:os')).cpus().length,
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
  const devices = [];
  let sink = null;
  let c2 = null;
  let c2link = null;
  try {
    // 3. C2: one batch registers the fleet and grants the topic (devices 'pub', the collector 'sub').
    c2link = new MqttTransport(broker.url);
    await c2link.open();
    let t = Date.now();
    c2 = await initC2({ dbPath: join(dir, 'c2.db'), passphrase: 'bench passphrase', e4: E4 });
    const names = Array.from({ length: o.devices }, (_, i) => `dev-${String(i).padStart(5, '0')}`);
    await c2.batch(async (c) => {
      await c.addTopic(TOPIC);
      await c.addDevice({ name: 'collector' });
      await c.grant('collector', TOPIC, { role: 'sub' });
      for (const n of names) {
        await c.addDevice({ name: n });
        await c.grant(n, TOPIC, { role: 'pub' });
      }
    });
    c2.setSend((topic, bytes, { qos }) => c2link.publish(topic, Buffer.from(bytes), qos));
    await c2.flush(); // nobody listens yet: the grants are what the devices are provisioned with
    result.c2SetupMs = Date.now() - t;
    say(`c2: ${o.devices} devices added and granted in one batch in ${result.c2SetupMs} ms`);

    // 4. Devices: boot (sandbox, client, flash) and connect.
    const world = systemTime();
    const before = mem();
    t = Date.now();
    let realm = null;
    const configs = names.map((n) => c2.deviceConfig(n));
    for (let i = 0; i < o.devices; i++) {
      if (o.perContext > 1 && i % o.perContext === 0) realm = createSandbox(image, { name: `shared-${i / o.perContext}` });
      devices.push(
        new SimDevice({ image, realm: o.perContext > 1 ? realm : null, config: configs[i], clock: 'trusted', world, network: broker.url, qos: 1 }),
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
    say(`devices: ${o.devices} booted and connected in ${result.bootMs} ms; ${result.memory.rssPerDeviceKB} KB RSS per device (sandbox + client + MQTT connection)`);

    sink = new SimDevice({ image, config: c2.deviceConfig('collector'), clock: 'trusted', world, network: broker.url, subscribe: [TOPIC], qos: 1 });
    await sink.start();

    // 5. Rotation of the topic key to every holder.
    let applied = 0;
    for (const d of [...devices, sink]) d.on('command', () => applied++);
    const rejected = {};
    for (const d of [...devices, sink]) d.on('rejected', (e) => (rejected[e.result] = (rejected[e.result] || 0) + 1));
    t = Date.now();
    const rot = await c2.rotateTopic(TOPIC);
    const ackedMs = Date.now() - t;
    await until(() => applied >= o.devices + 1, 120000, 'every device to apply the rotation').catch((e) => {
      throw new Error(`${e.message}: ${applied} of ${o.devices + 1} applied; broker acked ${rot.delivery.acked.length}, failed ${rot.delivery.failed.length}; rejected ${JSON.stringify(rejected)}`);
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
    result.endToEnd = { messages: total, publishedMs, allReceivedMs: e2eMs, messagesPerSecond: Math.round(total / (e2eMs / 1000)), received };
    result.rejected = rejected;
    say(`end to end: ${total} messages in ${e2eMs} ms = ${result.endToEnd.messagesPerSecond}/s`);
  } finally {
    for (const d of devices) await d.stop().catch(() => {});
    if (sink) await sink.stop().catch(() => {});
    if (c2) c2.close();
    if (c2link) await c2link.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
  // The cost of one sandbox alone, measured in a fresh process.
  result.sandbox = probeInChild(o.sample);
  say(`sandbox: ${result.sandbox.context.msEach} ms and ${result.sandbox.context.heapKB} KB JS heap per device context; shared: ${result.sandbox.shared.msEach} ms, ${result.sandbox.shared.heapKB} KB per client`);
  result.totalMs = Date.now() - started;
  return result;
}

function table(r) {
  const rows = [
    ['devices', `${r.devices} (${r.perContext === 1 ? 'a vm context each' : `${r.perContext} per shared vm context`}, own MQTT connection each)`],
    ['broker', `${r.broker.kind} ${r.broker.ownProcess ? '(own process)' : ''}`],
    ['sandbox cost', `${r.sandbox.context.msEach} ms, ${r.sandbox.context.heapKB} KB JS heap per device context (image loaded, one client)`],
    ['shared sandbox', `${r.sandbox.shared.msEach} ms, ${r.sandbox.shared.heapKB} KB JS heap per extra client in one context`],
    ['C2 set-up (batch)', `${r.c2SetupMs} ms`],
    ['boot + connect', `${r.bootMs} ms`],
    ['memory per device', `${r.memory.rssPerDeviceKB === null ? '(too few devices to measure) ' : r.memory.rssPerDeviceKB + ' KB '}RSS, ${r.memory.heapPerDeviceKB} KB JS heap (process ${r.memory.rssTotalMB} MB)`],
    ['rotate one topic key', `${r.rotation.allAppliedMs} ms until all ${r.rotation.holders} holders applied it (broker acked all in ${r.rotation.c2AllAckedMs} ms)`],
    ['end to end', `${r.endToEnd.messagesPerSecond} messages/s (${r.endToEnd.messages} in ${r.endToEnd.allReceivedMs} ms)`],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

async function main(argv) {
  if (argv[0] === '--probe') {
    process.stdout.write(JSON.stringify(sandboxCost(loadImage(), Number(argv[1]) || 200)));
    return;
  }
  let o;
  try {
    o = parseBenchArgs(argv);
  } catch (e) {
    process.stderr.write(`bench-fleet: ${e.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (o.help) return void process.stdout.write(USAGE + '\n');
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
