#!/usr/bin/env node
/**
 * `npm run size`: raw, minified and gzip bytes of every image in dist/ (dist/*.js and
 * dist/boards/*.js; a `.min.js` belongs to the image beside it), written to dist/size.json with the
 * SHA-256 of each file (host-sim/shared/image.ts checks images against it): the build's report
 * (build/size-report.ts), which the build also writes after every `npm run build`.
 *
 * Then the memory figures of the footprint table (host-sim/tools/figures.ts), each beside the
 * previous release's figure (budgets/baseline.json), its budget and goal (budgets/budget.json):
 * the Puck.js image on `espruino32-2630` (host-sim/tools/puck-memory.ts), and the JerryScript
 * board image on `jerry-lean` (64 KB heap): its life cycle (host-sim/tools/jerry-memory.ts) and
 * a protect+unprotect of 1,000 bytes. Engines are found in $E4_ENGINES and $PATH; an absent one
 * leaves its figures "not measured". `--check`: exit 1 when a figure is above its budget (or,
 * with CI set, was not measured).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { DIST, TARGET_MIN_BYTES, imageFiles, sizeReport, writeSizeReport } from '../../build/size-report.ts';
import type { FileSize, SizeReport } from '../../build/size-report.ts';
import { engineIfPresent } from './engines.ts';
import { measure } from './jerry-memory.ts';
import { findTool } from '../../build/jerry-snapshot.ts';
import { figureTable } from './figures.ts';
import type { Measured } from './figures.ts';
import { answerHelpOrVersion, isMain } from '../shared/cli.ts';
import { puckMemory } from './puck-memory.ts';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
// The report itself (sizes and SHA-256 of every image) is the build's: build/size-report.ts.
export { DIST, TARGET_MIN_BYTES, imageFiles, sizeReport, writeSizeReport };
export type { FileSize, SizeReport };

export function formatReport(report: SizeReport): string {
  const rows = [['image', 'raw', 'raw gzip', 'min', 'min gzip', 'min file']];
  for (const i of report.images) {
    rows.push([i.image, i.raw.bytes, i.raw.gzip, i.min.bytes, i.min.gzip, i.min.file || '(not written)'].map(String));
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) => r.map((v, c) => (c === 0 || c === 5 ? v.padEnd(w[c]) : v.padStart(w[c]))).join('  '));
  const portable = report.images.find((i) => i.image === 'e4');
  if (portable) {
    const ok = portable.min.bytes <= report.targetMinBytes;
    lines.push(
      `portable image: ${portable.min.bytes} bytes minified (${(portable.min.bytes / 1024).toFixed(1)} KB), target ≤ ${report.targetMinBytes} bytes: ${ok ? 'met' : 'NOT met'}`,
    );
  }
  return lines.join('\n');
}

export const USAGE = `usage: npm run size [-- --check]

Prints raw, minified and gzip bytes of every image in dist/ and writes dist/size.json, then the
memory figures of the footprint table (Puck.js on espruino32-2630, JerryScript board image on
jerry-lean) beside the previous release's figures (budgets/baseline.json) and the budgets
(budgets/budget.json). Engines are looked up in $E4_ENGINES and $PATH.

  --check   exit 1 when a figure is above its budget (with CI set: also when one could not be
            measured because its engine is absent)
  --help    this text (nothing is measured or written)
  --version the package's version`;

/** A protect and unprotect of 1,000 bytes through the JerryScript board image, on `engine`
 * (built with --mem-stats). Resolves its peak heap in bytes, or { missing } with the reason. */
