#!/usr/bin/env node
/**
 * `npm run flash -- --board <board> --port <serial | BLE address | tcp://host:port> --device <device.json>`
 *
 * Writes an Espruino board image and its device configuration to the board's Storage with the
 * espruino command-line tool, and makes the image start at boot:
 *   e4.js    the image (dist/boards/<board>.min.js), run from flash: function bodies stay in flash
 *   e4.json  the device configuration (id, client key, topic keys and hashes, options, clock,
 *            transport); the image moves the keys into its flash store at first boot and
 *            rewrites this file without them
 *   .boot0   `eval(require("Storage").read("e4.js"))`: runs the image at every boot
 *   MQTT     Espruino's MQTT module (ESP32 with an MQTT transport), from --modules
 * The old flash store (e4s0/e4s1) is erased and Storage compacted, so the board is provisioned
 * afresh from the configuration; --keep-state keeps the stored state (and keys) and writes the
 * configuration without keys (an image or settings update). Every file is verified by CRC-32 on
 * the board; then `load()` restarts it.
 *
 * Exit status: 0 done, 1 failure (connection, verification), 2 wrong command line or files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { parseArgs, portKind, ROOT, runEspruino, tagged, UsageError } from './espruino-cli.mjs';
import { runIfMain } from '../cli.mjs';

export const ESPRUINO_BOARDS = ['espruino-puckjs', 'espruino-nrf52', 'espruino-esp32'];
export const IMAGE_FILE = 'e4.js';
export const CONFIG_FILE = 'e4.json';
export const STORE_FILES = ['e4s0', 'e4s1'];
export const BOOT_CODE = 'eval(require("Storage").read("e4.js"));';

export const USAGE = `usage: npm run flash -- --board <board> --port <port> --device <device.json> [options]

  --board      ${ESPRUINO_BOARDS.join(' | ')}
  --port       a serial device (/dev/ttyACM0, COM3), a Bluetooth LE address
               (aa:bb:cc:dd:ee:ff) or an Espruino console over TCP (tcp://127.0.0.1:2323)
  --device     the device configuration written by C2 (format "e4-device", version 1)
  --keep-state keep the board's stored state and keys (image or settings update);
               --device is then optional and written without keys
  --erase-all  erase the whole Storage first (a board dedicated to E4: the image then sits
               at the start of Storage, where compaction never moves it)
  --boot-file  Storage file that starts the image at boot (default .boot0)
  --modules    directory holding MQTT.min.js or MQTT.js (ESP32 with MQTT; default ./modules)
  --baud       serial baud rate (default 9600, the tool's default)
  --full       upload the readable image instead of the minified one
  --timeout    seconds to wait for the board (default 300)
  --verbose    show the espruino tool's output
  --dry-run    print the upload script instead of sending it`;

const ARGS = {
  board: 'string',
  port: 'string',
  device: 'string',
  'keep-state': 'boolean',
  'erase-all': 'boolean',
  'boot-file': 'string',
  modules: 'string',
  baud: 'number',
  full: 'boolean',
  timeout: 'number',
  verbose: 'boolean',
  'dry-run': 'boolean',
  help: 'boolean',
};

const HEX = (n) => new RegExp(`^[0-9a-fA-F]{${2 * n}}$`);
const CLOCKS = ['trusted', 'untrusted', 'monotonic', 'none'];

export function sha3_16(text) {
  return Buffer.from(sha3_256(new TextEncoder().encode(text)).subarray(0, 16)).toString('hex');
}

/** The replay window (client option replayCache, 16 bytes per message, twice when the device
 * also publishes) each board gets when its configuration does not size it: what its RAM allows. */
export const REPLAY_CACHE = { 'espruino-puckjs': 16, 'espruino-nrf52': 16, 'espruino-esp32': 128 };

/**
 * Checks a device configuration for `board` and completes it as the device needs it: the id
 * from the name, every topic's hash computed here (boards without SHA-3 rely on it). Throws
 * UsageError with the file name and the problem.
 */
