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
import { parseArgs, portKind, ROOT, runEspruino } from './espruino-cli.ts';
import type { ParsedArgs } from './espruino-cli.ts';
import { answerHelpOrVersion, runIfMain, UsageError, useCallerFolder } from '../shared/cli.ts';
import { APP_FILE, checkRunnable, deviceConfigFor, ESPRUINO_BOARDS, tagged, uploadScript, verifyFlash } from '../shared/flash-files.ts';

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
} as const;

/**
 * What flash() and prepare() take: the command line's options, and from code `strict` (refuse a
 * configuration that cannot work on the board, as the command line does) and `start: false`
 * (leave the board without restarting it and without checking the boot).
 */
export interface FlashOptions extends ParsedArgs<typeof ARGS> {
  strict?: boolean;
  start?: boolean;
}

/** What the upload sends, as uploadScript describes it. */
export type FlashUpload = ReturnType<typeof uploadScript>;

/** The runtime's state after boot, as BOOT_QUERY reports it (a part of E4.status()). */
export interface BootStatus {
  ok: boolean;
  error?: string;
  topics: number;
  controlTopic: string;
}

/** The files flashed, Storage left free, and the runtime's state (null with `start: false`). */
export interface FlashResult {
  files: FlashUpload['files'];
  free: number | null;
  status: BootStatus | null;
  lines: string[];
}

/** The project's own MQTT 3.1.1 client for Espruino (the default `MQTT` Storage file). */
export const OWN_MQTT_MODULE = join(ROOT, 'boards', 'espruino', 'modules', 'MQTT.js');

/** The MQTT module's source for the ESP32 image: Espruino's from --modules DIR, else the project's. */
function mqttModule(dir: string | null): string {
  if (dir === null) return readFileSync(OWN_MQTT_MODULE, 'latin1');
  for (const f of ['MQTT.min.js', 'MQTT.js']) {
    const p = join(dir, f);
    if (existsSync(p)) return readFileSync(p, 'latin1');
  }
  throw new UsageError(
    `--modules ${dir} holds no MQTT.min.js or MQTT.js (Espruino's MQTT module, https://www.espruino.com/modules/MQTT.min.js); without --modules the project's own is flashed`,
  );
}

