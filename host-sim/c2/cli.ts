#!/usr/bin/env node
/**
 * e4-c2: the command line of the C2 key manager (npm run c2 -- <command>). See docs/c2.md.
 * Exit codes: 0 done; 1 failure (I/O, broker unreachable, database in use); 2 wrong arguments
 * (usage, unknown device/topic, already exists); 3 wrong passphrase; 4 database failed its
 * integrity check; 5 some commands were not acknowledged by the broker (kept queued: `flush`).
 * Codes 2-4 always leave the database exactly as it was.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { C2Error, DEFAULT_KDF, initC2, openC2 } from './c2.ts';
import { loadE4Image } from './e4.ts';
import { packageVersion, useCallerFolder } from '../shared/cli.ts';
import { ServiceError } from './errors.ts';
import { RemoteC2, remoteTargetOf } from './remote.ts';
import { SERVICE_COMMANDS, exitCodeFor, runServiceCommand } from './service-cli.ts';

const DEFAULT_DB = path.join('.c2', 'c2.db');
const CLOCKS = ['trusted', 'untrusted', 'monotonic', 'none'];
/** Board kinds (boards/) and the transport each speaks. */
const BOARDS = { 'espruino-esp32': 'mqtt', 'espruino-puckjs': 'link', 'espruino-nrf52': 'link', jerryscript: 'host' };
const LINKS = ['ble-uart', 'serial'];
/** Options that say what a device file is for: add-device --out and config. */
const DEVICE_FILE_OPTIONS = {
  board: { type: 'string', help: `the board it is for: ${Object.keys(BOARDS).join(' | ')} (checked by flash)` },
  clock: { type: 'string', help: `clock: ${CLOCKS.join(' | ')}` },
  'mqtt-url': { type: 'string', help: 'espruino-esp32: transport.mqtt.url, mqtt://host:port (default: --broker)' },
  'wifi-file': {
    type: 'string',
    help: 'espruino-esp32: Wi-Fi network from a file (line 1 SSID, line 2 password), or E4_WIFI_SSID / E4_WIFI_PASSWORD; never on the command line',
  },
  link: { type: 'string', help: `espruino-puckjs / espruino-nrf52: the gateway link, ${LINKS.join(' | ')} (default ble-uart)` },
};

const GLOBAL = {
  db: { type: 'string' },
  'passphrase-file': { type: 'string' },
  broker: { type: 'string' },
  image: { type: 'string' },
  json: { type: 'boolean' },
  server: { type: 'string' },
  'token-file': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
};
const SEND = ['broker'];