export function deviceConfigFor(board, cfg, where = 'device config', { keys = true } = {}) {
  const bad = (m) => {
    throw new UsageError(`${where}: ${m}`);
  };
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) bad('not a JSON object');
  if (cfg.format !== undefined && cfg.format !== 'e4-device') bad(`format is ${JSON.stringify(cfg.format)}, expected "e4-device"`);
  if (cfg.version !== undefined && cfg.version !== 1) bad(`version ${cfg.version} is not supported (1)`);
  const out = { format: 'e4-device', version: 1 };
  if (cfg.name !== undefined) {
    if (typeof cfg.name !== 'string') bad('name must be a string');
    out.name = cfg.name;
  }
  if (cfg.id !== undefined && !HEX(16).test(cfg.id)) bad('id must be 32 hex digits');
  if (cfg.id === undefined && out.name === undefined) bad('needs an id or a name');
  out.id = (cfg.id || sha3_16(out.name)).toLowerCase();
  if (keys) {
    if (!HEX(32).test(cfg.key || '')) bad('key must be 64 hex digits');
    out.key = cfg.key.toLowerCase();
  }
  if (cfg.topics !== undefined && !Array.isArray(cfg.topics)) bad('topics must be a list');
  out.topics = (cfg.topics || []).map((t, i) => {
    const what = `topics[${i}]`;
    if (!t || typeof t !== 'object') bad(`${what} must be an object`);
    if (t.topic !== undefined && typeof t.topic !== 'string') bad(`${what}.topic must be a string`);
    if (t.hash !== undefined && !HEX(16).test(t.hash)) bad(`${what}.hash must be 32 hex digits`);
    if (t.hash === undefined && t.topic === undefined) bad(`${what} needs a topic or a hash`);
    if (t.topic !== undefined && t.hash !== undefined && sha3_16(t.topic) !== t.hash.toLowerCase()) bad(`${what}: hash is not the hash of ${JSON.stringify(t.topic)}`);
    const e = {};
    if (t.topic !== undefined) e.topic = t.topic;
    e.hash = (t.hash || sha3_16(t.topic)).toLowerCase();
    if (keys) {
      if (!HEX(32).test(t.key || '')) bad(`${what}.key must be 64 hex digits`);
      e.key = t.key.toLowerCase();
    }
    return e;
  });
  if (cfg.options !== undefined && (!cfg.options || typeof cfg.options !== 'object')) bad('options must be an object');
  // The board's replay window unless the configuration sizes it (README.md, "Time and replay").
  out.options = { replayCache: REPLAY_CACHE[board], ...(cfg.options || {}) };
  if (cfg.clock !== undefined) {
    if (!CLOCKS.includes(cfg.clock)) bad(`clock must be one of ${CLOCKS.join(', ')} on a board`);
    out.clock = cfg.clock;
  }
  if (cfg.log !== undefined) out.log = cfg.log;
  const tr = cfg.transport;
  if (tr !== undefined) {
    if (!tr || typeof tr !== 'object') bad('transport must be an object');
    if (board === 'espruino-esp32') {
      if (tr.link) bad('the ESP32 image speaks MQTT, not the gateway link: use transport.mqtt');
      if (tr.mqtt && !(typeof tr.mqtt.url === 'string' && /^mqtt:\/\/[^:/]+(:\d+)?\/?$/.test(tr.mqtt.url)) && typeof tr.mqtt.host !== 'string') bad('transport.mqtt needs url "mqtt://host:port" (or host)');
      if (tr.wifi && typeof tr.wifi.ssid !== 'string') bad('transport.wifi needs an ssid');
    } else {
      if (tr.mqtt || tr.wifi) bad(`the ${board} image reaches the broker through a gateway: use transport.link`);
      if (tr.link && !['ble-uart', 'serial'].includes(tr.link.kind)) bad('transport.link.kind must be "ble-uart" or "serial"');
    }
    out.transport = tr;
  }
  return out;
}

/** The MQTT module's source for the ESP32 image. */
function mqttModule(dir) {
  for (const f of ['MQTT.min.js', 'MQTT.js']) {
    const p = join(dir, f);
    if (existsSync(p)) return readFileSync(p, 'latin1');
  }
  throw new UsageError(
    `the ESP32 MQTT transport needs Espruino's MQTT module: put MQTT.min.js (https://www.espruino.com/modules/MQTT.min.js) in ${dir} or name the directory with --modules`,
  );
}

const CHUNK = 768;

/** JS lines that write `data` (a latin1 string) to the Storage file `name`, in chunks. */
function writeLines(name, data) {
  const lines = [];
  const n = JSON.stringify(name);
  if (!data.length) return [`S.write(${n},"");`];
  for (let i = 0; i < data.length; i += CHUNK) {
    const part = Buffer.from(data.slice(i, i + CHUNK), 'latin1').toString('base64');
    lines.push(i === 0 ? `S.write(${n},atob("${part}"),0,${data.length});` : `S.write(${n},atob("${part}"),${i});`);
  }
  return lines;
}

/** CRC-32 as Espruino's E.CRC32 prints it (unsigned). */
export function crcOf(latin1) {
  return crc32(Buffer.from(latin1, 'latin1')) >>> 0;
}

/**
 * The upload script and the files it writes ({ name, bytes, crc }). `config` is the completed
 * device configuration (deviceConfigFor) or null (--keep-state without --device).
 */
