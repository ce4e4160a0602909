#!/usr/bin/env node
/**
 * `npm run size`: raw, minified and gzip bytes of every image in dist/ (dist/*.js and
 * dist/boards/*.js; a `.min.js` belongs to the image beside it), written to dist/size.json with the
 * SHA-256 of each file (host-sim/image.mjs checks images against it). An image without a
 * `.min.js` is minified here with the build's own settings to report its minified size.
 * The build writes the same report after every `npm run build`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { minifyImage } from '../../build/minify.mjs';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
export const DIST = join(ROOT, 'dist');

/** The portable image target (docs/image.md); reported, not enforced. */
export const TARGET_MIN_BYTES = 20 * 1024;

function fileInfo(file) {
  const bytes = readFileSync(file);
  return {
    file: relative(DIST, file),
    bytes: bytes.length,
    gzip: gzipSync(bytes, { level: 9 }).length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

/** Image files (readable ones) under dist/ and dist/boards/. */
export function imageFiles(dist = DIST) {
  const out = [];
  for (const dir of [dist, join(dist, 'boards')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).sort()) {
      if (name.endsWith('.js') && !name.endsWith('.min.js')) out.push(join(dir, name));
    }
  }
  return out;
}

export async function sizeReport(dist = DIST) {
  const images = [];
  for (const file of imageFiles(dist)) {
    const raw = fileInfo(file);
    const minFile = file.replace(/\.js$/, '.min.js');
    let min;
    if (existsSync(minFile)) min = fileInfo(minFile);
    else {
      const code = Buffer.from(await minifyImage(readFileSync(file, 'utf8')));
      min = { file: null, bytes: code.length, gzip: gzipSync(code, { level: 9 }).length, sha256: null };
    }
    images.push({ image: raw.file.replace(/\.js$/, ''), raw, min });
  }
  return { generated: new Date().toISOString(), targetMinBytes: TARGET_MIN_BYTES, images };
}

export async function writeSizeReport(dist = DIST) {
  const report = await sizeReport(dist);
  writeFileSync(join(dist, 'size.json'), JSON.stringify(report, null, 2) + '\n');
  return report;
}

export function formatReport(report) {
  const rows = [['image', 'raw', 'raw gzip', 'min', 'min gzip', 'min file']];
  for (const i of report.images) {
    rows.push([i.image, i.raw.bytes, i.raw.gzip, i.min.bytes, i.min.gzip, i.min.file || '(not written)'].map(String));
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) => r.map((v, c) => (c === 0 || c === 5 ? v.padEnd(w[c]) : v.padStart(w[c]))).join('  '));
  const portable = report.images.find((i) => i.image === 'e4');
  if (portable) {
    const ok = portable.min.bytes <= report.targetMinBytes;
    lines.push(`portable image: ${portable.min.bytes} bytes minified (${(portable.min.bytes / 1024).toFixed(1)} KB), target ≤ ${report.targetMinBytes} bytes: ${ok ? 'met' : 'NOT met'}`);
  }
  return lines.join('\n');
}

async function main() {
  const files = imageFiles();
  if (!files.length) {
    console.error('size: no image in dist/: run `npm run build` first');
    process.exit(1);
  }
  const report = await writeSizeReport();
  console.log(formatReport(report));
  console.log(`written ${relative(ROOT, join(DIST, 'size.json'))}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
