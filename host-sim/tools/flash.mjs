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
 *   MQTT     the MQTT module (ESP32 with an MQTT transport): the project's own
 *            (boards/espruino/modules/MQTT.js), or Espruino's from --modules
 *   .bootcde the application, from --app (optional)
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
import { packageVersion, runIfMain, useCallerFolder } from '../cli.mjs';

export const ESPRUINO_BOARDS = ['espruino-puckjs', 'espruino-nrf52', 'espruino-esp32'];
export const IMAGE_FILE = 'e4.js';
export const CONFIG_FILE = 'e4.json';
export const STORE_FILES = ['e4s0', 'e4s1'];
export const BOOT_CODE = 'eval(require("Storage").read("e4.js"));';
/** Where --app puts the user's application: Espruino runs it after the .boot0..3 files. */
export const APP_FILE = '.bootcde';

export const USAGE = `usage: npm run flash -- --board <board> --port <port> --device <device.json> [options]

  --board      ${ESPRUINO_BOARDS.join(' | ')}
  --port, -p   a serial device (/dev/ttyACM0, COM3), a Bluetooth LE address
               (aa:bb:cc:dd:ee:ff) or an Espruino console over TCP (tcp://127.0.0.1:2323)
  --device     the device configuration written by C2 (format "e4-device", version 1); refused
               (exit 2) when it cannot work on the board: written for another board, no
               transport the board speaks, no topics
  --keep-state keep the board's stored state and keys (image or settings update);
               --device is then optional and written without keys
  --erase-all  erase the whole Storage first (a board dedicated to E4: the image then sits
               at the start of Storage, where compaction never moves it)
  --boot-file  Storage file that starts the image at boot (default .boot0)
  --modules    directory holding MQTT.min.js or MQTT.js (ESP32 with MQTT): Espruino's module
               instead of the project's own (boards/espruino/modules/MQTT.js, the default)
  --app        your application (a .js file), written as .bootcde: it runs after the image
               and finds the runtime in E4.device() (examples/)
  --baud, -b   serial baud rate (default 9600, the tool's default)
  --full       upload the readable image instead of the minified one
  --timeout    seconds to wait for the board (default 300)
  --verbose    show the espruino tool's output
  --dry-run    print the upload script instead of sending it
  --version    print the version

The upload is all or nothing: new files go under temporary names, are checked by CRC-32 on the
board, and only then replace the old ones (the boot file last); the old keys stay until then.
After the restart the tool checks that the runtime booted (E4.status().ok).`;

