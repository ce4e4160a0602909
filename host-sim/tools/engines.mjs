/**
 * JavaScript engines that can run an ES5 image: discovery and a uniform way to run one
 * self-contained script in each.
 *
 * - `node`: a node:vm sandbox holding only what a device engine has (host-sim/image.mjs,
 *   profile `device`), one fresh realm per script.
 * - any engine binary that runs `BIN script.js` and prints with `print` or `console.log`:
 *   Duktape (`duk`, Debian package duktape), JerryScript (`jerry`), Espruino's Linux build
 *   (`espruino`). Bare names are looked up in $E4_ENGINES (a ':'-separated list of directories),
 *   /work/engines/bin, then $PATH. The kind (espruino | jerryscript | duktape) follows from the
 *   binary's name unless given.
 *
 * Output is read for tagged lines only (see conformance.mjs), so banners and prompts don't matter;
 * a run ends when the script prints its end tag, when the process exits, or at the time limit.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, isAbsolute, join, resolve } from 'node:path';
import vm from 'node:vm';
import { createSandbox } from '../image.mjs';

export const KINDS = ['node', 'espruino', 'jerryscript', 'duktape'];

/** Per-kind defaults: how much case data goes into one script (bytes of JSON) and the time limit
 * of one script. Espruino keeps source in RAM (a 12,000-variable build has ≈ 168 KB) and
 * JerryScript may have a 64 KB heap, so their batches are small. */
export const KIND_DEFAULTS = {
  node: { batchBytes: 200000, timeoutMs: 120000 },
  duktape: { batchBytes: 60000, timeoutMs: 300000 },
  jerryscript: { batchBytes: 6000, timeoutMs: 300000 },
  espruino: { batchBytes: 2500, timeoutMs: 600000 },
};

export function engineDirs() {
  const dirs = [];
  if (process.env.E4_ENGINES) dirs.push(...process.env.E4_ENGINES.split(delimiter).filter(Boolean));
  dirs.push('/work/engines/bin');
  dirs.push(...(process.env.PATH || '').split(delimiter).filter(Boolean));
  return dirs;
}

function executable(file) {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Full path of an engine binary given by name or path, or null. */
export function findBinary(name) {
  if (name.includes('/')) {
    const file = isAbsolute(name) ? name : resolve(name);
    return executable(file) ? file : null;
  }
  for (const dir of engineDirs()) {
    const file = join(dir, name);
    if (executable(file)) return file;
  }
  return null;
}

export function kindOf(binary) {
  const b = basename(binary).toLowerCase();
  if (b.includes('espruino')) return 'espruino';
  if (b.includes('jerry')) return 'jerryscript';
  if (b.includes('duk')) return 'duktape';
  if (b === 'node') return 'node';
  return null;
}

/** The engines present on this machine, by default name (node is always there). */
export function availableEngines() {
  const found = [{ spec: 'node', kind: 'node', path: null }];
  for (const name of ['duk', 'jerry', 'espruino']) {
    const path = findBinary(name);
    if (path) found.push({ spec: name, kind: kindOf(path), path });
  }
  return found;
}

/**
 * An engine from a spec: `node`, a binary name (`duk`, `jerry`, `espruino`), or a path. Throws
 * when it cannot be found or its kind cannot be told. Returns { name, kind, path, run(script) }.
 */
export function openEngine(spec, kind) {
  if (kind && !KINDS.includes(kind)) throw new Error(`unknown kind ${kind} (${KINDS.join(', ')})`);
  if (spec === 'node') {
    if (kind && kind !== 'node') throw new Error('--engine node is the node:vm sandbox; its kind is node');
    return { name: 'node', kind: 'node', path: null, run: runInSandbox };
  }
  const path = findBinary(spec);
  if (!path) throw new Error(`engine ${spec} not found (looked in ${spec.includes('/') ? spec : engineDirs().join(delimiter)})`);
  const k = kind || kindOf(path);
  if (!k) throw new Error(`cannot tell the kind of engine ${path}: give --kind ${KINDS.slice(1).join('|')}`);
  return { name: spec.includes('/') ? path : spec, kind: k, path, run: (script, opts) => runBinary(path, k, script, opts) };
}

/** Runs `script` in a fresh device-like node:vm realm. Resolves { stdout, stderr, exit, ms }. */
export async function runInSandbox(script, { endTag, timeoutMs = KIND_DEFAULTS.node.timeoutMs } = {}) {
  const lines = [];
  const started = process.hrtime.bigint();
  let stderr = '';
  let exit = 0;
  try {
    const compiled = new vm.Script(script, { filename: 'conformance-batch.js' });
    createSandbox({ script: { runInContext: (ctx) => compiled.runInContext(ctx, { timeout: timeoutMs }) }, path: 'conformance-batch.js' }, { print: (s) => lines.push(s) });
  } catch (e) {
    stderr = e && e.message !== undefined ? `${e.name}: ${e.message}` : String(e);
    exit = 1;
  }
  void endTag;
  return { stdout: lines.join('\n') + '\n', stderr, exit, ms: Number(process.hrtime.bigint() - started) / 1e6 };
}

/**
 * Runs `BIN script.js`. stdin stays open (Espruino's Linux build keeps interrupting the running
 * code once its input ends) and the process is stopped once `endTag` has been printed.
 */
export function runBinary(path, kind, script, { endTag, timeoutMs } = {}) {
  const limit = timeoutMs || KIND_DEFAULTS[kind].timeoutMs;
  const dir = mkdtempSync(join(tmpdir(), 'e4-engine-'));
  const file = join(dir, 'script.js');
  writeFileSync(file, script);
  return new Promise((resolvePromise) => {
    const started = process.hrtime.bigint();
    // Espruino writes its emulated flash to the working directory: keep that in the temp dir.
    const child = spawn(path, [file], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let done = false;
    let timedOut = false;
    const finish = (exit) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        child.stdin.destroy();
      } catch {
        /* already closed */
      }
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      resolvePromise({ stdout, stderr: timedOut ? stderr + `\n[timed out after ${limit} ms]` : stderr, exit, ms: Number(process.hrtime.bigint() - started) / 1e6 });
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
    child.on('close', (code) => finish(code));
    child.stdin.on('error', () => {});
  });
}

export function describeEngine(e) {
  return e.path ? `${e.name} (${e.kind}, ${e.path})` : `${e.name} (${e.kind} sandbox)`;
}
