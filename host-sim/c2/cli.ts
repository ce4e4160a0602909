#!/usr/bin/env node
/**
 * e4-c2: the command line of the C2 key manager (npm run c2 -- <command>). See docs/c2.md.
 * Exit codes: 0 done; 1 failure (I/O, broker or database unreachable); 2 wrong arguments
 * (usage, unknown device/topic, already exists); 3 wrong passphrase; 4 database failed its
 * integrity check; 5 some commands were not acknowledged by the broker (kept queued: `flush`).
 * Codes 2-4 always leave the database exactly as it was.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { C2Error, checkRole, DEFAULT_KDF, initC2, openC2 } from './c2.ts';
import type { DeviceConfigFile, Delivery, KdfParams, Listing } from './c2.ts';
import type { C2ErrorCode } from './store.ts';
import { migrateV1 } from './migrate.ts';
import { loadE4Image } from './e4.ts';
import { packageVersion, useCallerFolder } from '../shared/cli.ts';
import { ServiceError } from './errors.ts';
import { RemoteC2, remoteTarget, type C2Commands } from './remote.ts';
import { SERVICE_COMMANDS, exitCodeFor, runServiceCommand } from './service-cli.ts';

const DEFAULT_DB = path.join('.c2', 'c2.db');
const CLOCKS = ['trusted', 'untrusted', 'monotonic', 'none'];
type Transport = 'mqtt' | 'link' | 'host';
/** Board kinds (boards/) and the transport each speaks. */
const BOARDS: { readonly [board: string]: Transport } = {
  'espruino-esp32': 'mqtt',
  'espruino-puckjs': 'link',
  'espruino-nrf52': 'link',
  jerryscript: 'host',
};
const LINKS = ['ble-uart', 'serial'];

interface OptionSpec {
  type: 'string' | 'boolean';
  help: string;
}
interface CommandSpec {
  args: string[];
  about: string;
  options: { [name: string]: OptionSpec };
  sends?: boolean;
  readOnly?: boolean;
  needsBroker?: boolean;
}

/** Options that say what a device file is for: add-device --out and config. */
const DEVICE_FILE_OPTIONS: { [name: string]: OptionSpec } = {
  board: { type: 'string', help: `the board it is for: ${Object.keys(BOARDS).join(' | ')} (checked by flash)` },
  clock: { type: 'string', help: `clock: ${CLOCKS.join(' | ')}` },
  'mqtt-url': { type: 'string', help: 'espruino-esp32: transport.mqtt.url, mqtt://host:port (default: --broker)' },
  'wifi-file': {
    type: 'string',
    help: 'espruino-esp32: Wi-Fi network from a file (line 1 SSID, line 2 password), or E4_WIFI_SSID / E4_WIFI_PASSWORD; never on the command line',
  },
  link: { type: 'string', help: `espruino-puckjs / espruino-nrf52: the gateway link, ${LINKS.join(' | ')} (default ble-uart)` },
};

