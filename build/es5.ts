/**
 * Rollup plugins that turn the TypeScript sources and their dependencies into ES5:
 * - `resolveSources`: resolves extensionless TypeScript imports and bare package imports
 *   (without a general node-resolve plugin) and honours a package's `"sideEffects": false`;
 * - `lowerToES5`: runs `ts.transpileModule` with target ES5 on every module, our .ts files and
 *   node_modules .js alike. @rollup/plugin-typescript only lowers the files of the TS program, so
 *   dependencies would keep their ES2022 syntax; one transform for all keeps the output uniform.
 *   Type checking is `npm run typecheck`'s job.
 */
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plugin } from 'rollup';
import ts from 'typescript';
import { isRecord, readJson } from './json.ts';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const TS_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES5,
  module: ts.ModuleKind.ESNext,
  importHelpers: false,
  noEmitHelpers: false,
  downlevelIteration: false,
  isolatedModules: true,
  removeComments: false,
  sourceMap: false,
  esModuleInterop: false,
  useDefineForClassFields: false,
};

function tryFile(base: string): string | null {
  for (const cand of [base, base + '.ts', join(base, 'index.ts')]) {
    if (existsSync(cand) && statSync(cand).isFile()) return cand;
  }
  return null;
}

const sideEffectsCache = new Map<string, boolean>();
function packageSideEffects(file: string): boolean {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    const pj = join(dir, 'package.json');
    if (!existsSync(pj)) continue;
    let sideEffects = sideEffectsCache.get(pj);
    if (sideEffects === undefined) {
      const manifest = readJson(pj);
      sideEffects = !(isRecord(manifest) && manifest.sideEffects === false);
      sideEffectsCache.set(pj, sideEffects);
    }
    return sideEffects;
  }
  return true;
}

export function resolveSources(): Plugin {
  return {
    name: 'e4-resolve',
    resolveId(source, importer) {
      if (source.startsWith('\0')) return null;
      if (!importer) return resolve(root, source);
      if (source.startsWith('.') || source.startsWith('/')) {
        const found = tryFile(resolve(dirname(importer), source));
        return found ? { id: found, moduleSideEffects: packageSideEffects(found) } : null;
      }
      // A virtual module (id starting with \0) resolves packages from the project root.
      const req = createRequire(importer.startsWith('\0') ? join(root, 'package.json') : importer);
      const id = req.resolve(source);
      return { id, moduleSideEffects: packageSideEffects(id) };
    },
  };
}

export function lowerToES5(): Plugin {
  return {
    name: 'e4-lower-es5',
    transform(code, id) {
      if (!/\.(ts|js|mjs)$/.test(id) || id.endsWith('.d.ts')) return null;
      const out = ts.transpileModule(code, { compilerOptions: TS_OPTIONS, fileName: id, reportDiagnostics: true });
      const errors = (out.diagnostics || []).filter((d) => d.category === ts.DiagnosticCategory.Error);
      if (errors.length) this.error(ts.flattenDiagnosticMessageText(errors[0].messageText, '\n') + ' in ' + id);
      // TypeScript's inline helpers read `(this && this.__awaiter) || function ...`; in a module
      // `this` is undefined, and rollup cannot drop an unused helper whose initializer reads a
      // property of it. Without the dead test an unused helper is tree-shaken.
      const code2 = out.outputText.replace(/\(this && this\.(__\w+)\) \|\| /g, '');
      return { code: code2, map: null };
    },
  };
}
