/**
 * The jerryscript image (dist/boards/jerryscript.min.js) with the JavaScript shim of a C port's
 * native functions (host-sim/jerry-shim.js) under Duktape (`duk`, Debian's duktape package; CI
 * installs it: a missing duk fails this test): provisioning from e4.json, subscriptions, receive,
 * publish, a C2 command, a power cycle on the same storage, a topic met at run time.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engineIfPresent } from '../host-sim/tools/engines.mjs';
import { sha3_16 } from '../host-sim/tools/flash.mjs';
import { jerryBoardScript, jerryResults, open, key, TOPICS, CTL } from '../host-sim/jerry-board.mjs';

describe('jerryscript image under duk with the native-function shim', () => {
  it('provisions, receives, publishes, runs a command and survives a power cycle', () => {
    const duk = engineIfPresent('duk');
    if (!duk) throw new Error('duk (Debian package duktape) is required for this test' + (process.env.CI ? ' and CI must install it' : ': apt-get install duktape'));
    const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-'));
    const file = join(dir, 'board.js');
    writeFileSync(file, jerryBoardScript());
    const r = spawnSync(duk, [file], { encoding: 'utf8', timeout: 120000 });
    const R = jerryResults(r.stdout);
    expect(R.end, r.stdout + r.stderr).toBe('ok');
    expect(JSON.parse(R.status)).toMatchObject({ ok: true, error: '', controlTopic: CTL, topics: 4 });
    const cfg = JSON.parse(R.config);
    expect(cfg.key).toBeUndefined();
    expect(cfg.provisioned).toBe(true);
    expect(cfg.topics).toEqual(TOPICS.map((topic) => ({ topic, hash: sha3_16(topic) })));
    expect(JSON.parse(R.subscribed)).toEqual([CTL, ...TOPICS]);
    expect(JSON.parse(R.got)).toEqual(['health/spo2=spo2 97%', 'error E4_ERROR_MESSAGE_REPLAYED health/spo2', `command ${CTL}`, `command ${CTL}`, 'runtime/topic=late topic']);
    const [topic, hex] = R.published.split(' ');
    expect(topic).toBe('health/spo2');
    expect(open(key(0x77), hex)).toBe('spo2 96%');
    expect(JSON.parse(R.stats)).toEqual({ received: 5, accepted: 4, rejected: 1, commands: 2, published: 1 });
    expect(JSON.parse(R.status2)).toMatchObject({ ok: true, topics: 5 });
    expect(open(key(0x77), R.after)).toBe('after reboot');
    expect(R.replay).toBe('E4_ERROR_MESSAGE_REPLAYED');
    expect(JSON.parse(R.files).sort()).toEqual(['$e4.json', '$e4s0']);
  });
});
