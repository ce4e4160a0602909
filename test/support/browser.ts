/**
 * The system's Chromium for the browser tests (Debian's `chromium`: nothing downloads a browser),
 * found as $CHROMIUM or on the usual paths. Absent, a suite is skipped with the reason; under CI
 * it fails instead (.ci/run installs the package).
 */
import fs from 'node:fs';
import { ON_CI } from './engines.ts';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium'];

export interface NeededBrowser {
  path: string | null;
  /** Why the suite is skipped (absent and not on CI), else null. */
  skip: string | null;
  binary(): string;
}

export function needChromium(): NeededBrowser {
  const fromEnv = process.env['CHROMIUM'];
  const path = fromEnv && fs.existsSync(fromEnv) ? fromEnv : (CANDIDATES.find((p) => fs.existsSync(p)) ?? null);
  const reason = 'chromium is not installed (Debian package "chromium", or set CHROMIUM to the browser)';
  return {
    path,
    skip: path || ON_CI ? null : reason,
    binary() {
      if (!path) throw new Error(ON_CI ? `${reason} (CI must provide it: see .ci/run)` : reason);
      return path;
    },
  };
}
