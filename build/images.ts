/**
 * The list of ES5 images the build makes: the portable image (firmware/index.ts -> dist/e4.js),
 * the link codec (firmware/link/frame.ts -> dist/link.js)
 * and one per board that has an entry boards/<board>/main.ts (-> dist/boards/<board>.js).
 * A board may hold boards/<board>/board.json with per-image settings:
 *   { "globalName": "E4",      // global the image defines (default "E4")
 *     "minify": true,          // also write <name>.min.js (default true)
 *     "allow": ["require"],    // forbidden globals this image may reference (see build/check.ts)
 *     "globalScope": false,    // the .min.js runs at global scope, unwrapped (build/unwrap.ts)
 *     "snapshot": true }       // JerryScript: a minified image a static snapshot can hold, and
 *                              // the snapshots when the generator is found (build/jerry-snapshot.ts)
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './es5.ts';

const BOARD_KEYS = ['globalName', 'minify', 'allow', 'description', 'snapshot', 'globalScope'];

export function listImages() {
  const images = [
    {
      name: 'e4',
      input: join(root, 'firmware/index.ts'),
      file: join(root, 'dist/e4.js'),
      globalName: 'E4',
      minify: true,
      allow: [],
    },
    {
      // The framed serial/BLE-UART link codec (docs/link.md) on its own: the gateway and
      // simulated link devices load it beside the portable image, which stays core + vault.
      name: 'link',
      input: join(root, 'firmware/link/frame.ts'),
      file: join(root, 'dist/link.js'),
      globalName: 'E4Link',
      minify: true,
      allow: [],
    },
  ];
  const boardsDir = join(root, 'boards');
  if (!existsSync(boardsDir)) return images;
  for (const board of readdirSync(boardsDir).sort()) {
    const input = join(boardsDir, board, 'main.ts');
    if (!existsSync(input)) continue;
    const cfgFile = join(boardsDir, board, 'board.json');
    const cfg = existsSync(cfgFile) ? JSON.parse(readFileSync(cfgFile, 'utf8')) : {};
    for (const k of Object.keys(cfg)) {
      if (!BOARD_KEYS.includes(k)) throw new Error(`${cfgFile}: unknown setting "${k}" (known: ${BOARD_KEYS.join(', ')})`);
    }
    images.push({
      name: 'boards/' + board,
      input,
      file: join(root, 'dist/boards', board + '.js'),
      globalName: cfg.globalName || 'E4',
      minify: cfg.minify !== false,
      allow: cfg.allow || [],
      snapshot: cfg.snapshot === true,
      globalScope: cfg.globalScope === true,
    });
  }
  return images;
}

/** dist/<name>.min.js next to dist/<name>.js */
export function minFile(file) {
  return file.replace(/\.js$/, '.min.js');
}
