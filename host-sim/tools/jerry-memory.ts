#!/usr/bin/env node
/**
 * `node host-sim/tools/jerry-memory.ts [--mode source|snapshot|static|all] [--native-aes]
 *   [--engine NAME|PATH] [--snap-engine NAME|PATH] [--generator NAME|PATH] [--image FILE]`
 *
 * Runs the jerryscript board image through a device's life (host-sim/sim/jerry-board.ts:
 * provisioning, receive, two C2 commands, a run-time topic, publish, a 1,000-byte message out and
 * back in) on JerryScript built with a 64 KB heap and --mem-stats, checks the results, and prints
 * the peak heap use. The image is loaded the way a port would:
 * - `source`: parsed from source (`jerry-lean`);
 * - `snapshot`: an ordinary snapshot, copied into the heap when executed (`jerry-lean-snap
 *   --exec-snapshot`);
 * - `static`: a static snapshot executed in place, its strings registered as the port's magic
 *   strings (`jerry-lean-snap --magic-strings … --exec-snapshot-static`).
 * Snapshots are made here with the generator (`jerry-snapshot-lean`, build/jerry-snapshot.ts)
 * from the image given (default dist/boards/jerryscript.min.js). `--native-aes` registers the
 * optional native AES function of the port contract (emulated in JavaScript by the shim, so its
 * tables are in the heap as a port's C code would not have them: an upper bound).
 * The driver (the shim of the port's native functions and the steps) is parsed from source in
 * every mode. Engines are looked up by these names in $E4_ENGINES then $PATH.
 * A benchmark, not a test: the engines are built from fetched sources outside the repository.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool, makeSnapshots } from '../../build/jerry-snapshot.ts';
import { engineIfPresent } from './engines.ts';
import { BIG, bigChecksum, jerryBoardScript, jerryResults } from '../sim/jerry-board.ts';
import { isMain } from '../shared/cli.ts';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
export const MODES = ['source', 'snapshot', 'static'] as const;
export type Mode = (typeof MODES)[number];
const isMode = (m: string): m is Mode => (MODES as readonly string[]).includes(m);

/** The engines and the snapshot generator (paths; null when absent). */
export interface JerryTools {
  engine?: string | null;
  snapEngine?: string | null;
  generator?: string | null;
}

/** One measured run: the life cycle's verdict, the engine's exit status, heap and peak bytes. */
export interface JerryRun {
  mode: Mode;
  ok: boolean;
  status: number | null;
  heap: number | null;
  peak: number | null;
  out: string;
}

/** The board's `E4.status()` line says it runs a client. */
function statusOk(text: string | undefined): boolean {
  const s: unknown = JSON.parse(text || '{}');
  return typeof s === 'object' && s !== null && 'ok' in s && s.ok === true;
}

/** The life cycle's results are right (the same checks in every mode). */
export function lifeCycleOk(R: Record<string, string | undefined>, status: number | null): boolean {
  return (
    status === 0 &&
    R.end === 'ok' &&
    statusOk(R.status) &&
    /command/.test(R.got || '') &&
    R.bigout === `health/temp ${BIG + 24}` &&
    R.bigin === `health/temp ${BIG} ${bigChecksum()}`
  );
}

/**
 * One measured run: { mode, ok, status, heap, peak, out }. `tools`: { engine, snapEngine,
 * generator } (paths); `dir`: a scratch directory.
 */
