/**
 * Real engines for the suites that need them (found as host-sim/tools/engines.ts finds them:
 * $E4_ENGINES, then $PATH). Absent, a suite is skipped with the reason; under CI (CI set) it is
 * not skipped, and fails on the missing engine instead.
 */
import { absentReason, engineIfPresent } from '../../host-sim/tools/engines.ts';

export interface NeededEngine {
  name: string;
  /** The binary, or null when absent. */
  path: string | null;
  /** Why the suite is skipped (absent and not on CI), else null. */
  skip: string | null;
  /** The binary; throws the reason when it is absent (on CI). */
  binary(): string;
}

export const ON_CI = !!process.env.CI;

export function needEngine(name: string): NeededEngine {
  const path = engineIfPresent(name);
  const reason = `${absentReason(name)}: set E4_ENGINES to a folder holding it`;
  return {
    name,
    path,
    skip: path || ON_CI ? null : reason,
    binary() {
      if (!path) throw new Error(ON_CI ? `${reason} (CI must provide every engine: see .ci/run)` : reason);
      return path;
    },
  };
}

/** A suite title that says why it was skipped, when it is. */
export function titled(title: string, ...engines: NeededEngine[]): string {
  const skipped = engines.filter((e) => e.skip);
  return skipped.length ? `${title} [skipped: ${skipped.map((e) => e.skip).join('; ')}]` : title;
}

export const skipped = (...engines: NeededEngine[]) => engines.some((e) => e.skip);
