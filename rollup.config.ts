// Pinned dependency rewrites (build/deps.ts): only @noble/hashes sha3.js (BigInt round constants) and utils.js (two ES2015 calls).
/**
 * ES5 images (docs/image.md): dist/e4.js (portable: firmware/index.ts) and dist/boards/<board>.js
 * (one per boards/<board>/main.ts), each with a minified dist/...min.js (build/minify.ts).
 *
 * Every module, dependencies included, is lowered to ES5 by TypeScript; pinned rewrites
 * (build/deps.ts) remove what cannot run on the targets; each image is checked statically
 * (build/check.ts) and the build fails on any finding.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { OutputChunk, OutputOptions, Plugin, RollupOptions } from 'rollup';
import { resolveSources, lowerToES5 } from './build/es5.ts';
import { pinnedRewrites } from './build/deps.ts';
import { assertImage } from './build/check.ts';
import { minifyImage, TERSER_OPTIONS } from './build/minify.ts';
import { minifyUnwrapped } from './build/unwrap.ts';
import { listImages, minFile } from './build/images.ts';
import type { ImageSpec } from './build/images.ts';
import { writeSizeReport } from './build/size-report.ts';
import { jerrySnapshots } from './build/jerry-snapshot.ts';

/** One build per image: its entry, its plugins (in order) and its output. */
export interface ImageConfig extends RollupOptions {
  input: string;
  plugins: Plugin[];
  output: OutputOptions;
}

/** Checks the image, writes the minified copy (checked too), and for the portable image marks
 * dist/ as CommonJS so that Node can require() the images. */
function finishImage(image: ImageSpec): Plugin {
  return {
    name: 'e4-finish-image',
    async generateBundle(_options, bundle) {
      const chunks = Object.values(bundle).filter((c): c is OutputChunk => c.type === 'chunk');
      if (chunks.length !== 1) this.error(`${image.name}: expected one chunk, got ${chunks.length}`);
      const chunk = chunks[0];
      const check = { allow: image.allow };
      rmSync(join(outDirOf(image), chunk.fileName + '.rejected'), { force: true });
      try {
        assertImage(chunk.code, chunk.fileName, check);
        if (image.minify) {
          const min = image.globalScope ? await minifyUnwrapped(chunk.code, TERSER_OPTIONS) : await minifyImage(chunk.code);
          assertImage(min, minFile(chunk.fileName), check);
          this.emitFile({ type: 'asset', fileName: minFile(chunk.fileName), source: min });
        }
      } catch (e) {
        // Keep the rejected text for inspection (dist/ is not committed).
        mkdirSync(outDirOf(image), { recursive: true });
        writeFileSync(join(outDirOf(image), chunk.fileName + '.rejected'), chunk.code);
        this.error(
          (e instanceof Error ? e.message : String(e)) + `\n(the rejected image is kept as ${outDirOf(image)}/${chunk.fileName}.rejected)`,
        );
      }
      if (image.name === 'e4') {
        this.emitFile({ type: 'asset', fileName: 'package.json', source: '{ "type": "commonjs" }\n' });
      }
    },
  };
}

function outDirOf(image: ImageSpec): string {
  return image.name.startsWith('boards/') ? 'dist/boards' : 'dist';
}

function config(image: ImageSpec): ImageConfig {
  const outDir = outDirOf(image);
  const g = image.globalName;
  return {
    input: image.input,
    plugins: [resolveSources(), pinnedRewrites(), lowerToES5(), finishImage(image), ...(image.snapshot ? [jerrySnapshots()] : [])],
    onwarn(warning, warn) {
      // TypeScript's ES5 helpers start with `this && this.__extends`: harmless at module level.
      if (warning.code === 'THIS_IS_UNDEFINED') return;
      if (warning.code === 'UNRESOLVED_IMPORT' || warning.code === 'MISSING_EXPORT') throw new Error(warning.message);
      warn(warning);
    },
    output: {
      dir: outDir,
      entryFileNames: basename(image.file),
      format: 'iife',
      name: g,
      exports: 'named',
      freeze: false, // Object.freeze is missing on Espruino
      esModule: false,
      externalLiveBindings: false,
      generatedCode: { preset: 'es5', constBindings: false, arrowFunctions: false, objectShorthand: false, symbols: false },
      footer: `if (typeof module === "object" && module && typeof module.exports === "object") module.exports = ${g};`,
    },
  };
}

/** dist/size.json records the SHA-256 of every image (host-sim/shared/image.ts checks images against
 * it; build/size-report.ts): removed when a build starts, written again once every image is out. */
function sizeReport(first: boolean, last: boolean): Plugin {
  return {
    name: 'e4-size-report',
    buildStart() {
      if (first) rmSync(join('dist', 'size.json'), { force: true });
    },
    async writeBundle() {
      if (last) await writeSizeReport();
    },
  };
}

const images = listImages();
export default images.map((image, i): ImageConfig => {
  const c = config(image);
  c.plugins.push(sizeReport(i === 0, i === images.length - 1));
  return c;
});
