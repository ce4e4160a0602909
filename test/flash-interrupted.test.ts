/**
 * All-or-nothing flashing on the real interpreter: test/support/interrupted-flash.ts, run as a
 * board by host-sim/tools/linux-board.ts, cuts the upload's connection at bytes spread over the
 * whole upload and around the switch line, restarts the board after each cut and checks that it
 * boots with its old identity and keys (cut before the switch line is whole) or with the new
 * ones (after), never broken; then a complete upload gives the new identity. E4_CUTS=all tries
 * more points.
 */
import { describe, expect, it } from 'vitest';
import { needEngine, skipped, titled } from './support/engines';
import { scriptOnLinuxBoard } from './support/linux-board';

const e = needEngine('espruino32-2630');

describe.skipIf(skipped(e))(titled('flash cut off at any point of the upload (espruino-puckjs on espruino32-2630)', e), () => {
  it(
    'leaves a board that boots with its old keys, or with the new ones once the switch line ran',
    () => {
      e.binary();
      const r = scriptOnLinuxBoard('espruino32-2630', 'test/support/interrupted-flash.ts', ['espruino-puckjs'], 6 * 60 * 1000);
      const out = r.out;
      const cuts = out.split('\n').filter((l) => l.startsWith('CUT '));
      console.log(
        out
          .split('\n')
          .filter((l) => /^(UPLOAD|CUT|COMPLETE|KEEPSTATE|RESULT)/.test(l))
          .join('\n'),
      );
      expect(cuts.length, out).toBeGreaterThanOrEqual(8);
      expect(
        cuts.filter((l) => !/ pass /.test(l)),
        out,
      ).toEqual([]);
      expect(out).toMatch(/COMPLETE pass/);
      expect(out).toMatch(/KEEPSTATE pass/);
      expect(r.status, out).toBe(0);
    },
    7 * 60 * 1000,
  );
});
