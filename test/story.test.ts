/**
 * `npm start` (host-sim/fleet.ts): the heart-rate story runs end to end on its defaults and exits
 * 0 with every check passed; wrong flags get a clear message and exit code 2. Also the fleet
 * benchmark's arguments.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseFleetArgs } from '../host-sim/fleet.ts';
import { ROOT } from '../host-sim/shared/image.ts';
import { parseBenchArgs } from '../host-sim/tools/bench-fleet.ts';
import { IMAGE_PATH } from './support/sim.ts';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const FLEET = join(ROOT, 'host-sim/fleet.ts');

describe('npm start', () => {
  it('tells the story: readings reach both consumers, the broker sees ciphertext, keys survive', () => {
    const r = spawnSync(process.execPath, [...TS_NODE, FLEET, '--duration', '4', '--devices', '2', '--image', IMAGE_PATH], {
      encoding: 'utf8',
      timeout: 90000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/broker +aedes at mqtt:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(
      /rotated health\/heart-rate to key generation 1: consumers first \(phone-app, legacy-proxy, monitor-1, monitor-2\)/,
    );
    expect(out).toMatch(/monitor-2 +\d+ +\d+ +\d+ +2 /);
    expect(out.match(/^PASS /gm)?.length).toBe(7);
    expect(out).not.toMatch(/^FAIL /m);
    expect(out).toContain('only ciphertext crossed the broker');
  });

  it('rejects wrong flags with exit code 2 and the usage', () => {
    for (const args of [['--devices', '0'], ['--devices', 'many'], ['--duration', '1'], ['--broker', 'http://x'], ['--colour']]) {
      const r = spawnSync(process.execPath, [...TS_NODE, FLEET, ...args], { encoding: 'utf8', timeout: 10000 });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^fleet: .+\nusage: npm start/);
      expect(r.stdout).toBe('');
    }
    expect(parseFleetArgs(['--devices=3', '--broker', 'mosquitto', '--duration', '20'])).toMatchObject({
      devices: 3,
      broker: 'mosquitto',
      duration: 20,
    });
    expect(parseFleetArgs([])).toMatchObject({ devices: 1, broker: 'aedes', duration: 12 });
  });

  it('bench:fleet arguments', () => {
    expect(parseBenchArgs([])).toMatchObject({ devices: 10000, perContext: 10000, broker: 'aedes' });
    expect(parseBenchArgs(['--devices', '50', '--per-context', '1'])).toMatchObject({ devices: 50, perContext: 1 });
    expect(() => parseBenchArgs(['--devices', '0'])).toThrow(/--devices/);
    expect(() => parseBenchArgs(['--broker', 'nats://x'])).toThrow(/--broker/);
  });
});