/** name -> { args, options, about, sends } */
const COMMANDS = {
  init: {
    args: [],
    about: 'Create a new C2 database (keys sealed under a key derived from the passphrase with Argon2id).',
    options: {
      'kdf-time': { type: 'string', help: `Argon2id passes (default ${DEFAULT_KDF.t})` },
      'kdf-memory': { type: 'string', help: `Argon2id memory in KiB (default ${DEFAULT_KDF.m})` },
      'kdf-parallelism': { type: 'string', help: `Argon2id lanes (default ${DEFAULT_KDF.p})` },
    },
  },
  'add-device': {
    args: [],
    about: 'Register a device by --name (id = SHA3-256(name)[0..16]) or --id, generating its client key.',
    options: {
      name: { type: 'string', help: 'device name' },
      id: { type: 'string', help: 'device id, 32 hex digits (instead of --name)' },
      out: { type: 'string', help: 'write its device.json here (contains keys: mode 0600); it holds no topic yet: `config` writes it again after `grant`' },
      ...DEVICE_FILE_OPTIONS,
    },
  },
  'add-topic': { args: ['TOPIC'], about: 'Register a topic and generate its first key.', options: {} },
  grant: {
    args: ['DEVICE', 'TOPIC'],
    about: "Give DEVICE the key of TOPIC (SetTopicKey). The role orders key rotations (consumers first).",
    options: { role: { type: 'string', help: 'pub | sub | both (default both)' } },
    sends: true,
  },
  revoke: {
    args: ['DEVICE', 'TOPIC'],
    about: 'Take TOPIC away from DEVICE (RemoveTopic).',
    options: { rotate: { type: 'boolean', help: 'also rotate the topic key for the remaining holders (the device knew it)' } },
    sends: true,
  },
  'rotate-topic': {
    args: ['TOPIC'],
    about: 'New key for TOPIC, sent to every holder: subscribers first, then publishers.',
    options: { watch: { type: 'string', help: 'then watch TOPIC for S seconds to see which key publishers use' } },
    sends: true,
  },
  'rotate-device-key': { args: ['DEVICE'], about: "New client key for DEVICE (SetIdKey, protected with the current one).", options: {}, sends: true },
  'reset-device': { args: ['DEVICE'], about: 'Remove every topic key from DEVICE (ResetTopics) and all its grants.', options: {}, sends: true },
  flush: { args: [], about: 'Send every queued (not yet acknowledged) command, in order.', options: {}, sends: true },
  list: { args: [], about: 'Devices, topics, grants and the delivery state of commands (no keys).', options: {}, readOnly: true },
  export: {
    args: ['DEVICE'],
    about: "Write DEVICE's libe4 E41P image (\"E41P\" | id | key | u16 count | count x (hash | key)).",
    options: { out: { type: 'string', help: 'output file (required; contains keys: mode 0600)' } },
    readOnly: true,
  },
  config: {
    args: ['DEVICE'],
    about: "Write DEVICE's device.json (current client key and granted topic keys) for flash/host-sim.",
    options: {
      out: { type: 'string', help: 'output file (required; contains keys: mode 0600)' },
      ...DEVICE_FILE_OPTIONS,
    },
    readOnly: true,
  },
  watch: {
    args: [],
    about: 'Subscribe to every managed topic for a while and record which key generation publishers use.',
    options: { duration: { type: 'string', help: 'seconds (default 10)' } },
    needsBroker: true,
  },
};

class Usage extends Error {}

function globalHelp() {
  const names = Object.keys(COMMANDS);
  return [
    'usage: e4-c2 <command> [options]      (npm run c2 -- <command> [options])',
    '',
    'commands:',
    ...names.map((n) => `  ${n.padEnd(18)} ${COMMANDS[n].about}`),
    ...Object.entries(SERVICE_COMMANDS).map(([n, c]) => `  ${n.padEnd(18)} ${c.about}`),
    '',
    'options for every command:',
    `  --db FILE               database (default ${DEFAULT_DB}, or E4_C2_DB)`,
    '  --passphrase-file FILE  passphrase (first line), or the E4_C2_PASSPHRASE environment variable',
    '  --broker URL            MQTT broker for commands, e.g. mqtt://127.0.0.1:1883 (or E4_C2_BROKER);',
    '                          without it commands are queued in the database until `flush --broker URL`',
    '  --image FILE            E4 image (default dist/e4.js, or E4_IMAGE)',
    '  --json                  machine-readable output',
    '  --server URL            use a running `e4-c2 serve` instead of the database file (or E4_C2_SERVER),',
    '                          with --token-file FILE (or E4_C2_TOKEN) holding an API token',
    '  --version               print the version',
    '',
    "`e4-c2 <command> --help` describes one command. Exit codes: 0 ok, 1 failure, 2 wrong arguments,",
    '3 wrong passphrase, 4 database modified, 5 commands not acknowledged by the broker (still queued).',
  ].join('\n');
}

function commandHelp(name) {
  const c = COMMANDS[name];
  const lines = [`usage: e4-c2 ${name}${c.args.map((a) => ' ' + a).join('')} [options]`, '', c.about];
  if (c.args.includes('DEVICE')) lines.push('', 'DEVICE is a device name or its 32-hex-digit id.');
  const opts = Object.entries(c.options);
  if (opts.length) {
    lines.push('', 'options:');
    for (const [k, o] of opts) lines.push(`  --${(k + (o.type === 'string' ? ' VALUE' : '')).padEnd(22)} ${o.help}`);
  }
  lines.push('', 'common options: --db FILE, --passphrase-file FILE (or E4_C2_PASSPHRASE), --broker URL, --image FILE, --json');
  return lines.join('\n');
}

