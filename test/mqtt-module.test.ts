/**
 * The project's MQTT 3.1.1 client for Espruino (boards/espruino/modules/MQTT.js) on the Linux
 * Espruino (espruino32-12000) against aedes, inside `linux-board`: QoS 1 subscription with a
 * binary payload, QoS 0 and 1 publications, keep-alive pings (1 s: aedes drops a silent client),
 * and a broker that goes away and comes back (disconnected, connected again, receiving again).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { needEngine, skipped, titled } from './support/engines';
import { TS_NODE, TSX_LOADER } from '../host-sim/shared/cli.ts';

const ROOT = join(__dirname, '..');
const e = needEngine('espruino32-12000');

describe.skipIf(skipped(e))(titled('boards/espruino/modules/MQTT.js on espruino32-12000 against aedes', e), () => {
  it('subscribes and publishes with QoS 0 and 1, keeps the connection alive, reconnects after the broker restarts', () => {
    e.binary();
    const run = `exec "${process.execPath}" --import ${TSX_LOADER} "${join(ROOT, 'test/support/mqtt-module-run.ts')}"`;
    const r = spawnSync(
      process.execPath,
      [...TS_NODE, join(ROOT, 'host-sim/tools/linux-board.ts'), '--engine', e.name, '--', 'sh', '-c', run],
      { encoding: 'utf8', timeout: 120000 },
    );
    const out = (r.stdout || '') + (r.stderr || '');
    const line = /^RESULT (.*)$/m.exec(out);
    expect(line, out).not.toBeNull();
    const res = JSON.parse(line![1]);
    expect(res.subscribed, out).toBe(true);
    expect(res.received, out).toBe(true);
    expect(res.published).toEqual(['up/q0 00ff7a65726f', 'up/q1 00ff6f6e65']);
    expect(res.keptAlive, out).toBe(true);
    expect(res.disconnected, out).toBe(true);
    expect(res.reconnected, out).toBe(true);
    expect(res.receivedAfter, out).toBe(true);
    expect(r.status).toBe(0);
  }, 150000);
});
