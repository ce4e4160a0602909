/**
 * Running the Espruino command-line tool (node_modules/.bin/espruino, espruino@0.1.67) against a
 * board: serial port, Bluetooth LE address, or tcp://host:port (an Espruino console over TCP,
 * e.g. the Linux build started with --telnet). Shared by flash.ts and hil.ts.
 *
 * The tool sends `reset()` and then the uploaded file line by line to the console; it prints the
 * board's output prefixed with "--] " and exits 500 ms after the board falls silent. Known
 * limits: an upload of 512 bytes or less never finishes (scripts are padded past that here);
 * `require("X")` in uploaded code makes it look for ./modules/X.js or the web (the scripts here
 * contain no require of a non-built-in module).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../shared/cli.ts';

export const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'node_modules', '.bin', 'espruino');

/** Kind of a --port value: 'tcp', 'ble' or 'serial'. Throws UsageError for anything else. */
export type PortKind = 'tcp' | 'ble' | 'serial';

export function portKind(port: unknown): PortKind {
  if (typeof port !== 'string' || !port) throw new UsageError('--port is required');
  if (/^tcp:\/\/[^:/\s]+(:\d+)?\/?$/.test(port)) return 'tcp';
  if (/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(port)) return 'ble';
  if (/^(\/dev\/|COM\d+$)/.test(port)) return 'serial';
  throw new UsageError(
    `--port ${JSON.stringify(port)}: expected a serial device (/dev/ttyACM0, COM3), a Bluetooth address (aa:bb:cc:dd:ee:ff) or tcp://host:port`,
  );
}

/**
 * Parses `--name value` / `--flag` arguments against `spec` ({ name: 'string' | 'number' | 'boolean' });
 * `short` maps one-letter options to names (`-p` -> port, as the espruino tool spells it).
 * Throws UsageError for unknown, repeated or valueless options.
 */
export function parseArgs<const S extends ArgSpec>(argv: string[], spec: S, short: Record<string, string> = {}): ParsedArgs<S> {
  const out: Record<string, string | number | true> = {};
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (/^-[a-z]$/.test(a) && short[a[1]]) a = `--${short[a[1]]}`;
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(a);
    if (!m) throw new UsageError(`unexpected argument ${JSON.stringify(a)}`);
    const name = m[1];
    const type = spec[name];
    if (!type) throw new UsageError(`unknown option --${name}`);
    if (name in out) throw new UsageError(`--${name} given twice`);
    if (type === 'boolean') {
      if (m[2] !== undefined) throw new UsageError(`--${name} takes no value`);
      out[name] = true;
      continue;
    }
    let v = m[2];
    if (v === undefined) {
      v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`--${name} needs a value`);
    }
    if (type === 'number') {
      if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number`);
      out[name] = Number(v);
    } else out[name] = v;
  }
  // Each value was stored under its name with the type its spec entry names.
  return out as ParsedArgs<S>;
}

/** How parseArgs reads each option: its value's type ('boolean': a flag without value). */
export type ArgSpec = Record<string, 'string' | 'number' | 'boolean'>;

/** What parseArgs returns for `S`: the options given, each as its type (a flag is `true`). */
export type ParsedArgs<S extends ArgSpec> = { [K in keyof S]?: S[K] extends 'number' ? number : S[K] extends 'boolean' ? true : string };

/** What runEspruino does: upload `script`, or evaluate `expr`, on the board at `port`. */
export interface EspruinoRun {
  port: string;
  script?: string;
  expr?: string;
  baud?: number;
  /** Send reset() first (the tool's default). */
  reset?: boolean;
  timeoutMs?: number;
  /** Called with each line of the board's output as it arrives. */
  onLine?: ((line: string) => void) | null;
  /** Echo the tool's output to stderr (without library stack frames). */
  verbose?: boolean;
}

/** How the tool ended: its exit code, all it printed, and the board's output lines. */
export interface EspruinoResult {
  code: number | null;
  output: string;
  lines: string[];
}

/**
 * Runs the CLI: uploads `script` (after the tool's reset(), unless `reset` is false) to `port`, or
 * evaluates `expr` without reset (short expressions can hang the tool: prefer a script). Resolves { code, output, lines } where `lines` are the board's output lines (prefix
 * removed). Rejects on timeout (the process is killed).
 */
export async function runEspruino(o: EspruinoRun): Promise<EspruinoResult> {
  await reachable(o.port);
  return runCli(o);
}

/** A connection failure the tools report in one line (its cause, and what to do). */
export class ConnectionError extends Error {
  /** What the tool or the socket said, for --verbose. */
  detail: string;
  constructor(message: string, detail = '') {
    super(message);
    this.name = 'ConnectionError';
    this.detail = detail;
  }
}

const BLE_STACK_MISSING =
  'no Bluetooth LE stack: the espruino tool reaches BLE boards through BlueZ over D-Bus; install and start it (Debian/Raspberry Pi OS: sudo apt-get install bluez && sudo systemctl start bluetooth), or connect the board by USB serial';

/** Checks that the port can be reached at all before the tool is started: the tool itself hides
 * why a connection failed. Throws ConnectionError naming the cause. */
export function reachable(port: string, timeoutMs = 10000): Promise<void> {
  const kind = portKind(port);
  if (kind === 'serial') {
    if (port.startsWith('/dev/') && !existsSync(port))
      throw new ConnectionError(`${port}: no such serial device (is the board plugged in? see ls /dev/tty*)`);
    return Promise.resolve();
  }
  if (kind === 'ble') return Promise.resolve();
  // portKind matched the same prefix.
  const [, host, p] = /^tcp:\/\/([^:/]+)(?::(\d+))?/.exec(port) ?? [];
  const tcpPort = Number(p || 23);
  return new Promise<void>((resolve, reject) => {
    const s = connect(tcpPort, host);
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new ConnectionError(
          `${port}: timed out after ${Math.round(timeoutMs / 1000)} s connecting (no answer from ${host}: wrong address, or a firewall drops it)`,
        ),
      );
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve();
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      s.destroy();
      const reasons: Record<string, string> = {
        ECONNREFUSED: `connection refused: nothing listens on port ${tcpPort} of ${host} (is the board's console served there?)`,
        EHOSTUNREACH: `${host} is unreachable (no route to it)`,
        ENETUNREACH: `no network route to ${host}`,
        ENOTFOUND: `unknown host ${host}`,
        EAI_AGAIN: `cannot resolve ${host} (name service unavailable)`,
      };
      const why = e.code === undefined ? undefined : reasons[e.code];
      reject(new ConnectionError(`${port}: ${why || e.message}`, e.stack));
    });
  });
}

