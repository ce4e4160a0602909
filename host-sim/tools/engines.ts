/**
 * JavaScript engines that can run an ES5 image: which names exist, how they are found, how each is
 * told apart from an impostor, and a uniform way to run one self-contained script in each.
 *
 * - `node`: a node:vm sandbox holding only what a device engine has (host-sim/shared/image.ts,
 *   profile `device`), one fresh realm per script.
 * - an engine binary, by one of the names in ENGINES (below) or by path. Names are looked up in
 *   the folders of $E4_ENGINES (':'-separated), then $PATH; nothing else. Folders named
 *   `node_modules/.bin` are never searched: npm puts tools there (the espruino command-line
 *   tool is called `espruino` too), not interpreters.
 *
 * A file is accepted only after it ran a probe script and answered as the engine its name says
 * (an Espruino, a JerryScript, ...): a file that merely has the right name is not an engine.
 * Output is read for tagged lines only (see conformance.ts), so banners and prompts don't matter;
 * a run ends when the script prints its end tag, when the process exits, or at the time limit.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, isAbsolute, join, resolve, sep } from 'node:path';
import vm from 'node:vm';
import { createSandbox } from '../shared/image.ts';
import { executable } from '../../build/jerry-snapshot.ts';

export const KINDS = ['node', 'espruino', 'jerryscript', 'duktape', 'microquickjs', 'xs'] as const;

/** What an engine is, as its probe answers (`node`: the node:vm sandbox). */
export type EngineKind = (typeof KINDS)[number];

/** A JavaScript engine by name: its kind, what it is, and where it differs from its kind. */
export interface KnownEngine {
  kind: EngineKind;
  about: string;
  /** Variables of an Espruino build (its memory). */
  vars?: number;
  batchBytes?: number;
  imageIn?: ImageIn;
}

/** Where a script finds the image: in its own source, or stored in the engine's flash. */
export type ImageIn = 'source' | 'flash';

/** Options of one engine run. */
export interface RunOptions {
  /** The run ends once a line with this tag has been printed. */
  endTag?: string;
  timeoutMs?: number;
  /** MicroQuickJS's --memory-limit (bytes, or e.g. '64k'). */
  memoryLimit?: number | string;
  /** Run in this folder and keep it (Espruino's flash file then lasts from run to run). */
  workDir?: string;
}

/** How one run ended. `signal`, `timedOut` and `limitMs` are set by engine binaries only. */
export interface EngineRun {
  stdout: string;
  stderr: string;
  exit: number | null;
  ms: number;
  signal?: NodeJS.Signals | null;
  timedOut?: boolean;
  limitMs?: number;
}

/** An engine ready to run scripts (openEngine). */
export interface Engine {
  name: string;
  kind: EngineKind;
  path: string | null;
  batchBytes: number;
  imageIn?: ImageIn;
  run(script: string, opts?: RunOptions): Promise<EngineRun>;
}

/** One engine found on this machine (availableEngines). */
export interface FoundEngine {
  spec: string;
  kind: EngineKind;
  path: string | null;
}

export const isKind = (k: string): k is EngineKind => (KINDS as readonly string[]).includes(k);

/**
 * Per-kind defaults: how much case data goes into one script (bytes of JSON) and the time limit
 * of one script. Espruino keeps source in RAM (a 12,000-variable build has ≈ 168 KB) and
 * JerryScript may have a 64 KB heap, so their batches are small.
 */
export const KIND_DEFAULTS: Record<EngineKind, { batchBytes: number; timeoutMs: number }> = {
  node: { batchBytes: 200000, timeoutMs: 120000 },
  duktape: { batchBytes: 60000, timeoutMs: 300000 },
  jerryscript: { batchBytes: 6000, timeoutMs: 300000 },
  espruino: { batchBytes: 2500, timeoutMs: 600000 },
  microquickjs: { batchBytes: 60000, timeoutMs: 300000 },
  xs: { batchBytes: 60000, timeoutMs: 300000 },
};

/**
 * The engines known by name. `batchBytes` overrides the kind's default where the engine's memory
 * is smaller (the 64 KB JerryScript fails three cases at 6,000 bytes of case JSON per script).
 * `imageIn: 'flash'`: the image is stored in Storage and run from flash, as on the board (the
 * 32-bit builds' RAM cannot hold the readable image as source; see conformance.ts).
 */
