/**
 * Hardware in the loop (host-sim/tools/hil.ts) against a real board, only when one is attached:
 *   HIL_PORT=/dev/ttyACM0 HIL_BOARD=espruino-puckjs npx vitest run test/hil.test.ts
 *   HIL_PORT=tcp://127.0.0.1:2323 (the Linux build of Espruino: `sleep 3600 | espruino --telnet`)
 * HIL_BOARD defaults to espruino-puckjs. This is the only test that may be skipped.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { TS_NODE } from '../host-sim/shared/cli.ts';

describe.skipIf(!process.env.HIL_PORT)('hil on a board', () => {
  it('flashes, runs vectors, survives a reset and times protect/unprotect', () => {
    const board = process.env.HIL_BOARD || 'espruino-puckjs';
    const r = spawnSync(process.execPath, [...TS_NODE, join(__dirname, '..', 'host-sim/tools/hil.ts'), '--board', board, '--port', process.env.HIL_PORT!], {
      encoding: 'utf8',
      timeout: 30 * 60 * 1000,
    });
    const summary = /hil: (\d+) passed, (\d+) failed/.exec(r.stdout);
    expect(summary, r.stdout + r.stderr).not.toBeNull();
    expect(Number(summary![2]), r.stdout).toBe(0);
    expect(Number(summary![1])).toBeGreaterThan(30);
    expect(r.status).toBe(0);
  }, 30 * 60 * 1000);
});