export function uploadScript({ image, config, keepState = false, eraseAll = false, bootFile = '.boot0', mqtt = null, start = true }) {
  const files = [{ name: IMAGE_FILE, data: image }];
  if (config) files.push({ name: CONFIG_FILE, data: JSON.stringify(config) });
  if (mqtt !== null) files.push({ name: 'MQTT', data: mqtt });
  files.push({ name: bootFile, data: BOOT_CODE });
  const lines = [
    // Output from the running image must not interleave with ours: stop its timers and watches.
    'clearInterval();clearWatch();',
    'var S=require("Storage");',
  ];
  if (eraseAll) lines.push('S.eraseAll();');
  else if (!keepState) for (const f of STORE_FILES) lines.push(`S.erase(${JSON.stringify(f)});`);
  for (const f of files) {
    lines.push(`S.erase(${JSON.stringify(f.name)});`);
    lines.push(...writeLines(f.name, f.data));
  }
  // Old configurations (with keys) and stores are only unlinked by erase(): compaction erases them.
  lines.push('S.compact();');
  for (const f of files) lines.push(`print("E4FLASH",${JSON.stringify(f.name)},(S.read(${JSON.stringify(f.name)})||"").length,E.CRC32(S.read(${JSON.stringify(f.name)})||"")>>>0);`);
  lines.push('print("E4FLASH free",S.getFree());');
  lines.push('print("E4FLASH done");');
  if (start) lines.push('setTimeout(function(){load();},200);');
  return { script: lines.join('\n') + '\n', files: files.map((f) => ({ name: f.name, bytes: f.data.length, crc: crcOf(f.data) })) };
}

/** Checks the board's E4FLASH lines against what was sent; returns { free }. Throws on mismatch. */
export function verifyFlash(lines, files) {
  const got = new Map();
  let free = null;
  let done = false;
  for (const t of tagged(lines, 'E4FLASH')) {
    const w = t.split(' ');
    if (w[0] === 'done') done = true;
    else if (w[0] === 'free') free = Number(w[1]);
    else got.set(w[0], { bytes: Number(w[1]), crc: Number(w[2]) });
  }
  if (!done) throw new Error('the board did not finish the upload (no confirmation): see --verbose');
  for (const f of files) {
    const g = got.get(f.name);
    if (!g) throw new Error(`${f.name}: not reported by the board`);
    if (g.bytes !== f.bytes || g.crc !== f.crc) throw new Error(`${f.name}: the board holds ${g.bytes} bytes with CRC ${g.crc}, expected ${f.bytes} bytes with CRC ${f.crc}`);
  }
  return { free };
}

/** Reads and checks everything, without touching the board. Throws UsageError. */
export function prepare(opts) {
  if (!opts.board) throw new UsageError('--board is required');
  if (opts.board === 'jerryscript') throw new UsageError('the jerryscript image is built into a C port, not flashed with the espruino tool: see boards/jerryscript/README.md');
  if (!ESPRUINO_BOARDS.includes(opts.board)) throw new UsageError(`--board ${JSON.stringify(opts.board)}: expected one of ${ESPRUINO_BOARDS.join(', ')}`);
  portKind(opts.port);
  if (!opts.device && !opts['keep-state']) throw new UsageError('--device is required (or --keep-state to update the image only)');
  let config = null;
  if (opts.device) {
    const file = resolve(opts.device);
    let raw;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new UsageError(`--device ${opts.device}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    }
    config = deviceConfigFor(opts.board, raw, opts.device, { keys: !opts['keep-state'] });
    if (opts['keep-state']) config.provisioned = true;
  }
  const bootFile = opts['boot-file'] || '.boot0';
  if (!/^\.boot[0-3]$|^\.bootcde$/.test(bootFile)) throw new UsageError('--boot-file must be .boot0 .. .boot3 or .bootcde');
  const imageFile = join(ROOT, 'dist', 'boards', opts.board + (opts.full ? '.js' : '.min.js'));
  if (!existsSync(imageFile)) throw new Error(`${imageFile} not found: run npm run build`);
  const image = readFileSync(imageFile, 'latin1');
  let mqtt = null;
  if (opts.board === 'espruino-esp32' && config && config.transport && config.transport.mqtt) mqtt = mqttModule(resolve(opts.modules || 'modules'));
  if (opts['erase-all'] && opts['keep-state']) throw new UsageError('--erase-all and --keep-state exclude each other');
  return uploadScript({ image, config, keepState: !!opts['keep-state'], eraseAll: !!opts['erase-all'], bootFile, mqtt, start: opts.start !== false });
}

/** Flashes a board. Resolves { files, free }; rejects with UsageError or Error. */
export async function flash(opts, log = (m) => console.log(m)) {
  const { script, files } = prepare(opts);
  const total = files.reduce((a, f) => a + f.bytes, 0);
  log(`flash: ${opts.board} -> ${opts.port}: ${files.map((f) => `${f.name} (${f.bytes} B)`).join(', ')}`);
  const timeoutMs = (opts.timeout || 300) * 1000;
  const res = await runEspruino({ port: opts.port, script, baud: opts.baud, timeoutMs, verbose: !!opts.verbose });
  const { free } = verifyFlash(res.lines, files);
  log(`flash: verified ${files.length} files (${total} bytes) by CRC-32 on the board; ${free} bytes of Storage free; restarting`);
  return { files, free, lines: res.lines };
}

async function main(argv) {
  let opts;
  try {
    opts = parseArgs(argv, ARGS);
    if (opts.help) {
      console.log(USAGE);
      return 0;
    }
    if (opts['dry-run']) {
      const { script } = prepare(opts);
      process.stdout.write(script);
      return 0;
    }
    await flash(opts);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`flash: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`flash: ${e.message}`);
    return 1;
  }
}

runIfMain(import.meta.url, 'flash', main);