export function jerryProtect1k(engine: string, imageFile = join(DIST, 'boards', 'jerryscript.min.js')): number | { missing: string } {
  const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-1k-'));
  try {
    const k = (b: string) => b.repeat(64);
    const code = `${readFileSync(imageFile, 'latin1')}
var c=E4.create({vault:E4.vault(),clock:{kind:"trusted",now:function(){return 1700000000;}}},{id:"${'00'.repeat(16)}",key:"${k('1')}",topics:[{topic:"t",key:"${k('2')}"}]},{replayCache:0});
var p=new Uint8Array(1000);for(var i=0;i<p.length;i++)p[i]=i&255;
var q=c.unprotect("t",c.protect("t",p));print("E4J1K "+(q.length===1000&&q[999]===(999&255)?"ok":"wrong"));`;
    writeFileSync(join(dir, 'p1k.js'), code);
    const r = spawnSync(engine, ['--mem-stats', join(dir, 'p1k.js')], { encoding: 'utf8', timeout: 120000 });
    if (r.status === 10) return { missing: 'runs out of memory (exit 10)' };
    const peak = /Peak allocated\s*=\s*(\d+)/.exec(r.stderr || '');
    if (r.status !== 0 || !/E4J1K ok/.test(r.stdout || '') || !peak)
      return { missing: `failed (exit ${r.status}) ${(r.stdout + r.stderr).trim().slice(-200)}` };
    return Number(peak[1]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The JerryScript board's life cycle (host-sim/tools/jerry-memory.ts: provisioning, messages,
 * C2 commands, a 1,000-byte message out and in) as a 64 KB port runs it: the image as a static
 * snapshot executed in place (jerry-lean-snap, made by jerry-snapshot-lean). Peak bytes, or
 * { missing } with the reason.
 */
function jerryLife(): number | { missing: string } {
  const tools = { snapEngine: engineIfPresent('jerry-lean-snap'), generator: findTool('jerry-snapshot-lean') };
  if (!tools.snapEngine || !tools.generator) return { missing: 'jerry-lean-snap or jerry-snapshot-lean not found' };
  const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-life-'));
  try {
    const r = measure('static', { image: join(DIST, 'boards', 'jerryscript.min.js'), tools, dir });
    return r.ok && r.peak ? r.peak : { missing: `the life cycle failed (exit ${r.status})` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The memory figures of the footprint table measured on the engines present. */
export async function memoryFigures(log: (m: string) => void = () => {}): Promise<Measured> {
  const out: Measured = {};
  const esp = engineIfPresent('espruino32-2630');
  const puck = join(DIST, 'boards', 'espruino-puckjs.min.js');
  if (!esp) out['puck.bootVars'] = out['puck.peakVars'] = { missing: 'espruino32-2630 not found' };
  else if (!existsSync(puck)) out['puck.bootVars'] = out['puck.peakVars'] = { missing: 'no dist/boards/espruino-puckjs.min.js' };
  else {
    try {
      const m = await puckMemory({ engine: esp, imageFile: puck });
      out['puck.bootVars'] = m.boot;
      out['puck.peakVars'] = m.peak;
      log(
        `Puck.js (${esp}): ${m.boot} vars after boot, ${m.after} after a 64-byte protect/unprotect; peak ${m.peak256} during a 256-byte protect+unprotect; C2: ${Object.entries(
          m.peakCommands,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')} (interpreter alone ${m.base} of ${m.total})`,
      );
    } catch (e) {
      out['puck.bootVars'] = out['puck.peakVars'] = { missing: e instanceof Error ? e.message : String(e) };
    }
  }
  const jerry = engineIfPresent('jerry-lean');
  out['jerry.protect1kPeakBytes'] = jerry ? jerryProtect1k(jerry) : { missing: 'jerry-lean not found' };
  out['jerry.lifePeakBytes'] = jerryLife();
  return out;
}

async function main(argv = process.argv.slice(2)) {
  const answered = answerHelpOrVersion(argv, USAGE);
  if (answered !== null) return answered;
  const unknown = argv.filter((a) => a !== '--check');
  if (unknown.length) {
    console.error(`size: unknown argument ${unknown[0]} (see npm run size -- --help)`);
    return 2;
  }
  const files = imageFiles();
  if (!files.length) {
    console.error('size: no image in dist/: run `npm run build` first');
    return 1;
  }
  const report = await writeSizeReport();
  console.log(formatReport(report));
  console.log(`written ${relative(ROOT, join(DIST, 'size.json'))}`);
  console.log('');
  const figures = await memoryFigures((m) => console.log(m));
  const { lines, failures } = figureTable('size', figures);
  console.log(lines.join('\n'));
  if (argv.includes('--check')) {
    for (const f of failures) console.log(`size: FAIL ${f}`);
    console.log(`size: ${failures.length ? 'over budget' : 'every figure within budget'}`);
    return failures.length ? 1 : 0;
  }
  return 0;
}

if (isMain(import.meta.url)) main().then((code) => process.exit(code));
