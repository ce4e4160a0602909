/**
 * `npm run flash` + `npm run hil` end to end against the Linux build of Espruino serving its
 * console over TCP (host-sim/tools/linux-board.ts: a private network namespace per board, one
 * at a time): each board image on the engine of its size, flashed, vectors run on the board, the
 * store surviving a reset (load()), the memory report and the timing. Skipped without the engines
 * (with the reason); on CI a missing engine fails.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { needEngine, skipped, titled } from './support/engines';
import { docBlock, runDocBlock } from './support/doc-blocks';
import { TS_NODE, TSX_LOADER } from '../host-sim/shared/cli.ts';

const ROOT = join(__dirname, '..');
const BOARDS: [board: string, engine: string][] = [
  ['espruino-esp32', 'espruino32-12000'],
  ['espruino-puckjs', 'espruino32-2630'],
  ['espruino-nrf52', 'espruino32-2630'],
];

function hilOnLinux(board: string, engine: string) {
  // The Puck.js case is docs/engines.md's block, run as written from a fresh folder.
  if (board === 'espruino-puckjs') {
    const block = docBlock('hil-linux-board');
    expect(block.text).toContain(`--engine ${engine}`);
    expect(block.text).toContain(`--board ${board}`);
    const run = runDocBlock(block, { timeoutMs: 8 * 60 * 1000 });
    run.cleanup();
    return { status: run.status, out: run.out };
  }
  const r = spawnSync(
    process.execPath,
    [
      ...TS_NODE,
      join(ROOT, 'host-sim/tools/linux-board.ts'),
      '--engine',
      engine,
      '--',
      'sh',
      '-c',
      `exec "${process.execPath}" --import ${TSX_LOADER} "${join(ROOT, 'host-sim/tools/hil.ts')}" --board ${board} --port "$E4_BOARD_PORT"`,
    ],
    { encoding: 'utf8', timeout: 8 * 60 * 1000 },
  );
  return { status: r.status, out: (r.stdout || '') + (r.stderr || '') };
}

for (const [board, engine] of BOARDS) {
  const e = needEngine(engine);
  describe.skipIf(skipped(e))(titled(`${board} image on ${engine} over tcp://`, e), () => {
    it(
      'flashes, passes every vector check, keeps its store across a reset and reports its memory',
      () => {
        e.binary();
        const r = hilOnLinux(board, engine);
        const summary = /hil: (\d+) passed, (\d+) failed/.exec(r.out);
        expect(summary, r.out).not.toBeNull();
        expect(Number(summary![2]), r.out).toBe(0);
        expect(r.out).toMatch(/hil: pass flash \(image, configuration, boot file verified by CRC-32\)/);
        expect(r.out).toMatch(/hil: pass boot from flash, store opened, 4 topics/);
        expect(r.out).toMatch(/hil: pass store survives reset: the rotated key is in use after reload/);
        expect(r.out).toMatch(/hil: pass store survives reset: a replay of the command is rejected/);
        const mem =
          /hil: memory: runtime (\d+) vars after boot with 4 topics, (\d+) after a (?:64-byte )?protect\/unprotect \(interpreter alone (\d+) of (\d+) vars/.exec(
            r.out,
          );
        expect(mem, r.out).not.toBeNull();
        expect(Number(mem![4])).toBe(engine === 'espruino32-2630' ? 2630 : 12000);
        console.log(`${board} on ${engine}: ${mem![0].slice(5)}; ${summary![0]}`);
        expect(r.status).toBe(0);
      },
      9 * 60 * 1000,
    );
  });
}