function intOption(v, what) {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Usage(`${what} must be a whole number (got ${JSON.stringify(v)})`);
  return Number(v);
}

/** The command's place in argv: the first word that is neither a global option nor its value
 * (global options may come before or after the command). */
function commandAt(argv) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([^=]+)(=.*)?$/.exec(a);
    if (m && GLOBAL[m[1]]) {
      if (GLOBAL[m[1]].type === 'string' && m[2] === undefined) i++;
      continue;
    }
    if (a === '-h') continue;
    return i;
  }
  return -1;
}

function parse(argv) {
  const at = commandAt(argv);
  if (argv.includes('--version')) return { help: packageVersion() };
  if (at < 0) {
    if (argv.includes('--help') || argv.includes('-h')) return { help: globalHelp() };
    throw new Usage('no command given');
  }
  const name = argv[at];
  if (name === 'help') return { help: globalHelp() };
  argv = [name, ...argv.slice(0, at), ...argv.slice(at + 1)];
  const spec = COMMANDS[name];
  if (!spec) throw new Usage(`unknown command ${JSON.stringify(name)}`);
  const options = { ...GLOBAL };
  for (const [k, o] of Object.entries(spec.options)) options[k] = { type: o.type };
  let parsed;
  try {
    parsed = parseArgs({ args: argv.slice(1), options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new Usage(e.message, { cause: name });
  }
  const v = parsed.values;
  if (v.help) return { help: commandHelp(name) };
  const pos = parsed.positionals;
  if (pos.length !== spec.args.length) {
    throw new Usage(`${name} takes ${spec.args.length ? spec.args.join(' ') : 'no arguments'} (got ${pos.length} argument${pos.length === 1 ? '' : 's'})`, {
      cause: name,
    });
  }
  const args = Object.fromEntries(spec.args.map((a, i) => [a, pos[i]]));
  for (const [a, val] of Object.entries(args)) if (val === '') throw new Usage(`${a} must not be empty`, { cause: name });
  // Per-command checks, all before the database is touched.
  if (name === 'add-device') {
    if ((v.name === undefined) === (v.id === undefined)) throw new Usage('add-device needs exactly one of --name NAME or --id HEX', { cause: name });
    if (v.id !== undefined && !/^[0-9a-fA-F]{32}$/.test(v.id)) throw new Usage('--id must be 32 hex digits', { cause: name });
  }
  if (v.board !== undefined && !BOARDS[v.board]) throw new Usage(`--board must be one of ${Object.keys(BOARDS).join(', ')}`, { cause: name });
  if (v.link !== undefined && !LINKS.includes(v.link)) throw new Usage(`--link must be ${LINKS.join(' or ')}`, { cause: name });
  if (v['mqtt-url'] !== undefined && !/^mqtt:\/\/[^:/\s]+(:\d+)?\/?$/.test(v['mqtt-url'])) throw new Usage('--mqtt-url must look like mqtt://host:port', { cause: name });
  const kind = v.board && BOARDS[v.board];
  if (kind && kind !== 'mqtt' && (v['mqtt-url'] !== undefined || v['wifi-file'] !== undefined)) {
    throw new Usage(`${v.board} reaches the broker through a gateway: --link, not --mqtt-url or --wifi-file`, { cause: name });
  }
  if (kind && kind !== 'link' && v.link !== undefined) throw new Usage(`${v.board} has no gateway link: --link is for espruino-puckjs and espruino-nrf52`, { cause: name });
  if (v.clock !== undefined && !CLOCKS.includes(v.clock)) throw new Usage(`--clock must be one of ${CLOCKS.join(', ')}`, { cause: name });
  if (name === 'grant' && v.role !== undefined && !['pub', 'sub', 'both'].includes(v.role)) {
    throw new Usage('--role must be pub, sub or both', { cause: name });
  }
  if ((name === 'export' || name === 'config') && !v.out) throw new Usage(`${name} needs --out FILE`, { cause: name });
  const kdf = name === 'init' ? {
    t: intOption(v['kdf-time'], '--kdf-time') ?? DEFAULT_KDF.t,
    m: intOption(v['kdf-memory'], '--kdf-memory') ?? DEFAULT_KDF.m,
    p: intOption(v['kdf-parallelism'], '--kdf-parallelism') ?? DEFAULT_KDF.p,
  } : null;
  const watch = intOption(v.watch, '--watch');
  const duration = intOption(v.duration, '--duration') ?? 10;
  const broker = v.broker ?? (process.env.E4_C2_BROKER || undefined);
  if (broker !== undefined && !/^(mqtts?|wss?|tcp|tls):\/\/[^\s]+$/.test(broker)) throw new Usage(`--broker must be a URL such as mqtt://127.0.0.1:1883`, { cause: name });
  if ((spec.needsBroker || watch) && !broker) throw new Usage(`${name}${watch ? ' --watch' : ''} needs --broker URL`, { cause: name });
  // A device file's transport is settled before the database is touched.
  if (kind === 'mqtt' && (name === 'config' || v.out)) {
    if (!(v['mqtt-url'] ?? broker)) throw new Usage(`${v.board} needs the broker's address: --mqtt-url mqtt://host:port (or --broker)`, { cause: name });
    v.wifiNetwork = wifiFrom(v);
  }
  return { name, spec, args, v, kdf, watch, duration, broker };
}

function readPassphrase(v) {
  if (v['passphrase-file'] !== undefined) {
    let text;
    try {
      text = fs.readFileSync(v['passphrase-file'], 'utf8');
    } catch (e) {
      throw new Usage(`cannot read --passphrase-file: ${e.code || e.message}`);
    }
    const line = text.replace(/\r?\n$/, '');
    if (!line) throw new Usage('the passphrase file is empty');
    return line;
  }
  const env = process.env.E4_C2_PASSPHRASE;
  if (env) return env;
  throw new Usage('no passphrase: use --passphrase-file FILE or the E4_C2_PASSPHRASE environment variable');
}

function writeSecretFile(file, data) {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
}

/** An MQTT publisher: resolves when the broker completed the QoS 2 exchange (PUBCOMP). */
async function connectBroker(url) {
  const mqtt = (await import('mqtt')).default;
  let client;
  try {
    client = await Promise.race([
      mqtt.connectAsync(url, { clientId: 'e4-c2-' + randomBytes(6).toString('hex'), clean: true, reconnectPeriod: 0, connectTimeout: 5000 }, false),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), 6000).unref()),
    ]);
  } catch (e) {
    const err = new Error(`cannot connect to the broker ${url}: ${e.message || e}`);
    err.code = 'BROKER';
    throw err;
  }
  client.on('error', () => {}); // failures surface through publish callbacks
  return {
    client,
    send: (topic, bytes) => client.publishAsync(topic, Buffer.from(bytes), { qos: 2 }),
    close: () => client.endAsync().catch(() => {}),
  };
}