/** Reads and checks everything, without touching the board. Throws UsageError. */
export function prepare(opts: FlashOptions): FlashUpload {
  if (!opts.board) throw new UsageError('--board is required');
  if (opts.board === 'jerryscript')
    throw new UsageError(
      'the jerryscript image is built into a C port, not flashed with the espruino tool: see boards/jerryscript/README.md',
    );
  if (!ESPRUINO_BOARDS.includes(opts.board))
    throw new UsageError(`--board ${JSON.stringify(opts.board)}: expected one of ${ESPRUINO_BOARDS.join(', ')}`);
  portKind(opts.port);
  if (!opts.device && !opts['keep-state']) throw new UsageError('--device is required (or --keep-state to update the image only)');
  let config = null;
  if (opts.device) {
    const file = resolve(opts.device);
    let raw;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new UsageError(`--device ${opts.device}: ${isErrno(e) && e.code === 'ENOENT' ? 'no such file' : errorMessage(e)}`);
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
  if (opts.board === 'espruino-esp32' && config && config.transport && config.transport.mqtt)
    mqtt = mqttModule(opts.modules ? resolve(opts.modules) : null);
  let app: string | null = null;
  if (opts.app) {
    try {
      app = readFileSync(resolve(opts.app), 'latin1');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new UsageError(`--app ${opts.app}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    }
    if (bootFile === APP_FILE) throw new UsageError('--app is written as .bootcde: choose another --boot-file');
  }
  if (opts['erase-all'] && opts['keep-state']) throw new UsageError('--erase-all and --keep-state exclude each other');
  return uploadScript({
    image,
    config,
    keepState: !!opts['keep-state'],
    eraseAll: !!opts['erase-all'],
    bootFile,
    mqtt,
    app,
    start: opts.start !== false,
  });
}

/** Board output that says the runtime's state after boot: `E4BOOT {...}` (E4.status() without
 * stats), or `E4BOOT none` when no E4 global exists (the image did not run). */
export const BOOT_QUERY =
  'print("E4BOOT",typeof E4=="undefined"?"none":JSON.stringify((function(s){return {ok:s.ok,error:s.error,topics:s.topics,controlTopic:s.controlTopic};})(E4.status())));\n';

/** Reads the runtime's status from the running board (no reset). Throws when it did not start. */
export async function checkBoot({
  port,
  baud,
  timeoutMs = 60000,
  verbose = false,
}: {
  port: string;
  baud?: number;
  timeoutMs?: number;
  verbose?: boolean;
}): Promise<BootStatus> {
  let report: string | null = null;
  // load() restarts the board after the upload: give it a moment, then ask (a few times: the
  // console may still be busy with the restart).
  for (let attempt = 0; attempt < 3 && report === null; attempt++) {
    await new Promise((r) => setTimeout(r, 1000));
    const res = await runEspruino({ port, baud, script: BOOT_QUERY, reset: false, timeoutMs, verbose });
    report = tagged(res.lines, 'E4BOOT')[0] ?? null;
  }
  if (report === null) throw new Error('the board did not answer after the restart (E4.status() not read)');
  if (report === 'none') throw new Error('the runtime did not start after the restart: no E4 global on the board');
  const s: unknown = JSON.parse(report);
  if (!isBootStatus(s))
    throw new Error(
      `the runtime started but has no client: E4.status().error = ${JSON.stringify(typeof s === 'object' && s !== null && 'error' in s ? s.error : undefined)}`,
    );
  return s;
}

/** A started runtime's report: ok, with its control topic and topic count. */
function isBootStatus(s: unknown): s is BootStatus {
  return typeof s === 'object' && s !== null && 'ok' in s && !!s.ok;
}

const isErrno = (e: unknown): e is NodeJS.ErrnoException => e instanceof Error && 'code' in e;
const errorMessage = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Flashes a board, restarts it and checks that the runtime booted. Resolves { files, free,
 * status }; rejects with UsageError or Error. */
export async function flash(opts: FlashOptions, log = (m: string) => console.log(m)): Promise<FlashResult> {
  const { script, files } = prepare(opts);
  const port = opts.port;
  if (port === undefined) throw new UsageError('--port is required'); // prepare() checked it already
  const sizes = files.filter((f) => !('boot' in f && f.boot));
  const total = sizes.reduce((a, f) => a + f.bytes, 0);
  log(`flash: ${opts.board} -> ${opts.port}: ${sizes.map((f) => `${f.name} (${f.bytes} B)`).join(', ')}`);
  const timeoutMs = (opts.timeout || 300) * 1000;
  const t0 = Date.now();
  const progress = setInterval(() => log(`flash: uploading to ${opts.port} (${Math.round((Date.now() - t0) / 1000)} s)`), 10000);
  let res;
  try {
    res = await runEspruino({ port, script, baud: opts.baud, timeoutMs, verbose: !!opts.verbose });
  } finally {
    clearInterval(progress);
  }
  const { free, slot, oneSlot } = verifyFlash(res.lines, files);
  if (oneSlot)
    log(
      'flash: Storage has room for one image only: the old image was erased before the upload (its keys and configuration were kept until the new image was verified)',
    );
  log(
    `flash: verified ${sizes.length} files (${total} bytes) by CRC-32 on the board, then switched to them (image in ${slot}); ${free} bytes of Storage free; restarting`,
  );
  let status: BootStatus | null = null;
  if (opts.start !== false) {
    status = await checkBoot({ port, baud: opts.baud, verbose: !!opts.verbose });
    log(`flash: the runtime booted: ${status.controlTopic}, ${status.topics} topic${status.topics === 1 ? '' : 's'}`);
  }
  return { files, free, status, lines: res.lines };
}

async function main(argv: string[]) {
  let opts: FlashOptions;
  useCallerFolder('flash');
  try {
    // -p and -b as the espruino tool spells them.
    const answered = answerHelpOrVersion(argv, USAGE);
    if (answered !== null) return answered;
    opts = parseArgs(argv, ARGS, { p: 'port', b: 'baud' });
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
    console.error(`flash: ${errorMessage(e)}`);
    return 1;
  }
}

runIfMain(import.meta.url, 'flash', main);
