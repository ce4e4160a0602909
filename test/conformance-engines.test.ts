/**
 * `npm run conformance` on every real engine the image targets (found through $E4_ENGINES or
 * $PATH; skipped with the reason when absent, a failure on CI): the portable image, minified and
 * readable, passes every reference vector on Espruino (three builds), JerryScript (3.0, 2.4 and the
 * 64 KB heap), MicroQuickJS and Moddable XS. Where an engine cannot hold a case, the reason is a
 * measured fact stated here, and the case is checked on the engine's board image instead
 * (test/linux-boards.test.ts). Also the MicroQuickJS memory figure, from source and bytecode.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { asciiJson, loadCases } from '../host-sim/tools/conformance.ts';
import { mqjsMemory } from '../host-sim/tools/mqjs-memory.ts';
import { needEngine, skipped, titled } from './support/engines';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const ROOT = join(__dirname, '..');
const FILES = [join(ROOT, 'test/vectors/e4-sk-vectors.json'), join(ROOT, 'test/vectors/rfc5297.json')];
const ALL = FILES.flatMap((f) => loadCases(f));
const IMAGES = [
  ['minified', join(ROOT, 'dist/e4.min.js')],
  ['readable', join(ROOT, 'dist/e4.js')],
] as const;

/**
 * What an engine runs, when less than everything:
 * - espruino32-2630 (Puck.js size): the image runs from flash Storage (as source it does not fit),
 *   ≈ 1,000 of 2,630 variables; a client of the portable image (pure-JS AES tables, SHA-3) then
 *   needs more than the ≈ 1,600 left, so only the stateless sections run here. The Puck.js and
 *   nRF52 board images (native AES) run the client vectors on this engine in linux-boards.test.ts.
 *   The readable image (60 KB) runs from Storage too, but leaves too little RAM: 8 of those 27
 *   cases run out of memory even one case per script.
 */
const LIMITS: Record<string, { sections?: string[]; images?: string[]; maxCaseBytes?: Record<string, number> }> = {
  'espruino32-2630': { sections: ['client_ids', 'topic_hashes', 'aes_siv', 'rfc5297'], images: ['minified'] },
  // jerry-lean (64 KB heap), the readable image parsed from source: its longer names leave too
  // little heap for the 1,000-byte protect case (exit 10, out of memory); the minified image
  // runs it. The JerryScript board runs 1,000-byte messages from a static snapshot within 32 KB
  // (test/jerryscript-board.test.ts).
  'jerry-lean': { maxCaseBytes: { readable: 4000 } },
};

const ENGINES = ['duk', 'espruino-o2', 'espruino32-12000', 'espruino32-2630', 'jerry', 'jerry-2.4', 'jerry-lean', 'mqjs', 'xst'];

function conformance(args: string[]) {
  const r = spawnSync(process.execPath, [...TS_NODE, join(ROOT, 'host-sim/tools/conformance.ts'), ...args], {
    encoding: 'utf8',
    timeout: 10 * 60 * 1000,
  });
  const lines = (r.stdout || '').trim().split('\n');
  return { status: r.status, out: (r.stdout || '') + (r.stderr || ''), last: lines[lines.length - 1] };
}

for (const name of ENGINES) {
  const e = needEngine(name);
  const limit = LIMITS[name] || {};
  describe.skipIf(skipped(e))(titled(`conformance on ${name}`, e), () => {
    for (const [label, image] of IMAGES) {
      if (limit.images && !limit.images.includes(label)) continue;
      const max = limit.maxCaseBytes && limit.maxCaseBytes[label];
      const cases = ALL.filter(
        (c) =>
          (!limit.sections || limit.sections.includes(c.section)) &&
          (!max || asciiJson({ id: c.id, op: c.op, args: c.args }).length <= max),
      );
      const what = limit.sections
        ? `the ${limit.sections.join(', ')} vectors`
        : max
          ? `every vector of at most ${max} bytes`
          : 'every vector';
      it(
        `the ${label} portable image passes ${what} (${cases.length} cases)`,
        () => {
          e.binary();
          const args = [
            '--engine',
            name,
            '--image',
            image,
            ...(limit.sections ? ['--sections', limit.sections.join(',')] : []),
            ...(max ? ['--max-case-bytes', String(max)] : []),
            ...FILES,
          ];
          const r = conformance(args);
          expect(r.last, r.out).toBe(`conformance: ${cases.length} passed, 0 failed`);
          expect(r.status).toBe(0);
          const time = /time .*/.exec(r.out);
          if (time) console.log(`${label} image, ${time[0]}`);
        },
        10 * 60 * 1000,
      );
    }
  });
}

const mq = needEngine('mqjs');
describe.skipIf(skipped(mq))(titled('MicroQuickJS memory', mq), () => {
  it('finds the smallest memory limit for a 256-byte protect/unprotect, from source and from bytecode', () => {
    const r = mqjsMemory({ mqjs: mq.binary(), bytes: 256 });
    console.log(
      `mqjs --memory-limit for provisioning + 256-byte protect/unprotect: ${r.source} KB from source, ${r.bytecode} KB from bytecode`,
    );
    expect(r.source).toBeGreaterThan(8);
    // Bytecode stays outside the heap: the same work needs less of it.
    expect(r.bytecode).toBeLessThan(r.source ?? 0);
  });
});
