/**
 * Runs a host `.ts` script of the suite next to a Linux Espruino board (`npm run linux-board`:
 * its own network namespace, `$E4_BOARD_PORT` set), as the flash tests do. Resolves the script's
 * exit status and everything it printed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { TS_NODE } from '../../host-sim/shared/cli.ts';

const ROOT = join(__dirname, '..', '..');

export function scriptOnLinuxBoard(
  engine: string,
  script: string,
  args: string[],
  timeoutMs: number,
): { status: number | null; out: string } {
  const r = spawnSync(
    process.execPath,
    [
      ...TS_NODE,
      join(ROOT, 'host-sim/tools/linux-board.ts'),
      '--engine',
      engine,
      '--',
      process.execPath,
      ...TS_NODE,
      join(ROOT, script),
      ...args,
    ],
    { encoding: 'utf8', timeout: timeoutMs },
  );
  return { status: r.status, out: (r.stdout || '') + (r.stderr || '') };
}
