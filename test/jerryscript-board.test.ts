/**
 * The jerryscript image (dist/boards/jerryscript.min.js) with the JavaScript shim of a C port's
 * native functions (host-sim/sim/jerry-shim.js) under Duktape (`duk`, Debian's duktape package; CI
 * installs it: a missing duk fails this test): provisioning from e4.json, subscriptions, receive,
 * publish, a C2 command, a power cycle on the same storage, a topic met at run time.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engineIfPresent } from '../host-sim/tools/engines.ts';
import { findTool } from '../build/jerry-snapshot.ts';
import { sha3_16 } from '../host-sim/shared/device-config.ts';
import { jerryBoardScript, jerryResults, open, key, TOPICS, CTL, BIG, bigChecksum, bigPayload } from '../host-sim/sim/jerry-board.ts';
import { MODES, measure } from '../host-sim/tools/jerry-memory.ts';
import { jsonObject } from './support/json';

describe.each([
  ['portable AES', false],
  ['the native AES functions', true],
])('jerryscript image under duk with the native-function shim, %s', (_name, nativeAes) => {
  it('provisions, receives, publishes, runs a command and survives a power cycle', () => {
    const duk = engineIfPresent('duk');
    if (!duk)
      throw new Error(
        'duk (Debian package duktape) is required for this test' +
          (process.env.CI ? ' and CI must install it' : ': apt-get install duktape'),
      );
    const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-'));
    const file = join(dir, 'board.js');
    writeFileSync(file, jerryBoardScript({ nativeAes }));
    const r = spawnSync(duk, [file], { encoding: 'utf8', timeout: 120000 });
    const R = jerryResults(r.stdout);
    expect(R.end, r.stdout + r.stderr).toBe('ok');
    expect(JSON.parse(R.status)).toMatchObject({ ok: true, error: '', controlTopic: CTL, topics: 4 });
    const cfg = jsonObject(JSON.parse(R.config));
    expect(cfg.key).toBeUndefined();
    expect(cfg.provisioned).toBe(true);
    expect(cfg.topics).toEqual(TOPICS.map((topic) => ({ topic, hash: sha3_16(topic) })));
    expect(JSON.parse(R.subscribed)).toEqual([CTL, ...TOPICS]);
    expect(JSON.parse(R.got)).toEqual([
      'health/spo2=spo2 97%',
      'error E4_ERROR_MESSAGE_REPLAYED health/spo2',
      `command ${CTL}`,
      `command ${CTL}`,
      'runtime/topic=late topic',
    ]);
    const [topic, hex] = R.published.split(' ');
    expect(topic).toBe('health/spo2');
    expect(open(key(0x77), hex)).toBe('spo2 96%');
    expect(JSON.parse(R.stats)).toEqual({ received: 5, accepted: 4, rejected: 1, commands: 2, published: 1 });
    // 1,000 bytes out (opened here with the topic's key) and the same message back in.
    const [bigTopic, bigHex] = R.bigout.split(' ');
    expect(bigTopic).toBe('health/temp');
    expect(open(key(0x23), bigHex)).toBe(bigPayload());
    expect(R.bigin).toBe(`health/temp ${BIG} ${bigChecksum()}`);
    expect(JSON.parse(R.status2)).toMatchObject({ ok: true, topics: 5 });
    expect(open(key(0x77), R.after)).toBe('after reboot');
    expect(R.replay).toBe('E4_ERROR_MESSAGE_REPLAYED');
    expect(JSON.parse(R.files).sort()).toEqual(['$e4.json', '$e4s0']);
  });
});

/**
 * The same life on JerryScript with a 64 KB heap (host-sim/tools/jerry-memory.ts), the image
 * parsed from source, as an ordinary snapshot and as a static snapshot executed in place: every
 * mode must run the whole life (the 1,000-byte message included) with the same results, and the
 * static snapshot within 32 KB of heap. Needs jerry-lean, jerry-lean-snap and
 * jerry-snapshot-lean ($E4_ENGINES or $PATH): skipped without them, failed under CI.
 */
describe('jerryscript image on a 64 KB JerryScript', () => {
  const tools = {
    engine: engineIfPresent('jerry-lean'),
    snapEngine: engineIfPresent('jerry-lean-snap'),
    generator: findTool('jerry-snapshot-lean'),
  };
  const missing = Object.entries(tools)
    .filter(([, v]) => !v)
    .map(([k]) => k);
  /** The three tools, found (the tests below are skipped when one is missing). */
  const found = () => {
    const { engine, snapEngine, generator } = tools;
    if (!engine || !snapEngine || !generator) throw new Error(`missing ${missing.join(', ')}`);
    return { engine, snapEngine, generator };
  };
  const image = join(__dirname, '..', 'dist/boards/jerryscript.min.js');
  // The reason shows in the test name when the engines are absent.
  const why = missing.length ? ` (skipped: no ${missing.join(', ')} in $E4_ENGINES or $PATH)` : '';
  if (missing.length && process.env.CI) {
    it('has its engines', () => {
      throw new Error(`jerry-lean, jerry-lean-snap and jerry-snapshot-lean are required under CI (missing: ${missing.join(', ')})`);
    });
    return;
  }
  it.skipIf(missing.length > 0)('static snapshot: the whole life, 1,000 bytes out and in, within 32 KB of heap' + why, () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-snap-'));
    const r = measure('static', { image, tools: found(), dir });
    expect(r.ok, r.out).toBe(true);
    console.log(`jerry-lean-snap, static snapshot, whole life with 1,000 bytes out and in: peak ${r.peak} of ${r.heap} bytes of heap`);
    expect(r.peak).toBeLessThanOrEqual(32768);
  });
  it.skipIf(missing.length > 0)('static snapshot with the native AES functions: the same life' + why, () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-snap-'));
    const r = measure('static', { image, tools: found(), dir, nativeAes: true });
    expect(r.ok, r.out).toBe(true);
  });
  it.skipIf(missing.length > 0)('ordinary snapshot: the whole life' + why, () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-snap-'));
    expect(MODES).toContain('snapshot');
    const r = measure('snapshot', { image, tools: found(), dir });
    expect(r.ok, r.out).toBe(true);
  });
});
