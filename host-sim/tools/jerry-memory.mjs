#!/usr/bin/env node
/**
 * `node host-sim/tools/jerry-memory.mjs [--engine PATH]`: runs the jerryscript board image
 * through a device's life (host-sim/jerry-board.mjs) on JerryScript built with a 64 KB heap and
 * --mem-stats (default /work/engines/bin/jerry-64k, or $E4_JERRY_64K), checks the results, and
 * prints the peak heap use. A benchmark, not a test: engines built from fetched sources live
 * outside the repository.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jerryBoardScript, jerryResults } from '../jerry-board.mjs';

const i = process.argv.indexOf('--engine');
const engine = i > 0 ? process.argv[i + 1] : process.env.E4_JERRY_64K || '/work/engines/bin/jerry-64k';
if (!existsSync(engine)) {
  console.error(`jerry-memory: ${engine} not found (a JerryScript built with --mem-heap=64 --mem-stats=ON; give --engine)`);
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