export const ENGINES: Record<string, KnownEngine> = {
  duk: { kind: 'duktape', about: 'Duktape 2.7 (Debian package duktape)' },
  'espruino32-2630': {
    kind: 'espruino',
    about: 'Espruino 2v29 Linux build, 32-bit, 2,630 variables (Puck.js, nRF52832)',
    vars: 2630,
    batchBytes: 600,
    imageIn: 'flash',
  },
  'espruino32-12000': {
    kind: 'espruino',
    about: 'Espruino 2v29 Linux build, 32-bit, 12,000 variables (Bangle.js 2; ESP32 stand-in)',
    vars: 12000,
    imageIn: 'flash',
  },
  'espruino-o2': { kind: 'espruino', about: 'Espruino 2v29 Linux build, 64-bit, -O2, resizable variables (speed comparisons)' },
  espruino: { kind: 'espruino', about: 'an Espruino Linux build of your own (make BOARD=LINUX)' },
  jerry: { kind: 'jerryscript', about: 'JerryScript 3.0, 512 KB heap' },
  'jerry-2.4': { kind: 'jerryscript', about: 'JerryScript 2.4, 512 KB heap' },
  'jerry-lean': { kind: 'jerryscript', about: 'JerryScript 3.0, 64 KB heap (a small device)', batchBytes: 2000 },
  'jerry-lean-snap': { kind: 'jerryscript', about: 'JerryScript 3.0, 64 KB heap, executes static snapshots', batchBytes: 2000 },
  mqjs: { kind: 'microquickjs', about: 'MicroQuickJS (strict, fixed memory buffer)' },
  xst: { kind: 'xs', about: 'Moddable XS command-line shell' },
};

/** The real-engine set CI proves the image on (the names above minus the generic/own builds). */
export const CI_ENGINES = ['duk', 'espruino32-2630', 'espruino32-12000', 'espruino-o2', 'jerry', 'jerry-2.4', 'jerry-lean', 'mqjs', 'xst'];

/** A usage error (an unknown engine name, a bad kind): tools print it and exit 2. */
export class EngineUsageError extends Error {}

export function engineDirs() {
  const dirs = [];
  if (process.env.E4_ENGINES) dirs.push(...process.env.E4_ENGINES.split(delimiter).filter(Boolean));
  dirs.push(...(process.env.PATH || '').split(delimiter).filter(Boolean));
  return dirs.filter((d) => !resolve(d).split(sep).join('/').endsWith('node_modules/.bin'));
}

/** How to run a script file with one engine. */
export function argsFor(kind: EngineKind, file: string, { memoryLimit }: Pick<RunOptions, 'memoryLimit'> = {}): string[] {
  if (kind === 'xs') return ['-s', file]; // without -s, xst may take the file for a test262 case
  if (kind === 'microquickjs' && memoryLimit) return ['--memory-limit', String(memoryLimit), file];
  return [file];
}

// Answers with the kind of engine it runs on. Strict-safe (MicroQuickJS is always strict) and
// ES5 (Duktape); every engine here has print() except Node-like ones with console.log.
const PROBE = `(function () {
  var out = typeof print === "function" ? print : function (s) { console.log(s); };
  var k = "unknown";
  if ((typeof process === "object" || typeof process === "function") && process.env && process.env.BOARD && typeof process.memory === "function") k = "espruino";
  else if (typeof Duktape === "object") k = "duktape";
  else if (typeof createRealm === "function" && typeof gc === "function") k = "jerryscript";
  else if (typeof harden === "function" || typeof $262 === "object") k = "xs";
  else if ((function () { return this === undefined; })() && typeof gc === "function") k = "microquickjs";
  out("@@E4PROBE " + k);
})();
`;

const probed = new Map<string, EngineKind | null>();