/** The cause of a failed connection in the tool's output, or null. */
export function failureIn(output: string, port: string): string | null {
  if (/system_bus_socket|org\.bluez|Cannot find module '@abandonware\/noble'|No Bluetooth|EAFNOSUPPORT/.test(output))
    return BLE_STACK_MISSING;
  if (/ECONNREFUSED/.test(output)) return `${port}: connection refused`;
  if (/ETIMEDOUT/.test(output)) return `${port}: timed out connecting`;
  if (/EACCES|Permission denied/.test(output))
    return `${port}: permission denied (add yourself to the dialout group, or check the device's owner)`;
  if (/Unable to connect!/.test(output)) return `the connection to ${port} failed or ended before the board answered`;
  return null;
}

/** Output lines worth showing with --verbose: a library's stack frames are not. */
const isTraceLine = (l: string) =>
  /^\s+at |^\s*\^+\s*$|^Node\.js v\d|^\S+\.js:\d+$|^\s*(} else )?throw \w+;?$|^Emitted 'error' event/.test(l);

function runCli({
  port,
  script,
  expr,
  baud,
  reset = true,
  timeoutMs = 120000,
  onLine,
  verbose = false,
}: EspruinoRun): Promise<EspruinoResult> {
  const kind = portKind(port);
  if (!existsSync(CLI)) throw new Error(`${CLI} not found: run npm ci`);
  const dir = mkdtempSync(join(tmpdir(), 'e4-espruino-'));
  const args: string[] = [];
  if (kind !== 'ble') args.push('--no-ble');
  args.push('-p', port);
  if (baud) args.push('-b', String(baud));
  // Without reset() the script runs in the interpreter as it is (its globals, its timers).
  if (!reset) args.push('--config', 'RESET_BEFORE_SEND=false');
  if (script !== undefined) {
    // The tool never finishes uploads of 512 bytes or less (it only calls back after a write
    // bigger than its 512-byte block): pad short scripts with a string statement, which the
    // tool's code transforms keep (they drop comments and blank lines).
    let s = script;
    if (s.length <= 700) s += '\n"' + '-'.repeat(700 - s.length) + '";\n';
    const file = join(dir, 'upload.js');
    writeFileSync(file, s);
    args.push(file);
  }
  if (expr !== undefined) args.push('-e', expr);
  return new Promise((resolve, reject) => {
    // cwd = the scratch dir: the tool looks for ./modules there, never in the project.
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const lines: string[] = [];
    let partial = '';
    const take = (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      output += text;
      partial += text;
      let i;
      while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i).replace(/\r$/, '');
        partial = partial.slice(i + 1);
        if (verbose && !isTraceLine(line)) process.stderr.write(line + '\n');
        const m = /^--\] ?(.*)$/.exec(line);
        if (m) {
          lines.push(m[1]);
          if (onLine) onLine(m[1]);
        }
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new ConnectionError(`${port}: no answer from the board within ${Math.round(timeoutMs / 1000)} s (--timeout to wait longer)`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      // Output the board never sent ("--]" lines) that names a failure: the connection's.
      const failure = failureIn(
        output
          .split('\n')
          .filter((l) => !l.startsWith('--]'))
          .join('\n'),
        port,
      );
      if (failure) reject(new ConnectionError(failure, output));
      else resolve({ code, output, lines });
    });
  });
}
