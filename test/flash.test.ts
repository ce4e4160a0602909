/**
 * `npm run flash` and `npm run hil` as commands: wrong flags and files get a clear message and
 * exit status 2 (without touching any board); the upload script checks the configuration for
 * the board and writes what the board needs. The end-to-end run against a board is
 * test/hil.test.ts (HIL_PORT).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceConfigFor, uploadScript, verifyFlash, sha3_16 } from '../host-sim/shared/flash-files.ts';
import { parseArgs, portKind } from '../host-sim/tools/espruino-cli.ts';
import { UsageError } from '../host-sim/shared/cli.ts';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const ROOT = join(__dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'e4-flash-test-'));
const file = (name: string, data: unknown) => {
  const p = join(tmp, name);
  writeFileSync(p, typeof data === 'string' ? data : JSON.stringify(data));
  return p;
};
const k = (n: number) => n.toString(16).padStart(2, '0').repeat(32);
const good = {
  format: 'e4-device',
  version: 1,
  name: 'dev-1',
  key: k(1),
  topics: [{ topic: 'a/b', key: k(2) }],
  transport: { link: { kind: 'ble-uart' } },
};
const goodFile = file('good.json', good);

function run(tool: string, args: string[]) {
  const r = spawnSync(process.execPath, [...TS_NODE, join(ROOT, 'host-sim/tools', tool), ...args], { encoding: 'utf8', timeout: 30000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('flash: command line', () => {
  const cases: [string, string[], RegExp][] = [
    ['no arguments', [], /--board is required/],
    ['unknown option', ['--bord', 'x'], /unknown option --bord/],
    ['option without value', ['--board'], /--board needs a value/],
    ['repeated option', ['--board', 'espruino-puckjs', '--board', 'espruino-nrf52'], /given twice/],
    [
      'unknown board',
      ['--board', 'arduino', '--port', 'tcp://127.0.0.1:1', '--device', goodFile],
      /--board "arduino": expected one of espruino-puckjs, espruino-nrf52, espruino-esp32/,
    ],
    ['jerryscript board', ['--board', 'jerryscript', '--port', 'tcp://127.0.0.1:1', '--device', goodFile], /built into a C port/],
    ['missing port', ['--board', 'espruino-puckjs', '--device', goodFile], /--port is required/],
    [
      'bad port',
      ['--board', 'espruino-puckjs', '--port', 'usb0', '--device', goodFile],
      /expected a serial device .* a Bluetooth address .* or tcp:\/\/host:port/,
    ],
    ['missing device', ['--board', 'espruino-puckjs', '--port', '/dev/ttyACM0'], /--device is required/],
    ['device file missing', ['--board', 'espruino-puckjs', '--port', '/dev/ttyACM0', '--device', join(tmp, 'nope.json')], /no such file/],
    ['device file not JSON', ['--board', 'espruino-puckjs', '--port', '/dev/ttyACM0', '--device', file('bad.json', '{ nope')], /bad\.json/],
    [
      'bad key',
      ['--board', 'espruino-puckjs', '--port', '/dev/ttyACM0', '--device', file('k.json', { ...good, key: 'abc' })],
      /key must be 64 hex digits/,
    ],
    [
      'wrong hash',
      [
        '--board',
        'espruino-puckjs',
        '--port',
        '/dev/ttyACM0',
        '--device',
        file('h.json', { ...good, topics: [{ topic: 'a/b', hash: '00'.repeat(16), key: k(2) }] }),
      ],
      /hash is not the hash of "a\/b"/,
    ],
    [
      'link transport on ESP32',
      [
        '--board',
        'espruino-esp32',
        '--port',
        '/dev/ttyUSB0',
        '--device',
        file('l.json', { ...good, transport: { link: { kind: 'serial' } } }),
      ],
      /speaks MQTT/,
    ],
    [
      'MQTT on a Puck.js',
      [
        '--board',
        'espruino-puckjs',
        '--port',
        'aa:bb:cc:dd:ee:ff',
        '--device',
        file('m.json', { ...good, transport: { mqtt: { url: 'mqtt://127.0.0.1:1883' } } }),
      ],
      /through a gateway/,
    ],
    [
      'ESP32 MQTT with a --modules folder that lacks the module',
      [
        '--board',
        'espruino-esp32',
        '--port',
        '/dev/ttyUSB0',
        '--device',
        file('e.json', { ...good, transport: { mqtt: { url: 'mqtt://10.0.0.2:1883' } } }),
        '--modules',
        tmp,
      ],
      /--modules .* holds no MQTT\.min\.js or MQTT\.js/,
    ],
    [
      'bad clock',
      ['--board', 'espruino-puckjs', '--port', '/dev/ttyACM0', '--device', file('c.json', { ...good, clock: 'skewed:5' })],
      /clock must be one of/,
    ],
    [
      'bad boot file',
      ['--board', 'espruino-puckjs', '--port', '/dev/ttyACM0', '--device', goodFile, '--boot-file', 'boot.js'],
      /--boot-file/,
    ],
    [
      'a device file without transport',
      ['--board', 'espruino-puckjs', '-p', '/dev/ttyACM0', '--device', file('nt.json', { ...good, transport: undefined })],
      /no transport: the espruino-puckjs image needs transport\.link \(e4-c2 config DEVICE --board espruino-puckjs --link ble-uart\)/,
    ],
    [
      'an ESP32 device file without MQTT',
      ['--board', 'espruino-esp32', '-p', '/dev/ttyUSB0', '--device', file('nm.json', { ...good, transport: undefined })],
      /no transport: the ESP32 image needs transport\.mqtt/,
    ],
    [
      'a device file without topics',
      ['--board', 'espruino-puckjs', '-p', '/dev/ttyACM0', '--device', file('n0.json', { ...good, topics: [] })],
      /no topics: .*e4-c2 grant DEVICE TOPIC/,
    ],
    [
      'a device file for another board',
      ['--board', 'espruino-nrf52', '-p', '/dev/ttyACM0', '--device', file('ob.json', { ...good, board: 'espruino-puckjs' })],
      /written for espruino-puckjs, not espruino-nrf52/,
    ],
  ];
  for (const [name, args, msg] of cases) {
    it(`${name}: exit 2 with a clear message`, () => {
      const r = run('flash.ts', args);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(msg);
      // One line, saying where the help is.
      expect(r.err).toMatch(/^flash: [^\n]+ \(see npm run flash -- --help\)\n$/);
    });
  }
  it('--version prints the version; -p is --port, as the espruino tool spells it', () => {
    const v = run('flash.ts', ['--version']);
    expect(v.code).toBe(0);
    expect(v.out.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
    const r = run('flash.ts', ['--board', 'espruino-puckjs', '-p', '/dev/ttyACM0', '--device', goodFile, '--dry-run']);
    expect(r.code, r.err).toBe(0);
  });
  it('--help prints the usage and exits 0', () => {
    const r = run('flash.ts', ['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--keep-state/);
  });
  it('a board that does not answer: exit 1 with the reason', () => {
    const r = run('flash.ts', ['--board', 'espruino-puckjs', '--port', 'tcp://127.0.0.1:9', '--device', goodFile, '--timeout', '20']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^flash: tcp:\/\/127\.0\.0\.1:9: connection refused: nothing listens on port 9 of 127\.0\.0\.1/m);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});

describe('flash: what is written', () => {
  it('completes the configuration: id from the name, every topic hash computed on the host', () => {
    const c = deviceConfigFor('espruino-puckjs', good);
    expect(c.id).toBe(sha3_16('dev-1'));
    expect(c.topics).toEqual([{ topic: 'a/b', hash: sha3_16('a/b'), key: k(2) }]);
    expect(deviceConfigFor('espruino-puckjs', good, 'x', { keys: false }).topics).toEqual([{ topic: 'a/b', hash: sha3_16('a/b') }]);
  });

  it('the dry run is the upload script: new files under temporary names, one switch line after an on-board CRC check, boot file last, load()', () => {
    const r = run('flash.ts', ['--board', 'espruino-nrf52', '--port', '/dev/ttyACM0', '--device', goodFile, '--dry-run']);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.split('\n');
    expect(lines.slice(0, 2)).toEqual(['clearInterval();clearWatch();', 'var S=require("Storage");']);
    // Nothing is erased or overwritten before the switch line but the slot the boot file does not start and temporary files.
    const sw = lines.findIndex((l) => l.includes('E4FLASH switched'));
    expect(sw).toBeGreaterThan(0);
    for (const l of lines.slice(0, sw)) expect(l).not.toMatch(/S\.(erase|write)\("(e4s0|e4s1|e4\.json|\.boot0|e4\.js|e4b\.js)"/);
    expect(r.out).toMatch(/S\.erase\(N\);\nS\.write\(N,atob\("[A-Za-z0-9+/=]+"\),0,\d+\);/);
    expect(r.out).toMatch(/S\.write\("e4\.json~",atob\("[A-Za-z0-9+/=]+"\),0,\d+\);/);
    // The switch: checks first, then the old store, the configuration, and the boot file last.
    const line = lines[sw];
    expect(line).toMatch(/^var T0=E\.toString\(S\.read\("e4\.json~"\)\);if\(\(S\.read\(N\)\|\|""\)\.length==\d+&&E\.CRC32/);
    const order = ['S.erase("e4s0")', 'S.erase("e4s1")', 'S.write("e4.json",T0)', 'S.write(".boot0"', 'print("E4FLASH switched"'].map((x) =>
      line.indexOf(x),
    );
    expect(order.every((i, k) => i > line.indexOf('){') && (k === 0 || i > order[k - 1]))).toBe(true);
    expect(line).toMatch(/else print\("E4FLASH mismatch: nothing switched"\);$/);
    expect(r.out).toMatch(/S\.compact\(\);/);
    expect(r.out).toMatch(/print\("E4FLASH done"\);\nsetTimeout\(function\(\)\{load\(\);\},200\);\n$/);
    // Every line is short enough for a small board's console and line buffer.
    for (const l of lines) expect(l.length).toBeLessThan(1100);
  });

  it('--keep-state writes the configuration without keys and leaves the store', () => {
    const { script } = uploadScript({
      image: 'x',
      config: deviceConfigFor('espruino-puckjs', good, 'f', { keys: false }),
      keepState: true,
    });
    expect(script).not.toMatch(/e4s0/);
    const cfg = Buffer.from(/S\.write\("e4\.json~",atob\("([^"]+)"\)/.exec(script)![1], 'base64').toString();
    expect(cfg).not.toMatch(/"key"/);
  });

  it('verification fails on a missing or different file, an unconfirmed upload or a switch that did not happen', () => {
    const { files } = uploadScript({ image: 'abc', config: null });
    const boot = files.flatMap((f) => ('variants' in f ? f.variants : []))[0];
    const lines = [
      ...files.flatMap((f) => ('bytes' in f ? [`E4FLASH ${f.name} ${f.bytes} ${f.crc}`] : [])),
      `E4FLASH .boot0 ${boot.bytes} ${boot.crc}`,
      `E4FLASH switched ${boot.slot}`,
      'E4FLASH free 100',
      'E4FLASH done',
    ];
    expect(verifyFlash(lines, files)).toEqual({ free: 100, slot: boot.slot, oneSlot: false });
    expect(() => verifyFlash(lines.slice(1), files)).toThrow(/e4\.js: not reported/);
    expect(() => verifyFlash([`E4FLASH e4.js 3 1`, ...lines.slice(1)], files)).toThrow(/e4\.js: the board holds 3 bytes with CRC 1/);
    expect(() => verifyFlash(lines.slice(0, -1), files)).toThrow(/after the board switched to the new files/);
    expect(() =>
      verifyFlash(
        lines.filter((l) => !/switched|done/.test(l)),
        files,
      ),
    ).toThrow(/never a mix/);
    expect(() => verifyFlash(['E4FLASH mismatch: nothing switched', ...lines.filter((l) => !/switched/.test(l))], files)).toThrow(
      /nothing was switched/,
    );
    // The boot file must start the slot the board switched to.
    expect(() =>
      verifyFlash(
        lines.map((l) => l.replace(/switched .*/, 'switched e4x.js')),
        files,
      ),
    ).toThrow(/\.boot0/);
  });

  it('parses arguments and ports strictly', () => {
    expect(parseArgs(['--a', '1', '--b=x', '--c'], { a: 'number', b: 'string', c: 'boolean' })).toEqual({ a: 1, b: 'x', c: true });
    expect(() => parseArgs(['--a', 'x'], { a: 'number' })).toThrow(UsageError);
    expect(() => parseArgs(['--c=1'], { c: 'boolean' })).toThrow(/takes no value/);
    expect(portKind('tcp://127.0.0.1:2323')).toBe('tcp');
    expect(portKind('E7:12:34:56:78:9A')).toBe('ble');
    expect(portKind('/dev/ttyACM0')).toBe('serial');
    expect(portKind('COM3')).toBe('serial');
    expect(() => portKind('http://x')).toThrow(UsageError);
  });
});

