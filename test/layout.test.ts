/**
 * The tree says what runs where (README "What is where", host-sim/README.md): imports point
 * down only, device code imports nothing from the host, the build imports no host tool, and the
 * host side is TypeScript but for the code that must run inside an ES5 engine.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = join(__dirname, '..');

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...filesUnder(rel));
    else out.push(rel);
  }
  return out;
}

/** Repository-relative paths of the local modules a source file imports (static and dynamic). */
function localImports(file: string): string[] {
  const src = readFileSync(join(ROOT, file), 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)) {
    out.push(relative(ROOT, resolve(ROOT, dirname(file), m[1])));
  }
  return out;
}

const HOST_LAYERS: Record<string, string[]> = {
  'host-sim/shared': ['host-sim/shared'],
  'host-sim/sim': ['host-sim/shared', 'host-sim/sim'],
  'host-sim/services': ['host-sim/shared', 'host-sim/services'],
  'host-sim/c2': ['host-sim/shared', 'host-sim/c2'],
};

describe('the layout', () => {
  it('host-sim layers import only their own folder and shared/ (tools/ and fleet.ts may import any)', () => {
    const wrong: string[] = [];
    for (const [layer, allowed] of Object.entries(HOST_LAYERS)) {
      for (const f of filesUnder(layer).filter((f) => f.endsWith('.ts'))) {
        for (const target of localImports(f)) {
          if (target.startsWith('host-sim/') && !allowed.some((a) => target.startsWith(a + '/'))) wrong.push(`${f} -> ${target}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('device code (firmware/, boards/) and the build import nothing from host-sim/ or test/', () => {
    const wrong: string[] = [];
    for (const f of [...filesUnder('firmware'), ...filesUnder('boards'), ...filesUnder('build')].filter((f) => /\.(ts|mjs|js)$/.test(f))) {
      for (const target of localImports(f)) if (/^(host-sim|test)\//.test(target)) wrong.push(`${f} -> ${target}`);
    }
    for (const target of localImports('rollup.config.ts'))
      if (/^(host-sim|test)\//.test(target)) wrong.push(`rollup.config.ts -> ${target}`);
    expect(wrong).toEqual([]);
  });

  it('firmware/ imports no board code: the core reaches the platform only through firmware/hal.ts', () => {
    const wrong = filesUnder('firmware').flatMap((f) =>
      localImports(f)
        .filter((t) => t.startsWith('boards/'))
        .map((t) => `${f} -> ${t}`),
    );
    expect(wrong).toEqual([]);
  });

  it('host-sim/ is TypeScript; its only JavaScript runs elsewhere than Node (an ES5 engine, the browser) and says so in its first line', () => {
    const js = filesUnder('host-sim').filter((f) => /\.(mjs|cjs|js)$/.test(f));
    for (const f of js) {
      const first = readFileSync(join(ROOT, f), 'utf8').split('\n')[0];
      if (f.startsWith('host-sim/sim/')) expect(first, f).toMatch(/ES5/);
      else if (f.startsWith('host-sim/c2/dashboard/')) expect(first, f).toMatch(/Browser code/);
      else expect.fail(`${f}: host code is TypeScript`);
    }
  });
});