function who(d) {
  return d.name !== null && d.name !== undefined ? d.name : d.id;
}

function printDelivery(out, delivery, brokerGiven) {
  const { acked, failed, queued } = delivery;
  if (acked.length) out.push(`${acked.length} command${acked.length === 1 ? '' : 's'} acknowledged by the broker (QoS 2: the broker has them; devices get them when connected)`);
  for (const f of failed) out.push(`NOT acknowledged: ${f.kind}${f.topic ? ' ' + f.topic : ''} to ${who(f)}: ${f.error} (kept queued)`);
  if (queued.length) {
    const devs = [...new Set(queued.map(who))];
    out.push(
      brokerGiven
        ? `${queued.length} command(s) held back behind an unacknowledged one for: ${devs.join(', ')}`
        : `${queued.length} command(s) waiting for a broker (for ${devs.join(', ')}): deliver with \`e4-c2 flush --broker URL\``,
    );
  }
}

function printList(out, l) {
  out.push(`C2 database revision ${l.revision}: ${l.devices.length} device(s), ${l.topics.length} topic(s)`);
  for (const t of l.topics) {
    out.push(`topic ${t.topic}  hash ${t.hash}  key gen ${t.gen} (${t.keysKept} kept)  holders: ${t.holders.map((h) => `${who(h)}(${h.role})`).join(', ') || '-'}`);
  }
  for (const d of l.devices) {
    out.push(`device ${d.name ?? '(no name)'}  id ${d.id}  client key gen ${d.keyGen}${d.ackedKeyGen < d.keyGen ? ` (gen ${d.ackedKeyGen} until acknowledged)` : ''}  last seen ${d.lastSeen ? new Date(d.lastSeen * 1000).toISOString() : 'never'}`);
    for (const t of d.topics) {
      out.push(`  ${t.role.padEnd(4)} ${t.topic}  gen ${t.gen}${t.seenGen !== null ? `, seen publishing gen ${t.seenGen}` : ''}`);
    }
    for (const p of d.pending) {
      const what = `${p.kind}${p.topic ? ' ' + p.topic : ''}${p.gen !== null ? ` (gen ${p.gen})` : ''}`;
      if (p.state === 'queued') out.push(`  pending: ${what}: queued, not yet acknowledged by a broker`);
      else out.push(`  pending: ${what}: at the broker, not confirmed by the device (device seen since: ${p.seenSince})`);
    }
  }
}

