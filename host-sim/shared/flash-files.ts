/**
 * The files an E4 image leaves in an Espruino board's Storage and the console script that writes
 * them all or nothing: what `npm run flash` sends to a real board and what the simulated boards
 * (sim/board-link.ts, sim/jerry-board.ts) run, so both share one layout. Also checks a device
 * configuration against the board it is for.
 */
import { crc32 } from 'node:zlib';
import type { Options } from '../../firmware/client.ts';
import { UsageError } from './cli.ts';
import { sha3_16 } from './device-config.ts';
import type { DeviceFile, TopicEntry } from './device-config.ts';

export { sha3_16 };

export const ESPRUINO_BOARDS = ['espruino-puckjs', 'espruino-nrf52', 'espruino-esp32'];
export const IMAGE_FILE = 'e4.js';
export const CONFIG_FILE = 'e4.json';
export const STORE_FILES = ['e4s0', 'e4s1'];
export const BOOT_CODE = 'eval(require("Storage").read("e4.js"));';
/** Where --app puts the user's application: Espruino runs it after the .boot0..3 files. */
export const APP_FILE = '.bootcde';

const HEX = (n: number) => new RegExp(`^[0-9a-fA-F]{${2 * n}}$`);
const CLOCKS = ['trusted', 'untrusted', 'monotonic', 'none'];

/** The replay window (client option replayCache, 16 bytes per message, twice when the device
 * also publishes) each board gets when its configuration does not size it: what its RAM allows. */
export const REPLAY_CACHE: Readonly<Record<string, number>> = { 'espruino-puckjs': 16, 'espruino-nrf52': 16, 'espruino-esp32': 128 };

/** A topic of a completed configuration: its hash always (lowercase hex), its key unless the
 * configuration was completed without keys. */
export interface BoardTopicEntry extends TopicEntry {
  hash: string;
}

/** A device configuration completed for a board by deviceConfigFor: what e4.json holds. */
export interface BoardDeviceFile extends DeviceFile {
  format: 'e4-device';
  version: 1;
  id: string;
  topics: BoardTopicEntry[];
  options: Options;
}

/** The input's fields, or an empty record when it is not an object (reported by the checks). */
const fields = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' ? (v as Record<string, unknown>) : {});
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/**
 * Checks a device configuration for `board` and completes it as the device needs it: the id
 * from the name, every topic's hash computed here (boards without SHA-3 rely on it). Throws
 * UsageError with the file name and the problem.
 */
export function deviceConfigFor(
  board: string,
  input: unknown,
  where = 'device config',
  { keys = true }: { keys?: boolean } = {},
): BoardDeviceFile {
  const bad = (m: string): never => {
    throw new UsageError(`${where}: ${m}`);
  };
  if (!input || typeof input !== 'object' || Array.isArray(input)) bad('not a JSON object');
  const cfg = fields(input);
  if (cfg.format !== undefined && cfg.format !== 'e4-device') bad(`format is ${JSON.stringify(cfg.format)}, expected "e4-device"`);
  if (cfg.version !== undefined && cfg.version !== 1) bad(`version ${cfg.version} is not supported (1)`);
  if (cfg.board !== undefined && cfg.board !== board) bad(`written for ${cfg.board}, not ${board} (e4-c2 config --board ${board})`);
  let name: string | undefined;
  if (cfg.name !== undefined) {
    if (typeof cfg.name !== 'string') bad('name must be a string');
    name = text(cfg.name);
  }
  if (cfg.id !== undefined && !HEX(16).test(text(cfg.id))) bad('id must be 32 hex digits');
  if (cfg.id === undefined && name === undefined) bad('needs an id or a name');
  let key: string | undefined;
  if (keys) {
    if (!HEX(32).test(text(cfg.key))) bad('key must be 64 hex digits');
    key = text(cfg.key).toLowerCase();
  }
  if (cfg.topics !== undefined && !Array.isArray(cfg.topics)) bad('topics must be a list');
  const entries: unknown[] = Array.isArray(cfg.topics) ? cfg.topics : [];
  const topics = entries.map((entry, i) => {
    const what = `topics[${i}]`;
    if (!entry || typeof entry !== 'object') bad(`${what} must be an object`);
    const t = fields(entry);
    if (t.topic !== undefined && typeof t.topic !== 'string') bad(`${what}.topic must be a string`);
    const topic = t.topic === undefined ? undefined : text(t.topic);
    if (t.hash !== undefined && !HEX(16).test(text(t.hash))) bad(`${what}.hash must be 32 hex digits`);
    const hash = t.hash === undefined ? undefined : text(t.hash);
    if (hash === undefined && topic === undefined) bad(`${what} needs a topic or a hash`);
    if (topic !== undefined && hash !== undefined && sha3_16(topic) !== hash.toLowerCase())
      bad(`${what}: hash is not the hash of ${JSON.stringify(topic)}`);
    const e: BoardTopicEntry = { ...(topic !== undefined ? { topic } : {}), hash: (hash || sha3_16(topic ?? '')).toLowerCase() };
    if (keys) {
      if (!HEX(32).test(text(t.key))) bad(`${what}.key must be 64 hex digits`);
      e.key = text(t.key).toLowerCase();
    }
    return e;
  });
  if (cfg.options !== undefined && (!cfg.options || typeof cfg.options !== 'object')) bad('options must be an object');
  // The board's replay window unless the configuration sizes it (README.md, "Time and replay").
  // The options are the client's (firmware/client.ts Options): the client checks their values.
  const out: BoardDeviceFile = {
    format: 'e4-device',
    version: 1,
    ...(name !== undefined ? { name } : {}),
    id: (text(cfg.id) || sha3_16(name ?? '')).toLowerCase(),
    ...(key !== undefined ? { key } : {}),
    topics,
    options: { replayCache: REPLAY_CACHE[board], ...(cfg.options as Options | undefined) },
  };
  if (cfg.clock !== undefined) {
    if (!CLOCKS.includes(text(cfg.clock))) bad(`clock must be one of ${CLOCKS.join(', ')} on a board`);
    out.clock = text(cfg.clock);
  }
  if (cfg.log !== undefined) out.log = typeof cfg.log === 'string' ? cfg.log : bad('log must be a level name (debug, info, warn, error)');
  const tr = cfg.transport;
  if (tr !== undefined) {
    if (!tr || typeof tr !== 'object') bad('transport must be an object');
    const { link, mqtt, wifi } = fields(tr);
    if (board === 'espruino-esp32') {
      if (link) bad('the ESP32 image speaks MQTT, not the gateway link: use transport.mqtt');
      if (mqtt && !/^mqtt:\/\/[^:/]+(:\d+)?\/?$/.test(text(fields(mqtt).url)) && typeof fields(mqtt).host !== 'string')
        bad('transport.mqtt needs url "mqtt://host:port" (or host)');
      if (wifi && typeof fields(wifi).ssid !== 'string') bad('transport.wifi needs an ssid');
    } else {
      if (mqtt || wifi) bad(`the ${board} image reaches the broker through a gateway: use transport.link`);
      if (link && !['ble-uart', 'serial'].includes(text(fields(link).kind))) bad('transport.link.kind must be "ble-uart" or "serial"');
    }
    out.transport = tr as DeviceFile['transport']; // its fields checked above for this board
  }
  return out;
}

