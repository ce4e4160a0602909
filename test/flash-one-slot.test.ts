/**
 * Flashing a board whose Storage holds one image only (a Puck.js: ≈ 40 KB of Storage, a ≈ 35 KB
 * image), on the Linux Espruino with its Storage filled to that size: the old image is erased
 * first, a cut half-way leaves the first identity's configuration and keys (flash --keep-state
 * brings it back), and a whole upload installs the new identity (test/support/one-slot-flash.ts).
 */
import { describe, expect, it } from 'vitest';
import { needEngine, skipped, titled } from './support/engines';
import { scriptOnLinuxBoard } from './support/linux-board';

const e = needEngine('espruino32-2630');

describe.skipIf(skipped(e))(titled('flash where Storage has room for one image only (espruino-puckjs on espruino32-2630)', e), () => {
  it(
    'erases the old image first, keeps the keys through a cut, and installs the new identity',
    () => {
      e.binary();
      const r = scriptOnLinuxBoard('espruino32-2630', 'test/support/one-slot-flash.ts', [], 4 * 60 * 1000);
      const out = r.out;
      console.log(
        out
          .split('\n')
          .filter((l) => /^(FIRST|BALLAST|CUT|KEPT|SECOND)/.test(l))
          .join('\n'),
      );
      expect(out).toMatch(/^SECOND one-slot \{"ok":true/m);
      expect(r.status, out).toBe(0);
    },
    5 * 60 * 1000,
  );
});