async function watchTopics(c2, broker, topics, seconds, out) {
  const mqtt = (await import('mqtt')).default;
  const client = await mqtt.connectAsync(broker, { clientId: 'e4-c2-watch-' + randomBytes(6).toString('hex'), reconnectPeriod: 0, connectTimeout: 5000 }, false);
  const seen = new Map();
  client.on('message', (topic, payload) => {
    const r = c2.observe(topic, new Uint8Array(payload));
    const k = `${topic}`;
    if (!seen.has(k)) seen.set(k, { messages: 0, gens: new Map(), unknown: 0 });
    const s = seen.get(k);
    s.messages++;
    if (r) s.gens.set(r.gen, (s.gens.get(r.gen) || 0) + 1);
    else s.unknown++;
  });
  if (topics.length) await client.subscribeAsync(topics, { qos: 1 });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await client.endAsync();
  await c2.save();
  for (const t of topics) {
    const s = seen.get(t);
    if (!s) out.push(`watch ${t}: no traffic in ${seconds} s`);
    else out.push(`watch ${t}: ${s.messages} message(s); by key gen: ${[...s.gens].map(([g, n]) => `gen ${g}: ${n}`).join(', ') || '-'}${s.unknown ? `; ${s.unknown} under no known key` : ''}`);
  }
  return Object.fromEntries([...seen].map(([t, s]) => [t, { messages: s.messages, gens: Object.fromEntries(s.gens), unknown: s.unknown }]));
}

