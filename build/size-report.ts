/**
 * dist/size.json: raw, minified and gzip bytes and the SHA-256 of every image in dist/ (dist/*.js
 * and dist/boards/*.js; a `.min.js` belongs to the image beside it). The build writes it once
 * every image is out (rollup.config.ts); host-sim/shared/image.ts checks images against the hashes;
 * `npm run size` (host-sim/tools/size.ts) prints and rewrites it. An image without a `.min.js`
 * is minified here with the build's own settings to report its minified size.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { root } from './es5.ts';
import { minifyImage } from './minify.ts';

export const DIST = join(root, 'dist');

/** dist/size.json: bytes of each image, readable (`raw`) and minified (`min`, file null when
 * minified here only to be measured). */
export interface SizeReport {
  generated: string;
  targetMinBytes: number;
  images: { image: string; raw: FileSize; min: FileSize }[];
}
export interface FileSize {
  file: string | null;
  bytes: number;
  gzip: number;
  sha256: string | null;
}

/** The portable image target (docs/image.md); reported, not enforced. */
export const TARGET_MIN_BYTES = 20 * 1024;

function fileInfo(file: string): FileSize & { file: string } {
  const bytes = readFileSync(file);
  return {
    file: relative(DIST, file),
    bytes: bytes.length,
    gzip: gzipSync(bytes, { level: 9 }).length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

/** Image files (readable ones) under dist/ and dist/boards/. */
export function imageFiles(dist: string = DIST): string[] {
  const out: string[] = [];
  for (const dir of [dist, join(dist, 'boards')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).sort()) {
      if (name.endsWith('.js') && !name.endsWith('.min.js')) out.push(join(dir, name));
    }
  }
  return out;
}

export async function sizeReport(dist: string = DIST): Promise<SizeReport> {
  const images: SizeReport['images'] = [];
  for (const file of imageFiles(dist)) {
    const raw = fileInfo(file);
    const minFile = file.replace(/\.js$/, '.min.js');
    let min: FileSize;
    if (existsSync(minFile)) min = fileInfo(minFile);
    else {
      const code = Buffer.from(await minifyImage(readFileSync(file, 'utf8')));
      min = { file: null, bytes: code.length, gzip: gzipSync(code, { level: 9 }).length, sha256: null };
    }
    images.push({ image: raw.file.replace(/\.js$/, ''), raw, min });
  }
  return { generated: new Date().toISOString(), targetMinBytes: TARGET_MIN_BYTES, images };
}

export async function writeSizeReport(dist: string = DIST): Promise<SizeReport> {
  const report = await sizeReport(dist);
  writeFileSync(join(dist, 'size.json'), JSON.stringify(report, null, 2) + '\n');
  return report;
}