const GLOBAL: { [name: string]: { type: 'string' | 'boolean'; short?: string } } = {
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

const COMMANDS: { [name: string]: CommandSpec } = {
  init: {
    args: [],
    about: 'Create a new C2 database (keys sealed under a key derived from the passphrase with Argon2id).',
    options: {
      'kdf-time': { type: 'string', help: `Argon2id passes (default ${DEFAULT_KDF.t})` },
      'kdf-memory': { type: 'string', help: `Argon2id memory in KiB (default ${DEFAULT_KDF.m})` },
      'kdf-parallelism': { type: 'string', help: `Argon2id lanes (default ${DEFAULT_KDF.p})` },
    },
  },
  migrate: {
    args: [],
    about: 'Convert a database of the first C2 (format e4-c2/1, sql.js with a whole-file MAC) into a new --db (same passphrase).',
    options: { from: { type: 'string', help: 'the e4-c2/1 database file (read only, never changed)' } },
  },
  'add-device': {
    args: [],
    about: 'Register a device by --name (id = SHA3-256(name)[0..16]) or --id, generating its client key.',
    options: {
      name: { type: 'string', help: 'device name' },
      id: { type: 'string', help: 'device id, 32 hex digits (instead of --name)' },
      out: {
        type: 'string',
        help: 'write its device.json here (contains keys: mode 0600); it holds no topic yet: `config` writes it again after `grant`',
      },
      ...DEVICE_FILE_OPTIONS,
    },
  },
  'add-topic': { args: ['TOPIC'], about: 'Register a topic and generate its first key.', options: {} },
  grant: {
    args: ['DEVICE', 'TOPIC'],
    about: 'Give DEVICE the key of TOPIC (SetTopicKey). The role orders key rotations (consumers first).',
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
  'rotate-device-key': {
    args: ['DEVICE'],
    about: 'New client key for DEVICE (SetIdKey, protected with the current one).',
    options: {},
    sends: true,
  },
  'reset-device': {
    args: ['DEVICE'],
    about: 'Remove every topic key from DEVICE (ResetTopics) and all its grants.',
    options: {},
    sends: true,
  },
  flush: {
    args: [],
    about: 'Send every queued (not yet acknowledged) command, in order, including those of an interrupted run.',
    options: {},
    sends: true,
  },
  list: { args: [], about: 'Devices, topics, grants and the delivery state of commands (no keys).', options: {}, readOnly: true },
  export: {
    args: ['DEVICE'],
    about: 'Write DEVICE\'s libe4 E41P image ("E41P" | id | key | u16 count | count x (hash | key)).',
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

/** A wrong command line: one line, and where the help is (`command`'s, when known). */
class Usage extends Error {
  readonly command: string | null;
  constructor(message: string, command: string | null = null) {
    super(message);
    this.command = command;
  }
}

function globalHelp(): string {
  const names = Object.keys(COMMANDS);
  return [
    'usage: e4-c2 <command> [options]      (npm run c2 -- <command> [options])',
    '',
    'commands:',
    ...names.map((n) => `  ${n.padEnd(18)} ${COMMANDS[n].about}`),
    ...Object.entries(SERVICE_COMMANDS).map(([n, c]) => `  ${n.padEnd(18)} ${c.about}`),
    '',
    'options for every command:',
    `  --db FILE|URL           database: a SQLite file (default ${DEFAULT_DB}, or E4_C2_DB), or postgres://user@host/db`,
    '  --passphrase-file FILE  passphrase (first line), or the E4_C2_PASSPHRASE environment variable',
    '  --broker URL            MQTT broker for commands, e.g. mqtt://127.0.0.1:1883 (or E4_C2_BROKER);',
    '                          without it commands are queued in the database until `flush --broker URL`',
    '  --image FILE            E4 image (default dist/e4.js, or E4_IMAGE)',
    '  --json                  machine-readable output',
    '  --server URL            use a running `e4-c2 serve` instead of the database file (or E4_C2_SERVER),',
    '                          with --token-file FILE (or E4_C2_TOKEN) holding an API token',
    '  --version               print the version',
    '',
    '`e4-c2 <command> --help` describes one command. Exit codes: 0 ok, 1 failure, 2 wrong arguments,',
    '3 wrong passphrase, 4 database modified, 5 commands not acknowledged by the broker (still queued).',
  ].join('\n');
}

function commandHelp(name: string): string {
  const c = COMMANDS[name];
  const lines = [`usage: e4-c2 ${name}${c.args.map((a) => ' ' + a).join('')} [options]`, '', c.about];
  if (c.args.includes('DEVICE')) lines.push('', 'DEVICE is a device name or its 32-hex-digit id.');
  const opts = Object.entries(c.options);
  if (opts.length) {
    lines.push('', 'options:');
    for (const [k, o] of opts) lines.push(`  --${(k + (o.type === 'string' ? ' VALUE' : '')).padEnd(22)} ${o.help}`);
  }
  lines.push('', 'common options: --db FILE|URL, --passphrase-file FILE (or E4_C2_PASSPHRASE), --broker URL, --image FILE, --json');
  return lines.join('\n');
}

function intOption(v: string | undefined, what: string, command: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Usage(`${what} must be a whole number (got ${JSON.stringify(v)})`, command);
  return Number(v);
}

/** The command's place in argv: the first word that is neither a global option nor its value
 * (global options may come before or after the command). */
function commandAt(argv: readonly string[]): number {
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

interface WifiNetwork {
  ssid: string;
  password?: string;
}

/** The parsed option values (strings and flags by name). */
interface Values {
  strings: Map<string, string>;
  flags: Set<string>;
  wifiNetwork?: WifiNetwork;
}
const str = (v: Values, k: string): string | undefined => v.strings.get(k);

/** The same from node:util parseArgs' values (the service commands parse their own options). */
function valuesOf(values: Record<string, unknown>): Values {
  const v: Values = { strings: new Map(), flags: new Set() };
  for (const [k, x] of Object.entries(values)) {
    if (typeof x === 'string') v.strings.set(k, x);
    else if (x === true) v.flags.add(k);
  }
  return v;
}

interface Parsed {
  name: string;
  spec: CommandSpec;
  args: { [arg: string]: string };
  v: Values;
  kdf: KdfParams | null;
  watch: number | undefined;
  duration: number;
  broker: string | undefined;
}

function parse(argvIn: readonly string[]): Parsed | { help: string } {
  const at = commandAt(argvIn);
  if (argvIn.includes('--version')) return { help: String(packageVersion()) };
  if (at < 0) {
    if (argvIn.includes('--help') || argvIn.includes('-h')) return { help: globalHelp() };
    throw new Usage('no command given');
  }
  const name = argvIn[at];
  if (name === 'help') return { help: globalHelp() };
  const argv = [...argvIn.slice(0, at), ...argvIn.slice(at + 1)];
  const spec = COMMANDS[name];
  if (!spec) throw new Usage(`unknown command ${JSON.stringify(name)}`);
  const options: { [name: string]: { type: 'string' | 'boolean'; short?: string } } = { ...GLOBAL };
  for (const [k, o] of Object.entries(spec.options)) options[k] = { type: o.type };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new Usage(e instanceof Error ? e.message : String(e), name);
  }
  const v: Values = { strings: new Map(), flags: new Set() };
  for (const [k, val] of Object.entries(parsed.values)) {
    if (typeof val === 'string') v.strings.set(k, val);
    else if (val === true) v.flags.add(k);
  }
  if (v.flags.has('help')) return { help: commandHelp(name) };
  const pos = parsed.positionals;
  if (pos.length !== spec.args.length) {
    throw new Usage(
      `${name} takes ${spec.args.length ? spec.args.join(' ') : 'no arguments'} (got ${pos.length} argument${pos.length === 1 ? '' : 's'})`,
      name,
    );
  }
  const args: { [arg: string]: string } = Object.fromEntries(spec.args.map((a, i) => [a, pos[i]]));
  for (const [a, val] of Object.entries(args)) if (val === '') throw new Usage(`${a} must not be empty`, name);
  // Per-command checks, all before the database is touched.
  if (name === 'add-device') {
    if ((str(v, 'name') === undefined) === (str(v, 'id') === undefined))
      throw new Usage('add-device needs exactly one of --name NAME or --id HEX', name);
    const id = str(v, 'id');
    if (id !== undefined && !/^[0-9a-fA-F]{32}$/.test(id)) throw new Usage('--id must be 32 hex digits', name);
  }
  if (name === 'migrate' && !str(v, 'from')) throw new Usage('migrate needs --from OLD-FILE (and --db for the new database)', name);
  const board = str(v, 'board');
  if (board !== undefined && !BOARDS[board]) throw new Usage(`--board must be one of ${Object.keys(BOARDS).join(', ')}`, name);
  const link = str(v, 'link');
  if (link !== undefined && !LINKS.includes(link)) throw new Usage(`--link must be ${LINKS.join(' or ')}`, name);
  const mqttUrl = str(v, 'mqtt-url');
  if (mqttUrl !== undefined && !/^mqtt:\/\/[^:/\s]+(:\d+)?\/?$/.test(mqttUrl))
    throw new Usage('--mqtt-url must look like mqtt://host:port', name);
  const kind = board !== undefined ? BOARDS[board] : undefined;
  if (kind && kind !== 'mqtt' && (mqttUrl !== undefined || str(v, 'wifi-file') !== undefined)) {
    throw new Usage(`${board} reaches the broker through a gateway: --link, not --mqtt-url or --wifi-file`, name);
  }
  if (kind && kind !== 'link' && link !== undefined)
    throw new Usage(`${board} has no gateway link: --link is for espruino-puckjs and espruino-nrf52`, name);
  const clock = str(v, 'clock');
  if (clock !== undefined && !CLOCKS.includes(clock)) throw new Usage(`--clock must be one of ${CLOCKS.join(', ')}`, name);
  const role = str(v, 'role');
  if (name === 'grant' && role !== undefined && !['pub', 'sub', 'both'].includes(role))
    throw new Usage('--role must be pub, sub or both', name);
  if ((name === 'export' || name === 'config') && !str(v, 'out')) throw new Usage(`${name} needs --out FILE`, name);
  const kdf =
    name === 'init'
      ? {
          t: intOption(str(v, 'kdf-time'), '--kdf-time', name) ?? DEFAULT_KDF.t,
          m: intOption(str(v, 'kdf-memory'), '--kdf-memory', name) ?? DEFAULT_KDF.m,
          p: intOption(str(v, 'kdf-parallelism'), '--kdf-parallelism', name) ?? DEFAULT_KDF.p,
        }
      : null;
  const watch = intOption(str(v, 'watch'), '--watch', name);
  const duration = intOption(str(v, 'duration'), '--duration', name) ?? 10;
  const broker = str(v, 'broker') ?? (process.env.E4_C2_BROKER || undefined);
  if (broker !== undefined && !/^(mqtts?|wss?|tcp|tls):\/\/[^\s]+$/.test(broker))
    throw new Usage(`--broker must be a URL such as mqtt://127.0.0.1:1883`, name);
  if ((spec.needsBroker || watch) && !broker) throw new Usage(`${name}${watch ? ' --watch' : ''} needs --broker URL`, name);
  // A device file's transport is settled before the database is touched.
  if (kind === 'mqtt' && (name === 'config' || str(v, 'out'))) {
    if (!(mqttUrl ?? broker)) throw new Usage(`${board} needs the broker's address: --mqtt-url mqtt://host:port (or --broker)`, name);
    v.wifiNetwork = wifiFrom(v);
  }
  return { name, spec, args, v, kdf, watch, duration, broker };
}

const errCode = (e: unknown): string =>
  e && typeof e === 'object' && 'code' in e && typeof e.code === 'string' ? e.code : e instanceof Error ? e.message : String(e);

function readPassphrase(v: Values): string {
  const file = str(v, 'passphrase-file');
  if (file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new Usage(`cannot read --passphrase-file: ${errCode(e)}`);
    }
    const line = text.replace(/\r?\n$/, '');
    if (!line) throw new Usage('the passphrase file is empty');
    return line;
  }
  const env = process.env.E4_C2_PASSPHRASE;
  if (env) return env;
  throw new Usage('no passphrase: use --passphrase-file FILE or the E4_C2_PASSPHRASE environment variable');
}

function writeSecretFile(file: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
}

class BrokerError extends Error {
  readonly code = 'BROKER';
}

interface Broker {
  send: (topic: string, bytes: Uint8Array) => Promise<unknown>;
  close: () => Promise<void>;
}

/** An MQTT publisher: resolves when the broker completed the QoS 2 exchange (PUBCOMP). */
async function connectBroker(url: string): Promise<Broker> {
  const mqtt = (await import('mqtt')).default;
  let client: Awaited<ReturnType<typeof mqtt.connectAsync>>;
  try {
    client = await Promise.race([
      mqtt.connectAsync(
        url,
        { clientId: 'e4-c2-' + randomBytes(6).toString('hex'), clean: true, reconnectPeriod: 0, connectTimeout: 5000 },
        false,
      ),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), 6000).unref()),
    ]);
  } catch (e) {
    throw new BrokerError(`cannot connect to the broker ${url}: ${e instanceof Error ? e.message : String(e)}`);
  }
  client.on('error', () => undefined); // failures surface through publish callbacks
  return {
    send: (topic, bytes) => client.publishAsync(topic, Buffer.from(bytes), { qos: 2 }),
    close: () => client.endAsync().catch(() => undefined),
  };
}