describe('hil: command line', () => {
  it('without a port: explains how to attach a board and exits non-zero', () => {
    const r = run('hil.ts', ['--board', 'espruino-puckjs']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no board attached/);
    expect(r.err).toMatch(/\/dev\/ttyACM0/);
    expect(r.err).toMatch(/tcp:\/\/127\.0\.0\.1:2323/);
    expect(r.err).toMatch(/espruino --telnet/);
  });
  it('a wrong board: exit 2', () => {
    const r = run('hil.ts', ['--board', 'x', '--port', 'tcp://127.0.0.1:2323']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--board "x"/);
  });
});

describe('flash: --erase-all', () => {
  it('starts the upload by erasing the whole Storage, and excludes --keep-state', () => {
    const r = run('flash.ts', ['--board', 'espruino-puckjs', '--port', '/dev/ttyACM0', '--device', goodFile, '--erase-all', '--dry-run']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^clearInterval\(\);clearWatch\(\);\nvar S=require\("Storage"\);\nS\.eraseAll\(\);\n/);
    const r2 = run('flash.ts', [
      '--board',
      'espruino-puckjs',
      '--port',
      '/dev/ttyACM0',
      '--device',
      goodFile,
      '--erase-all',
      '--keep-state',
    ]);
    expect(r2.code).toBe(2);
    expect(r2.err).toMatch(/exclude each other/);
  });
});
