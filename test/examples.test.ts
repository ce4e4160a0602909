/**
 * The applications of examples/ on the Linux Espruino, as `npm run hil -- --example NAME` runs
 * them on a board: each is flashed as the board's application (.bootcde) with a throwaway
 * identity inside `npm run linux-board`; its readings must reach the broker protected and
 * decrypt with the topic key, and a message protected for it must come back in its next reading.
 * The heart-rate monitor runs on the Puck.js image (espruino32-2630) behind the gateway, which
 * dials the board's console; the sensor on the ESP32 image (espruino32-12000) over its own MQTT.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { needEngine, skipped, titled } from './support/engines';
import { TS_NODE, TSX_LOADER } from '../host-sim/shared/cli.ts';
import { docBlock, runDocBlock } from './support/doc-blocks';

const ROOT = join(__dirname, '..');

const RUNS = [
  { example: 'puckjs-heart-rate', board: 'espruino-puckjs', engine: needEngine('espruino32-2630'), topic: 'health/heart-rate' },
  { example: 'esp32-sensor', board: 'espruino-esp32', engine: needEngine('espruino32-12000'), topic: 'plant/temp' },
];

for (const r of RUNS) {
  describe.skipIf(skipped(r.engine))(titled(`examples/${r.example} on the ${r.board} image (${r.engine.name})`, r.engine), () => {
    it(
      'publishes protected readings that decrypt, and receives a message protected for it',
      () => {
        r.engine.binary();
        let p: { status: number | null; out: string };
        if (r.example === 'puckjs-heart-rate') {
          // examples/README.md's line, as written, from a fresh folder.
          const block = docBlock('hil-example-linux-board');
          expect(block.text).toContain(`--example ${r.example}`);
          const run = runDocBlock(block, { timeoutMs: 4 * 60 * 1000 });
          run.cleanup();
          p = run;
        } else {
          const hil = `exec "${process.execPath}" --import ${TSX_LOADER} "${join(ROOT, 'host-sim/tools/hil.ts')}" --board ${r.board} -p "$E4_BOARD_PORT" --example ${r.example}`;
          const s = spawnSync(
            process.execPath,
            [...TS_NODE, join(ROOT, 'host-sim/tools/linux-board.ts'), '--engine', r.engine.name, '--', 'sh', '-c', hil],
            {
              encoding: 'utf8',
              timeout: 4 * 60 * 1000,
            },
          );
          p = { status: s.status, out: (s.stdout || '') + (s.stderr || '') };
        }
        const out = p.out;
        expect(out).toMatch(/flash: the runtime booted: e4\/[0-9a-f]{32}, 2 topics/);
        expect(out).toMatch(
          new RegExp(`hil: pass example ${r.example}: its readings on ${r.topic.replace('/', '\\/')} decrypt with the topic key`),
        );
        expect(out).toMatch(new RegExp(`hil: pass example ${r.example}: no plaintext on the broker`));
        expect(out).toMatch(new RegExp(`hil: pass example ${r.example}: received the message protected for it`));
        expect(out).toMatch(/hil: 4 passed, 0 failed/);
        expect(p.status, out).toBe(0);
      },
      5 * 60 * 1000,
    );
  });
}