export function measure(
  mode: Mode,
  { image, tools, dir, nativeAes = false }: { image: string; tools: JerryTools; dir: string; nativeAes?: boolean },
): JerryRun {
  const script = jerryBoardScript({ imageFile: image, inline: true, nativeAes });
  const imageCode = readFileSync(image, 'latin1');
  let args: [string | null | undefined, string[]];
  if (mode === 'source') {
    writeFileSync(join(dir, 'board.js'), script);
    args = [tools.engine, ['--mem-stats', join(dir, 'board.js')]];
  } else {
    if (!tools.generator) throw new Error('jerry-memory: no snapshot generator');
    // The driver alone: everything of the script but the image.
    const at = script.indexOf(imageCode);
    writeFileSync(join(dir, 'driver.js'), script.slice(0, at) + script.slice(at + imageCode.length));
    const snaps = makeSnapshots(image, dir, tools.generator);
    args =
      mode === 'snapshot'
        ? [tools.snapEngine, ['--mem-stats', '--exec-snapshot', snaps.snapshot, join(dir, 'driver.js')]]
        : [
            tools.snapEngine,
            ['--mem-stats', '--magic-strings', snaps.literals, '--exec-snapshot-static', snaps.staticSnapshot, join(dir, 'driver.js')],
          ];
  }
  if (!args[0]) throw new Error(`jerry-memory ${mode}: no engine`);
  const r = spawnSync(args[0], args[1], { encoding: 'utf8', timeout: 300000 });
  const R = jerryResults(r.stdout);
  const heap = /Heap size\s*=\s*(\d+)/.exec(r.stderr);
  const peak = /Peak allocated\s*=\s*(\d+)/.exec(r.stderr);
  return {
    mode,
    ok: lifeCycleOk(R, r.status),
    status: r.status,
    heap: heap ? Number(heap[1]) : null,
    peak: peak ? Number(peak[1]) : null,
    out: r.stdout.slice(-1500) + r.stderr.slice(-1500),
  };
}

function main(argv: string[]): number {
  const opt = (name: string, dflt: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  const mode = opt('--mode', 'all');
  const modes = mode === 'all' ? MODES : [mode];
  if (!modes.every(isMode)) {
    console.error(`jerry-memory: --mode ${MODES.join('|')}|all`);
    return 2;
  }
  const image = opt('--image', join(ROOT, 'dist/boards/jerryscript.min.js'));
  const names = {
    engine: opt('--engine', 'jerry-lean'),
    snapEngine: opt('--snap-engine', 'jerry-lean-snap'),
    generator: opt('--generator', 'jerry-snapshot-lean'),
  };
  // The engines must answer the probe as JerryScript (engines.ts); the generator is a tool.
  const tools: Required<JerryTools> = {
    engine: engineIfPresent(names.engine),
    snapEngine: engineIfPresent(names.snapEngine),
    generator: findTool(names.generator),
  };
  const need: Record<Mode, (keyof JerryTools)[]> = {
    source: ['engine'],
    snapshot: ['snapEngine', 'generator'],
    static: ['snapEngine', 'generator'],
  };
  const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-mem-'));
  let failed = 0;
  try {
    for (const m of modes) {
      const missing = need[m].filter((k) => !tools[k]);
      if (missing.length) {
        console.log(
          `jerry-memory ${m}: skipped: ${missing.map((k) => names[k]).join(', ')} not found in $E4_ENGINES or $PATH (JerryScript 3.0 with --mem-heap=64 --mem-stats=ON; snapshots: the generator and an engine with snapshot execution of the same configuration)`,
        );
        if (mode !== 'all') failed++;
        continue;
      }
      const r = measure(m, { image, tools, dir, nativeAes: argv.includes('--native-aes') });
      const what = `jerry-memory ${m}${argv.includes('--native-aes') ? ' (native AES)' : ''}`;
      console.log(
        `${what}: ${r.ok ? 'provision, receive, commands, run-time topic, publish, 1,000 bytes out and in all ran' : 'FAILED (exit ' + r.status + ')'}`,
      );
      if (!r.ok) {
        failed++;
        console.log(r.out);
      }
      if (r.heap && r.peak)
        console.log(`${what}: heap ${r.heap} bytes, peak allocated ${r.peak} bytes (${((100 * r.peak) / r.heap).toFixed(0)}%)`);
      else console.log(`${what}: no heap statistics (engine built without --mem-stats?)`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return failed ? 1 : 0;
}

if (isMain(import.meta.url)) process.exit(main(process.argv.slice(2)));