/**
 * Whether `board` can do its job with the completed configuration `cfg`: a transport it speaks
 * and at least one topic. Throws UsageError with what is missing and how to get it.
 */
export function checkRunnable(board: string, cfg: BoardDeviceFile, where: string): void {
  const bad = (m: string): never => {
    throw new UsageError(`${where}: ${m}`);
  };
  const tr = fields(cfg.transport);
  if (board === 'espruino-esp32' && !tr.mqtt)
    bad('no transport: the ESP32 image needs transport.mqtt (e4-c2 config DEVICE --board espruino-esp32 --mqtt-url mqtt://host:port)');
  if (board !== 'espruino-esp32' && !tr.link)
    bad(`no transport: the ${board} image needs transport.link (e4-c2 config DEVICE --board ${board} --link ble-uart)`);
  if (!cfg.topics.length)
    bad('no topics: the device could neither publish nor receive (e4-c2 grant DEVICE TOPIC, then e4-c2 config DEVICE --out FILE)');
  // Topic hashes need no check: deviceConfigFor computes the hash of every named topic here, so
  // boards without SHA-3 (nRF52) get them all.
}

const CHUNK = 768;

/** JS lines that write `data` (a latin1 string) to the Storage file `name`, in chunks. */
function writeLines(name: string, data: string, nameIsVariable = false): string[] {
  const lines: string[] = [];
  const n = nameIsVariable ? name : JSON.stringify(name);
  if (!data.length) return [`S.write(${n},"");`];
  for (let i = 0; i < data.length; i += CHUNK) {
    const part = Buffer.from(data.slice(i, i + CHUNK), 'latin1').toString('base64');
    lines.push(i === 0 ? `S.write(${n},atob("${part}"),0,${data.length});` : `S.write(${n},atob("${part}"),${i});`);
  }
  return lines;
}

/** CRC-32 as Espruino's E.CRC32 prints it (unsigned). */
export function crcOf(latin1: string): number {
  return crc32(Buffer.from(latin1, 'latin1')) >>> 0;
}

/** Storage names of the two image slots: a new image goes into the one the boot file does not
 * start, so the running one stays whole until the switch. */
export const IMAGE_SLOTS = [IMAGE_FILE, 'e4b.js'];
/** Suffix of the names new files are uploaded under before the switch. */
export const TEMP_SUFFIX = '~';

export interface UploadOptions {
  /** The image, a latin1 string (the bytes as Storage holds them). */
  image: string;
  /** The completed device configuration (deviceConfigFor), or null to keep the board's. */
  config: DeviceFile | null;
  /** Keep the key store (e4s0/e4s1) instead of erasing it. */
  keepState?: boolean;
  /** Erase the whole Storage first. */
  eraseAll?: boolean;
  /** The boot file that starts the image (default .boot0). */
  bootFile?: string;
  /** The MQTT module's source to install as `MQTT` (ESP32), or null. */
  mqtt?: string | null;
  /** The application's source to install as `.bootcde` (flash --app), or null. */
  app?: string | null;
  /** Restart the board (load()) when done (default true). */
  start?: boolean;
}

