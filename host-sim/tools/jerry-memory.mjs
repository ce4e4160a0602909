#!/usr/bin/env node
/**
 * `node host-sim/tools/jerry-memory.mjs [--engine NAME|PATH]`: runs the jerryscript board image
 * through a device's life (host-sim/jerry-board.mjs) on JerryScript built with a 64 KB heap and
 * --mem-stats (default: the engine `jerry-lean`, found in $E4_ENGINES or $PATH; see
 * host-sim/tools/engines.mjs), checks the results, and prints the peak heap use. Exit 2 when the
 * engine is absent or the name unknown. Engines are built outside the repository; the suite runs
 * this on `jerry-lean` (test/jerry-board-engine.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jerryBoardScript, jerryResults } from '../jerry-board.mjs';
import { EngineUsageError, absentReason, findBinary } from './engines.mjs';

const i = process.argv.indexOf('--engine');
const spec = i > 0 ? process.argv[i + 1] : 'jerry-lean';
let engine;
try {
  engine = findBinary(spec);
} catch (e) {
  if (!(e instanceof EngineUsageError)) throw e;
  console.error(`jerry-memory: ${e.message}`);
  process.exit(2);
}
if (!engine) {
  const why = spec.includes('/') ? `${spec} not found or not executable` : absentReason(spec);
  console.error(`jerry-memory: ${why} (a JerryScript built with --mem-heap=64 --mem-stats=ON; set E4_ENGINES or give --engine)`);
  process.exit(2);
}
const file = join(mkdtempSync(join(tmpdir(), 'e4-jerry-mem-')), 'board.js');
writeFileSync(file, jerryBoardScript({ inline: true }));
const r = spawnSync(engine, ['--mem-stats', file], { encoding: 'utf8', timeout: 300000 });
const R = jerryResults(r.stdout);
const heap = /Heap size\s*=\s*(\d+)/.exec(r.stderr);
const peak = /Peak allocated\s*=\s*(\d+)/.exec(r.stderr);
const ok = r.status === 0 && R.end === 'ok' && JSON.parse(R.status || '{}').ok === true && /command/.test(R.got || '');
console.log(`jerry-memory: ${engine}: ${ok ? 'provision, receive, commands, run-time topic, publish all ran' : 'FAILED (exit ' + r.status + ')'}`);
if (!ok) console.log(r.stdout.slice(-2000) + r.stderr.slice(-2000));
if (heap && peak) console.log(`jerry-memory: heap ${heap[1]} bytes, peak allocated ${peak[1]} bytes (${((100 * Number(peak[1])) / Number(heap[1])).toFixed(0)}%)`);
else console.log('jerry-memory: no heap statistics (engine built without --mem-stats?)');
process.exit(ok ? 0 : 1);