/** The kind a binary answers the probe with, or null (cached per path). */
export function probeKind(path: string): EngineKind | null {
  const cached = probed.get(path);
  if (cached !== undefined) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'e4-probe-'));
  let kind: EngineKind | null = null;
  try {
    const file = join(dir, 'probe.js');
    writeFileSync(file, PROBE);
    for (const args of [[file], ['-s', file]]) {
      const r = spawnSync(path, args, { cwd: dir, encoding: 'utf8', timeout: 20000, input: '', killSignal: 'SIGKILL' });
      const m = /@@E4PROBE (\w+)/.exec(r.stdout || '');
      if (m && m[1] !== 'unknown' && isKind(m[1])) {
        kind = m[1];
        break;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  probed.set(path, kind);
  return kind;
}

/**
 * Full path of an engine given by name or path, or null when none is found. A name must be one
 * of ENGINES (else EngineUsageError), and the file found must answer the probe as that kind;
 * files that don't are passed over (the next folder may hold the real one).
 */
export function findBinary(name: string): string | null {
  if (name.includes('/')) {
    const file = isAbsolute(name) ? name : resolve(name);
    return executable(file) ? file : null;
  }
  const known = ENGINES[name];
  if (!known) throw new EngineUsageError(`unknown engine ${name}: one of node, ${Object.keys(ENGINES).join(', ')}, or a path`);
  for (const dir of engineDirs()) {
    const file = join(dir, name);
    if (executable(file) && probeKind(file) === known.kind) return file;
  }
  return null;
}

/** Like findBinary, but never throws: null for unknown names too. */
export function engineIfPresent(name: string): string | null {
  try {
    return findBinary(name);
  } catch {
    return null;
  }
}

/** Why an engine is absent, for a skipped suite's message. */
export function absentReason(name: string): string {
  return `${name} (${ENGINES[name] ? ENGINES[name].about : 'engine'}) not found in $E4_ENGINES or $PATH`;
}

/** The engines present on this machine, by name (node is always there). */
export function availableEngines(names = ['duk', 'jerry', 'espruino-o2']): FoundEngine[] {
  const found: FoundEngine[] = [{ spec: 'node', kind: 'node', path: null }];
  for (const name of names) {
    const path = engineIfPresent(name);
    if (path) found.push({ spec: name, kind: ENGINES[name].kind, path });
  }
  return found;
}

/**
 * An engine from a spec: `node`, a name of ENGINES, or a path. Throws EngineUsageError for an
 * unknown name or kind, and Error when it cannot be found or is not the engine it claims to be.
 * Returns { name, kind, path, batchBytes, run(script, opts) }.
 */
export function openEngine(spec: string, kind?: string): Engine {
  if (kind && !isKind(kind)) throw new EngineUsageError(`unknown kind ${kind} (${KINDS.join(', ')})`);
  if (spec === 'node') {
    if (kind && kind !== 'node') throw new EngineUsageError('--engine node is the node:vm sandbox; its kind is node');
    return { name: 'node', kind: 'node', path: null, batchBytes: KIND_DEFAULTS.node.batchBytes, run: runInSandbox };
  }
  const path = findBinary(spec);
  if (!path) throw new Error(spec.includes('/') ? `engine ${spec} not found` : absentReason(spec));
  const answered = probeKind(path);
  if (!answered)
    throw new Error(`${path} is not a JavaScript engine this tool knows (it did not answer the probe as ${KINDS.slice(1).join(', ')})`);
  if (kind && kind !== answered) throw new Error(`${path} answered the probe as ${answered}, not ${kind}`);
  const known = ENGINES[basename(path)];
  const batchBytes =
    (!spec.includes('/') && ENGINES[spec].batchBytes) ||
    (known && known.kind === answered && known.batchBytes) ||
    KIND_DEFAULTS[answered].batchBytes;
  const imageIn = (!spec.includes('/') && ENGINES[spec].imageIn) || 'source';
  return {
    name: spec.includes('/') ? path : spec,
    kind: answered,
    path,
    batchBytes,
    imageIn,
    run: (script: string, opts?: RunOptions) => runBinary(path, answered, script, opts),
  };
}

/** Runs `script` in a fresh device-like node:vm realm. Resolves { stdout, stderr, exit, ms }. */
export async function runInSandbox(script: string, { timeoutMs = KIND_DEFAULTS.node.timeoutMs }: RunOptions = {}): Promise<EngineRun> {
  const lines: string[] = [];
  const started = process.hrtime.bigint();
  let stderr = '';
  let exit = 0;
  try {
    const compiled = new vm.Script(script, { filename: 'conformance-batch.js' });
    createSandbox(
      { script: { runInContext: (ctx: vm.Context) => compiled.runInContext(ctx, { timeout: timeoutMs }) }, path: 'conformance-batch.js' },
      { print: (s: string) => lines.push(s) },
    );
  } catch (e) {
    stderr = errorText(e);
    exit = 1;
  }
  return { stdout: lines.join('\n') + '\n', stderr, exit, ms: Number(process.hrtime.bigint() - started) / 1e6 };
}

/** `name: message` of an error from any realm (what a sandbox throws is not a host `Error`). */
function errorText(e: unknown): string {
  if (typeof e === 'object' && e !== null && 'message' in e && e.message !== undefined)
    return `${'name' in e ? e.name : undefined}: ${e.message}`;
  return String(e);
}

/**
 * What a run that ended without its results died of, in words: the exit status each engine uses
 * for running out of memory, a signal, a time-out, or the engine's own last error line.
 */
export function causeOf(kind: EngineKind, run: Omit<EngineRun, 'ms'>): string {
  const text = `${run.stderr || ''}\n${run.stdout || ''}`;
  if (run.timedOut) return `timed out after ${run.limitMs} ms`;
  if (run.signal) return `killed by ${run.signal}` + (run.signal === 'SIGSEGV' ? ' (the engine crashed)' : '');
  if (kind === 'jerryscript' && run.exit === 10) return 'out of memory (JerryScript exit status 10: heap exhausted)';
  const oom = /.*(out of memory|MEMORY|memory exhausted).*/i.exec(text);
  if (oom) return 'out of memory: ' + lastLine(oom[0]);
  const err = text.split('\n').filter((l) => /Error|Uncaught|Exception/.test(l));
  if (err.length) return `exit ${run.exit}: ${lastLine(err[err.length - 1])}`;
  return `exit ${run.exit}`;
}

// Strips the ANSI colour codes (ESC [ ... m) engines print.
const lastLine = (s: string) =>
  s
    // eslint-disable-next-line no-control-regex -- ESC is the point
    .replace(/\x1b\[[0-9;]*m/g, '')
    .trim()
    .slice(0, 300);

/**
 * Runs `BIN script.js`. stdin stays open (Espruino's Linux build keeps interrupting the running
 * code once its input ends) and the process is stopped once `endTag` has been printed.
 * `workDir`: run there and keep it (Espruino's `espruino.flash` then lasts from run to run);
 * by default each run gets a temporary folder of its own, removed afterwards.
 * Resolves { stdout, stderr, exit, signal, timedOut, limitMs, ms }.
 */
export function runBinary(
  path: string,
  kind: EngineKind,
  script: string,
  { endTag, timeoutMs, memoryLimit, workDir }: RunOptions = {},
): Promise<EngineRun> {
  const limit = timeoutMs || KIND_DEFAULTS[kind].timeoutMs;
  const dir = workDir || mkdtempSync(join(tmpdir(), 'e4-engine-'));
  const file = join(dir, 'script.js');
  writeFileSync(file, script);
  const cleanUp = () => (workDir ? rmSync(file, { force: true }) : rmSync(dir, { recursive: true, force: true }));
  return new Promise((resolvePromise) => {
    const started = process.hrtime.bigint();
    // Espruino writes its emulated flash to the working directory: keep that in the temp dir.
    const child = spawn(path, argsFor(kind, file, { memoryLimit }), { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let done = false;
    let timedOut = false;
    const finish = (exit: number | null, signal: NodeJS.Signals | null = null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        child.stdin.destroy();
      } catch {
        /* already closed */
      }
      // Espruino ignores SIGTERM.
      if (child.exitCode === null) child.kill('SIGKILL');
      cleanUp();
      resolvePromise({
        stdout,
        stderr: timedOut ? stderr + `\n[timed out after ${limit} ms]` : stderr,
        exit,
        signal,
        timedOut,
        limitMs: limit,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
      });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      finish(-1);
    }, limit);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (endTag && stdout.includes(endTag) && /\n/.test(stdout.slice(stdout.lastIndexOf(endTag)))) finish(0);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) => {
      stderr += String(e);
      finish(-1);
    });
    child.on('close', (code, signal) => finish(code, signal));
    child.stdin.on('error', () => {});
  });
}

export function describeEngine(e: Pick<Engine, 'name' | 'kind' | 'path'>): string {
  return e.path ? `${e.name} (${e.kind}, ${e.path})` : `${e.name} (${e.kind} sandbox)`;
}