async function run(argv) {
  const at = commandAt(argv);
  if (at >= 0 && SERVICE_COMMANDS[argv[at]] && !argv.includes('--version')) {
    return runServiceCommand(argv[at], [...argv.slice(0, at), ...argv.slice(at + 1)], {
      globalOptions: GLOBAL,
      readPassphrase,
      dbPath: (v) => (typeof v.db === 'string' ? v.db : process.env.E4_C2_DB || DEFAULT_DB),
      version: packageVersion(),
    });
  }
  const p = parse(argv);
  if (p.help) {
    process.stdout.write(p.help + '\n');
    return 0;
  }
  const { name, args, v } = p;
  const dbPath = v.db ?? (process.env.E4_C2_DB || DEFAULT_DB);
  const server = remoteTargetOf(v);
  if (server && (name === 'init' || name === 'watch'))
    throw new Usage(`${name} works on the database itself, not through --server`, { cause: name });
  const passphrase = server ? '' : readPassphrase(v);
  const e4 = () => loadE4Image(v.image);
  const out = [];
  const result = { command: name };

  if (name === 'init') {
    if (passphrase.length < 8) throw new Usage('choose a passphrase of at least 8 characters');
    const c2 = await initC2({ dbPath, passphrase, kdf: p.kdf, e4 });
    c2.close();
    out.push(`created ${dbPath} (Argon2id t=${p.kdf.t} m=${p.kdf.m} KiB p=${p.kdf.p})`);
    result.db = dbPath;
    return finish(out, result, v, 0);
  }

  const spec = p.spec;
  const c2 = server ? new RemoteC2(server) : await openC2({ dbPath, passphrase, e4, readOnly: !!spec.readOnly });
  let broker = null;
  try {
    if (spec.sends && p.broker && !server) broker = await connectBroker(p.broker);
    if (broker) c2.setSend(broker.send);
    let delivery = null;
    switch (name) {
      case 'add-device': {
        const d = await c2.addDevice(v.name !== undefined ? { name: v.name } : { id: v.id });
        out.push(`added device ${who(d)}  id ${d.id}  control topic ${d.controlTopic}`);
        Object.assign(result, d);
        if (v.out) {
          writeSecretFile(v.out, JSON.stringify(await configFor(c2, d.id, v, p.broker), null, 2) + '\n');
          out.push(`wrote ${v.out} (contains the device key)`);
        }
        break;
      }
      case 'add-topic': {
        const t = await c2.addTopic(args.TOPIC);
        out.push(`added topic ${t.topic}  hash ${t.hash}`);
        Object.assign(result, t);
        break;
      }
      case 'grant': {
        const r = await c2.grant(args.DEVICE, args.TOPIC, { role: v.role ?? 'both' });
        out.push(r.sent ? `granted ${r.topic} to ${who(r)} as ${r.role}` : `${who(r)} already holds ${r.topic}; role ${r.changed ? 'changed to' : 'is'} ${r.role}`);
        ({ delivery } = r);
        Object.assign(result, r);
        break;
      }
      case 'revoke': {
        const r = await c2.revoke(args.DEVICE, args.TOPIC, { rotate: !!v.rotate });
        out.push(`revoked ${r.topic} from ${who(r)}${r.rotated ? `; topic key rotated to gen ${r.rotated.gen} for ${r.rotated.holders.length} holder(s)` : ''}`);
        ({ delivery } = r);
        Object.assign(result, r);
        break;
      }
      case 'rotate-topic': {
        const r = await c2.rotateTopic(args.TOPIC);
        out.push(`rotated ${r.topic} to key gen ${r.gen}; holders (consumers first): ${r.holders.map((h) => `${who(h)}(${h.role})`).join(', ') || 'none'}`);
        ({ delivery } = r);
        Object.assign(result, r);
        break;
      }
      case 'rotate-device-key': {
        const r = await c2.rotateDeviceKey(args.DEVICE);
        out.push(`new client key (gen ${r.gen}) for ${who(r)}`);
        ({ delivery } = r);
        Object.assign(result, r);
        break;
      }
      case 'reset-device': {
        const r = await c2.resetDevice(args.DEVICE);
        out.push(`reset ${who(r)}: ${r.removedGrants} grant(s) removed`);
        ({ delivery } = r);
        Object.assign(result, r);
        break;
      }
      case 'flush':
        delivery = await c2.flush();
        if (!delivery.acked.length && !delivery.failed.length && !delivery.queued.length) out.push('nothing queued');
        break;
      case 'list': {
        const l = await c2.list();
        printList(out, l);
        Object.assign(result, l);
        break;
      }
      case 'export': {
        writeSecretFile(v.out, await c2.exportE41P(args.DEVICE));
        out.push(`wrote ${v.out} (E41P image; contains keys)`);
        result.out = v.out;
        break;
      }
      case 'config': {
        const d = await c2.device(args.DEVICE);
        writeSecretFile(v.out, JSON.stringify(await configFor(c2, d.id, v, p.broker), null, 2) + '\n');
        out.push(`wrote ${v.out} (device.json; contains keys)`);
        result.out = v.out;
        break;
      }
      case 'watch': {
        const topics = (await c2.list()).topics.map((t) => t.topic);
        result.watch = await watchTopics(c2, p.broker, topics, p.duration, out);
        break;
      }
    }
    if (p.watch && name === 'rotate-topic') result.watch = await watchTopics(c2, p.broker, [args.TOPIC], p.watch, out);
    let code = 0;
    if (delivery) {
      printDelivery(out, delivery, !!broker || !!server);
      result.delivery = delivery;
      if ((broker || server) && (delivery.failed.length || delivery.queued.length)) code = 5;
    }
    if (delivery && (broker || server)) {
      const pendingNow = (await c2.list()).devices.filter((d) => d.pending.some((x) => x.state === 'at-broker' && x.seenSince !== 'yes'));
      if (pendingNow.length) out.push(`not yet confirmed by: ${pendingNow.map((d) => who(d)).join(', ')} (no traffic seen from them since; see \`list\`)`);
    }
    return finish(out, result, v, code);
  } finally {
    if (broker) await broker.close();
    c2.close();
  }
}