/** A file the upload leaves, as the board must report it (length and CRC-32 of its contents). */
export interface UploadedFile {
  name: string;
  bytes: number;
  crc: number;
  boot?: false;
}

/** The boot file: its contents depend on the slot the board switched to. */
export interface UploadedBootFile {
  name: string;
  boot: true;
  variants: { slot: string; bytes: number; crc: number }[];
}

export type UploadCheck = UploadedFile | UploadedBootFile;

export interface UploadScript {
  /** The console script, one statement per line. */
  script: string;
  /** What verifyFlash checks the board's report against. */
  files: UploadCheck[];
}

/** What the board reported after a verified upload. */
export interface FlashVerification {
  /** Free Storage bytes, or null when not reported. */
  free: number | null;
  /** The image slot the boot file starts now. */
  slot: string;
  /** Storage had room for one image only: the old one was erased first. */
  oneSlot: boolean;
}

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
export function uploadScript({
  image,
  config,
  keepState = false,
  eraseAll = false,
  bootFile = '.boot0',
  mqtt = null,
  app = null,
  start = true,
}: UploadOptions): UploadScript {
  const temp: { name: string; data: string }[] = [];
  if (config) temp.push({ name: CONFIG_FILE, data: JSON.stringify(config) });
  if (mqtt !== null) temp.push({ name: 'MQTT', data: mqtt });
  if (app !== null) temp.push({ name: APP_FILE, data: app });
  const bootFor = (slot: string) => `eval(require("Storage").read(${JSON.stringify(slot)}));`;
  const q = JSON.stringify;
  const lines = [
    // Output from the running image must not interleave with ours: stop its timers and watches.
    'clearInterval();clearWatch();',
    'var S=require("Storage");',
  ];
  if (eraseAll) lines.push('S.eraseAll();');
  // O: the slot the boot file starts now; N: the other one, which receives the new image.
  lines.push(
    `var O=(S.read(${q(bootFile)})||"").indexOf(${q(q(IMAGE_SLOTS[1]))})>=0?${q(IMAGE_SLOTS[1])}:${q(IMAGE_SLOTS[0])};var N=O==${q(IMAGE_SLOTS[0])}?${q(IMAGE_SLOTS[1])}:${q(IMAGE_SLOTS[0])};`,
  );
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
  const copies: string[] = [];
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
  const report = (expr: string, name: string) =>
    `print("E4FLASH",${q(name)},(S.read(${expr})||"").length,E.CRC32(S.read(${expr})||"")>>>0);`;
  lines.push(report('N', IMAGE_FILE));
  for (const f of temp) lines.push(report(q(f.name), f.name));
  lines.push(report(q(bootFile), bootFile));
  lines.push('print("E4FLASH free",S.getFree());');
  lines.push('print("E4FLASH done");');
  if (start) lines.push('setTimeout(function(){load();},200);');
  // The boot file is reported with the slot the switch chose: its expected CRC is checked then.
  const files: UploadCheck[] = [{ name: IMAGE_FILE, data: image }, ...temp].map((f) => ({
    name: f.name,
    bytes: f.data.length,
    crc: crcOf(f.data),
  }));
  files.push({
    name: bootFile,
    boot: true,
    variants: IMAGE_SLOTS.map((slot) => ({ slot, bytes: bootFor(slot).length, crc: crcOf(bootFor(slot)) })),
  });
  return { script: lines.join('\n') + '\n', files };
}

/** Checks the board's E4FLASH lines against what was sent; returns { free, slot, oneSlot }. Throws on mismatch. */
export function verifyFlash(lines: readonly string[], files: readonly UploadCheck[]): FlashVerification {
  const got = new Map<string, { bytes: number; crc: number }>();
  let free: number | null = null;
  let done = false;
  let slot: string | null = null;
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
  if (mismatch)
    throw new Error(
      `the files uploaded under temporary names did not match their CRC-32 on the board: nothing was switched, the board keeps ${kept}`,
    );
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
    if (!want || g.bytes !== want.bytes || g.crc !== want.crc)
      throw new Error(
        `${f.name}: the board holds ${g.bytes} bytes with CRC ${g.crc}, expected ${want ? want.bytes : '?'} bytes with CRC ${want ? want.crc : '?'}`,
      );
  }
  return { free, slot, oneSlot };
}

/** The payloads of the console lines tagged `tag` (the board prints `TAG json`; prompts stripped). */
export function tagged(lines: readonly string[], tag: string): string[] {
  const out: string[] = [];
  for (const l of lines) {
    const line = l.replace(/^>+/, '');
    if (line.startsWith(tag + ' ')) out.push(line.slice(tag.length + 1));
  }
  return out;
}
