/**
 * docs/boards.md's walkthroughs, run as written from a folder that looks like a fresh clone (the
 * package's files linked in, nothing else), each inside `npm run linux-board`:
 * - "puckjs": C2 database, devices, topics and grants, the device file for the Puck.js image
 *   with its link, `npm run flash` of the image and the heart-rate example to espruino32-2630
 *   beside an aedes broker, the gateway dialling the board's console; a phone application behind
 *   the protection proxy must get the board's readings decrypted, the board must report the
 *   alert the proxy protected for it, and after a C2 key rotation sent through the broker and
 *   the gateway the board must publish with the new key;
 * - "esp32" (continuing with the C2 set up by the first one's opening lines): the ESP32 image
 *   with the sensor example as its application on espruino32-12000 beside an aedes broker; a
 *   desk application behind the protection proxy must get the board's readings decrypted, the
 *   board must report the alert the proxy protected for it, and after a C2 key rotation sent
 *   through the broker the board must publish with the new key.
 * The first line (`npm run build`) is left out: `npm test` has just built, and a second build
 * would rewrite dist/ under the other suites' feet.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needEngine, skipped, titled } from './support/engines';

const ROOT = join(__dirname, '..');
const doc = readFileSync(join(ROOT, 'docs/boards.md'), 'utf8');
const puck = needEngine('espruino32-2630');
const esp = needEngine('espruino32-12000');

function block(marker: string): string[] {
  const at = doc.indexOf(`<!-- walkthrough: ${marker} -->`);
  expect(at, `docs/boards.md has no walkthrough "${marker}"`).toBeGreaterThan(0);
  return doc
    .slice(at)
    .match(/```sh\n([\s\S]*?)```/)![1]
    .split('\n')
    .filter((l) => l.trim() && l.trim() !== 'npm run build');
}

/** Runs the lines with bash -e in a fresh clone-like folder; returns its output and folder. */
function runInClone(lines: string[], check: (out: string, dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'e4-walkthrough-'));
  try {
    for (const f of ['package.json', 'node_modules', 'host-sim', 'dist', 'boards', 'examples']) symlinkSync(join(ROOT, f), join(dir, f));
    const env = { ...process.env };
    delete env.INIT_CWD;
    delete env.npm_lifecycle_event;
    const r = spawnSync('bash', ['-e', '-c', lines.join('\n')], { cwd: dir, env, encoding: 'utf8', timeout: 4 * 60 * 1000 });
    const out = (r.stdout || '') + (r.stderr || '');
    expect(r.status, out).toBe(0);
    check(out, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `rotate-topic --watch` saw the board publish, with the new key (generation 1) only. */
function expectOnlyNewKey(out: string, topic: string): void {
  const watch = new RegExp(`watch ${topic.replace('/', '\\/')}: (\\d+) message\\(s\\); by key gen: (.*)`).exec(out);
  expect(watch, out).not.toBeNull();
  expect(Number(watch![1])).toBeGreaterThanOrEqual(1);
  expect(watch![2].trim()).toBe(`gen 1: ${watch![1]}`);
}

describe.skipIf(skipped(puck))(
  titled(
    'docs/boards.md walkthrough: the Puck.js image on espruino32-2630 publishes and receives through the gateway and the broker, and a C2 rotation reaches it',
    puck,
  ),
  () => {
    it(
      'runs as written: readings decrypted at the phone, the alert received by the board, the new key in use',
      () => {
        puck.binary();
        const lines = block('puckjs');
        runInClone(lines, (out, dir) => {
          const id = /added device monitor-1 +id ([0-9a-f]{32})/.exec(out);
          expect(id, out).not.toBeNull();
          expect(out).toMatch(new RegExp(`flash: the runtime booted: e4/${id![1]}, 2 topics\\b`));
          // The key files the walkthrough wrote are this user's alone.
          expect(statSync(join(dir, 'keys/monitor-1.json')).mode & 0o777).toBe(0o600);
          const cfg: { topics?: { topic?: string }[]; transport?: unknown } = JSON.parse(
            readFileSync(join(dir, 'keys/monitor-1.json'), 'utf8'),
          );
          expect(cfg.topics?.map((t) => t.topic).sort()).toEqual(['health/alerts', 'health/heart-rate']);
          expect(cfg.transport).toEqual({ link: { kind: 'ble-uart' } });
          // The gateway reached the board over its console and the board said HELLO with its id.
          expect(out).toMatch(new RegExp(`gateway: tcp://127\\.0\\.0\\.1:2323: device ${id![1]}`));
          // Lines of `mqtt sub -v` at the phone: the board's readings, decrypted by the proxy.
          const readings = [...out.matchAll(/^health\/heart-rate (\{.*\})$/gm)].map((m) => JSON.parse(m[1]));
          expect(readings.length, out).toBeGreaterThanOrEqual(2);
          for (const r of readings) expect(r.bpm >= 60 && r.bpm <= 80 && typeof r.n === 'number', JSON.stringify(r)).toBe(true);
          // The board decrypted the alert the proxy protected for it, and said so in a reading.
          expect(
            readings.some((r) => r.last === 'slow down'),
            out,
          ).toBe(true);
          // After the rotation the board publishes with the new key only.
          expect(out).toMatch(/rotated health\/heart-rate to key gen 1; holders \(consumers first\): phone\(sub\), monitor-1\(pub\)/);
          expectOnlyNewKey(out, 'health/heart-rate');
        });
      },
      5 * 60 * 1000,
    );
  },
);

describe.skipIf(skipped(esp))(
  titled(
    'docs/boards.md walkthrough: the ESP32 image on espruino32-12000 publishes and receives through the broker, and a C2 rotation reaches it',
    esp,
  ),
  () => {
    it(
      'runs as written: readings decrypted at the desk, the alert received by the board, the new key in use',
      () => {
        esp.binary();
        const setup = block('puckjs');
        const c2 = setup.slice(0, setup.findIndex((l) => l.includes('c2 -- init')) + 1);
        const lines = block('esp32');
        runInClone([...c2, ...lines], (out) => {
          const id = /added device sensor-7 +id ([0-9a-f]{32})/.exec(out);
          expect(id, out).not.toBeNull();
          expect(out).toMatch(new RegExp(`flash: the runtime booted: e4/${id![1]}, 2 topics\\b`));
          // Lines of `mqtt sub -v` at the desk: the board's readings, decrypted by the proxy.
          const readings = [...out.matchAll(/^plant\/temp (\{.*\})$/gm)].map((m) => JSON.parse(m[1]));
          expect(readings.length, out).toBeGreaterThanOrEqual(2);
          for (const r of readings) expect(typeof r.t === 'number' && typeof r.n === 'number', JSON.stringify(r)).toBe(true);
          // The board decrypted the alert the proxy protected for it, and said so in a reading.
          expect(
            readings.some((r) => r.alerts === 1 && r.last === 'water me'),
            out,
          ).toBe(true);
          // After the rotation the board publishes with the new key only.
          expect(out).toMatch(/rotated plant\/temp to key gen 1; holders \(consumers first\): desk\(sub\), sensor-7\(pub\)/);
          expectOnlyNewKey(out, 'plant/temp');
        });
      },
      5 * 60 * 1000,
    );
  },
);