/** The Wi-Fi network for an ESP32 device file: --wifi-file (SSID, then password, one a line) or
 * E4_WIFI_SSID / E4_WIFI_PASSWORD. Never a command-line value: those end up in shell histories
 * and process lists. */
function wifiFrom(v) {
  if (v['wifi-file'] !== undefined) {
    let text;
    try {
      text = fs.readFileSync(v['wifi-file'], 'utf8');
    } catch (e) {
      throw new Usage(`cannot read --wifi-file: ${e.code || e.message}`);
    }
    const [ssid, password] = text.split(/\r?\n/);
    if (!ssid) throw new Usage('--wifi-file: the first line (the SSID) is empty');
    return password ? { ssid, password } : { ssid };
  }
  const ssid = process.env.E4_WIFI_SSID;
  if (!ssid) return undefined;
  return process.env.E4_WIFI_PASSWORD ? { ssid, password: process.env.E4_WIFI_PASSWORD } : { ssid };
}

/** The device file: keys, granted topics and, with --board, the transport that board speaks. */
async function configFor(c2, id, v, brokerUrl) {
  const kind = v.board ? BOARDS[v.board] : 'mqtt';
  let transport;
  if (kind === 'mqtt') {
    const url = v['mqtt-url'] ?? brokerUrl;
    if (url) transport = { mqtt: { url } };
    if (v.wifiNetwork) transport = { ...transport, wifi: v.wifiNetwork };
  } else if (kind === 'link') transport = { link: { kind: v.link ?? 'ble-uart' } };
  const cfg = await c2.deviceConfig({ id }, { clock: v.clock, transport });
  return v.board ? { ...cfg, board: v.board } : cfg;
}

function finish(out, result, v, code) {
  if (v.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else if (out.length) process.stdout.write(out.join('\n') + '\n');
  return code;
}

const EXIT = { USAGE: 2, NOT_FOUND: 2, EXISTS: 2, WRONG_PASSPHRASE: 3, INTEGRITY: 4 };

useCallerFolder('c2');
run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    if (e instanceof Usage) {
      const cmd = e.cause && COMMANDS[e.cause] ? e.cause : null;
      process.stderr.write(`e4-c2: ${e.message} (see e4-c2 ${cmd ? cmd + ' ' : ''}--help)\n`);
      process.exitCode = 2;
    } else if (e instanceof ServiceError) {
      process.stderr.write(`e4-c2: ${e.message}\n`);
      process.exitCode = exitCodeFor(e);
    } else if (e instanceof C2Error) {
      process.stderr.write(`e4-c2: ${e.message}\n`);
      process.exitCode = EXIT[e.code] ?? 1;
    } else {
      process.stderr.write(`e4-c2: ${e && e.message ? e.message : e}\n`);
      process.exitCode = 1;
    }
  },
);