const ARGS = {
  board: 'string',
  port: 'string',
  device: 'string',
  'keep-state': 'boolean',
  'erase-all': 'boolean',
  'boot-file': 'string',
  modules: 'string',
  app: 'string',
  baud: 'number',
  full: 'boolean',
  timeout: 'number',
  verbose: 'boolean',
  'dry-run': 'boolean',
  help: 'boolean',
  version: 'boolean',
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
  if (cfg.board !== undefined && cfg.board !== board) bad(`written for ${cfg.board}, not ${board} (e4-c2 config --board ${board})`);
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

/**
 * Whether `board` can do its job with the completed configuration `cfg`: a transport it speaks
 * and at least one topic. Throws UsageError with what is missing and how to get it.
 */
export function checkRunnable(board, cfg, where) {
  const bad = (m) => {
    throw new UsageError(`${where}: ${m}`);
  };
  const tr = cfg.transport || {};
  if (board === 'espruino-esp32' && !tr.mqtt) bad('no transport: the ESP32 image needs transport.mqtt (e4-c2 config DEVICE --board espruino-esp32 --mqtt-url mqtt://host:port)');
  if (board !== 'espruino-esp32' && !tr.link) bad(`no transport: the ${board} image needs transport.link (e4-c2 config DEVICE --board ${board} --link ble-uart)`);
  if (!cfg.topics.length) bad('no topics: the device could neither publish nor receive (e4-c2 grant DEVICE TOPIC, then e4-c2 config DEVICE --out FILE)');
  // Topic hashes need no check: deviceConfigFor computes the hash of every named topic here, so
  // boards without SHA-3 (nRF52) get them all.
}

/** The project's own MQTT 3.1.1 client for Espruino (the default `MQTT` Storage file). */
export const OWN_MQTT_MODULE = join(ROOT, 'boards', 'espruino', 'modules', 'MQTT.js');

/** The MQTT module's source for the ESP32 image: Espruino's from --modules DIR, else the project's. */
function mqttModule(dir) {
  if (dir === null) return readFileSync(OWN_MQTT_MODULE, 'latin1');
  for (const f of ['MQTT.min.js', 'MQTT.js']) {
    const p = join(dir, f);
    if (existsSync(p)) return readFileSync(p, 'latin1');
  }
  throw new UsageError(
    `--modules ${dir} holds no MQTT.min.js or MQTT.js (Espruino's MQTT module, https://www.espruino.com/modules/MQTT.min.js); without --modules the project's own is flashed`,
  );
}

const CHUNK = 768;

/** JS lines that write `data` (a latin1 string) to the Storage file `name`, in chunks. */
function writeLines(name, data, nameIsVariable = false) {
  const lines = [];
  const n = nameIsVariable ? name : JSON.stringify(name);
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

/** Storage names of the two image slots: a new image goes into the one the boot file does not
 * start, so the running one stays whole until the switch. */
export const IMAGE_SLOTS = [IMAGE_FILE, 'e4b.js'];
/** Suffix of the names new files are uploaded under before the switch. */
export const TEMP_SUFFIX = '~';

/**
 * The upload script and the files it leaves on the board ({ name, bytes, crc }; the image as
 * IMAGE_FILE, whichever slot it lands in). `config` is the completed device configuration
 * (deviceConfigFor) or null (--keep-state without --device).
 *
 * All or nothing against a connection lost at any byte: the console runs a line only once it has
 * all of it. Every new file is first written under a temporary name (the image into the slot the
 * boot file does not start) while the old image, configuration and store stay as they were; then
 * one line checks every new file by length and CRC-32 on the board and, only if all match, makes
 * the switch: erases the old store (unless --keep-state), puts the configuration and the MQTT
 * module in place, and last rewrites the boot file to start the new image. A cut anywhere before
 * that line leaves the board as it was (plus temporary files the next flash erases); after it,
 * the new state is complete. Storage.compact() then erases the old store's and configuration's
 * bytes. --erase-all is the exception: it wipes everything first, on purpose.
 */
export function uploadScript({ image, config, keepState = false, eraseAll = false, bootFile = '.boot0', mqtt = null, app = null, start = true }) {
  const temp = [];
  if (config) temp.push({ name: CONFIG_FILE, data: JSON.stringify(config) });
  if (mqtt !== null) temp.push({ name: 'MQTT', data: mqtt });
  if (app !== null) temp.push({ name: APP_FILE, data: app });
  const bootFor = (slot) => `eval(require("Storage").read(${JSON.stringify(slot)}));`;
  const q = JSON.stringify;
  const lines = [
    // Output from the running image must not interleave with ours: stop its timers and watches.
    'clearInterval();clearWatch();',
    'var S=require("Storage");',
  ];
  if (eraseAll) lines.push('S.eraseAll();');
  // O: the slot the boot file starts now; N: the other one, which receives the new image.
  lines.push(`var O=(S.read(${q(bootFile)})||"").indexOf(${q(q(IMAGE_SLOTS[1]))})>=0?${q(IMAGE_SLOTS[1])}:${q(IMAGE_SLOTS[0])};var N=O==${q(IMAGE_SLOTS[0])}?${q(IMAGE_SLOTS[1])}:${q(IMAGE_SLOTS[0])};`);
  // A Storage too small for a second image beside the first (a Puck.js has ≈ 40 KB, the image
  // ≈ 35 KB): the old image is erased first and the new one takes its slot. The configuration
  // and the key store still change only in the switch line, after the new image is verified:
  // a cut before it leaves the keys and configuration but no runtime (flash again, --keep-state).
  const need = image.length + temp.reduce((n, f) => n + f.data.length, 0) + 1024;
  lines.push(`var R=S.getFree()<${need};if(R){S.erase(N);S.erase(O);S.compact();N=O;print("E4FLASH one-slot",S.getFree());}`);
  lines.push('S.erase(N);');
  lines.push(...writeLines('N', image, true));
  for (const f of temp) {
    const t = f.name + TEMP_SUFFIX;
    lines.push(`S.erase(${q(t)});`);
    lines.push(...writeLines(t, f.data));
  }
  // The switch: one line, so it runs whole or not at all.
  const checks = [`(S.read(N)||"").length==${image.length}`, `E.CRC32(S.read(N)||"")>>>0==${crcOf(image)}`];
  const copies = [];
  temp.forEach((f, i) => {
    const t = q(f.name + TEMP_SUFFIX);
    checks.push(`(S.read(${t})||"").length==${f.data.length}`, `E.CRC32(S.read(${t})||"")>>>0==${crcOf(f.data)}`);
    // A RAM copy (small files only): a write must not read from Storage that it may compact.
    copies.push(`var T${i}=E.toString(S.read(${t}));`);
    checks.push(`T${i}!==undefined&&T${i}.length==${f.data.length}`);
  });
  const sw = [];
  if (!keepState && !eraseAll) for (const f of STORE_FILES) sw.push(`S.erase(${q(f)});`);
  temp.forEach((f, i) => sw.push(`S.write(${q(f.name)},T${i});`, `S.erase(${q(f.name + TEMP_SUFFIX)});`));
  sw.push(`S.write(${q(bootFile)},'eval(require("Storage").read("'+N+'"));');`);
  sw.push('if(O!=N)S.erase(O);');
  sw.push('print("E4FLASH switched",N);');
  lines.push(`${copies.join('')}if(${checks.join('&&')}){${sw.join('')}}else print("E4FLASH mismatch: nothing switched");`);
  temp.forEach((_, i) => lines.push(`T${i}=undefined;`));
  // Old configurations (with keys) and stores are only unlinked by erase(): compaction erases them.
  lines.push('S.compact();');
  const report = (expr, name) => `print("E4FLASH",${q(name)},(S.read(${expr})||"").length,E.CRC32(S.read(${expr})||"")>>>0);`;
  lines.push(report('N', IMAGE_FILE));
  for (const f of temp) lines.push(report(q(f.name), f.name));
  lines.push(report(q(bootFile), bootFile));
  lines.push('print("E4FLASH free",S.getFree());');
  lines.push('print("E4FLASH done");');
  if (start) lines.push('setTimeout(function(){load();},200);');
  // The boot file is reported with the slot the switch chose: its expected CRC is checked then.
  const files = [{ name: IMAGE_FILE, data: image }, ...temp].map((f) => ({ name: f.name, bytes: f.data.length, crc: crcOf(f.data) }));
  files.push({ name: bootFile, boot: true, variants: IMAGE_SLOTS.map((slot) => ({ slot, bytes: bootFor(slot).length, crc: crcOf(bootFor(slot)) })) });
  return { script: lines.join('\n') + '\n', files };
}

/** Checks the board's E4FLASH lines against what was sent; returns { free, slot, oneSlot }. Throws on mismatch. */
export function verifyFlash(lines, files) {
  const got = new Map();
  let free = null;
  let done = false;
  let slot = null;
  let mismatch = false;
  let oneSlot = false;
  for (const t of tagged(lines, 'E4FLASH')) {
    const w = t.split(' ');
    if (w[0] === 'done') done = true;
    else if (w[0] === 'free') free = Number(w[1]);
    else if (w[0] === 'switched') slot = w[1];
    else if (w[0] === 'one-slot') oneSlot = true;
    else if (w[0] === 'mismatch:') mismatch = true;
    else got.set(w[0], { bytes: Number(w[1]), crc: Number(w[2]) });
  }
  // The board says when it erased the old image first, but that line can be lost with the link.
  const kept = oneSlot
    ? 'its old configuration and keys (its old image was erased first: Storage has room for one image only; flash again, e.g. with --keep-state)'
    : 'its old image, configuration and keys (or, where Storage has room for one image only, its old configuration and keys without a runtime: flash again, e.g. with --keep-state)';
  if (mismatch) throw new Error(`the files uploaded under temporary names did not match their CRC-32 on the board: nothing was switched, the board keeps ${kept}`);
  if (!done) {
    throw new Error(
      slot
        ? 'the connection ended after the board switched to the new files but before it confirmed them: restart the board and check E4.status(), or flash again'
        : `the connection ended before the board confirmed the upload: it holds either ${kept}, or (when the cut came after the switch) the new ones, never a mix; flash again`,
    );
  }
  if (!slot) throw new Error('the board did not report the switch to the new files');
  for (const f of files) {
    const g = got.get(f.name);
    if (!g) throw new Error(`${f.name}: not reported by the board`);
    const want = f.boot ? f.variants.find((v) => v.slot === slot) : f;
    if (!want || g.bytes !== want.bytes || g.crc !== want.crc) throw new Error(`${f.name}: the board holds ${g.bytes} bytes with CRC ${g.crc}, expected ${want ? want.bytes : '?'} bytes with CRC ${want ? want.crc : '?'}`);
  }
  return { free, slot, oneSlot };
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
    if (opts.strict) checkRunnable(opts.board, config, opts.device);
    if (opts['keep-state']) config.provisioned = true;
  }
  const bootFile = opts['boot-file'] || '.boot0';
  if (!/^\.boot[0-3]$|^\.bootcde$/.test(bootFile)) throw new UsageError('--boot-file must be .boot0 .. .boot3 or .bootcde');
  const imageFile = join(ROOT, 'dist', 'boards', opts.board + (opts.full ? '.js' : '.min.js'));
  if (!existsSync(imageFile)) throw new Error(`${imageFile} not found: run npm run build`);
  const image = readFileSync(imageFile, 'latin1');
  let mqtt = null;
  if (opts.board === 'espruino-esp32' && config && config.transport && config.transport.mqtt) mqtt = mqttModule(opts.modules ? resolve(opts.modules) : null);
  let app = null;
  if (opts.app) {
    try {
      app = readFileSync(resolve(opts.app), 'latin1');
    } catch (e) {
      throw new UsageError(`--app ${opts.app}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    }
    if (bootFile === APP_FILE) throw new UsageError('--app is written as .bootcde: choose another --boot-file');
  }
  if (opts['erase-all'] && opts['keep-state']) throw new UsageError('--erase-all and --keep-state exclude each other');
  return uploadScript({ image, config, keepState: !!opts['keep-state'], eraseAll: !!opts['erase-all'], bootFile, mqtt, app, start: opts.start !== false });
}

/** Board output that says the runtime's state after boot: `E4BOOT {...}` (E4.status() without
 * stats), or `E4BOOT none` when no E4 global exists (the image did not run). */
export const BOOT_QUERY =
  'print("E4BOOT",typeof E4=="undefined"?"none":JSON.stringify((function(s){return {ok:s.ok,error:s.error,topics:s.topics,controlTopic:s.controlTopic};})(E4.status())));\n';

/** Reads the runtime's status from the running board (no reset). Throws when it did not start. */
export async function checkBoot({ port, baud, timeoutMs = 60000, verbose = false }) {
  let report = null;
  // load() restarts the board after the upload: give it a moment, then ask (a few times: the
  // console may still be busy with the restart).
  for (let attempt = 0; attempt < 3 && report === null; attempt++) {
    await new Promise((r) => setTimeout(r, 1000));
    const res = await runEspruino({ port, baud, script: BOOT_QUERY, reset: false, timeoutMs, verbose });
    report = tagged(res.lines, 'E4BOOT')[0] ?? null;
  }
  if (report === null) throw new Error('the board did not answer after the restart (E4.status() not read)');
  if (report === 'none') throw new Error('the runtime did not start after the restart: no E4 global on the board');
  const s = JSON.parse(report);
  if (!s.ok) throw new Error(`the runtime started but has no client: E4.status().error = ${JSON.stringify(s.error)}`);
  return s;
}

/** Flashes a board, restarts it and checks that the runtime booted. Resolves { files, free,
 * status }; rejects with UsageError or Error. */
export async function flash(opts, log = (m) => console.log(m)) {
  const { script, files } = prepare(opts);
  const sizes = files.filter((f) => !f.boot);
  const total = sizes.reduce((a, f) => a + f.bytes, 0);
  log(`flash: ${opts.board} -> ${opts.port}: ${sizes.map((f) => `${f.name} (${f.bytes} B)`).join(', ')}`);
  const timeoutMs = (opts.timeout || 300) * 1000;
  const t0 = Date.now();
  const progress = setInterval(() => log(`flash: uploading to ${opts.port} (${Math.round((Date.now() - t0) / 1000)} s)`), 10000);
  let res;
  try {
    res = await runEspruino({ port: opts.port, script, baud: opts.baud, timeoutMs, verbose: !!opts.verbose });
  } finally {
    clearInterval(progress);
  }
  const { free, slot, oneSlot } = verifyFlash(res.lines, files);
  if (oneSlot) log('flash: Storage has room for one image only: the old image was erased before the upload (its keys and configuration were kept until the new image was verified)');
  log(`flash: verified ${sizes.length} files (${total} bytes) by CRC-32 on the board, then switched to them (image in ${slot}); ${free} bytes of Storage free; restarting`);
  let status = null;
  if (opts.start !== false) {
    status = await checkBoot({ port: opts.port, baud: opts.baud, verbose: !!opts.verbose });
    log(`flash: the runtime booted: ${status.controlTopic}, ${status.topics} topic${status.topics === 1 ? '' : 's'}`);
  }
  return { files, free, status, lines: res.lines };
}

async function main(argv) {
  let opts;
  useCallerFolder('flash');
  try {
    // -p and -b as the espruino tool spells them.
    opts = parseArgs(argv, ARGS, { p: 'port', b: 'baud' });
    if (opts.help) {
      console.log(USAGE);
      return 0;
    }
    if (opts.version) {
      console.log(packageVersion());
      return 0;
    }
    // From the command line a device file must describe a board that can work.
    opts.strict = true;
    if (opts['dry-run']) {
      const { script } = prepare(opts);
      process.stdout.write(script);
      return 0;
    }
    await flash(opts);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`flash: ${e.message} (see npm run flash -- --help)`);
      return 2;
    }
    console.error(`flash: ${e.message}`);
    return 1;
  }
}

runIfMain(import.meta.url, 'flash', main);
