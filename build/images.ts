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
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './es5.ts';
import { isRecord, readJson } from './json.ts';

/** One ES5 image the build makes. */
export interface ImageSpec {
  /** `e4`, `link` or `boards/<board>` */
  name: string;
  /** the entry module */
  input: string;
  /** the readable image; the minified one is minFile(file) */
  file: string;
  globalName: string;
  minify: boolean;
  allow: string[];
  snapshot?: boolean;
  globalScope?: boolean;
}

const BOARD_KEYS = ['globalName', 'minify', 'allow', 'description', 'snapshot', 'globalScope'];

const isString = (v: unknown): v is string => typeof v === 'string';
const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean';
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);

/** The setting `key` of a board.json (undefined when absent); one of the wrong type fails the build. */
function setting<T>(file: string, cfg: Record<string, unknown>, key: string, is: (v: unknown) => v is T): T | undefined {
  const value = cfg[key];
  if (value === undefined) return undefined;
  if (!is(value)) throw new Error(`${file}: "${key}" has the wrong type (${JSON.stringify(value)})`);
  return value;
}

export function listImages(): ImageSpec[] {
  const images: ImageSpec[] = [
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
    const cfg = existsSync(cfgFile) ? readJson(cfgFile) : {};
    if (!isRecord(cfg)) throw new Error(`${cfgFile}: not a JSON object`);
    for (const k of Object.keys(cfg)) {
      if (!BOARD_KEYS.includes(k)) throw new Error(`${cfgFile}: unknown setting "${k}" (known: ${BOARD_KEYS.join(', ')})`);
    }
    images.push({
      name: 'boards/' + board,
      input,
      file: join(root, 'dist/boards', board + '.js'),
      globalName: setting(cfgFile, cfg, 'globalName', isString) || 'E4',
      minify: setting(cfgFile, cfg, 'minify', isBoolean) !== false,
      allow: setting(cfgFile, cfg, 'allow', isStringList) || [],
      snapshot: setting(cfgFile, cfg, 'snapshot', isBoolean) === true,
      globalScope: setting(cfgFile, cfg, 'globalScope', isBoolean) === true,
    });
  }
  return images;
}

/** dist/<name>.min.js next to dist/<name>.js */
export function minFile(file: string): string {
  return file.replace(/\.js$/, '.min.js');
}
