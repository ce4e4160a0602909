/**
 * Hardware in the loop (host-sim/tools/hil.ts) against a real board, only when one is attached:
 *   HIL_PORT=/dev/ttyACM0 HIL_BOARD=espruino-puckjs npx vitest run test/hil.test.ts
 *   HIL_PORT=tcp://127.0.0.1:2323 (the Linux build of Espruino: `sleep 3600 | espruino --telnet`)
 * HIL_BOARD defaults to espruino-puckjs. It also runs the examples/ application for that board
 * (`--example`: its readings arrive protected and decrypt, it receives a message protected for
 * it); HIL_BROKER names a broker an ESP32 on Wi-Fi can reach (default: aedes on loopback, which
 * the Linux build reaches). This is the only test that may be skipped.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { TS_NODE } from '../host-sim/shared/cli.ts';

/** The example of examples/ that runs on each board. */
const EXAMPLE: Record<string, string> = {
  'espruino-puckjs': 'puckjs-heart-rate',
  'espruino-nrf52': 'puckjs-heart-rate',
  'espruino-esp32': 'esp32-sensor',
};

describe.skipIf(!process.env.HIL_PORT)('hil on a board', () => {
  it(
    'flashes, runs vectors, survives a reset and times protect/unprotect',
    () => {
      const board = process.env.HIL_BOARD || 'espruino-puckjs';
      const r = spawnSync(
        process.execPath,
        [...TS_NODE, join(__dirname, '..', 'host-sim/tools/hil.ts'), '--board', board, '--port', process.env.HIL_PORT!],
        {
          encoding: 'utf8',
          timeout: 30 * 60 * 1000,
        },
      );
      const summary = /hil: (\d+) passed, (\d+) failed/.exec(r.stdout);
      expect(summary, r.stdout + r.stderr).not.toBeNull();
      expect(Number(summary![2]), r.stdout).toBe(0);
      expect(Number(summary![1])).toBeGreaterThan(30);
      expect(r.status).toBe(0);
    },
    30 * 60 * 1000,
  );

  it(
    'runs the example for the board: readings arrive protected and decrypt, a message protected for it is received',
    () => {
      const board = process.env.HIL_BOARD || 'espruino-puckjs';
      const args = ['--board', board, '--port', process.env.HIL_PORT!, '--example', EXAMPLE[board]];
      if (process.env.HIL_BROKER) args.push('--broker', process.env.HIL_BROKER);
      const r = spawnSync(process.execPath, [...TS_NODE, join(__dirname, '..', 'host-sim/tools/hil.ts'), ...args], {
        encoding: 'utf8',
        timeout: 10 * 60 * 1000,
      });
      expect(r.stdout, r.stderr).toMatch(/hil: 4 passed, 0 failed/);
      expect(r.status).toBe(0);
    },
    10 * 60 * 1000,
  );
});
