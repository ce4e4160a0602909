/**
 * JerryScript snapshots of an image (boards/jerryscript/README.md, "Snapshot"): a port that
 * executes the image's bytecode in place from flash keeps it out of the JavaScript heap.
 *
 * - `staticSnapshotLiterals(code)`: JerryScript's static snapshots hold integer literals only
 *   within ±2^27 (anything else is "Unsupported static snapshot literal"): larger ones are
 *   written as `(hi*67108864+lo)`, exact below 2^53. Applied to the minified image of a board
 *   with `"snapshot": true` in its board.json, so that the very file a port loads is also the one
 *   it can turn into a snapshot. A non-integer literal fails the build (none can be expressed).
 * - `makeSnapshots(image, outDir, generator)`: runs JerryScript's snapshot generator (the
 *   `jerry-snapshot` tool of the port's own JerryScript build: snapshots only run on an engine
 *   built with the same configuration). Makes `<name>.snapshot` (ordinary: copied into the heap
 *   when executed), `<name>.lit` (the snapshot's strings, litdump list format), `<name>.lit.h`
 *   (the same strings as the C table the port registers with jerry_register_magic_strings) and
 *   `<name>.static.snapshot` (executed in place, with those strings registered).
 * - `jerrySnapshots()`: the rollup plugin. The snapshots are an optional artifact: made when the
 *   generator is found (`$E4_JERRY_SNAPSHOT`, a name or a path, default `jerry-snapshot-lean`,
 *   the generator of the project's 64 KB reference configuration, looked up in $E4_ENGINES then
 *   $PATH); without it the build says so and goes on.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, rmSync, statSync } from 'node:fs';
import { basename, delimiter, isAbsolute, join, resolve } from 'node:path';
import * as acorn from 'acorn';
import type { AnyNode } from 'acorn';
import type { OutputAsset, Plugin } from 'rollup';
import { childNodes } from './estree.ts';

/** The snapshot files of an image (snapshotFiles, makeSnapshots). */
export interface SnapshotFiles {
  snapshot: string;
  literals: string;
  literalsC: string;
  staticSnapshot: string;
}

/** JerryScript's direct integers (ECMA_INTEGER_NUMBER_MAX with its default 32-bit values). */
const MAX_DIRECT = 134217727;
const SPLIT = 67108864; // 2^26: both halves of a number below 2^53 are direct integers

export function staticSnapshotLiterals(code: string): string {
  const ast = acorn.parse(code, { ecmaVersion: 5, sourceType: 'script', allowReserved: true });
  const edits: [start: number, end: number, text: string][] = [];
  const visit = (node: AnyNode, parent: AnyNode | null): void => {
    if (node.type === 'Literal' && typeof node.value === 'number' && node.value > MAX_DIRECT) {
      if (parent && parent.type === 'Property' && parent.key === node)
        throw new Error(`static snapshot: the property name ${node.raw} cannot be rewritten`);
      if (!Number.isInteger(node.value) || node.value >= 2 ** 53)
        throw new Error(`static snapshot: the number literal ${node.raw} cannot be expressed with direct integers`);
      const hi = Math.floor(node.value / SPLIT);
      edits.push([node.start, node.end, `(${hi}*${SPLIT}+${node.value - hi * SPLIT})`]);
    } else if (node.type === 'Literal' && typeof node.value === 'number' && !Number.isInteger(node.value)) {
      throw new Error(`static snapshot: the number literal ${node.raw} is not an integer (JerryScript static snapshots hold none)`);
    }
    for (const child of childNodes(node)) visit(child, node);
  };
  visit(ast, null);
  let out = code;
  for (const [s, e, text] of edits.sort((a, b) => b[0] - a[0])) out = out.slice(0, s) + text + out.slice(e);
  return out;
}

/** Whether `file` is a regular file this process may execute. */
export function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** A tool by name or path, looked up in $E4_ENGINES then $PATH; null when absent. */
export function findTool(name: string): string | null {
  if (name.includes('/')) {
    const file = isAbsolute(name) ? name : resolve(name);
    return executable(file) ? file : null;
  }
  const dirs = [...(process.env.E4_ENGINES || '').split(delimiter), ...(process.env.PATH || '').split(delimiter)].filter(Boolean);
  for (const dir of dirs) if (executable(join(dir, name))) return join(dir, name);
  return null;
}

export function snapshotGenerator(): string | null {
  return findTool(process.env.E4_JERRY_SNAPSHOT || 'jerry-snapshot-lean');
}

function run(generator: string, args: string[]): void {
  const r = spawnSync(generator, args, { encoding: 'utf8', timeout: 120000 });
  if (r.status !== 0)
    throw new Error(`${basename(generator)} ${args.join(' ')} failed (exit ${r.status}): ${(r.stdout + r.stderr).trim().slice(-500)}`);
}

/** The snapshot files of `image` (a .js file) in `outDir`, named after it without `.min.js`/`.js`. */
export function snapshotFiles(image: string, outDir: string): SnapshotFiles {
  const name = basename(image).replace(/(\.min)?\.js$/, '');
  return {
    snapshot: join(outDir, name + '.snapshot'),
    literals: join(outDir, name + '.lit'),
    literalsC: join(outDir, name + '.lit.h'),
    staticSnapshot: join(outDir, name + '.static.snapshot'),
  };
}

/** Makes the snapshot files of `image` in `outDir` (snapshotFiles) and returns their paths. */
export function makeSnapshots(image: string, outDir: string, generator: string): SnapshotFiles {
  const files = snapshotFiles(image, outDir);
  run(generator, ['generate', '-o', files.snapshot, image]);
  run(generator, ['litdump', '--format', 'list', '-o', files.literals, files.snapshot]);
  run(generator, ['litdump', '--format', 'c', '-o', files.literalsC, files.snapshot]);
  run(generator, ['generate', '--static', '--load-literals-list-format', files.literals, '-o', files.staticSnapshot, image]);
  return files;
}

/** The rollup plugin of a board image with `"snapshot": true` (see the top of this file). */
export function jerrySnapshots(): Plugin {
  let minName: string | null = null;
  return {
    name: 'e4-jerry-snapshots',
    generateBundle(_options, bundle) {
      const min = Object.values(bundle).find((o): o is OutputAsset => o.type === 'asset' && o.fileName.endsWith('.min.js'));
      if (!min) this.error('snapshot: the image has no minified copy to snapshot');
      min.source = staticSnapshotLiterals(String(min.source));
      minName = min.fileName;
    },
    writeBundle(options) {
      if (!options.dir || !minName) this.error('snapshot: the image was not written to an output directory');
      const generator = snapshotGenerator();
      const image = join(options.dir, minName);
      if (!generator) {
        // Snapshots of an earlier image would not match this one (a mismatch crashes the engine).
        for (const f of Object.values(snapshotFiles(image, options.dir))) rmSync(f, { force: true });
        console.log(
          `${image}: no JerryScript snapshot generator (${process.env.E4_JERRY_SNAPSHOT || 'jerry-snapshot-lean'} in $E4_ENGINES or $PATH): snapshots not made (optional)`,
        );
        return;
      }
      const files = makeSnapshots(image, options.dir, generator);
      console.log(
        `${image}: snapshots ${Object.values(files)
          .map((f) => basename(f))
          .join(', ')} (${basename(generator)})`,
      );
    },
  };
}
