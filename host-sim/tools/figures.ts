/**
 * The footprint table of `npm run size` and `npm run bench` (issue 10): each figure measured now,
 * beside the figure recorded for the previous release (budgets/baseline.json), its budget
 * (budgets/budget.json: memory counts and ratios, never absolute times) and the goal. `--check`
 * makes the tool exit 1 when a measured figure is above its budget; a figure that could not be
 * measured (engine absent) is reported, not failed, except under CI (`CI` set), where it fails.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

/** Every figure of the table: which tool measures it and what it is. */
export const FIGURES: Figure[] = [
  { id: 'puck.bootVars', tool: 'size', label: 'Puck.js image, espruino32-2630: runtime after boot, 4 topics', unit: 'vars' },
  { id: 'puck.peakVars', tool: 'size', label: 'same, peak during a 256-byte protect+unprotect and each C2 command', unit: 'vars' },
  {
    id: 'jerry.lifePeakBytes',
    tool: 'size',
    label: 'JerryScript board life cycle with 1 KB out and in, 64 KB heap, static snapshot: peak',
    unit: 'bytes',
  },
  {
    id: 'jerry.protect1kPeakBytes',
    tool: 'size',
    label: 'JerryScript board image from source, jerry-lean: protect+unprotect of 1,000 bytes, peak',
    unit: 'bytes',
  },
  { id: 'native.protectRatio', tool: 'bench', label: 'native-vault protect 64 B, espruino-o2: time vs the reference image', unit: '×' },
  { id: 'native.unprotectRatio', tool: 'bench', label: 'native-vault unprotect 64 B, espruino-o2: time vs the reference image', unit: '×' },
  { id: 'duk.protect1kRatio', tool: 'bench', label: 'portable vault on duk, protect 1 KB: time vs raw noble aessiv', unit: '×' },
  { id: 'duk.unprotect1kRatio', tool: 'bench', label: 'portable vault on duk, unprotect 1 KB: time vs raw noble aessiv', unit: '×' },
];

/** One figure of the table: the tool that measures it, what it is, and its unit. */
export interface Figure {
  id: string;
  tool: 'size' | 'bench';
  label: string;
  unit: 'vars' | 'bytes' | '×';
}

/** A figure as measured by a tool: its value, or why it could not be measured. */
export type Measured = Record<string, number | { missing: string }>;

/** The previous release's figures (null: not measured then), the budgets and the goals. */
export interface Budgets {
  release: string;
  baseline: Record<string, number | null>;
  notes: Record<string, string>;
  budget: Record<string, number>;
  goal: Record<string, number>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `v[key]` when it is an object whose values are numbers (or null where `nulls`); throws otherwise. */
function figuresIn(file: string, v: Record<string, unknown>, key: string, nulls: true): Record<string, number | null>;
function figuresIn(file: string, v: Record<string, unknown>, key: string, nulls?: false): Record<string, number>;
function figuresIn(file: string, v: Record<string, unknown>, key: string, nulls = false): Record<string, number | null> {
  const o = v[key];
  if (!isRecord(o)) throw new Error(`${file}: "${key}" is not an object`);
  const out: Record<string, number | null> = {};
  for (const [id, x] of Object.entries(o)) {
    if (typeof x === 'number' || (nulls && x === null)) out[id] = x;
    else throw new Error(`${file}: ${key}.${id} is not a number`);
  }
  return out;
}

export function loadBudgets(root = ROOT): Budgets {
  const read = (name: string) => {
    const v: unknown = JSON.parse(readFileSync(join(root, 'budgets', name), 'utf8'));
    if (!isRecord(v)) throw new Error(`budgets/${name}: not a JSON object`);
    return v;
  };
  const baseline = read('baseline.json');
  const budget = read('budget.json');
  const notes: Record<string, string> = {};
  if (isRecord(baseline.notes)) for (const [id, n] of Object.entries(baseline.notes)) notes[id] = String(n);
  return {
    release: String(baseline.release),
    baseline: figuresIn('budgets/baseline.json', baseline, 'figures', true),
    notes,
    budget: figuresIn('budgets/budget.json', budget, 'budget'),
    goal: figuresIn('budgets/budget.json', budget, 'goal'),
  };
}

const show = (v: number | string | null | undefined, unit: Figure['unit']) =>
  v === null || v === undefined ? '–' : typeof v === 'string' ? v : unit === '×' ? v.toFixed(2) : Math.round(v).toLocaleString('en-US');

/**
 * `measured`: { id: number | { missing: reason } } for the figures of `tool`. Returns the table's
 * lines and the list of failures (a figure over budget; under CI also a figure not measured).
 */
export function figureTable(
  tool: Figure['tool'],
  measured: Measured,
  { ci = !!process.env.CI, budgets = loadBudgets() }: { ci?: boolean; budgets?: Budgets } = {},
): { lines: string[]; failures: string[] } {
  const rows = [['figure', `${budgets.release}`, 'now', 'budget', 'goal', '']];
  const failures = [];
  for (const f of FIGURES.filter((x) => x.tool === tool)) {
    const m = measured[f.id];
    const now = typeof m === 'number' ? m : null;
    const budget = budgets.budget[f.id];
    const goal = budgets.goal[f.id];
    let status: string;
    if (now === null) {
      status = 'not measured: ' + ((m && typeof m === 'object' && m.missing) || 'no result');
      if (ci && budget !== undefined) failures.push(`${f.id}: ${status}`);
    } else {
      const base = budgets.baseline[f.id];
      if (budget !== undefined && now > budget) {
        status = 'OVER BUDGET';
        failures.push(`${f.id}: ${show(now, f.unit)} > budget ${show(budget, f.unit)}`);
      } else status = goal !== undefined && now <= goal ? 'goal met' : budget === undefined ? 'no budget' : 'within budget';
      if (typeof base === 'number' && now > base) status += ', worse than ' + budgets.release;
    }
    rows.push([
      `${f.label} (${f.unit})`,
      show(budgets.baseline[f.id], f.unit),
      show(now, f.unit),
      show(budget, f.unit),
      show(goal, f.unit),
      status,
    ]);
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) =>
    r
      .map((v, c) => (c === 0 || c === 5 ? v.padEnd(w[c]) : v.padStart(w[c])))
      .join('  ')
      .trimEnd(),
  );
  return { lines, failures };
}
