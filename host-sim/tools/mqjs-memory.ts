#!/usr/bin/env node
/**
 * `npm run mqjs-memory -- [--image dist/e4.min.js] [--bytes 256] [--json FILE]`
 *
 * The smallest MicroQuickJS memory limit (`mqjs --memory-limit`, the one buffer that holds its
 * whole heap) at which the portable image provisions a client and runs a protect + unprotect of
 * `--bytes` bytes: once with the image as source, once as bytecode compiled by `mqjs -o` and run
 * with `-b` (bytecode outside the heap, as from ROM on a device). MicroQuickJS has no peak
 * counter, so the figure is found by bisection to 1 KB. `mqjs` is found through $E4_ENGINES or
 * $PATH (host-sim/tools/engines.ts). Work files go to a temporary folder.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { absentReason, engineIfPresent } from './engines.ts';
import { packageVersion, runIfMain } from '../shared/cli.ts';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const OK = '@@E4MQ ok';
const USAGE = `usage: npm run mqjs-memory -- [--image FILE] [--bytes N] [--json FILE]
  --image  the portable image (default dist/e4.min.js)
  --bytes  payload of the protect + unprotect (default 256)
  --json   also write the figures to FILE`;

/** The script: the image, then one client's provisioning and a protect/unprotect round trip. */
export function roundTripScript(imageCode: string, bytes: number): string {
  return `${imageCode}
(function () {
  var v = E4.vault(), k = new Uint8Array(32), pt = new Uint8Array(${bytes}), i;
  for (i = 0; i < 32; i++) k[i] = i + 1;
  for (i = 0; i < pt.length; i++) pt[i] = i & 255;
  var c = E4.create({ vault: v, store: E4.memoryStore() }, { id: E4.clientId(v, "mqjs"), key: k, topics: [{ topic: "m/t", key: k }] }, {});
  var back = c.unprotect("m/t", c.protect("m/t", pt));
  var same = back && back.length === pt.length;
  for (i = 0; same && i < pt.length; i++) same = back[i] === pt[i];
  print(same ? "${OK}" : "@@E4MQ wrong result");
})();
`;
}

function runs(mqjs: string, args: string[]): boolean {
  const r = spawnSync(mqjs, args, { encoding: 'utf8', timeout: 60000 });
  return (r.stdout || '').includes(OK);
}

/** Smallest limit in KB in [lo, hi] for which `works(kb)` holds (assumed monotonic), or null. */
function smallest(works: (kb: number) => boolean, lo = 4, hi = 4096): number | null {
  if (!works(hi)) return null;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (works(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

export interface MqjsMemoryOptions {
  image?: string;
  /** Payload of the protect + unprotect. */
  bytes?: number;
  /** The mqjs binary (default: found through $E4_ENGINES, $PATH). */
  mqjs?: string | null;
}

/** Smallest memory limits in KB (null: not even 4 MB), and the size of the compiled file. */
export interface MqjsMemory {
  image: string;
  bytes: number;
  source: number | null;
  bytecode: number | null;
  bytecodeBytes: number;
}

/** { source, bytecode, bytecodeBytes } in KB (bytecodeBytes: size of the compiled file). */
export function mqjsMemory({
  image = join(ROOT, 'dist', 'e4.min.js'),
  bytes = 256,
  mqjs = engineIfPresent('mqjs'),
}: MqjsMemoryOptions = {}): MqjsMemory {
  if (!mqjs) throw new Error(absentReason('mqjs'));
  if (!existsSync(image)) throw new Error(`${image} not found: run npm run build`);
  const dir = mkdtempSync(join(tmpdir(), 'e4-mqjs-'));
  try {
    const js = join(dir, 'round-trip.js');
    const bin = join(dir, 'round-trip.bin');
    writeFileSync(js, roundTripScript(readFileSync(image, 'utf8'), bytes));
    if (!runs(mqjs, [js])) throw new Error('the round trip fails on mqjs even with its default 16 MB');
    const c = spawnSync(mqjs, ['-o', bin, js], { encoding: 'utf8' });
    if (c.status !== 0) throw new Error(`mqjs -o failed: ${c.stderr}`);
    return {
      image,
      bytes,
      source: smallest((kb) => runs(mqjs, ['--memory-limit', `${kb}k`, js])),
      bytecode: smallest((kb) => runs(mqjs, ['--memory-limit', `${kb}k`, '-b', bin])),
      bytecodeBytes: readFileSync(bin).length,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(argv: string[]) {
  const o: { image?: string; bytes: number; json: string | null } = { image: undefined, bytes: 256, json: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(USAGE);
      return 0;
    }
    if (a === '--version') {
      console.log(packageVersion());
      return 0;
    }
    const v = argv[i + 1];
    if ((a === '--image' || a === '--bytes' || a === '--json') && v === undefined) {
      console.error(`mqjs-memory: ${a} needs a value (--help for usage)`);
      return 2;
    }
    if (a === '--image') o.image = resolve(argv[++i]);
    else if (a === '--bytes' && /^\d+$/.test(v)) o.bytes = Number(argv[++i]);
    else if (a === '--json') o.json = resolve(argv[++i]);
    else {
      console.error(`mqjs-memory: unexpected argument ${a} (--help for usage)`);
      return 2;
    }
  }
  const r = mqjsMemory(o);
  console.log(
    `mqjs: smallest --memory-limit for provisioning + a ${r.bytes}-byte protect/unprotect: ${r.source} KB from source, ${r.bytecode} KB from bytecode (mqjs -o: ${r.bytecodeBytes} bytes, outside the heap)`,
  );
  if (o.json) writeFileSync(o.json, JSON.stringify(r, null, 2) + '\n');
  return r.source && r.bytecode ? 0 : 1;
}

runIfMain(import.meta.url, 'mqjs-memory', main);
