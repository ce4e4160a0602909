/**
 * The footprint table of `npm run size` / `npm run bench` (host-sim/tools/figures.ts) and their
 * `--check` and `--help`: a figure over its budget fails the check, a figure not measured fails
 * it only under CI, the budget file covers every figure it bounds, and `--help` prints the usage
 * without measuring or writing anything.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FIGURES, figureTable, loadBudgets } from '../host-sim/tools/figures.ts';
import { speedFigures } from '../host-sim/tools/bench.ts';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const ROOT = join(__dirname, '..');
const budgets = {
  release: '0.1.0',
  baseline: { 'puck.bootVars': 1718 },
  budget: { 'puck.bootVars': 1460, 'puck.peakVars': 1960 },
  goal: { 'puck.bootVars': 1000, 'puck.peakVars': 1100 },
  notes: {},
};

describe('footprint table', () => {
  it('fails a figure above its budget and passes one at or below it', () => {
    const over = figureTable('size', { 'puck.bootVars': 1461, 'puck.peakVars': 1960 }, { ci: false, budgets });
    expect(over.failures).toEqual(['puck.bootVars: 1,461 > budget 1,460']);
    expect(over.lines.join('\n')).toContain('OVER BUDGET');
    const ok = figureTable('size', { 'puck.bootVars': 1460, 'puck.peakVars': 1000 }, { ci: false, budgets });
    expect(ok.failures).toEqual([]);
  });

  it('shows the previous release beside the figure and marks a regression against it', () => {
    const t = figureTable(
      'size',
      { 'puck.bootVars': 1450, 'puck.peakVars': 1000 },
      { ci: false, budgets: { ...budgets, baseline: { 'puck.bootVars': 1400 } } },
    );
    const row = t.lines.find((l) => l.startsWith('Puck.js image'));
    expect(row).toMatch(/1,400\s+1,450\s+1,460\s+1,000\s+within budget, worse than 0\.1\.0/);
  });

  it('reports a figure that was not measured, and fails it only under CI', () => {
    const m = { 'puck.bootVars': { missing: 'espruino32-2630 not found' }, 'puck.peakVars': 1000 };
    expect(figureTable('size', m, { ci: false, budgets }).failures).toEqual([]);
    expect(figureTable('size', m, { ci: true, budgets }).failures).toEqual(['puck.bootVars: not measured: espruino32-2630 not found']);
  });

  it('the budget and baseline files of the repository name only known figures, and bound only counts and ratios', () => {
    const b = loadBudgets();
    const ids = new Set(FIGURES.map((f) => f.id));
    for (const id of [...Object.keys(b.budget), ...Object.keys(b.goal), ...Object.keys(b.baseline)])
      expect(ids.has(id) || id === 'puck.after64Vars').toBe(true);
    for (const f of FIGURES) if (b.budget[f.id] !== undefined) expect(['vars', 'bytes', '×']).toContain(f.unit);
  });

  it('takes the duk figures from the 1 KB row of this run', () => {
    const f = speedFigures([{ engine: 'duk', rows: [{ size: 1024, protect: 100, rawSeal: 150, unprotect: 100, rawOpen: 120 }] }]);
    expect(f['duk.protect1kRatio']).toBeCloseTo(1.5);
    expect(f['duk.unprotect1kRatio']).toBeCloseTo(1.2);
    expect(speedFigures([{ engine: 'node', rows: [] }])['duk.protect1kRatio']).toHaveProperty('missing');
  });

  it('takes the median of the per-round ratios when the engine reports them (one disturbed round does not move it)', () => {
    const ratios: [number, number][] = [
      [1.9, 1.8],
      [1.95, 1.85],
      [3.5, 0.9],
      [2.0, 1.9],
      [1.92, 1.88],
    ];
    const f = speedFigures([{ engine: 'duk', rows: [{ size: 1024, protect: 100, rawSeal: 300, unprotect: 100, rawOpen: 300, ratios }] }]);
    expect(f['duk.protect1kRatio']).toBeCloseTo(1.95);
    expect(f['duk.unprotect1kRatio']).toBeCloseTo(1.85);
  });
});

describe('size and bench --help', () => {
  for (const tool of ['size.ts', 'bench.ts']) {
    it(`${tool} --help prints the usage and writes nothing`, () => {
      const sizeFile = join(ROOT, 'dist', 'size.json');
      const before = existsSync(sizeFile) ? statSync(sizeFile).mtimeMs : null;
      const r = spawnSync(process.execPath, [...TS_NODE, join(ROOT, 'host-sim/tools', tool), '--help'], {
        encoding: 'utf8',
        timeout: 30000,
      });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^usage: npm run/);
      expect(r.stdout).toContain('--check');
      expect(existsSync(sizeFile) ? statSync(sizeFile).mtimeMs : null).toBe(before);
    });
  }
});