function who(d: { name?: string | null; id?: string; device?: string }): string {
  return d.name !== null && d.name !== undefined ? d.name : (d.id ?? d.device ?? '?');
}

function printDelivery(out: string[], delivery: Delivery, brokerGiven: boolean): void {
  const { acked, failed, queued } = delivery;
  if (acked.length)
    out.push(
      `${acked.length} command${acked.length === 1 ? '' : 's'} acknowledged by the broker (QoS 2: the broker has them; devices get them when connected)`,
    );
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

function printList(out: string[], l: Listing, where: string): void {
  out.push(`C2 database (${l.backend}, ${where}): ${l.devices.length} device(s), ${l.topics.length} topic(s)`);
  for (const t of l.topics) {
    out.push(
      `topic ${t.topic}  hash ${t.hash}  key gen ${t.gen} (${t.keysKept} kept)  holders: ${t.holders.map((h) => `${who(h)}(${h.role})`).join(', ') || '-'}`,
    );
  }
  for (const d of l.devices) {
    out.push(
      `device ${d.name ?? '(no name)'}  id ${d.id}  client key gen ${d.keyGen}${d.ackedKeyGen < d.keyGen ? ` (gen ${d.ackedKeyGen} until acknowledged)` : ''}  last seen ${d.lastSeen ? new Date(d.lastSeen * 1000).toISOString() : 'never'}`,
    );
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

interface WatchSummary {
  messages: number;
  gens: { [gen: string]: number };
  unknown: number;
}

async function watchTopics(
  c2: C2Commands,
  broker: string,
  topics: string[],
  seconds: number,
  out: string[],
): Promise<{ [topic: string]: WatchSummary }> {
  const mqtt = (await import('mqtt')).default;
  const client = await mqtt.connectAsync(
    broker,
    { clientId: 'e4-c2-watch-' + randomBytes(6).toString('hex'), reconnectPeriod: 0, connectTimeout: 5000 },
    false,
  );
  const seen = new Map<string, { messages: number; gens: Map<number, number>; unknown: number }>();
  // Observations write to the database: one at a time, in arrival order.
  let observing: Promise<void> = Promise.resolve();
  client.on('message', (topic, payload) => {
    observing = observing.then(async () => {
      const r = await c2.observe(topic, new Uint8Array(payload));
      let s = seen.get(topic);
      if (!s) seen.set(topic, (s = { messages: 0, gens: new Map(), unknown: 0 }));
      s.messages++;
      if (r) s.gens.set(r.gen, (s.gens.get(r.gen) || 0) + 1);
      else s.unknown++;
    });
  });
  if (topics.length) await client.subscribeAsync(topics, { qos: 1 });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await client.endAsync();
  await observing;
  for (const t of topics) {
    const s = seen.get(t);
    if (!s) out.push(`watch ${t}: no traffic in ${seconds} s`);
    else
      out.push(
        `watch ${t}: ${s.messages} message(s); by key gen: ${[...s.gens].map(([g, n]) => `gen ${g}: ${n}`).join(', ') || '-'}${s.unknown ? `; ${s.unknown} under no known key` : ''}`,
      );
  }
  return Object.fromEntries([...seen].map(([t, s]) => [t, { messages: s.messages, gens: Object.fromEntries(s.gens), unknown: s.unknown }]));
}

async function run(argv: readonly string[]): Promise<number> {
  const at = commandAt(argv);
  if (at >= 0 && SERVICE_COMMANDS[argv[at]] && !argv.includes('--version')) {
    return runServiceCommand(argv[at], [...argv.slice(0, at), ...argv.slice(at + 1)], {
      globalOptions: GLOBAL,
      readPassphrase: (values) => readPassphrase(valuesOf(values)),
      dbPath: (values) => (typeof values['db'] === 'string' ? values['db'] : process.env.E4_C2_DB || DEFAULT_DB),
      version: packageVersion(),
    });
  }
  const p = parse(argv);
  if ('help' in p) {
    process.stdout.write(p.help + '\n');
    return 0;
  }
  const { name, args, v } = p;
  const dbPath = str(v, 'db') ?? (process.env.E4_C2_DB || DEFAULT_DB);
  const server = remoteTarget(str(v, 'server'), str(v, 'token-file'));
  if (server && (name === 'init' || name === 'watch')) throw new Usage(`${name} works on the database itself, not through --server`, name);
  const passphrase = server ? '' : readPassphrase(v);
  const image = str(v, 'image');
  const e4 = () => loadE4Image(image);
  const out: string[] = [];
  const result: { [k: string]: unknown } = { command: name };

  if (name === 'init' && p.kdf) {
    if (passphrase.length < 8) throw new Usage('choose a passphrase of at least 8 characters');
    const c2 = await initC2({ dbPath, passphrase, kdf: p.kdf, e4 });
    await c2.close();
    out.push(`created ${c2.dbPath} (Argon2id t=${p.kdf.t} m=${p.kdf.m} KiB p=${p.kdf.p})`);
    result.db = c2.dbPath;
    return finish(out, result, v, 0);
  }
  if (name === 'migrate') {
    const from = str(v, 'from') ?? '';
    const r = await migrateV1({ from, to: dbPath, passphrase });
    out.push(
      `migrated ${from} (e4-c2/1) to ${r.to}: ${Object.entries(r.rows)
        .map(([t, n]) => `${n} ${t}`)
        .join(', ')}`,
    );
    Object.assign(result, r);
    return finish(out, result, v, 0);
  }

  const spec = p.spec;
  const c2: C2Commands = server ? new RemoteC2(server) : await openC2({ dbPath, passphrase, e4, readOnly: !!spec.readOnly });
  let broker: Broker | null = null;
  try {
    if (spec.sends && p.broker && !server) broker = await connectBroker(p.broker);
    const b = broker;
    if (b) c2.setSend((topic, bytes) => b.send(topic, bytes));
    let delivery: Delivery | null = null;
    switch (name) {
      case 'add-device': {
        const n = str(v, 'name');
        const d = await c2.addDevice(n !== undefined ? { name: n } : { id: str(v, 'id') ?? '' });
        out.push(`added device ${who(d)}  id ${d.id}  control topic ${d.controlTopic}`);
        Object.assign(result, d);
        const file = str(v, 'out');
        if (file) {
          writeSecretFile(file, JSON.stringify(await configFor(c2, d.id, v, p.broker), null, 2) + '\n');
          out.push(`wrote ${file} (contains the device key)`);
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
        const r = await c2.grant(args.DEVICE, args.TOPIC, { role: checkRole(str(v, 'role') ?? 'both') });
        out.push(
          r.sent
            ? `granted ${r.topic} to ${who(r)} as ${r.role}`
            : `${who(r)} already holds ${r.topic}; role ${r.changed ? 'changed to' : 'is'} ${r.role}`,
        );
        ({ delivery } = r);
        Object.assign(result, r);
        break;
      }
      case 'revoke': {
        const r = await c2.revoke(args.DEVICE, args.TOPIC, { rotate: v.flags.has('rotate') });
        out.push(
          `revoked ${r.topic} from ${who(r)}${r.rotated ? `; topic key rotated to gen ${r.rotated.gen} for ${r.rotated.holders.length} holder(s)` : ''}`,
        );
        ({ delivery } = r);
        Object.assign(result, r);
        break;
      }
      case 'rotate-topic': {
        const r = await c2.rotateTopic(args.TOPIC);
        out.push(
          `rotated ${r.topic} to key gen ${r.gen}; holders (consumers first): ${r.holders.map((h) => `${who(h)}(${h.role})`).join(', ') || 'none'}`,
        );
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
        printList(out, l, c2.dbPath);
        Object.assign(result, l);
        break;
      }
      case 'export': {
        const file = str(v, 'out') ?? '';
        writeSecretFile(file, await c2.exportE41P(args.DEVICE));
        out.push(`wrote ${file} (E41P image; contains keys)`);
        result.out = file;
        break;
      }
      case 'config': {
        const file = str(v, 'out') ?? '';
        const d = await c2.device(args.DEVICE);
        writeSecretFile(file, JSON.stringify(await configFor(c2, d.id, v, p.broker), null, 2) + '\n');
        out.push(`wrote ${file} (device.json; contains keys)`);
        result.out = file;
        break;
      }
      case 'watch': {
        const topics = (await c2.list()).topics.map((t) => t.topic);
        result.watch = await watchTopics(c2, p.broker ?? '', topics, p.duration, out);
        break;
      }
    }
    if (p.watch && name === 'rotate-topic') result.watch = await watchTopics(c2, p.broker ?? '', [args.TOPIC], p.watch, out);
    let code = 0;
    if (delivery) {
      printDelivery(out, delivery, !!broker || !!server);
      result.delivery = delivery;
      if ((broker || server) && (delivery.failed.length || delivery.queued.length)) code = 5;
    }
    if (delivery && (broker || server)) {
      const pendingNow = (await c2.list()).devices.filter((d) => d.pending.some((x) => x.state === 'at-broker' && x.seenSince !== 'yes'));
      if (pendingNow.length)
        out.push(`not yet confirmed by: ${pendingNow.map((d) => who(d)).join(', ')} (no traffic seen from them since; see \`list\`)`);
    }
    return finish(out, result, v, code);
  } finally {
    if (broker) await broker.close();
    await c2.close();
  }
}

/** The Wi-Fi network for an ESP32 device file: --wifi-file (SSID, then password, one a line) or
 * E4_WIFI_SSID / E4_WIFI_PASSWORD. Never a command-line value: those end up in shell histories
 * and process lists. */
function wifiFrom(v: Values): WifiNetwork | undefined {
  const file = str(v, 'wifi-file');
  if (file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new Usage(`cannot read --wifi-file: ${errCode(e)}`);
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
async function configFor(
  c2: C2Commands,
  id: string,
  v: Values,
  brokerUrl: string | undefined,
): Promise<DeviceConfigFile & { board?: string }> {
  const board = str(v, 'board');
  const kind = board ? BOARDS[board] : 'mqtt';
  let transport: { mqtt?: { url: string }; wifi?: WifiNetwork; link?: { kind: string } } | undefined;
  if (kind === 'mqtt') {
    const url = str(v, 'mqtt-url') ?? brokerUrl;
    if (url) transport = { mqtt: { url } };
    if (v.wifiNetwork) transport = { ...transport, wifi: v.wifiNetwork };
  } else if (kind === 'link') transport = { link: { kind: str(v, 'link') ?? 'ble-uart' } };
  const cfg = await c2.deviceConfig({ id }, { clock: str(v, 'clock'), transport });
  return board ? { ...cfg, board } : cfg;
}

function finish(out: string[], result: { [k: string]: unknown }, v: Values, code: number): number {
  if (v.flags.has('json')) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else if (out.length) process.stdout.write(out.join('\n') + '\n');
  return code;
}

const EXIT: { [C in C2ErrorCode]?: number } = { USAGE: 2, NOT_FOUND: 2, EXISTS: 2, WRONG_PASSPHRASE: 3, INTEGRITY: 4 };

useCallerFolder('c2');
run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof Usage) {
      const cmd = e.command && COMMANDS[e.command] ? e.command : null;
      process.stderr.write(`e4-c2: ${e.message} (see e4-c2 ${cmd ? cmd + ' ' : ''}--help)\n`);
      process.exitCode = 2;
    } else if (e instanceof ServiceError) {
      process.stderr.write(`e4-c2: ${e.message}\n`);
      process.exitCode = exitCodeFor(e);
    } else if (e instanceof C2Error) {
      process.stderr.write(`e4-c2: ${e.message}\n`);
      process.exitCode = EXIT[e.code] ?? 1;
    } else {
      process.stderr.write(`e4-c2: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    }
  },
);
