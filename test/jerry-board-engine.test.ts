/**
 * The JerryScript board image's whole life cycle (host-sim/jerry-board.mjs: provisioning, receive,
 * publish, C2 commands, a power cycle, a topic met at run time) on the 64 KB-heap JerryScript
 * (`jerry-lean`, --mem-stats), through host-sim/tools/jerry-memory.mjs, which reports its peak
 * heap. Skipped with the reason without the engine; on CI a missing engine fails.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { needEngine, skipped, titled } from './support/engines';

const lean = needEngine('jerry-lean');

describe.skipIf(skipped(lean))(titled('JerryScript board on a 64 KB heap', lean), () => {
  it('runs the whole life cycle and reports its peak heap', () => {
    const r = spawnSync(process.execPath, [join(__dirname, '..', 'host-sim/tools/jerry-memory.mjs'), '--engine', lean.binary()], { encoding: 'utf8', timeout: 300000 });
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/provision, receive, commands, run-time topic, publish all ran/);
    const m = /heap (\d+) bytes, peak allocated (\d+) bytes/.exec(out);
    expect(m, out).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(60000);
    expect(Number(m![2])).toBeLessThan(Number(m![1]));
    console.log(`jerry-lean board life cycle: ${m![0]}`);
    expect(r.status, out).toBe(0);
  });
});
